//! Tests of the retry policy and of the API error classification.

use super::*;

#[test]
fn retry_numbers_are_checked_and_never_panic() {
    DEFAULT_RETRY.validate().unwrap();
    for (factor, jitter) in [
        (f64::NAN, 0.1),
        (-1.0, 0.1),
        (1.0, f64::INFINITY),
        (1.0, -0.5),
    ] {
        let retry = Retry {
            factor,
            jitter,
            ..DEFAULT_RETRY
        };
        assert!(matches!(
            retry.validate(),
            Err(KubeError::InvalidRetry { .. })
        ));
    }
    let ms = Duration::from_millis(10);
    assert_eq!(Retry::scale(ms, f64::NAN), Retry::MAX_DELAY);
    assert_eq!(Retry::scale(ms, -2.0), Retry::MAX_DELAY);
    assert_eq!(Retry::scale(ms, 1e300), Retry::MAX_DELAY);
    assert_eq!(Retry::scale(ms, 2.0), Duration::from_millis(20));
}

#[test]
fn retryable_errors() {
    let api = |code| {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            ..kube::core::Status::default()
        }))
    };
    for code in [403, 404, 405, 409, 422] {
        assert!(!is_retryable_kube_api_error(&api(code)), "{code}");
    }
    for code in [429, 500, 503, 504] {
        assert!(is_retryable_kube_api_error(&api(code)), "{code}");
    }
    let forbidden = KubeError::Api {
        step: "create Deployment greeter".into(),
        source: api(403),
    };
    assert!(
        forbidden.to_string().contains("deploy/rbac.yaml"),
        "{forbidden}"
    );
}

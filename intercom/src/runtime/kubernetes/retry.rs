//! [`Retry`]: the retry policy of object creation, and which API errors are worth
//! retrying.

use std::time::Duration;

use super::KubeError;

/// Retry policy for object creation (kube's `DEFAULT_RETRY` shape).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retry {
    /// Attempts.
    pub steps: u32,
    /// First delay.
    pub duration: Duration,
    /// Delay multiplier.
    pub factor: f64,
    /// Random extra fraction of each delay.
    pub jitter: f64,
}

impl Retry {
    /// The longest pause between two attempts, whatever the factor.
    pub const MAX_DELAY: Duration = Duration::from_secs(30);

    /// Checks the numbers before any API call: `factor` and `jitter` must be finite and
    /// not negative.
    ///
    /// # Errors
    /// [`KubeError::InvalidRetry`] naming the field.
    pub fn validate(&self) -> Result<(), KubeError> {
        for (field, value) in [("factor", self.factor), ("jitter", self.jitter)] {
            if !value.is_finite() || value < 0.0 {
                return Err(KubeError::InvalidRetry { field, value });
            }
        }
        Ok(())
    }

    /// `delay × by`, at most [`MAX_DELAY`](Self::MAX_DELAY) (and never a panic).
    pub(crate) fn scale(delay: Duration, by: f64) -> Duration {
        Duration::try_from_secs_f64(delay.as_secs_f64() * by)
            .map_or(Self::MAX_DELAY, |d| d.min(Self::MAX_DELAY))
    }
}

/// 5 steps, 10 ms, factor 1.0, jitter 0.1.
pub const DEFAULT_RETRY: Retry = Retry {
    steps: 5,
    duration: Duration::from_millis(10),
    factor: 1.0,
    jitter: 0.1,
};

/// Whether an API error is worth retrying: not NotFound, Forbidden, Invalid or
/// MethodNotSupported (nor AlreadyExists/Conflict, which retrying cannot fix).
pub fn is_retryable_kube_api_error(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(status) => !matches!(status.code, 403 | 404 | 405 | 409 | 422),
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

//! Tests of the Deployment and Service rules, their messages and DNS labels.

use k8s_openapi::api::core::v1::Service;
use serde_json::json;

use super::*;

fn deployment(patch: impl FnOnce(&mut serde_json::Value)) -> Deployment {
    let mut v = json!({
        "metadata": {"name": "greeter"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "greeter"}},
            "template": {
                "metadata": {"labels": {"app": "greeter", "tier": "plugin"}},
                "spec": {"containers": [{
                    "name": "plugin", "image": "greeter:1",
                    "ports": [{"containerPort": 50077, "name": "grpc"}]
                }]}
            }
        }
    });
    patch(&mut v);
    serde_json::from_value(v).unwrap()
}

fn service(patch: impl FnOnce(&mut serde_json::Value)) -> Service {
    let mut v = json!({
        "metadata": {"name": "greeter"},
        "spec": {"selector": {"app": "greeter"}, "ports": [{"port": 50077, "targetPort": 50077}]}
    });
    patch(&mut v);
    serde_json::from_value(v).unwrap()
}

type Patch = Box<dyn FnOnce(&mut serde_json::Value)>;
type Case = (
    &'static str,
    Patch,
    Vec<(&'static str, ValidationErrorKind)>,
);

fn kinds(errors: Vec<ValidationError>) -> Vec<(String, ValidationErrorKind)> {
    errors.into_iter().map(|e| (e.field, e.kind)).collect()
}

#[test]
fn deployment_rules() {
    let cases = [
        metadata_and_spec_cases(),
        container_cases(),
        port_and_combined_cases(),
    ];
    for (name, patch, want) in cases.into_iter().flatten() {
        let got = match validate_deployment(&deployment(patch)) {
            Ok(_) => vec![],
            Err(e) => kinds(e),
        };
        let want: Vec<(String, ValidationErrorKind)> =
            want.into_iter().map(|(f, k)| (f.to_string(), k)).collect();
        assert_eq!(got, want, "case {name}");
    }
}

/// [`deployment_rules`]: the valid Deployment, then its name, replicas, selector and
/// `hostNetwork`.
fn metadata_and_spec_cases() -> Vec<Case> {
    use ValidationErrorKind as K;
    vec![
        ("valid", Box::new(|_| {}), vec![]),
        (
            "zero replicas",
            Box::new(|v| v["spec"]["replicas"] = json!(0)),
            vec![("spec.replicas", K::Replicas { replicas: 0 })],
        ),
        (
            "bad name",
            Box::new(|v| v["metadata"]["name"] = json!("Greeter_1")),
            vec![(
                "metadata.name",
                K::InvalidName {
                    name: "Greeter_1".into(),
                },
            )],
        ),
        (
            "no name",
            Box::new(|v| v["metadata"] = json!({})),
            vec![("metadata.name", K::Missing)],
        ),
        (
            "generateName ok",
            Box::new(|v| v["metadata"] = json!({"generateName": "greeter-"})),
            vec![],
        ),
        (
            "selector mismatch",
            Box::new(|v| v["spec"]["selector"]["matchLabels"] = json!({"app": "other"})),
            vec![("spec.selector.matchLabels", K::SelectorMismatch)],
        ),
        (
            "host network",
            Box::new(|v| v["spec"]["template"]["spec"]["hostNetwork"] = json!(true)),
            vec![("spec.template.spec.hostNetwork", K::HostNetwork)],
        ),
    ]
}

/// [`deployment_rules`]: the plugin container (image, port, which of several).
fn container_cases() -> Vec<Case> {
    use ValidationErrorKind as K;
    vec![
        (
            "no image",
            Box::new(|v| v["spec"]["template"]["spec"]["containers"][0]["image"] = json!(null)),
            vec![("spec.template.spec.containers[0].image", K::Missing)],
        ),
        (
            "no port",
            Box::new(|v| v["spec"]["template"]["spec"]["containers"][0]["ports"] = json!([])),
            vec![(
                "spec.template.spec.containers[0].ports",
                K::NoPluginPort { port: 50077 },
            )],
        ),
        (
            "sidecar without annotation",
            Box::new(|v| {
                v["spec"]["template"]["spec"]["containers"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "proxy", "image": "envoy"}))
            }),
            vec![(
                "spec.template.spec.containers",
                K::AmbiguousPluginContainer {
                    names: vec!["plugin".into(), "proxy".into()],
                },
            )],
        ),
        (
            "sidecar with annotation",
            Box::new(|v| {
                v["metadata"]["annotations"] = json!({PLUGIN_CONTAINER_ANNOTATION: "plugin"});
                v["spec"]["template"]["spec"]["containers"]
                    .as_array_mut()
                    .unwrap()
                    .insert(0, json!({"name": "proxy", "image": "envoy"}))
            }),
            vec![],
        ),
        (
            "annotation names a missing container",
            Box::new(|v| {
                v["metadata"]["annotations"] = json!({PLUGIN_CONTAINER_ANNOTATION: "nope"})
            }),
            vec![(
                "metadata.annotations[intercom.dev/plugin-container]",
                K::UnknownPluginContainer {
                    name: "nope".into(),
                },
            )],
        ),
    ]
}

/// [`deployment_rules`]: the port annotation, and several problems at once.
fn port_and_combined_cases() -> Vec<Case> {
    use ValidationErrorKind as K;
    vec![
        (
            "custom port",
            Box::new(|v| {
                v["metadata"]["annotations"] = json!({PLUGIN_PORT_ANNOTATION: "9000"});
                v["spec"]["template"]["spec"]["containers"][0]["ports"] =
                    json!([{"containerPort": 9000}]);
            }),
            vec![],
        ),
        (
            "bad port annotation",
            Box::new(|v| v["metadata"]["annotations"] = json!({PLUGIN_PORT_ANNOTATION: "http"})),
            vec![(
                "metadata.annotations[intercom.dev/plugin-port]",
                K::InvalidPortAnnotation {
                    value: "http".into(),
                },
            )],
        ),
        (
            "several problems at once",
            Box::new(|v| {
                v["spec"]["replicas"] = json!(-1);
                v["spec"]["template"]["spec"]["hostNetwork"] = json!(true);
            }),
            vec![
                ("spec.replicas", K::Replicas { replicas: -1 }),
                ("spec.template.spec.hostNetwork", K::HostNetwork),
            ],
        ),
    ]
}

#[test]
fn service_rules() {
    use ValidationErrorKind as K;
    let d = deployment(|_| {});
    let pc = validate_deployment(&d).unwrap();
    assert_eq!(
        pc,
        PluginContainer {
            index: 0,
            name: "plugin".into(),
            port: 50077
        }
    );
    let cases: Vec<Case> = vec![
        ("valid", Box::new(|_| {}), vec![]),
        (
            "named target port",
            Box::new(|v| v["spec"]["ports"] = json!([{"port": 80, "targetPort": "grpc"}])),
            vec![],
        ),
        (
            "wrong target",
            Box::new(|v| v["spec"]["ports"] = json!([{"port": 80, "targetPort": 8080}])),
            vec![("spec.ports", K::NoServicePort { port: 50077 })],
        ),
        (
            "selector selects nothing",
            Box::new(|v| v["spec"]["selector"] = json!({"app": "other"})),
            vec![("spec.selector", K::ServiceSelectorMismatch)],
        ),
        (
            "no selector",
            Box::new(|v| v["spec"]["selector"] = json!(null)),
            vec![("spec.selector", K::Missing)],
        ),
        (
            "bad name",
            Box::new(|v| v["metadata"]["name"] = json!("-svc")),
            vec![(
                "metadata.name",
                K::InvalidName {
                    name: "-svc".into(),
                },
            )],
        ),
    ];
    for (name, patch, want) in cases {
        let got = match validate_service(&service(patch), &d, &pc) {
            Ok(()) => vec![],
            Err(e) => kinds(e),
        };
        let want: Vec<(String, K)> = want.into_iter().map(|(f, k)| (f.to_string(), k)).collect();
        assert_eq!(got, want, "case {name}");
    }
}

#[test]
fn messages_name_the_field_and_the_fix() {
    let errors = validate_deployment(&deployment(|v| {
        v["spec"]["template"]["spec"]["containers"][0]["ports"] = json!([])
    }))
    .unwrap_err();
    let text = errors[0].to_string();
    assert!(
        text.contains("spec.template.spec.containers[0].ports"),
        "{text}"
    );
    assert!(text.contains("containerPort 50077"), "{text}");
}

#[test]
fn dns_labels() {
    for ok in ["a", "greeter", "g-1", "0abc"] {
        assert!(is_dns_label(ok), "{ok}");
    }
    for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"a".repeat(64)] {
        assert!(!is_dns_label(bad), "{bad}");
    }
}

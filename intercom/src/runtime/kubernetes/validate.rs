//! Checks a plugin's Deployment and Service before any API call, naming the field path
//! of each problem.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::DEFAULT_SERVER_PORT;

/// Annotation naming the plugin container when the pod has sidecars.
pub const PLUGIN_CONTAINER_ANNOTATION: &str = "intercom.dev/plugin-container";
/// Annotation overriding the plugin's port (default [`DEFAULT_SERVER_PORT`]).
pub const PLUGIN_PORT_ANNOTATION: &str = "intercom.dev/plugin-port";

/// One problem in a Deployment or Service, at `field`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid plugin {object} at `{field}`: {kind}")]
#[non_exhaustive]
pub struct ValidationError {
    /// `Deployment` or `Service`.
    pub object: &'static str,
    /// The field path, e.g. `spec.template.spec.containers[0].ports`.
    pub field: String,
    /// What is wrong.
    pub kind: ValidationErrorKind,
}

/// What is wrong with a field.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ValidationErrorKind {
    /// A required field is absent.
    Missing,
    /// The pod has no containers.
    NoContainers,
    /// Several containers and no annotation says which is the plugin.
    AmbiguousPluginContainer {
        /// The container names.
        names: Vec<String>,
    },
    /// The annotation names a container that does not exist.
    UnknownPluginContainer {
        /// The name in the annotation.
        name: String,
    },
    /// The port annotation is not a port number.
    InvalidPortAnnotation {
        /// Its value.
        value: String,
    },
    /// The plugin container does not declare the plugin port.
    NoPluginPort {
        /// The expected port.
        port: i32,
    },
    /// No Service port targets the plugin port.
    NoServicePort {
        /// The plugin port.
        port: i32,
    },
    /// The Deployment's selector does not match its pod template's labels.
    SelectorMismatch,
    /// The Service's selector does not select the Deployment's pods.
    ServiceSelectorMismatch,
    /// Replicas below one.
    Replicas {
        /// The value.
        replicas: i32,
    },
    /// `hostNetwork: true` (the plugin must get its own pod IP).
    HostNetwork,
    /// Not a DNS-1123 label.
    InvalidName {
        /// The name.
        name: String,
    },
}

impl fmt::Display for ValidationErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("required field is missing"),
            Self::NoContainers => f.write_str("the pod template has no containers; add the plugin container"),
            Self::AmbiguousPluginContainer { names } => write!(
                f,
                "the pod has several containers ({}); name the plugin one with the annotation `{PLUGIN_CONTAINER_ANNOTATION}`",
                names.join(", ")
            ),
            Self::UnknownPluginContainer { name } => write!(
                f,
                "annotation `{PLUGIN_CONTAINER_ANNOTATION}` names container {name:?}, which the pod template does not have"
            ),
            Self::InvalidPortAnnotation { value } => write!(
                f,
                "annotation `{PLUGIN_PORT_ANNOTATION}` is {value:?}, not a port number (1-65535)"
            ),
            Self::NoPluginPort { port } => write!(
                f,
                "the plugin container declares no containerPort {port}; add it (the plugin listens there)"
            ),
            Self::NoServicePort { port } => write!(
                f,
                "no Service port targets the plugin port {port}; add one with targetPort {port}"
            ),
            Self::SelectorMismatch => f.write_str(
                "spec.selector does not match spec.template.metadata.labels, so the Deployment would not own its pods",
            ),
            Self::ServiceSelectorMismatch => f.write_str(
                "the Service's selector does not select the Deployment's pods (it must be a subset of the pod template labels)",
            ),
            Self::Replicas { replicas } => write!(f, "replicas is {replicas}; a plugin needs at least 1"),
            Self::HostNetwork => f.write_str(
                "hostNetwork is not supported: each plugin pod needs its own IP and port",
            ),
            Self::InvalidName { name } => write!(
                f,
                "{name:?} is not a valid DNS label (lower-case letters, digits and '-', starting and ending alphanumeric, at most 63 characters)"
            ),
        }
    }
}

/// The plugin container of a validated Deployment, and its port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginContainer {
    /// Index in `spec.template.spec.containers`.
    pub index: usize,
    /// Its name.
    pub name: String,
    /// The port the plugin listens on.
    pub port: i32,
}

fn err(
    object: &'static str,
    field: impl Into<String>,
    kind: ValidationErrorKind,
) -> ValidationError {
    ValidationError {
        object,
        field: field.into(),
        kind,
    }
}

/// Whether `name` is a DNS-1123 label.
pub fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// Checks a plugin Deployment. Returns every problem found, not just the first.
///
/// # Errors
/// The list of problems, each with its field path.
pub fn validate_deployment(
    deployment: &Deployment,
) -> Result<PluginContainer, Vec<ValidationError>> {
    const D: &str = "Deployment";
    let mut errors = Vec::new();
    let meta = &deployment.metadata;
    match (&meta.name, &meta.generate_name) {
        (Some(name), _) if !is_dns_label(name) => errors.push(err(
            D,
            "metadata.name",
            ValidationErrorKind::InvalidName { name: name.clone() },
        )),
        (None, Some(prefix)) if !prefix.is_empty() && !is_dns_label(&format!("{prefix}x")) => {
            errors.push(err(
                D,
                "metadata.generateName",
                ValidationErrorKind::InvalidName {
                    name: prefix.clone(),
                },
            ))
        }
        (None, None) => errors.push(err(D, "metadata.name", ValidationErrorKind::Missing)),
        _ => {}
    }
    let Some(spec) = &deployment.spec else {
        errors.push(err(D, "spec", ValidationErrorKind::Missing));
        return Err(errors);
    };
    if let Some(replicas) = spec.replicas
        && replicas < 1
    {
        errors.push(err(
            D,
            "spec.replicas",
            ValidationErrorKind::Replicas { replicas },
        ));
    }
    let template_labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let selector = spec.selector.match_labels.clone().unwrap_or_default();
    if selector.is_empty()
        && spec
            .selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty)
    {
        errors.push(err(D, "spec.selector", ValidationErrorKind::Missing));
    } else if !is_subset(&selector, &template_labels) {
        errors.push(err(
            D,
            "spec.selector.matchLabels",
            ValidationErrorKind::SelectorMismatch,
        ));
    }
    let Some(pod) = &spec.template.spec else {
        errors.push(err(D, "spec.template.spec", ValidationErrorKind::Missing));
        return Err(errors);
    };
    if pod.host_network == Some(true) {
        errors.push(err(
            D,
            "spec.template.spec.hostNetwork",
            ValidationErrorKind::HostNetwork,
        ));
    }
    let annotations = meta.annotations.clone().unwrap_or_default();
    let port = match annotations.get(PLUGIN_PORT_ANNOTATION) {
        None => i32::from(DEFAULT_SERVER_PORT),
        Some(v) => match v.parse::<u16>() {
            Ok(p) if p > 0 => i32::from(p),
            _ => {
                errors.push(err(
                    D,
                    format!("metadata.annotations[{PLUGIN_PORT_ANNOTATION}]"),
                    ValidationErrorKind::InvalidPortAnnotation { value: v.clone() },
                ));
                i32::from(DEFAULT_SERVER_PORT)
            }
        },
    };
    let containers = &pod.containers;
    let chosen = match (
        containers.len(),
        annotations.get(PLUGIN_CONTAINER_ANNOTATION),
    ) {
        (0, _) => {
            errors.push(err(
                D,
                "spec.template.spec.containers",
                ValidationErrorKind::NoContainers,
            ));
            None
        }
        (_, Some(name)) => match containers.iter().position(|c| &c.name == name) {
            Some(i) => Some(i),
            None => {
                errors.push(err(
                    D,
                    format!("metadata.annotations[{PLUGIN_CONTAINER_ANNOTATION}]"),
                    ValidationErrorKind::UnknownPluginContainer { name: name.clone() },
                ));
                None
            }
        },
        (1, None) => Some(0),
        (_, None) => {
            errors.push(err(
                D,
                "spec.template.spec.containers",
                ValidationErrorKind::AmbiguousPluginContainer {
                    names: containers.iter().map(|c| c.name.clone()).collect(),
                },
            ));
            None
        }
    };
    for (i, c) in containers.iter().enumerate() {
        if !is_dns_label(&c.name) {
            errors.push(err(
                D,
                format!("spec.template.spec.containers[{i}].name"),
                ValidationErrorKind::InvalidName {
                    name: c.name.clone(),
                },
            ));
        }
    }
    let result = chosen.and_then(|index| {
        let container: &Container = containers.get(index)?;
        let base = format!("spec.template.spec.containers[{index}]");
        if container.image.as_deref().is_none_or(str::is_empty) {
            errors.push(err(
                D,
                format!("{base}.image"),
                ValidationErrorKind::Missing,
            ));
        }
        let declares = container
            .ports
            .as_ref()
            .is_some_and(|ports| ports.iter().any(|p| p.container_port == port));
        if !declares {
            errors.push(err(
                D,
                format!("{base}.ports"),
                ValidationErrorKind::NoPluginPort { port },
            ));
        }
        Some(PluginContainer {
            index,
            name: container.name.clone(),
            port,
        })
    });
    match result {
        Some(pc) if errors.is_empty() => Ok(pc),
        _ => Err(errors),
    }
}

/// Checks a plugin Service against its (validated) Deployment.
///
/// # Errors
/// The list of problems, each with its field path.
pub fn validate_service(
    service: &Service,
    deployment: &Deployment,
    plugin: &PluginContainer,
) -> Result<(), Vec<ValidationError>> {
    const S: &str = "Service";
    let mut errors = Vec::new();
    match (&service.metadata.name, &service.metadata.generate_name) {
        (Some(name), _) if !is_dns_label(name) => errors.push(err(
            S,
            "metadata.name",
            ValidationErrorKind::InvalidName { name: name.clone() },
        )),
        (None, None) => errors.push(err(S, "metadata.name", ValidationErrorKind::Missing)),
        _ => {}
    }
    let Some(spec) = &service.spec else {
        errors.push(err(S, "spec", ValidationErrorKind::Missing));
        return Err(errors);
    };
    let pod_labels = pod_template_labels(deployment);
    match &spec.selector {
        Some(sel) if !sel.is_empty() && is_subset(sel, &pod_labels) => {}
        Some(sel) if !sel.is_empty() => errors.push(err(
            S,
            "spec.selector",
            ValidationErrorKind::ServiceSelectorMismatch,
        )),
        _ => errors.push(err(S, "spec.selector", ValidationErrorKind::Missing)),
    }
    let port_name = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.get(plugin.index))
        .and_then(|c| c.ports.as_ref())
        .and_then(|ports| ports.iter().find(|p| p.container_port == plugin.port))
        .and_then(|p| p.name.clone());
    let targets = spec.ports.as_ref().is_some_and(|ports| {
        ports.iter().any(|p| match &p.target_port {
            Some(IntOrString::Int(n)) => *n == plugin.port,
            Some(IntOrString::String(s)) => port_name.as_deref() == Some(s.as_str()),
            None => p.port == plugin.port,
        })
    });
    if !targets {
        errors.push(err(
            S,
            "spec.ports",
            ValidationErrorKind::NoServicePort { port: plugin.port },
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn is_subset(small: &BTreeMap<String, String>, big: &BTreeMap<String, String>) -> bool {
    small.iter().all(|(k, v)| big.get(k) == Some(v))
}

/// The labels of `deployment`'s pod template (empty if it has none).
pub(crate) fn pod_template_labels(
    deployment: &Deployment,
) -> std::collections::BTreeMap<String, String> {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        use ValidationErrorKind as K;
        let cases: Vec<Case> = vec![
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
                Box::new(|v| {
                    v["metadata"]["annotations"] = json!({PLUGIN_PORT_ANNOTATION: "http"})
                }),
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
        ];
        for (name, patch, want) in cases {
            let got = match validate_deployment(&deployment(patch)) {
                Ok(_) => vec![],
                Err(e) => kinds(e),
            };
            let want: Vec<(String, K)> =
                want.into_iter().map(|(f, k)| (f.to_string(), k)).collect();
            assert_eq!(got, want, "case {name}");
        }
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
            let want: Vec<(String, K)> =
                want.into_iter().map(|(f, k)| (f.to_string(), k)).collect();
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
}

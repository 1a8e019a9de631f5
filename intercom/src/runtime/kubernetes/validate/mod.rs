//! Checks a plugin's Deployment and Service before any API call, naming the field path
//! of each problem.

mod deployment;
mod error;
mod service;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;

pub use deployment::{PluginContainer, validate_deployment};
pub use error::{ValidationError, ValidationErrorKind};
pub use service::validate_service;

/// Annotation naming the plugin container when the pod has sidecars.
pub const PLUGIN_CONTAINER_ANNOTATION: &str = "intercom.dev/plugin-container";
/// Annotation overriding the plugin's port (default [`DEFAULT_SERVER_PORT`](crate::DEFAULT_SERVER_PORT)).
pub const PLUGIN_PORT_ANNOTATION: &str = "intercom.dev/plugin-port";

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
mod tests;

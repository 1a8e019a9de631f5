//! [`validate_deployment`]: the checks of a plugin Deployment, and the
//! [`PluginContainer`] they find.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{
    PLUGIN_CONTAINER_ANNOTATION, PLUGIN_PORT_ANNOTATION, ValidationError, ValidationErrorKind, err,
    is_dns_label, is_subset,
};
use crate::DEFAULT_SERVER_PORT;

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

/// The object every problem found here is in.
const D: &str = "Deployment";

/// Checks a plugin Deployment. Returns every problem found, not just the first.
///
/// # Errors
/// The list of problems, each with its field path.
pub fn validate_deployment(
    deployment: &Deployment,
) -> Result<PluginContainer, Vec<ValidationError>> {
    let mut errors = Vec::new();
    let meta = &deployment.metadata;
    check_name(meta, &mut errors);
    let Some(spec) = &deployment.spec else {
        errors.push(err(D, "spec", ValidationErrorKind::Missing));
        return Err(errors);
    };
    check_replicas(spec, &mut errors);
    check_selector(spec, &mut errors);
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
    let port = plugin_port(&annotations, &mut errors);
    let containers = &pod.containers;
    let chosen = plugin_container_index(containers, &annotations, &mut errors);
    check_container_names(containers, &mut errors);
    let result =
        chosen.and_then(|index| check_plugin_container(containers, index, port, &mut errors));
    match result {
        Some(pc) if errors.is_empty() => Ok(pc),
        _ => Err(errors),
    }
}

/// `metadata.name` (or `metadata.generateName`, as a prefix) is a DNS label; one of
/// them is set.
fn check_name(meta: &ObjectMeta, errors: &mut Vec<ValidationError>) {
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
}

/// `spec.replicas`, when set, is at least one.
fn check_replicas(spec: &DeploymentSpec, errors: &mut Vec<ValidationError>) {
    if let Some(replicas) = spec.replicas
        && replicas < 1
    {
        errors.push(err(
            D,
            "spec.replicas",
            ValidationErrorKind::Replicas { replicas },
        ));
    }
}

/// `spec.selector` is set and its `matchLabels` select the pod template's labels.
fn check_selector(spec: &DeploymentSpec, errors: &mut Vec<ValidationError>) {
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
}

/// The plugin's port: [`PLUGIN_PORT_ANNOTATION`], else (or when that is not a port
/// number, which is an error) [`DEFAULT_SERVER_PORT`].
fn plugin_port(annotations: &BTreeMap<String, String>, errors: &mut Vec<ValidationError>) -> i32 {
    match annotations.get(PLUGIN_PORT_ANNOTATION) {
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
    }
}

/// The index of the plugin container: the one [`PLUGIN_CONTAINER_ANNOTATION`] names, or
/// the only one.
fn plugin_container_index(
    containers: &[Container],
    annotations: &BTreeMap<String, String>,
    errors: &mut Vec<ValidationError>,
) -> Option<usize> {
    match (
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
    }
}

/// Every container's name is a DNS label.
fn check_container_names(containers: &[Container], errors: &mut Vec<ValidationError>) {
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
}

/// The plugin container (at `index`) has an image and declares `port`.
fn check_plugin_container(
    containers: &[Container],
    index: usize,
    port: i32,
    errors: &mut Vec<ValidationError>,
) -> Option<PluginContainer> {
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
}

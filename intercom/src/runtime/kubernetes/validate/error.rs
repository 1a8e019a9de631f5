//! [`ValidationError`]: one problem in a plugin's Deployment or Service, at a field
//! path, and [`ValidationErrorKind`], what is wrong there.

use std::fmt;

use super::{PLUGIN_CONTAINER_ANNOTATION, PLUGIN_PORT_ANNOTATION};

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

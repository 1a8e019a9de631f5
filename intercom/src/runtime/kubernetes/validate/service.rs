//! [`validate_service`]: the checks of a plugin Service against its Deployment.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    PluginContainer, ValidationError, ValidationErrorKind, err, is_dns_label, is_subset,
    pod_template_labels,
};

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

//! [`inject`]: what the SDK adds to validated objects (its env, labels, readiness
//! probe and owner).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    EnvVar, EnvVarSource, GRPCAction, ObjectFieldSelector, Probe, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::{
    HOST_LABEL, INSTANCE_LABEL, MANAGED_BY, MANAGED_BY_LABEL, PLUGIN_LABEL, POD_IP_ENV,
    PROTOCOL_ANNOTATION,
};
use crate::runtime::kubernetes::validate::PluginContainer;

/// What [`inject`] adds.
#[derive(Debug, Clone)]
pub(crate) struct Injection {
    pub(crate) plugin_name: String,
    pub(crate) host_id: String,
    pub(crate) instance: String,
    /// The SDK's env (cookie, versions, multiplexing, client certificate).
    pub(crate) env: Vec<(String, String)>,
    pub(crate) protocol_versions: String,
    /// The host pod, when the host runs in the cluster.
    pub(crate) owner: Option<OwnerReference>,
}

impl Injection {
    fn labels(&self) -> BTreeMap<String, String> {
        [
            (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
            (PLUGIN_LABEL.to_string(), self.plugin_name.clone()),
            (HOST_LABEL.to_string(), self.host_id.clone()),
            (INSTANCE_LABEL.to_string(), self.instance.clone()),
        ]
        .into()
    }
}

/// Adds the SDK's env, labels, probe and owner to validated objects.
pub(crate) fn inject(
    deployment: &mut Deployment,
    service: &mut Service,
    plugin: &PluginContainer,
    injection: &Injection,
) {
    let labels = injection.labels();
    for meta in [&mut deployment.metadata, &mut service.metadata] {
        meta.labels
            .get_or_insert_with(BTreeMap::new)
            .extend(labels.clone());
        meta.annotations.get_or_insert_with(BTreeMap::new).insert(
            PROTOCOL_ANNOTATION.into(),
            injection.protocol_versions.clone(),
        );
    }
    if let Some(owner) = &injection.owner {
        deployment
            .metadata
            .owner_references
            .get_or_insert_with(Vec::new)
            .push(owner.clone());
    }
    let Some(spec) = deployment.spec.as_mut() else {
        return;
    };
    // Pods carry the labels too, so discovery and log forwarding can find them; the
    // selector is left alone (it is immutable and the user's).
    spec.template
        .metadata
        .get_or_insert_with(ObjectMeta::default)
        .labels
        .get_or_insert_with(BTreeMap::new)
        .extend(labels);
    let Some(pod) = spec.template.spec.as_mut() else {
        return;
    };
    let Some(container) = pod.containers.get_mut(plugin.index) else {
        return;
    };
    let env = container.env.get_or_insert_with(Vec::new);
    let mut ours = vec![EnvVar {
        name: POD_IP_ENV.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "status.podIP".into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }];
    // Every address of the pod: its IP (the host, the kubelet's probes) and its loopback
    // (a container runtime's port-forward dials `localhost:<port>` inside the pod). The
    // handshake announces the pod IP.
    ours.push(plain(
        crate::transport::env::LISTEN_ADDR,
        format!("0.0.0.0:{}", plugin.port),
    ));
    ours.push(plain(
        crate::transport::env::ADVERTISE_ADDR,
        format!("$({POD_IP_ENV}):{}", plugin.port),
    ));
    ours.extend(injection.env.iter().map(|(k, v)| plain(k, v.clone())));
    // The SDK's variables win over the user's of the same name.
    env.retain(|e| !ours.iter().any(|o| o.name == e.name));
    env.extend(ours);
    if container.readiness_probe.is_none() {
        container.readiness_probe = Some(Probe {
            grpc: Some(GRPCAction {
                port: plugin.port,
                service: Some(crate::GRPC_SERVICE_NAME.into()),
            }),
            period_seconds: Some(2),
            failure_threshold: Some(3),
            ..Probe::default()
        });
    }
}

fn plain(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value),
        ..EnvVar::default()
    }
}

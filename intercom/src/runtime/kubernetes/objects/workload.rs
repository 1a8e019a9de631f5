//! [`PluginWorkload`]: a plugin Deployment + Service built from an image and a few
//! options.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, LocalObjectReference, PodSpec,
    PodTemplateSpec, ResourceRequirements, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::PLUGIN_LABEL;
use super::pod_security::{TMP_MOUNT, TMP_VOLUME, restricted_container, restricted_pod};
use crate::DEFAULT_SERVER_PORT;

/// A plugin Deployment + Service built from an image and a few options.
///
/// The pods pass Pod Security "restricted": they run as a non-root user (uid/gid
/// [`DEFAULT_RUN_AS_USER`](super::DEFAULT_RUN_AS_USER) unless the image's numeric `USER`
/// is overridden by a full Deployment of your own), with no privilege escalation, every
/// capability dropped, the `RuntimeDefault` seccomp profile and a read-only root
/// filesystem; `/tmp` is a writable `emptyDir`, the container's working directory and its
/// `TMPDIR` (the image's workdir, often `/`, is not writable by the non-root user). A
/// plugin that needs more gives its own objects
/// ([`KubernetesConfig::objects`](crate::runtime::kubernetes::KubernetesConfig::objects)),
/// which are used as given.
///
/// ```
/// use intercom::runtime::kubernetes::PluginWorkload;
/// let (deployment, service) = PluginWorkload::new("registry.example/greeter:1.2")
///     .replicas(3)
///     .service_account("greeter")
///     .label("team", "platform")
///     .build("greeter");
/// assert_eq!(deployment.spec.unwrap().replicas, Some(3));
/// assert_eq!(service.metadata.name.as_deref(), Some("greeter"));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct PluginWorkload {
    /// The image.
    pub image: String,
    /// Replicas (default 1).
    pub replicas: i32,
    /// Container resources.
    pub resources: Option<ResourceRequirements>,
    /// ServiceAccount for the pods.
    pub service_account: Option<String>,
    /// Image pull secrets.
    pub image_pull_secrets: Vec<String>,
    /// Node selector.
    pub node_selector: BTreeMap<String, String>,
    /// Extra labels (objects and pods).
    pub labels: BTreeMap<String, String>,
    /// Extra annotations (objects and pods).
    pub annotations: BTreeMap<String, String>,
    /// The plugin port (default 50077).
    pub port: u16,
    /// Container args.
    pub args: Vec<String>,
    /// Extra container env.
    pub env: Vec<(String, String)>,
}

impl PluginWorkload {
    /// A single-replica workload for `image`.
    pub fn new(image: impl Into<String>) -> Self {
        Self {
            image: image.into(),
            replicas: 1,
            port: DEFAULT_SERVER_PORT,
            ..Self::default()
        }
    }

    /// Sets replicas.
    #[must_use]
    pub fn replicas(mut self, replicas: i32) -> Self {
        self.replicas = replicas;
        self
    }

    /// Sets container resources.
    #[must_use]
    pub fn resources(mut self, resources: ResourceRequirements) -> Self {
        self.resources = Some(resources);
        self
    }

    /// Sets the ServiceAccount.
    #[must_use]
    pub fn service_account(mut self, name: impl Into<String>) -> Self {
        self.service_account = Some(name.into());
        self
    }

    /// Adds an image pull secret.
    #[must_use]
    pub fn image_pull_secret(mut self, name: impl Into<String>) -> Self {
        self.image_pull_secrets.push(name.into());
        self
    }

    /// Adds a node selector term.
    #[must_use]
    pub fn node_selector(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.node_selector.insert(key.into(), value.into());
        self
    }

    /// Adds a label.
    #[must_use]
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Adds an annotation.
    #[must_use]
    pub fn annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }

    /// Sets the plugin port.
    #[must_use]
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Adds a container argument.
    #[must_use]
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds a container env var.
    #[must_use]
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Builds the Deployment and Service named `name` (the Service selects the pods by
    /// `intercom.dev/plugin: <name>`).
    pub fn build(&self, name: &str) -> (Deployment, Service) {
        let mut pod_labels = self.labels.clone();
        pod_labels.insert(PLUGIN_LABEL.into(), name.into());
        let selector: BTreeMap<String, String> =
            [(PLUGIN_LABEL.to_string(), name.to_string())].into();
        let mut annotations = self.annotations.clone();
        if self.port != DEFAULT_SERVER_PORT {
            annotations.insert(
                crate::runtime::kubernetes::validate::PLUGIN_PORT_ANNOTATION.into(),
                self.port.to_string(),
            );
        }
        let meta = ObjectMeta {
            name: Some(name.into()),
            labels: Some(pod_labels.clone()),
            annotations: (!annotations.is_empty()).then(|| annotations.clone()),
            ..ObjectMeta::default()
        };
        let container = Container {
            name: "plugin".into(),
            image: Some(self.image.clone()),
            args: (!self.args.is_empty()).then(|| self.args.clone()),
            env: Some(self.container_env()),
            // The image's workdir (often `/`) is not writable by a non-root user, and the
            // root filesystem is read-only: work in the scratch volume.
            working_dir: Some(TMP_MOUNT.into()),
            ports: Some(vec![ContainerPort {
                container_port: i32::from(self.port),
                name: Some("plugin".into()),
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            }]),
            resources: self.resources.clone(),
            security_context: Some(restricted_container()),
            volume_mounts: Some(vec![VolumeMount {
                name: TMP_VOLUME.into(),
                mount_path: TMP_MOUNT.into(),
                ..VolumeMount::default()
            }]),
            ..Container::default()
        };
        let deployment = Deployment {
            metadata: meta.clone(),
            spec: Some(DeploymentSpec {
                replicas: Some(self.replicas),
                selector: LabelSelector {
                    match_labels: Some(selector.clone()),
                    ..LabelSelector::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(pod_labels),
                        annotations: (!annotations.is_empty()).then_some(annotations),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![container],
                        service_account_name: self.service_account.clone(),
                        image_pull_secrets: (!self.image_pull_secrets.is_empty()).then(|| {
                            self.image_pull_secrets
                                .iter()
                                .map(|n| LocalObjectReference { name: n.clone() })
                                .collect()
                        }),
                        node_selector: (!self.node_selector.is_empty())
                            .then(|| self.node_selector.clone()),
                        security_context: Some(restricted_pod()),
                        volumes: Some(vec![Volume {
                            name: TMP_VOLUME.into(),
                            empty_dir: Some(EmptyDirVolumeSource::default()),
                            ..Volume::default()
                        }]),
                        ..PodSpec::default()
                    }),
                },
                ..DeploymentSpec::default()
            }),
            ..Deployment::default()
        };
        let service = Service {
            metadata: meta,
            spec: Some(ServiceSpec {
                selector: Some(selector),
                ports: Some(vec![ServicePort {
                    name: Some("plugin".into()),
                    port: i32::from(self.port),
                    target_port: Some(IntOrString::Int(i32::from(self.port))),
                    protocol: Some("TCP".into()),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        };
        (deployment, service)
    }
}

impl PluginWorkload {
    /// The user's env, with `TMPDIR` pointing at the scratch volume unless they set it.
    fn container_env(&self) -> Vec<EnvVar> {
        let own_tmpdir = self.env.iter().any(|(k, _)| k == "TMPDIR");
        let tmpdir = (!own_tmpdir).then(|| ("TMPDIR".to_string(), TMP_MOUNT.to_string()));
        tmpdir
            .into_iter()
            .chain(self.env.iter().cloned())
            .map(|(name, value)| EnvVar {
                name,
                value: Some(value),
                ..EnvVar::default()
            })
            .collect()
    }
}

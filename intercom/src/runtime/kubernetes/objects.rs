//! The Kubernetes objects of a plugin: built from an image by [`PluginWorkload`], or
//! given whole; then `inject` adds what the SDK needs.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, GRPCAction,
    LocalObjectReference, ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecurityContext, Service, ServicePort, ServiceSpec,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::validate::PluginContainer;
use crate::DEFAULT_SERVER_PORT;

/// `app.kubernetes.io/managed-by`: set to `intercom` on everything the SDK creates.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "intercom";
/// The plugin's name.
pub const PLUGIN_LABEL: &str = "intercom.dev/plugin";
/// The id of the host that launched it.
pub const HOST_LABEL: &str = "intercom.dev/host";
/// One launch (the Deployment's own pods carry it too).
pub const INSTANCE_LABEL: &str = "intercom.dev/instance";
/// The app protocol versions the host offered (for discovery).
pub const PROTOCOL_ANNOTATION: &str = "intercom.dev/protocol-versions";
/// The env var carrying the pod IP (downward API) into `INTERCOM_ADVERTISE_ADDR`.
pub const POD_IP_ENV: &str = crate::protocol::env::POD_IP;

/// A plugin Deployment + Service built from an image and a few options.
///
/// The pods pass Pod Security "restricted": they run as a non-root user (uid/gid
/// [`DEFAULT_RUN_AS_USER`] unless the image's numeric `USER` is overridden by a full
/// Deployment of your own), with no privilege escalation, every capability dropped, the
/// `RuntimeDefault` seccomp profile and a read-only root filesystem; `/tmp` is a writable
/// `emptyDir`, the container's working directory and its `TMPDIR` (the image's workdir,
/// often `/`, is not writable by the non-root user). A plugin that needs more gives its own objects
/// ([`KubernetesConfig::objects`](super::KubernetesConfig::objects)), which are used as given.
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
                super::validate::PLUGIN_PORT_ANNOTATION.into(),
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

/// The writable scratch volume of a built pod (an `emptyDir`: the root filesystem is
/// read-only), mounted at [`TMP_MOUNT`].
const TMP_VOLUME: &str = "tmp";

/// Where [`TMP_VOLUME`] is mounted: the container's working directory and `TMPDIR`.
const TMP_MOUNT: &str = "/tmp";

/// The non-root user built pods run as when the image names none (distroless' `nonroot`).
pub const DEFAULT_RUN_AS_USER: i64 = 65532;

/// Pod Security "restricted" at the pod level: non-root (uid and gid
/// [`DEFAULT_RUN_AS_USER`]), the runtime's default seccomp profile.
fn restricted_pod() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(DEFAULT_RUN_AS_USER),
        run_as_group: Some(DEFAULT_RUN_AS_USER),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

/// Pod Security "restricted" for the container: no privilege escalation, every
/// capability dropped, and a read-only root filesystem.
fn restricted_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        ..SecurityContext::default()
    }
}

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

/// The Service is owned by the Deployment, so deleting the Deployment removes it.
pub(crate) fn owner_reference(deployment: &Deployment) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        name: deployment.metadata.name.clone()?,
        uid: deployment.metadata.uid.clone()?,
        controller: Some(false),
        block_owner_deletion: Some(true),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::kubernetes::validate::{validate_deployment, validate_service};

    fn injection(owner: Option<OwnerReference>) -> Injection {
        Injection {
            plugin_name: "greeter".into(),
            host_id: "host-1".into(),
            instance: "abc123".into(),
            env: vec![
                ("GREETER_PLUGIN".into(), "hello".into()),
                ("PLUGIN_PROTOCOL_VERSIONS".into(), "1".into()),
                ("PLUGIN_MULTIPLEX_GRPC".into(), "true".into()),
            ],
            protocol_versions: "1".into(),
            owner,
        }
    }

    #[test]
    fn built_objects_are_valid() {
        let (d, s) = PluginWorkload::new("greeter:1")
            .replicas(3)
            .port(9000)
            .build("greeter");
        let pc = validate_deployment(&d).unwrap();
        assert_eq!(pc.port, 9000);
        validate_service(&s, &d, &pc).unwrap();
    }

    #[test]
    fn built_pods_pass_pod_security_restricted() {
        let (deployment, _) = PluginWorkload::new("img:1").build("p");
        let spec = deployment.spec.unwrap().template.spec.unwrap();
        let pod = spec.security_context.unwrap();
        assert_eq!(pod.run_as_non_root, Some(true));
        assert_eq!(pod.run_as_user, Some(DEFAULT_RUN_AS_USER));
        assert_eq!(pod.seccomp_profile.unwrap().type_, "RuntimeDefault");
        let container = spec.containers[0].security_context.clone().unwrap();
        assert_eq!(container.allow_privilege_escalation, Some(false));
        assert_eq!(
            container.capabilities.unwrap().drop,
            Some(vec!["ALL".into()])
        );
        assert_eq!(container.read_only_root_filesystem, Some(true));
        let mounts = spec.containers[0].volume_mounts.clone().unwrap();
        assert_eq!(mounts[0].mount_path, "/tmp");
        assert!(spec.volumes.unwrap()[0].empty_dir.is_some());
    }

    #[test]
    fn built_pods_work_in_a_writable_directory_on_a_read_only_root() {
        let (deployment, _) = PluginWorkload::new("img:1").build("p");
        let spec = deployment.spec.unwrap().template.spec.unwrap();
        let container = &spec.containers[0];
        let workdir = container.working_dir.as_deref();
        assert_eq!(
            workdir,
            Some("/tmp"),
            "not the image's (root-owned) workdir"
        );
        let mount = container
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| Some(m.mount_path.as_str()) == workdir)
            .expect("a volume mounted at the working directory");
        assert_ne!(mount.read_only, Some(true));
        let volume = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == mount.name)
            .expect("the mounted volume");
        assert!(
            volume.empty_dir.is_some(),
            "writable by any uid: {volume:?}"
        );
        let env = container.env.clone().unwrap_or_default();
        let tmpdir: Vec<_> = env.iter().filter(|e| e.name == "TMPDIR").collect();
        assert_eq!(tmpdir.len(), 1);
        assert_eq!(tmpdir[0].value.as_deref(), Some("/tmp"));
        assert_eq!(
            container
                .security_context
                .as_ref()
                .and_then(|c| c.read_only_root_filesystem),
            Some(true)
        );

        let (own, _) = PluginWorkload::new("img:1")
            .env("TMPDIR", "/scratch")
            .build("p");
        let env = own.spec.unwrap().template.spec.unwrap().containers[0]
            .env
            .clone()
            .unwrap();
        let tmpdir: Vec<_> = env.iter().filter(|e| e.name == "TMPDIR").collect();
        assert_eq!(tmpdir.len(), 1, "the user's TMPDIR wins: {env:?}");
        assert_eq!(tmpdir[0].value.as_deref(), Some("/scratch"));
    }

    #[test]
    fn injection_adds_env_labels_probe_and_owner() {
        let (mut d, mut s) = PluginWorkload::new("greeter:1")
            .env("GREETER_PLUGIN", "user-value")
            .env("KEEP", "me")
            .build("greeter");
        let pc = validate_deployment(&d).unwrap();
        let owner = OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: "host".into(),
            uid: "uid-1".into(),
            ..OwnerReference::default()
        };
        inject(&mut d, &mut s, &pc, &injection(Some(owner.clone())));
        for labels in [
            d.metadata.labels.clone().unwrap(),
            s.metadata.labels.clone().unwrap(),
            d.spec
                .clone()
                .unwrap()
                .template
                .metadata
                .unwrap()
                .labels
                .unwrap(),
        ] {
            assert_eq!(
                labels.get(MANAGED_BY_LABEL).map(String::as_str),
                Some("intercom")
            );
            assert_eq!(
                labels.get(PLUGIN_LABEL).map(String::as_str),
                Some("greeter")
            );
            assert_eq!(labels.get(HOST_LABEL).map(String::as_str), Some("host-1"));
        }
        assert_eq!(d.metadata.owner_references, Some(vec![owner]));
        let container = d.spec.unwrap().template.spec.unwrap().containers.remove(0);
        let env = container.env.unwrap();
        let get = |n: &str| env.iter().filter(|e| e.name == n).collect::<Vec<_>>();
        assert_eq!(
            get("GREETER_PLUGIN").len(),
            1,
            "the SDK's cookie replaces the user's"
        );
        assert_eq!(get("GREETER_PLUGIN")[0].value.as_deref(), Some("hello"));
        assert_eq!(get("KEEP")[0].value.as_deref(), Some("me"));
        assert_eq!(
            get("INTERCOM_LISTEN_ADDR")[0].value.as_deref(),
            Some("0.0.0.0:50077"),
            "every address of the pod: a runtime's port-forward dials its loopback"
        );
        assert_eq!(
            get("INTERCOM_ADVERTISE_ADDR")[0].value.as_deref(),
            Some("$(INTERCOM_POD_IP):50077"),
            "the handshake announces the pod IP"
        );
        let position = |n: &str| env.iter().position(|e| e.name == n);
        assert!(
            position(POD_IP_ENV) < position("INTERCOM_ADVERTISE_ADDR"),
            "$(INTERCOM_POD_IP) expands only to a variable defined before it"
        );
        assert_eq!(
            get(POD_IP_ENV)[0]
                .value_from
                .as_ref()
                .and_then(|v| v.field_ref.as_ref())
                .map(|f| f.field_path.as_str()),
            Some("status.podIP")
        );
        let probe = container.readiness_probe.unwrap().grpc.unwrap();
        assert_eq!(
            (probe.port, probe.service.as_deref()),
            (50077, Some("plugin"))
        );
    }

    #[test]
    fn a_user_probe_is_kept() {
        let (mut d, mut s) = PluginWorkload::new("greeter:1").build("greeter");
        if let Some(c) = d
            .spec
            .as_mut()
            .and_then(|s| s.template.spec.as_mut())
            .and_then(|p| p.containers.first_mut())
        {
            c.readiness_probe = Some(Probe {
                period_seconds: Some(30),
                ..Probe::default()
            });
        }
        let pc = validate_deployment(&d).unwrap();
        inject(&mut d, &mut s, &pc, &injection(None));
        let c = d.spec.unwrap().template.spec.unwrap().containers.remove(0);
        assert_eq!(c.readiness_probe.unwrap().period_seconds, Some(30));
    }
}

//! Creating the plugin's objects (or finding them, to reattach), adopting what a lost
//! answer created, and cleaning up after a start that does not finish.

use super::*;
use crate::runtime::kubernetes::validate::PluginContainer;

/// Creates the objects and connects to the first ready replica.
pub(crate) async fn launch(
    config: &KubernetesConfig,
    ctx: LaunchContext,
) -> Result<(Conn, Arc<KubePlugin>, u32), KubeError> {
    let (mut deployment, mut service, plugin, image) = validated_objects(config)?;
    let instance = instance_id();
    let injection = injection_for(config, &ctx, &instance).await;
    inject(&mut deployment, &mut service, &plugin, &injection);

    let ns = config.namespace.as_str();
    let deployments: Api<Deployment> = Api::namespaced(config.client.clone(), ns);
    let services: Api<Service> = Api::namespaced(config.client.clone(), ns);
    let created = create_or_adopt(&deployments, &deployment, &instance, config.retry)
        .await
        .map_err(|source| KubeError::Api {
            step: format!("create the plugin Deployment in namespace {ns}"),
            source,
        })?;
    let deployment_name = created.metadata.name.clone().unwrap_or_default();
    // Until the plugin handle owns it: a start cancelled from here on (the `connect()`
    // future dropped) deletes the Deployment, and the garbage collector the rest.
    let cleanup = DeleteOnDrop::new(&deployments, &deployment_name);
    tracing::debug!(plugin = %ctx.name, deployment = %deployment_name, "plugin Deployment created");
    owned_service(&mut service, &deployment_name, &created);
    let created_service = match create_or_adopt(&services, &service, &instance, config.retry).await
    {
        Ok(s) => s,
        Err(source) => {
            let _ = tokio::time::timeout(
                API_CALL_TIMEOUT,
                deployments.delete(&deployment_name, &DeleteParams::foreground()),
            )
            .await;
            cleanup.disarm();
            return Err(KubeError::Api {
                step: format!("create the plugin Service in namespace {ns}"),
                source,
            });
        }
    };
    if config.network_policy {
        create_network_policy(config, &deployment_name, &created, plugin.port).await;
    }
    let own_lease = create_host_lease(config, &created, &deployment_name, &instance).await;
    if config.reattachable
        && let Some(identity) = &ctx.identity
    {
        store_identity(config, &deployment_name, &created, identity).await;
    }
    let kube_plugin = KubePlugin::new(
        config,
        (
            deployment_name,
            created.metadata.uid.clone().unwrap_or_default(),
        ),
        created_service.metadata.name.unwrap_or_default(),
        instance,
        true,
    );
    cleanup.disarm();
    kube_plugin.keep_lease(config, own_lease);
    connect_all(config, kube_plugin, ctx, image, plugin.name, plugin.port).await
}

/// The configured Deployment and Service, checked before any API call: valid, and with
/// a digest-pinned plugin image when that is required. Also the plugin container and its
/// image.
fn validated_objects(
    config: &KubernetesConfig,
) -> Result<(Deployment, Service, PluginContainer, String), KubeError> {
    config.retry.validate()?;
    let deployment = config
        .deployment
        .clone()
        .ok_or(KubeError::MissingDeployment)?;
    let service = config.service.clone().ok_or(KubeError::MissingService)?;
    let plugin = validate_deployment(&deployment).map_err(KubeError::Invalid)?;
    validate_service(&service, &deployment, &plugin).map_err(KubeError::Invalid)?;
    let image = plugin_image(&deployment, plugin.index);
    if config.require_image_digest && digest_of(&image).is_none() {
        return Err(KubeError::ImageNotPinned { image });
    }
    Ok((deployment, service, plugin, image))
}

/// What launch `instance` adds to the objects; the host id and owner default to the
/// host's pod (looked up when the config names no owner), else the hostname.
async fn injection_for(
    config: &KubernetesConfig,
    ctx: &LaunchContext,
    instance: &str,
) -> Injection {
    let host_pod = match &config.owner {
        Some(owner) => Some(HostPod {
            name: owner.name.clone(),
            owner: Some(owner.clone()),
        }),
        None => host_owner::host_pod(&config.client, &config.namespace).await,
    };
    Injection {
        plugin_name: ctx.name.clone(),
        host_id: config
            .host_id
            .clone()
            .or_else(|| host_pod.as_ref().map(|o| o.name.clone()))
            .unwrap_or_else(hostname),
        instance: instance.to_owned(),
        env: ctx.env.clone(),
        protocol_versions: crate::handshake::format_versions(&ctx.host_versions),
        owner: host_pod.and_then(|h| h.owner),
    }
}

/// Names the Service after the created Deployment (unless it has a name) and makes the
/// Deployment own it.
fn owned_service(service: &mut Service, deployment_name: &str, created: &Deployment) {
    if service.metadata.name.is_none() {
        service.metadata.name = Some(deployment_name.to_owned());
    }
    if let Some(owner) = owner_reference(created) {
        service
            .metadata
            .owner_references
            .get_or_insert_with(Vec::new)
            .push(owner);
    }
}

/// The host Lease of a plugin that is not reattachable: the Deployment's name when the
/// Lease was created, `None` (with a warning) when it could not be.
async fn create_host_lease(
    config: &KubernetesConfig,
    created: &Deployment,
    deployment_name: &str,
    instance: &str,
) -> Option<String> {
    if config.reattachable {
        return None;
    }
    let leases = Api::namespaced(config.client.clone(), &config.namespace);
    match lease::create(&leases, created, instance, config.host_lease).await {
        Ok(()) => Some(deployment_name.to_owned()),
        Err(e) => {
            tracing::warn!(deployment = %deployment_name, error = &e as &dyn std::error::Error, "failed to create the host Lease: if this host dies without kill, nothing removes the plugin (RBAC: see deploy/rbac.yaml)");
            None
        }
    }
}

/// Connects to an existing plugin Deployment.
pub(crate) async fn reattach(
    config: &KubernetesConfig,
    name: &str,
    mut ctx: LaunchContext,
) -> Result<(Conn, Arc<KubePlugin>, u32), KubeError> {
    let ns = config.namespace.as_str();
    let deployments: Api<Deployment> = Api::namespaced(config.client.clone(), ns);
    let deployment = deployments
        .get_opt(name)
        .await
        .map_err(|source| KubeError::Api {
            step: format!("get plugin Deployment {name}"),
            source,
        })?
        .ok_or_else(|| KubeError::NotFound {
            deployment: name.into(),
            namespace: ns.into(),
        })?;
    let plugin = validate_deployment(&deployment).map_err(KubeError::Invalid)?;
    let instance = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.as_ref())
        .and_then(|l| l.get(INSTANCE_LABEL).cloned())
        .ok_or_else(|| KubeError::NotFound {
            deployment: name.into(),
            namespace: ns.into(),
        })?;
    let image = plugin_image(&deployment, plugin.index);
    if config.require_image_digest && digest_of(&image).is_none() {
        return Err(KubeError::ImageNotPinned { image });
    }
    if ctx.identity.is_some() {
        // The plugin pinned the certificate of the host that launched it.
        ctx.identity = Some(load_identity(config, name).await?);
    }
    let kube_plugin = KubePlugin::new(
        config,
        (
            name.into(),
            deployment.metadata.uid.clone().unwrap_or_default(),
        ),
        name.into(),
        instance,
        config.delete_on_kill,
    );
    // A plugin launched with a host Lease: this host renews it too from now on, so the
    // plugin is not reaped when the host that launched it goes.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(config.client.clone(), ns);
    let own_lease = match tokio::time::timeout(API_CALL_TIMEOUT, leases.get_opt(name)).await {
        Ok(Ok(Some(_))) => Some(name.to_owned()),
        _ => None,
    };
    kube_plugin.keep_lease(config, own_lease);
    connect_all(config, kube_plugin, ctx, image, plugin.name, plugin.port).await
}

/// Creates `obj`, retrying as `retry` says. A conflict (409) on an object that carries
/// this launch's instance label is an earlier attempt that succeeded though its answer
/// was lost (a timeout): that object is ours and is adopted. Any other conflict is an
/// error (the name belongs to something else).
pub(super) async fn create_or_adopt<K>(
    api: &Api<K>,
    obj: &K,
    instance: &str,
    retry: Retry,
) -> Result<K, kube::Error>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let post = PostParams::default();
    with_retry(retry, || async {
        match api.create(&post, obj).await {
            Err(kube::Error::Api(status)) if status.code == 409 => {
                match api.get_opt(&name).await? {
                    Some(existing) if is_instance(&existing, instance) => {
                        tracing::debug!(name, "adopted an object an earlier create attempt made");
                        Ok(existing)
                    }
                    _ => Err(kube::Error::Api(status)),
                }
            }
            other => other,
        }
    })
    .await
}

pub(super) fn is_instance<K: kube::Resource>(obj: &K, instance: &str) -> bool {
    obj.meta()
        .labels
        .as_ref()
        .and_then(|l| l.get(INSTANCE_LABEL))
        .is_some_and(|v| v == instance)
}

/// Deletes a just-created Deployment when dropped armed (a cancelled start).
pub(super) struct DeleteOnDrop {
    armed: Option<(Api<Deployment>, String)>,
}

impl DeleteOnDrop {
    fn new(api: &Api<Deployment>, name: &str) -> Self {
        Self {
            armed: Some((api.clone(), name.to_owned())),
        }
    }

    fn disarm(mut self) {
        self.armed = None;
    }
}

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        let Some((api, name)) = self.armed.take() else {
            return;
        };
        spawn_cleanup(
            &name.clone(),
            "plugin start cancelled",
            delete_quietly(api, name),
        );
    }
}

pub(super) async fn with_retry<T, F, Fut>(retry: Retry, mut op: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut delay = retry.duration;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match op().await {
            Ok(v) => return Ok(v),
            Err(e)
                if attempt < retry.steps
                    && crate::runtime::kubernetes::is_retryable_kube_api_error(&e) =>
            {
                let mut jitter = [0u8; 1];
                let _ = rustls::crypto::aws_lc_rs::default_provider()
                    .secure_random
                    .fill(&mut jitter);
                let extra = Retry::scale(delay, retry.jitter * f64::from(jitter[0]) / 255.0);
                tokio::time::sleep(delay + extra).await;
                delay = Retry::scale(delay, retry.factor);
            }
            Err(e) => return Err(e),
        }
    }
}

pub(super) fn plugin_image(d: &Deployment, index: usize) -> String {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.get(index))
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

/// The `sha256:…` digest of an image reference, if pinned.
pub(crate) fn digest_of(image: &str) -> Option<String> {
    image
        .split_once('@')
        .map(|(_, d)| d.to_string())
        .filter(|d| d.starts_with("sha256:") && d.len() > "sha256:".len())
}

pub(super) fn instance_id() -> String {
    let mut bytes = [0u8; 6];
    let _ = rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut bytes);
    hex::encode(bytes)
}

pub(super) fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "host".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests() {
        assert_eq!(
            digest_of("greeter@sha256:abc").as_deref(),
            Some("sha256:abc")
        );
        assert_eq!(digest_of("greeter:1"), None);
        assert_eq!(digest_of("greeter@sha256:"), None);
    }

    #[tokio::test]
    async fn retry_stops_on_non_retryable_errors() {
        let mut calls = 0;
        let res: Result<(), _> = with_retry(crate::runtime::kubernetes::DEFAULT_RETRY, || {
            calls += 1;
            async {
                Err(kube::Error::Api(Box::new(kube::core::Status {
                    code: 403,
                    ..kube::core::Status::default()
                })))
            }
        })
        .await;
        assert!(res.is_err());
        assert_eq!(calls, 1);
        let mut calls = 0;
        let res: Result<(), _> = with_retry(crate::runtime::kubernetes::DEFAULT_RETRY, || {
            calls += 1;
            async {
                Err(kube::Error::Api(Box::new(kube::core::Status {
                    code: 503,
                    ..kube::core::Status::default()
                })))
            }
        })
        .await;
        assert!(res.is_err());
        assert_eq!(calls, 5);
    }
}

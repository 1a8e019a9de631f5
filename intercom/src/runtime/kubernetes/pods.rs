//! Launching, watching and connecting to the plugin's pods.
//!
//! One task watches the plugin's pods (and, in `Endpoints` mode, the Service's
//! EndpointSlices). Each ready pod gets its own connection: its handshake line is read
//! from the container log, its certificate pinned, and its channel and broker session
//! join the [`Balancer`] and the broker group. Pods that stop being ready, restart or go
//! away leave; new ones join, so rollouts and crashes need nothing from the host.

use crate::sync::lock;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::balancer::Balancer;
use super::handshake_scan;
use super::host_owner::{self, HostPod};
use super::lease;
use super::objects::{INSTANCE_LABEL, Injection, inject, owner_reference};
use super::owners::{self, Owners};
use super::validate::{validate_deployment, validate_service};
use super::{ConnectMode, KubeError, KubernetesConfig, Retry};
use crate::broker::{Group, GrpcBroker};
use crate::client::{Conn, Dialer, Writer, address_dialer, connect, pump_stdio};
use crate::handshake::{Handshake, Network};
use crate::runtime::{ExitInfo, PluginHandle};
use crate::tls::PinSet;
use crate::transport::{Io, TlsPair};

/// What the Client hands the runtime for one launch.
pub(crate) struct LaunchContext {
    pub(crate) name: String,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) identity: Option<crate::tls::Identity>,
    pub(crate) host_versions: Vec<u32>,
    pub(crate) deadline: Instant,
    pub(crate) sync_stdout: Option<Writer>,
    pub(crate) sync_stderr: Option<Writer>,
}

/// A plugin running as a Deployment.
pub(crate) struct KubePlugin {
    deployments: Api<Deployment>,
    services: Api<Service>,
    pods: Api<Pod>,
    namespace: String,
    deployment: String,
    service: String,
    instance: String,
    /// Which pods are the plugin's (by owner UID, not by label).
    owners: Owners,
    balancer: Arc<Balancer>,
    group: Arc<Group>,
    broker: GrpcBroker,
    /// Pod name → its live connection.
    legs: Mutex<HashMap<String, Leg>>,
    exited: watch::Sender<bool>,
    closed: CancellationToken,
    delete_on_kill: bool,
    watcher: Mutex<Option<tokio::task::AbortHandle>>,
    /// Renews the host Lease and reaps the namespace's abandoned plugins.
    keeper: Mutex<Option<tokio::task::AbortHandle>>,
}

impl std::fmt::Debug for KubePlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubePlugin")
            .field("namespace", &self.namespace)
            .field("deployment", &self.deployment)
            .field("replicas_connected", &self.balancer.len())
            .finish()
    }
}

struct Leg {
    /// Pod uid + container id: a restarted container is a new plugin process.
    key: String,
    conn: Conn,
    tasks: Vec<tokio::task::AbortHandle>,
}

impl Drop for Leg {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.conn.broker.close();
        if let Some(m) = &self.conn.mux {
            m.close();
        }
    }
}

/// Start progress, reported by the watcher to the waiting `launch`.
#[derive(Debug, Clone)]
enum Start {
    Waiting(&'static str),
    Connected(u32),
    /// The error, to be taken once by the waiting launch.
    Failed(Arc<Mutex<Option<KubeError>>>),
}

fn failed(err: KubeError) -> Start {
    Start::Failed(Arc::new(Mutex::new(Some(err))))
}

struct Shared {
    plugin: Arc<KubePlugin>,
    mode: ConnectMode,
    identity: Option<crate::tls::Identity>,
    host_versions: Vec<u32>,
    client_name: String,
    image: String,
    require_digest: bool,
    /// How long a started container has to print its handshake.
    handshake_timeout: Duration,
    container: String,
    start: watch::Sender<Start>,
    stdout: Arc<tokio::sync::Mutex<Option<Writer>>>,
    stderr: Arc<tokio::sync::Mutex<Option<Writer>>>,
    /// Pods with a connection attempt in flight.
    connecting: Mutex<HashSet<String>>,
    /// Endpoints mode: ready addresses by pod name.
    endpoints: Mutex<BTreeMap<String, String>>,
    /// Latest pod objects.
    seen: Mutex<BTreeMap<String, Pod>>,
    /// Asks the watch loop to look at a pod again.
    retry: tokio::sync::mpsc::UnboundedSender<String>,
    /// Replica keys another host took over; not reconnected while they last.
    yielded: Mutex<HashSet<String>>,
    /// Containers whose first log line was checked before they became ready.
    checked: Mutex<HashSet<String>>,
    /// `ServiceDns`: the certificates of every replica whose handshake was read, since a
    /// connection through the Service name may reach any of them.
    pins: PinSet,
    /// `ServiceDns`: the replicas whose handshake was read (and certificate pinned), by pod.
    pinned: Mutex<HashMap<String, Pinned>>,
    /// `ServiceDns`: held while dialling the one connection through the Service.
    dial: tokio::sync::Mutex<()>,
}

/// `ServiceDns`: a replica whose handshake was read. Its log is forwarded whether or not
/// the one connection through the Service reaches it; dropping this stops that.
struct Pinned {
    /// The container (see `evaluate`): a new one prints a new handshake.
    key: String,
    logs: tokio::task::AbortHandle,
}

impl Drop for Pinned {
    fn drop(&mut self) {
        self.logs.abort();
    }
}

/// How long one Kubernetes API call of a start's clean-up or of `kill` may take.
const API_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Creates the objects and connects to the first ready replica.
pub(crate) async fn launch(
    config: &KubernetesConfig,
    ctx: LaunchContext,
) -> Result<(Conn, Arc<KubePlugin>, u32), KubeError> {
    config.retry.validate()?;
    let mut deployment = config
        .deployment
        .clone()
        .ok_or(KubeError::MissingDeployment)?;
    let mut service = config.service.clone().ok_or(KubeError::MissingService)?;
    let plugin = validate_deployment(&deployment).map_err(KubeError::Invalid)?;
    validate_service(&service, &deployment, &plugin).map_err(KubeError::Invalid)?;
    let image = plugin_image(&deployment, plugin.index);
    if config.require_image_digest && digest_of(&image).is_none() {
        return Err(KubeError::ImageNotPinned { image });
    }
    let instance = instance_id();
    let host_pod = match &config.owner {
        Some(owner) => Some(HostPod {
            name: owner.name.clone(),
            owner: Some(owner.clone()),
        }),
        None => host_owner::host_pod(&config.client, &config.namespace).await,
    };
    let injection = Injection {
        plugin_name: ctx.name.clone(),
        host_id: config
            .host_id
            .clone()
            .or_else(|| host_pod.as_ref().map(|o| o.name.clone()))
            .unwrap_or_else(hostname),
        instance: instance.clone(),
        env: ctx.env.clone(),
        protocol_versions: crate::handshake::format_versions(&ctx.host_versions),
        owner: host_pod.and_then(|h| h.owner),
    };
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
    // Until the plugin handle owns it: a start cancelled from here on (the `client()`
    // future dropped) deletes the Deployment, and the garbage collector the rest.
    let cleanup = DeleteOnDrop::new(&deployments, &deployment_name);
    tracing::debug!(plugin = %ctx.name, deployment = %deployment_name, "plugin Deployment created");
    if service.metadata.name.is_none() {
        service.metadata.name = Some(deployment_name.clone());
    }
    if let Some(owner) = owner_reference(&created) {
        service
            .metadata
            .owner_references
            .get_or_insert_with(Vec::new)
            .push(owner);
    }
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
    let own_lease = if config.reattachable {
        None
    } else {
        let leases = Api::namespaced(config.client.clone(), ns);
        match lease::create(&leases, &created, &instance, config.host_lease).await {
            Ok(()) => Some(deployment_name.clone()),
            Err(e) => {
                tracing::warn!(deployment = %deployment_name, error = &e as &dyn std::error::Error, "failed to create the host Lease: if this host dies without kill, nothing removes the plugin (RBAC: see deploy/rbac.yaml)");
                None
            }
        }
    };
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

impl KubePlugin {
    /// `deployment`: its name and UID.
    fn new(
        config: &KubernetesConfig,
        (deployment, deployment_uid): (String, String),
        service: String,
        instance: String,
        delete_on_kill: bool,
    ) -> Arc<Self> {
        let ns = config.namespace.as_str();
        let (broker, group) = GrpcBroker::group();
        Arc::new(KubePlugin {
            deployments: Api::namespaced(config.client.clone(), ns),
            services: Api::namespaced(config.client.clone(), ns),
            pods: Api::namespaced(config.client.clone(), ns),
            namespace: ns.into(),
            deployment,
            service,
            instance,
            owners: Owners::new(deployment_uid),
            balancer: Arc::new(Balancer::default()),
            group,
            broker,
            legs: Mutex::new(HashMap::new()),
            exited: watch::channel(false).0,
            closed: CancellationToken::new(),
            delete_on_kill,
            watcher: Mutex::new(None),
            keeper: Mutex::new(None),
        })
    }

    fn selector(&self) -> String {
        format!("{INSTANCE_LABEL}={}", self.instance)
    }

    fn remove_leg(&self, pod: &str) {
        if lock(&self.legs).remove(pod).is_some() {
            self.balancer.remove(pod);
            self.group.remove(pod);
            tracing::debug!(deployment = %self.deployment, pod, "replica left");
        }
    }

    /// Starts renewing `own` Lease (if any) and reaping the namespace's abandoned plugins.
    fn keep_lease(&self, config: &KubernetesConfig, own: Option<String>) {
        let leases = Api::namespaced(config.client.clone(), &self.namespace);
        let task = tokio::spawn(lease::keep(
            leases,
            self.deployments.clone(),
            own,
            config.host_lease.max(Duration::from_secs(1)),
        ));
        *lock(&self.keeper) = Some(task.abort_handle());
    }

    fn stop_tasks(&self) {
        for task in [&self.watcher, &self.keeper] {
            if let Some(t) = lock(task).take() {
                t.abort();
            }
        }
    }

    fn mark_exited(&self) {
        self.balancer.close();
        let _ = self.exited.send(true);
    }

    /// Graceful shutdown of each replica, then (unless only reattached) delete the
    /// Deployment in the foreground and wait until its pods and the Service are gone.
    async fn shutdown_and_delete(&self) -> std::io::Result<()> {
        if self.closed.is_cancelled() {
            return Ok(());
        }
        self.closed.cancel();
        let channels = if self.delete_on_kill {
            self.balancer.channels()
        } else {
            // Only disconnecting (a reattached client): leave the plugin running.
            Vec::new()
        };
        let shutdowns = channels.into_iter().map(|(_, ch)| async move {
            let mut ctl = crate::proto::grpc_controller_client::GrpcControllerClient::new(ch);
            let _ =
                tokio::time::timeout(Duration::from_secs(2), ctl.shutdown(crate::proto::Empty {}))
                    .await;
        });
        futures::future::join_all(shutdowns).await;
        self.stop_tasks();
        lock(&self.legs).clear();
        self.broker.close();
        self.mark_exited();
        if !self.delete_on_kill {
            return Ok(());
        }
        let foreground = DeleteParams::foreground();
        let delete = self.deployments.delete(&self.deployment, &foreground);
        match tokio::time::timeout(API_CALL_TIMEOUT, delete).await {
            Ok(Ok(_)) => {}
            Ok(Err(kube::Error::Api(s))) if s.code == 404 => {}
            Ok(Err(e)) => return Err(std::io::Error::other(e)),
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "the apiserver did not answer the delete of plugin Deployment {}/{} within {API_CALL_TIMEOUT:?}; it is left running (delete it, or reattach with delete_on_kill)",
                        self.namespace, self.deployment
                    ),
                ));
            }
        }
        // The Service is owned by the Deployment, but delete it now rather than wait for
        // the garbage collector.
        let _ = tokio::time::timeout(
            API_CALL_TIMEOUT,
            self.services
                .delete(&self.service, &DeleteParams::background()),
        )
        .await;
        let gone = async {
            wait_gone(&self.deployments, &self.deployment).await;
            wait_gone(&self.services, &self.service).await;
            let lp = ListParams::default().labels(&self.selector());
            loop {
                match self.pods.list(&lp).await {
                    // Only its own pods: others may carry its labels.
                    Ok(list) if !list.items.iter().any(|p| self.owners.trusts(p)) => break,
                    Ok(_) => {}
                    Err(_) => break,
                }
                let stream = watcher(
                    self.pods.clone(),
                    watcher::Config::default()
                        .labels(&self.selector())
                        .timeout(5),
                );
                let _ = tokio::time::timeout(Duration::from_secs(1), stream.boxed().next()).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(120), gone)
            .await
            .map_err(|_| {
                std::io::Error::other(format!(
                    "plugin Deployment {} was not gone within 120 s",
                    self.deployment
                ))
            })
    }
}

impl Drop for KubePlugin {
    fn drop(&mut self) {
        self.stop_tasks();
        if self.closed.is_cancelled() || !self.delete_on_kill {
            return;
        }
        // Dropped without kill(): best effort, delete in the background if a runtime is
        // there to do it (the garbage collector removes the Service and pods).
        let deployments = self.deployments.clone();
        let name = self.deployment.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    let foreground = DeleteParams::foreground();
                    let delete = deployments.delete(&name, &foreground);
                    let _ = tokio::time::timeout(API_CALL_TIMEOUT, delete).await;
                });
            }
            Err(_) => tracing::warn!(
                deployment = %self.deployment,
                namespace = %self.namespace,
                "plugin client dropped outside a tokio runtime; its Deployment is left running"
            ),
        }
    }
}

async fn wait_gone<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let cond = kube::runtime::wait::await_condition(api.clone(), name, |o: Option<&K>| o.is_none());
    let _ = cond.await;
}

impl PluginHandle for Arc<KubePlugin> {
    fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.deployment)
    }

    fn wait(&self) -> futures::future::BoxFuture<'static, ExitInfo> {
        let mut rx = self.exited.subscribe();
        async move {
            let _ = rx.wait_for(|e| *e).await;
            ExitInfo::default()
        }
        .boxed()
    }

    fn exited(&self) -> bool {
        *self.exited.borrow()
    }

    fn kill(&self) -> futures::future::BoxFuture<'_, std::io::Result<()>> {
        self.shutdown_and_delete().boxed()
    }

    fn graceful_by_client(&self) -> bool {
        false
    }
}

async fn connect_all(
    config: &KubernetesConfig,
    plugin: Arc<KubePlugin>,
    mut ctx: LaunchContext,
    image: String,
    container: String,
    port: i32,
) -> Result<(Conn, Arc<KubePlugin>, u32), KubeError> {
    let (start_tx, mut start_rx) = watch::channel(Start::Waiting("waiting for a ready pod"));
    let (retry_tx, retry_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let shared = Arc::new(Shared {
        plugin: plugin.clone(),
        mode: config.connect,
        identity: ctx.identity.take(),
        host_versions: ctx.host_versions.clone(),
        client_name: ctx.name.clone(),
        image,
        require_digest: config.require_image_digest,
        handshake_timeout: config.handshake_timeout,
        container,
        start: start_tx,
        stdout: Arc::new(tokio::sync::Mutex::new(ctx.sync_stdout.take())),
        stderr: Arc::new(tokio::sync::Mutex::new(ctx.sync_stderr.take())),
        connecting: Mutex::new(HashSet::new()),
        endpoints: Mutex::new(BTreeMap::new()),
        seen: Mutex::new(BTreeMap::new()),
        retry: retry_tx,
        yielded: Mutex::new(HashSet::new()),
        checked: Mutex::new(HashSet::new()),
        pins: PinSet::default(),
        pinned: Mutex::new(HashMap::new()),
        dial: tokio::sync::Mutex::new(()),
    });
    let task = tokio::spawn(watch_plugin(shared.clone(), retry_rx));
    *lock(&plugin.watcher) = Some(task.abort_handle());
    let outcome = tokio::time::timeout_at(ctx.deadline, async {
        loop {
            match &*start_rx.borrow_and_update() {
                Start::Connected(v) => return Ok(*v),
                Start::Failed(e) => {
                    let taken = lock(e).take();
                    return Err(taken.unwrap_or_else(|| KubeError::Deleted {
                        deployment: plugin.deployment.clone(),
                    }));
                }
                Start::Waiting(_) => {}
            }
            if start_rx.changed().await.is_err() {
                return Err(KubeError::Deleted {
                    deployment: plugin.deployment.clone(),
                });
            }
        }
    })
    .await;
    let version = match outcome {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            let _ = plugin.shutdown_and_delete().await;
            return Err(e);
        }
        Err(_) => {
            let step = match &*start_rx.borrow() {
                Start::Waiting(step) => *step,
                _ => "connecting",
            };
            let _ = plugin.shutdown_and_delete().await;
            return Err(KubeError::Timeout {
                deployment: plugin.deployment.clone(),
                step,
                waited: Duration::ZERO,
            });
        }
    };
    let conn = Conn {
        channel: plugin.balancer.channel(),
        broker: plugin.broker.clone(),
        session: None,
        pump_stdio: false,
        mux: None,
        network: Network::Tcp,
        address: format!("{}.{}.svc:{port}", plugin.service, plugin.namespace),
        tls: shared.identity.is_some(),
        plugin_cert: None,
    };
    Ok((conn, plugin, version))
}

/// The plugin's watch loop: pods (and EndpointSlices in `Endpoints` mode) and the
/// Deployment; runs until the plugin is killed or its Deployment deleted.
async fn watch_plugin(
    shared: Arc<Shared>,
    mut retry_rx: tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let plugin = shared.plugin.clone();
    let pods = watcher(
        plugin.pods.clone(),
        watcher::Config::default().labels(&plugin.selector()),
    )
    .default_backoff()
    .boxed();
    let deployments = watcher(
        plugin.deployments.clone(),
        watcher::Config::default().fields(&format!("metadata.name={}", plugin.deployment)),
    )
    .default_backoff()
    .boxed();
    let slices = if shared.mode == ConnectMode::Endpoints {
        let api: Api<EndpointSlice> =
            Api::namespaced(plugin.pods.clone().into_client(), &plugin.namespace);
        watcher(
            api,
            watcher::Config::default()
                .labels(&format!("kubernetes.io/service-name={}", plugin.service)),
        )
        .default_backoff()
        .boxed()
    } else {
        futures::stream::pending().boxed()
    };
    let mut replica_sets = owners::watch(
        Api::namespaced(plugin.pods.clone().into_client(), &plugin.namespace),
        &plugin.selector(),
    );
    let retry_tx = shared.retry.clone();
    let mut pods = pods;
    let mut deployments = deployments;
    let mut slices = slices;
    let mut slice_state: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    loop {
        tokio::select! {
            () = plugin.closed.cancelled() => return,
            ev = pods.next() => match ev {
                Some(Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod))) => {
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    lock(&shared.seen).insert(name.clone(), pod);
                    evaluate(&shared, &name, &retry_tx).await;
                }
                Some(Ok(watcher::Event::Delete(pod))) => {
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    lock(&shared.seen).remove(&name);
                    shared.pins.remove(&name);
                    lock(&shared.pinned).remove(&name);
                    plugin.remove_leg(&name);
                    redial_through_service(&shared, &name, &retry_tx);
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => tracing::debug!(error = &err as &dyn std::error::Error, "pod watch error"),
                None => return,
            },
            ev = deployments.next() => match ev {
                Some(Ok(watcher::Event::Delete(_))) => {
                    tracing::debug!(deployment = %plugin.deployment, "plugin Deployment deleted");
                    plugin.mark_exited();
                    let _ = shared.start.send(failed(KubeError::Deleted { deployment: plugin.deployment.clone() }));
                    return;
                }
                Some(Ok(watcher::Event::Apply(d) | watcher::Event::InitApply(d))) => {
                    if let Some(message) = progress_deadline_exceeded(&d)
                        && matches!(&*shared.start.borrow(), Start::Waiting(_))
                    {
                        let _ = shared.start.send(failed(KubeError::ProgressDeadlineExceeded {
                            deployment: plugin.deployment.clone(),
                            message,
                        }));
                    }
                    if let Some((reason, message)) = replica_failure(&d)
                        && matches!(&*shared.start.borrow(), Start::Waiting(_))
                    {
                        let _ = shared.start.send(failed(KubeError::PodsRejected {
                            deployment: plugin.deployment.clone(),
                            reason,
                            message,
                        }));
                    }
                }
                _ => {}
            },
            ev = slices.next() => {
                match ev {
                    Some(Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s))) => {
                        let key = s.metadata.name.clone().unwrap_or_default();
                        slice_state.insert(key, ready_endpoints(&s));
                    }
                    Some(Ok(watcher::Event::Delete(s))) => {
                        slice_state.remove(&s.metadata.name.clone().unwrap_or_default());
                    }
                    _ => continue,
                }
                let merged: BTreeMap<String, String> = slice_state.values().flat_map(|m| m.clone()).collect();
                *lock(&shared.endpoints) = merged.clone();
                let names: Vec<String> = lock(&shared.seen).keys().cloned().collect();
                for name in names {
                    evaluate(&shared, &name, &retry_tx).await;
                }
            }
            Some(pod) = retry_rx.recv() => {
                evaluate(&shared, &pod, &retry_tx).await;
            }
            Some(ev) = replica_sets.next() => match plugin.owners.take(ev) {
                Ok(true) => {
                    let names: Vec<String> = lock(&shared.seen).keys().cloned().collect();
                    for name in names {
                        evaluate(&shared, &name, &retry_tx).await;
                    }
                }
                Ok(false) => {}
                Err(err) => {
                    if matches!(&*shared.start.borrow(), Start::Waiting(_)) {
                        let _ = shared.start.send(failed(err));
                    }
                }
            },
        }
        let owned = lock(&shared.seen).values().any(|p| plugin.owners.trusts(p));
        if !owned && plugin.balancer.len() == 0 {
            // Every pod is gone; if the Deployment is scaled to zero nothing comes back.
            if let Ok(Some(d)) = plugin.deployments.get_opt(&plugin.deployment).await
                && d.spec.as_ref().and_then(|s| s.replicas) == Some(0)
            {
                plugin.mark_exited();
            }
        }
    }
}

/// Forwards the rest of a pod's log (the plugin's stderr) into `tracing`, until the log
/// ends or the plugin is closed.
fn forward_logs<S>(shared: &Shared, pod: &str, mut lines: S) -> tokio::task::AbortHandle
where
    S: futures::Stream<Item = std::io::Result<String>> + Send + Unpin + 'static,
{
    let client_name = shared.client_name.clone();
    let pod_name = pod.to_string();
    let closed = shared.plugin.closed.clone();
    tokio::spawn(async move {
        let mut parser = crate::logs::StderrParser::default();
        let forward = async {
            while let Some(Ok(line)) = lines.next().await {
                let record = parser.parse(&line);
                crate::logs::emit_with(&client_name, Some(&pod_name), &record);
            }
        };
        tokio::select! {
            () = forward => {}
            () = closed.cancelled() => {}
        }
    })
    .abort_handle()
}

/// `ServiceDns`: when the one connection through the Service is gone (its pod left or is
/// not ready), looks at the other ready replicas again so that one of them dials anew.
fn redial_through_service(
    shared: &Shared,
    gone: &str,
    retry: &tokio::sync::mpsc::UnboundedSender<String>,
) {
    if shared.mode != ConnectMode::ServiceDns || !lock(&shared.plugin.legs).is_empty() {
        return;
    }
    let ready: Vec<String> = lock(&shared.seen)
        .iter()
        .filter(|(name, pod)| {
            name.as_str() != gone && pod_ready(pod) && shared.plugin.owners.trusts(pod)
        })
        .map(|(name, _)| name.clone())
        .collect();
    for name in ready {
        let _ = retry.send(name);
    }
}

/// Ready endpoint addresses by pod name.
fn ready_endpoints(slice: &EndpointSlice) -> BTreeMap<String, String> {
    slice
        .endpoints
        .iter()
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
        .filter_map(|e| {
            let pod = e.target_ref.as_ref()?.name.clone()?;
            let addr = e.addresses.first()?.clone();
            Some((pod, addr))
        })
        .collect()
}

/// Looks at one pod: fail the start, connect, or disconnect.
async fn evaluate(
    shared: &Arc<Shared>,
    name: &str,
    retry: &tokio::sync::mpsc::UnboundedSender<String>,
) {
    let plugin = &shared.plugin;
    let Some(pod) = lock(&shared.seen)
        .get(name)
        .filter(|p| plugin.owners.trusts(p))
        .cloned()
    else {
        // Gone, or not (yet) known to be the Deployment's: carrying its labels is no proof.
        tracing::debug!(plugin = %shared.client_name, pod = name, "pod gone or not owned by the plugin's Deployment; not used");
        plugin.remove_leg(name);
        shared.pins.remove(name);
        lock(&shared.pinned).remove(name);
        redial_through_service(shared, name, retry);
        return;
    };
    let status = pod.status.clone().unwrap_or_default();
    let container = status
        .container_statuses
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.name == shared.container);
    let starting = matches!(&*shared.start.borrow(), Start::Waiting(_));
    if let Some((reason, message)) = pod_failure(&pod, container.as_ref()) {
        if starting {
            let logs = last_logs(&plugin.pods, name, &shared.container).await;
            let err = KubeError::PodFailed {
                pod: name.into(),
                reason,
                message,
                logs,
            };
            let _ = shared.start.send(failed(err));
        } else {
            tracing::warn!(plugin = %shared.client_name, pod = name, %reason, %message, "plugin pod is failing");
        }
    }
    let ready = pod_ready(&pod);
    let key = format!(
        "{}/{}",
        pod.metadata.uid.clone().unwrap_or_default(),
        container
            .as_ref()
            .and_then(|c| c.container_id.clone())
            .unwrap_or_default()
    );
    let address = match shared.mode {
        ConnectMode::Endpoints => lock(&shared.endpoints).get(name).cloned(),
        _ => status.pod_ip.clone(),
    };
    let current = lock(&plugin.legs).get(name).map(|l| l.key.clone());
    let running = container
        .as_ref()
        .and_then(|c| c.state.as_ref())
        .is_some_and(|s| s.running.is_some());
    if starting && running && !ready && lock(&shared.checked).insert(key.clone()) {
        // Not ready yet: if what it printed first is not a handshake, it never will be.
        tokio::spawn(check_first_line(shared.clone(), name.to_string()));
    }
    if !ready || pod.metadata.deletion_timestamp.is_some() || address.is_none() {
        plugin.remove_leg(name);
        redial_through_service(shared, name, retry);
        return;
    }
    if current.as_deref() == Some(key.as_str()) || lock(&shared.yielded).contains(&key) {
        return;
    }
    if shared.mode == ConnectMode::ServiceDns
        && current.is_none()
        && lock(&shared.pinned).get(name).map(|p| &p.key) == Some(&key)
        && !lock(&plugin.legs).is_empty()
    {
        // Its certificate is pinned and the one connection through the Service is up.
        return;
    }
    if current.is_some() {
        // Same pod, new container: a new plugin process with a new handshake.
        plugin.remove_leg(name);
    }
    if !lock(&shared.connecting).insert(name.to_string()) {
        return;
    }
    if starting {
        let _ = shared.start.send(Start::Waiting(
            "reading the handshake from the pod log and connecting",
        ));
    }
    let shared = shared.clone();
    let name = name.to_string();
    let retry = retry.clone();
    let image_id = container.and_then(|c| Some(c.image_id).filter(|s| !s.is_empty()));
    tokio::spawn(async move {
        let result = connect_pod(&shared, &name, address.unwrap_or_default(), key, image_id).await;
        lock(&shared.connecting).remove(&name);
        match result {
            Ok(version) => {
                if matches!(&*shared.start.borrow(), Start::Waiting(_)) {
                    let _ = shared.start.send(Start::Connected(version));
                }
            }
            Err(err) => {
                let fatal = matches!(
                    err,
                    KubeError::Handshake { .. }
                        | KubeError::ChecksumsDoNotMatch { .. }
                        | KubeError::AutoMtlsUnsupported { .. }
                );
                if fatal && matches!(&*shared.start.borrow(), Start::Waiting(_)) {
                    let _ = shared.start.send(failed(err));
                } else {
                    tracing::warn!(plugin = %shared.client_name, pod = %name, error = &err as &dyn std::error::Error, "failed to connect to plugin replica; retrying");
                    let retry = retry.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        let _ = retry.send(name);
                    });
                }
            }
        }
    });
}

/// Fails the start early when a running, not-ready container prints an invalid
/// handshake (a plugin built against another protocol version), or none within the
/// handshake timeout (a plugin that never calls serve). Log lines before it are fine.
async fn check_first_line(shared: Arc<Shared>, pod: String) {
    let params = LogParams {
        container: Some(shared.container.clone()),
        limit_bytes: Some(handshake_scan::MAX_BYTES_BEFORE_HANDSHAKE as i64),
        ..LogParams::default()
    };
    let started = tokio::time::Instant::now();
    let mut last_text = String::new();
    loop {
        // Give a starting plugin a moment to print its line.
        tokio::time::sleep(Duration::from_millis(500)).await;
        if !matches!(&*shared.start.borrow(), Start::Waiting(_))
            || shared.plugin.closed.is_cancelled()
        {
            return;
        }
        if let Ok(Ok(text)) = tokio::time::timeout(
            Duration::from_secs(5),
            shared.plugin.pods.logs(&pod, &params),
        )
        .await
        {
            if let Some(line) = handshake_scan::handshake_in(&text) {
                if let Err(source) =
                    Handshake::parse(line).and_then(|h| h.validate(&shared.host_versions, true))
                {
                    fail_waiting_start(&shared, KubeError::Handshake { pod, source });
                }
                return;
            }
            last_text = text;
        }
        if started.elapsed() >= shared.handshake_timeout {
            let lines: Vec<&str> = last_text.lines().collect();
            fail_waiting_start(
                &shared,
                KubeError::NoHandshake {
                    pod,
                    waited: started.elapsed(),
                    lines: lines.len(),
                    last: lines.last().map(|l| (*l).to_owned()),
                    ended: false,
                },
            );
            return;
        }
    }
}

/// Fails a start still waiting for its first replica.
fn fail_waiting_start(shared: &Shared, err: KubeError) {
    if matches!(&*shared.start.borrow(), Start::Waiting(_)) {
        let _ = shared.start.send(failed(err));
    }
}

/// Reads one pod's handshake, connects, and joins it to the balancer and broker.
async fn connect_pod(
    shared: &Arc<Shared>,
    pod: &str,
    address: String,
    key: String,
    image_id: Option<String>,
) -> Result<u32, KubeError> {
    let plugin = &shared.plugin;
    if shared.require_digest
        && let Some(expected) = digest_of(&shared.image)
    {
        let actual = image_id.clone().unwrap_or_default();
        if !actual.ends_with(&expected) {
            return Err(KubeError::ChecksumsDoNotMatch {
                pod: pod.into(),
                image: shared.image.clone(),
                expected,
                actual,
            });
        }
    }
    let params = LogParams {
        follow: true,
        container: Some(shared.container.clone()),
        ..LogParams::default()
    };
    let stream = plugin
        .pods
        .log_stream(pod, &params)
        .await
        .map_err(|source| KubeError::Api {
            step: format!("read the log of plugin pod {pod}"),
            source,
        })?;
    let mut lines = super::log_lines::bounded_lines(stream);
    let started = tokio::time::Instant::now();
    let mut parser = crate::logs::StderrParser::default();
    let line = handshake_scan::find_handshake(&mut lines, shared.handshake_timeout, |l| {
        // What the plugin printed before its handshake is its log.
        crate::logs::emit_with(&shared.client_name, Some(pod), &parser.parse(l));
    })
    .await
    .map_err(|seen| KubeError::NoHandshake {
        pod: pod.into(),
        waited: started.elapsed(),
        lines: seen.lines,
        last: seen.last,
        ended: seen.ended,
    })?;
    let handshake = Handshake::parse(&line)
        .and_then(|h| h.validate(&shared.host_versions, true).map(|()| h))
        .map_err(|source| KubeError::Handshake {
            pod: pod.into(),
            source,
        })?;
    let tls = match (&shared.identity, &handshake.server_cert) {
        (Some(id), Some(cert)) => {
            let pair = if shared.mode == ConnectMode::ServiceDns {
                // Through the Service name any replica may answer: accept each one's
                // certificate.
                shared
                    .pins
                    .insert(pod, cert)
                    .and_then(|()| TlsPair::with_pins(id, &shared.pins, cert))
            } else {
                TlsPair::new(id, cert)
            };
            Some(pair.map_err(|source| KubeError::Tls {
                pod: pod.into(),
                source,
            })?)
        }
        (Some(_), None) => return Err(KubeError::AutoMtlsUnsupported { pod: pod.into() }),
        (None, _) => None,
    };
    // `ServiceDns`: one connection through the Service, whichever replica it reaches; the
    // other replicas only contribute their certificates.
    let mut lines = Some(lines);
    let _dialling = if shared.mode == ConnectMode::ServiceDns {
        // Every replica's log is forwarded, connected or not; once per container.
        if let Some(lines) = lines.take() {
            let mut pinned = lock(&shared.pinned);
            if pinned.get(pod).map(|p| &p.key) != Some(&key) {
                let logs = forward_logs(shared, pod, lines);
                pinned.insert(
                    pod.to_string(),
                    Pinned {
                        key: key.clone(),
                        logs,
                    },
                );
            }
        }
        let guard = shared.dial.lock().await;
        if !lock(&plugin.legs).is_empty() {
            return Ok(handshake.app_version);
        }
        Some(guard)
    } else {
        None
    };
    let port = handshake
        .address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(crate::DEFAULT_SERVER_PORT);
    let (dialer, target): (Dialer, String) = match shared.mode {
        ConnectMode::Endpoints => {
            let target = if address.contains(':') {
                format!("[{address}]:{port}")
            } else {
                format!("{address}:{port}")
            };
            (address_dialer(Network::Tcp, target.clone()), target)
        }
        ConnectMode::ServiceDns => {
            let target = format!("{}.{}.svc:{port}", plugin.service, plugin.namespace);
            let t = target.clone();
            let dial: Dialer = Arc::new(move || {
                let t = t.clone();
                Box::pin(async move {
                    let s = tokio::net::TcpStream::connect(t).await?;
                    let _ = s.set_nodelay(true);
                    Ok(Io::Tcp(s))
                })
            });
            (dial, target)
        }
        ConnectMode::PortForward => {
            let pods = plugin.pods.clone();
            let name = pod.to_string();
            let dial: Dialer = Arc::new(move || {
                let pods = pods.clone();
                let name = name.clone();
                Box::pin(async move { port_forward(&pods, &name, port).await })
            });
            (dial, format!("port-forward {pod}:{port}"))
        }
    };
    let conn = connect(dialer, Network::Tcp, target.clone(), true, tls)
        .await
        .map_err(|source| KubeError::Connect {
            pod: pod.into(),
            address: target,
            source,
        })?;
    let mut tasks = Vec::new();
    if let Some(session) = &conn.session {
        plugin.group.add(pod.to_string(), session.clone());
        tasks.push(
            tokio::spawn(session.clone().run_host(
                crate::proto::grpc_broker_client::GrpcBrokerClient::new(conn.channel.clone()),
            ))
            .abort_handle(),
        );
    }
    // Stdio must be consumed or the plugin's writes block; every replica's goes to the
    // same writers.
    tasks.push(
        tokio::spawn(pump_shared_stdio(
            conn.channel.clone(),
            shared.stdout.clone(),
            shared.stderr.clone(),
            shared.client_name.clone(),
            conn.broker.closed_token(),
        ))
        .abort_handle(),
    );
    // The rest of the log is the plugin's stderr: forward it into tracing.
    if let Some(lines) = lines {
        tasks.push(forward_logs(shared, pod, lines));
    }
    // When the connection ends (pod gone, port-forward dropped), leave and look at the pod
    // again: if it is still ready, reconnect. Unless another host took the plugin over (a
    // reattach): then stay away rather than fight for it.
    if let Some(session) = conn.session.clone() {
        let shared2 = shared.clone();
        let pod_name = pod.to_string();
        let leg_key = key.clone();
        let closed = conn.broker.closed_token();
        tasks.push(
            tokio::spawn(async move {
                closed.cancelled().await;
                if shared2.plugin.closed.is_cancelled() {
                    return;
                }
                if session.was_replaced() {
                    lock(&shared2.yielded).insert(leg_key);
                    tracing::info!(plugin = %shared2.client_name, pod = %pod_name, "another host took over this plugin replica; not reconnecting");
                } else {
                    tracing::debug!(plugin = %shared2.client_name, pod = %pod_name, "connection to replica lost; reconnecting");
                    let retry = shared2.retry.clone();
                    let name = pod_name.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        let _ = retry.send(name);
                    });
                }
                shared2.plugin.remove_leg(&pod_name);
            })
            .abort_handle(),
        );
    }
    plugin
        .balancer
        .insert(pod.to_string(), conn.channel.clone());
    lock(&plugin.legs).insert(pod.to_string(), Leg { key, conn, tasks });
    tracing::debug!(plugin = %shared.client_name, pod, replicas = plugin.balancer.len(), "replica connected");
    Ok(handshake.app_version)
}

async fn pump_shared_stdio(
    channel: tonic::transport::Channel,
    stdout: Arc<tokio::sync::Mutex<Option<Writer>>>,
    stderr: Arc<tokio::sync::Mutex<Option<Writer>>>,
    name: String,
    closed: CancellationToken,
) {
    let out = SharedWriter(stdout);
    let err = SharedWriter(stderr);
    pump_stdio(channel, Box::new(out), Box::new(err), name, closed).await;
}

/// Several replicas writing into one optional writer.
struct SharedWriter(Arc<tokio::sync::Mutex<Option<Writer>>>);

impl tokio::io::AsyncWrite for SharedWriter {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let Ok(mut guard) = self.0.try_lock() else {
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        };
        match guard.as_mut() {
            Some(w) => std::pin::Pin::new(w).poll_write(cx, buf),
            None => std::task::Poll::Ready(Ok(buf.len())),
        }
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let Ok(mut guard) = self.0.try_lock() else {
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        };
        match guard.as_mut() {
            Some(w) => std::pin::Pin::new(w).poll_flush(cx),
            None => std::task::Poll::Ready(Ok(())),
        }
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// A forwarded connection through the apiserver; keeps the forwarder alive.
///
/// Writes are buffered until flushed: each write to kube's stream becomes one WebSocket
/// message, so a yamux frame header and its body travel together (and, on a client with
/// Nagle's algorithm on, do not wait for a delayed ACK between them).
struct Forwarded {
    stream: tokio::io::BufWriter<tokio::io::DuplexStream>,
    _forwarder: kube::api::Portforwarder,
}

impl tokio::io::AsyncRead for Forwarded {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Forwarded {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

async fn port_forward(pods: &Api<Pod>, pod: &str, port: u16) -> std::io::Result<Io> {
    let mut forwarder = pods
        .portforward(pod, &[port])
        .await
        .map_err(std::io::Error::other)?;
    let stream = forwarder.take_stream(port).ok_or_else(|| {
        std::io::Error::other(format!("port-forward to {pod}:{port} gave no stream"))
    })?;
    Ok(Io::Boxed(Box::pin(Forwarded {
        stream: tokio::io::BufWriter::with_capacity(64 * 1024, stream),
        _forwarder: forwarder,
    })))
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A reason this pod cannot start (reason, message with what to do about it).
fn pod_failure(
    pod: &Pod,
    container: Option<&k8s_openapi::api::core::v1::ContainerStatus>,
) -> Option<(String, String)> {
    if let Some(cond) = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        })
        && cond.reason.as_deref() == Some("Unschedulable")
    {
        return Some((
            "Unschedulable".into(),
            format!(
                "{}; check the node selector, resources and taints",
                cond.message.clone().unwrap_or_default()
            ),
        ));
    }
    let waiting = container?.state.as_ref()?.waiting.as_ref()?;
    let reason = waiting.reason.clone().unwrap_or_default();
    let message = waiting.message.clone().unwrap_or_default();
    let hint = match reason.as_str() {
        "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" => {
            "the image cannot be pulled; check the image reference and imagePullSecrets"
        }
        "CrashLoopBackOff" => "the plugin keeps exiting; its last log lines say why",
        "CreateContainerConfigError" | "CreateContainerError" => {
            "the container spec refers to something missing (a ConfigMap, Secret or key)"
        }
        _ => return None,
    };
    Some((reason, format!("{message} ({hint})")))
}

fn progress_deadline_exceeded(d: &Deployment) -> Option<String> {
    d.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| {
            c.type_ == "Progressing"
                && c.status == "False"
                && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
        })
        .map(|c| c.message.clone().unwrap_or_default())
}

/// The Deployment's `ReplicaFailure` condition (copied from its ReplicaSet): pods cannot
/// be created at all, e.g. rejected by admission. Reason and message.
fn replica_failure(d: &Deployment) -> Option<(String, String)> {
    d.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
        .map(|c| {
            (
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

async fn last_logs(pods: &Api<Pod>, pod: &str, container: &str) -> String {
    for previous in [true, false] {
        let params = LogParams {
            container: Some(container.into()),
            tail_lines: Some(20),
            previous,
            ..LogParams::default()
        };
        if let Ok(Ok(text)) =
            tokio::time::timeout(Duration::from_secs(5), pods.logs(pod, &params)).await
            && !text.trim().is_empty()
        {
            return text;
        }
    }
    String::new()
}

fn plugin_image(d: &Deployment, index: usize) -> String {
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

fn instance_id() -> String {
    let mut bytes = [0u8; 6];
    let _ = rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut bytes);
    hex::encode(bytes)
}

fn hostname() -> String {
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

/// The Secret holding the AutoMTLS identity the plugin's pods pin, so a host can reattach.
fn identity_secret(deployment: &str) -> String {
    format!("{deployment}-intercom-host")
}

async fn store_identity(
    config: &KubernetesConfig,
    name: &str,
    deployment: &Deployment,
    identity: &crate::tls::Identity,
) {
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::Secret;
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(identity_secret(name)),
            owner_references: owner_reference(deployment).map(|o| vec![o]),
            labels: Some(
                [(
                    super::objects::MANAGED_BY_LABEL.to_string(),
                    super::objects::MANAGED_BY.to_string(),
                )]
                .into(),
            ),
            ..Default::default()
        },
        data: Some(
            [
                (
                    "cert.der".to_string(),
                    ByteString(identity.cert_der().to_vec()),
                ),
                (
                    "key.der".to_string(),
                    ByteString(identity.private_key_pkcs8_der().to_vec()),
                ),
            ]
            .into(),
        ),
        type_: Some("Opaque".into()),
        ..Secret::default()
    };
    let api: Api<Secret> = Api::namespaced(config.client.clone(), &config.namespace);
    if let Err(err) = api.create(&PostParams::default(), &secret).await {
        tracing::warn!(
            error = &err as &dyn std::error::Error,
            "failed to store the host identity; reattaching to this plugin with AutoMTLS will not work"
        );
    }
}

async fn load_identity(
    config: &KubernetesConfig,
    name: &str,
) -> Result<crate::tls::Identity, KubeError> {
    use k8s_openapi::api::core::v1::Secret;
    let api: Api<Secret> = Api::namespaced(config.client.clone(), &config.namespace);
    let secret_name = identity_secret(name);
    let secret = api
        .get_opt(&secret_name)
        .await
        .map_err(|source| KubeError::Api {
            step: format!("read the host identity Secret {secret_name} (AutoMTLS: the plugin only trusts the host that launched it)"),
            source,
        })?
        .ok_or_else(|| KubeError::NotReattachable {
            deployment: name.into(),
        })?;
    let data = secret.data.unwrap_or_default();
    let field = |k: &str| data.get(k).map(|b| b.0.clone()).unwrap_or_default();
    crate::tls::Identity::from_der(&field("cert.der"), &field("key.der")).map_err(|source| {
        KubeError::Tls {
            pod: secret_name,
            source,
        }
    })
}

async fn create_network_policy(
    config: &KubernetesConfig,
    name: &str,
    deployment: &Deployment,
    port: i32,
) {
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    let pod_labels = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let host_labels = std::env::var("INTERCOM_HOST_POD_LABELS").ok();
    let from = match host_labels {
        Some(labels) => {
            serde_json::json!([{ "podSelector": { "matchLabels": parse_labels(&labels) } }])
        }
        None => {
            serde_json::json!([{ "podSelector": { "matchLabels": { super::objects::HOST_LABEL: "none" } } }])
        }
    };
    let policy: Result<NetworkPolicy, _> = serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": name,
            "ownerReferences": owner_reference(deployment).into_iter().collect::<Vec<_>>(),
            "labels": { super::objects::MANAGED_BY_LABEL: super::objects::MANAGED_BY },
        },
        "spec": {
            "podSelector": { "matchLabels": pod_labels },
            "policyTypes": ["Ingress"],
            "ingress": [{ "from": from, "ports": [{ "port": port, "protocol": "TCP" }] }],
        }
    }));
    if let Ok(policy) = policy {
        let api: Api<NetworkPolicy> = Api::namespaced(config.client.clone(), &config.namespace);
        if let Err(err) = api.create(&PostParams::default(), &policy).await {
            tracing::warn!(
                error = &err as &dyn std::error::Error,
                "failed to create the plugin NetworkPolicy"
            );
        }
    }
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    s.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Creates `obj`, retrying as `retry` says. A conflict (409) on an object that carries
/// this launch's instance label is an earlier attempt that succeeded though its answer
/// was lost (a timeout): that object is ours and is adopted. Any other conflict is an
/// error (the name belongs to something else).
async fn create_or_adopt<K>(
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

fn is_instance<K: kube::Resource>(obj: &K, instance: &str) -> bool {
    obj.meta()
        .labels
        .as_ref()
        .and_then(|l| l.get(INSTANCE_LABEL))
        .is_some_and(|v| v == instance)
}

/// Deletes a just-created Deployment when dropped armed (a cancelled start).
struct DeleteOnDrop {
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
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    let _ = tokio::time::timeout(
                        API_CALL_TIMEOUT,
                        api.delete(&name, &DeleteParams::foreground()),
                    )
                    .await;
                });
            }
            Err(_) => tracing::warn!(
                deployment = %name,
                "plugin start cancelled outside a tokio runtime; its Deployment is left running"
            ),
        }
    }
}

async fn with_retry<T, F, Fut>(retry: Retry, mut op: F) -> Result<T, kube::Error>
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
            Err(e) if attempt < retry.steps && super::is_retryable_kube_api_error(&e) => {
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
        let res: Result<(), _> = with_retry(super::super::DEFAULT_RETRY, || {
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
        let res: Result<(), _> = with_retry(super::super::DEFAULT_RETRY, || {
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

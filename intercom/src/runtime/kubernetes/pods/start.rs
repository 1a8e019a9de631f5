//! Waiting for the first replica: the watch task runs, the start waits on its progress.

use super::*;

pub(super) async fn connect_all(
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
    let mut cancelled = CancelGuard(Some(plugin.clone()));
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
    cancelled.0 = None;
    let version = match outcome {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            plugin.delete_after_failed_start().await;
            return Err(e);
        }
        Err(_) => {
            let step = match &*start_rx.borrow() {
                Start::Waiting(step) => *step,
                _ => "connecting",
            };
            plugin.delete_after_failed_start().await;
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

/// Shuts the plugin down and deletes it when the start is cancelled while it waits (its
/// future dropped): the watch task and the replicas' tasks hold the plugin, so dropping
/// the start's own handle would not.
struct CancelGuard(Option<Arc<KubePlugin>>);

impl Drop for CancelGuard {
    fn drop(&mut self) {
        let Some(plugin) = self.0.take() else {
            return;
        };
        let deployment = plugin.deployment.clone();
        spawn_cleanup(&deployment, "plugin start cancelled", async move {
            let _ = plugin.shutdown_and_delete().await;
        });
    }
}

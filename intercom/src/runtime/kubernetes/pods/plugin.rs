//! The plugin handle: graceful shutdown of every replica, then deletion.

use super::*;

impl KubePlugin {
    /// `deployment`: its name and UID.
    pub(super) fn new(
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

    pub(super) fn selector(&self) -> String {
        format!("{INSTANCE_LABEL}={}", self.instance)
    }

    pub(super) fn remove_leg(&self, pod: &str) {
        if lock(&self.legs).remove(pod).is_some() {
            self.balancer.remove(pod);
            self.group.remove(pod);
            tracing::debug!(deployment = %self.deployment, pod, "replica left");
        }
    }

    /// Starts renewing `own` Lease (if any) and reaping the namespace's abandoned plugins.
    pub(super) fn keep_lease(&self, config: &KubernetesConfig, own: Option<String>) {
        let leases = Api::namespaced(config.client.clone(), &self.namespace);
        let task = tokio::spawn(lease::keep(
            leases,
            self.deployments.clone(),
            own,
            config
                .host_lease
                .max(crate::runtime::kubernetes::lease::MIN_HOST_LEASE),
        ));
        *lock(&self.keeper) = Some(task.abort_handle());
    }

    pub(super) fn stop_tasks(&self) {
        for task in [&self.watcher, &self.keeper] {
            if let Some(t) = lock(task).take() {
                t.abort();
            }
        }
    }

    pub(super) fn mark_exited(&self) {
        self.balancer.close();
        let _ = self.exited.send(true);
    }

    /// Deletes the Deployment (unless only reattached) and the Service, and waits until
    /// the pods are gone.
    ///
    /// The deletion's SIGTERM is the replicas' graceful shutdown (`serve` treats it as
    /// go-plugin's `Shutdown`; go-plugin's Go plugins exit on it): no Shutdown request is
    /// sent. A replica that exits on a Shutdown request before its kubelet has seen the
    /// deletion is restarted (`restartPolicy: Always`), and the new process may miss the
    /// deletion's SIGTERM while it starts (a container's PID 1 discards a signal it has
    /// no handler for yet) and run out the termination grace period: a real kubelet
    /// learns of the deletion only after the apiserver, so even waiting for the pods'
    /// deletionTimestamp first left that window open (seen on containerd + kubelet
    /// v1.35: `e2e_kill_restarts_no_container`).
    pub(super) async fn shutdown_and_delete(&self) -> std::io::Result<()> {
        if self.closed.is_cancelled() {
            return Ok(());
        }
        self.closed.cancel();
        if !self.delete_on_kill {
            // Only disconnecting (a reattached client): leave the plugin running.
            self.disconnect();
            return Ok(());
        }
        self.delete_objects().await?;
        self.disconnect();
        self.wait_deleted().await
    }

    /// The clean-up of a start that failed: deletes the objects like
    /// [`shutdown_and_delete`](Self::shutdown_and_delete) but does not wait for the pods to
    /// go. The apiserver has the deletion; a plugin that failed its start may not handle
    /// SIGTERM (it may not have reached `serve`) and, as its container's PID 1, would hold
    /// the error back for the whole termination grace period.
    pub(super) async fn delete_after_failed_start(&self) {
        if self.closed.is_cancelled() {
            return;
        }
        self.closed.cancel();
        if self.delete_on_kill
            && let Err(error) = self.delete_objects().await
        {
            tracing::warn!(deployment = %self.deployment, %error, "failed to delete the plugin after its failed start");
        }
        self.disconnect();
    }

    /// Waits (bounded) until the Deployment, the Service and the pods are gone.
    async fn wait_deleted(&self) -> std::io::Result<()> {
        let gone = async {
            wait_gone(&self.deployments, &self.deployment).await;
            wait_gone(&self.services, &self.service).await;
            self.wait_pods(<[Pod]>::is_empty).await;
        };
        tokio::time::timeout(DELETE_TIMEOUT, gone)
            .await
            .map_err(|_| {
                std::io::Error::other(format!(
                    "plugin Deployment {} was not gone within 120 s",
                    self.deployment
                ))
            })
    }

    /// Drops every connection and background task, and reports the plugin exited.
    fn disconnect(&self) {
        self.stop_tasks();
        lock(&self.legs).clear();
        self.broker.close();
        self.mark_exited();
    }

    /// Deletes the Deployment in the foreground (its pods are deleted before it goes), and
    /// the Service now rather than through the garbage collector.
    async fn delete_objects(&self) -> std::io::Result<()> {
        let foreground = DeleteParams::foreground();
        let delete = self.deployments.delete(&self.deployment, &foreground);
        match tokio::time::timeout(API_CALL_TIMEOUT, delete).await {
            Ok(Ok(_)) => {}
            Ok(Err(kube::Error::Api(s))) if s.code == 404 => {}
            Ok(Err(e)) => {
                self.disconnect();
                return Err(std::io::Error::other(e));
            }
            Err(_) => {
                self.disconnect();
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "the apiserver did not answer the delete of plugin Deployment {}/{} within {API_CALL_TIMEOUT:?}; it is left running (delete it, or reattach with delete_on_kill)",
                        self.namespace, self.deployment
                    ),
                ));
            }
        }
        let _ = tokio::time::timeout(
            API_CALL_TIMEOUT,
            self.services
                .delete(&self.service, &DeleteParams::background()),
        )
        .await;
        Ok(())
    }

    /// Waits until `done` holds for the plugin's own pods (by owner UID: others may carry
    /// its labels), looking again on each change; also returns when they cannot be
    /// listed. No timeout: the caller adds one.
    async fn wait_pods(&self, done: impl Fn(&[Pod]) -> bool) {
        let lp = ListParams::default().labels(&self.selector());
        let mut changes = watcher(
            self.pods.clone(),
            watcher::Config::default()
                .labels(&self.selector())
                .timeout(5),
        )
        .default_backoff()
        .boxed();
        loop {
            match self.pods.list(&lp).await {
                Ok(list) => {
                    let own: Vec<Pod> = list
                        .items
                        .into_iter()
                        .filter(|p| self.owners.trusts(p))
                        .collect();
                    if done(&own) {
                        return;
                    }
                }
                Err(_) => return,
            }
            let _ = tokio::time::timeout(POD_RECHECK, changes.next()).await;
        }
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
        spawn_cleanup(
            &self.deployment,
            "plugin client dropped",
            delete_quietly(self.deployments.clone(), self.deployment.clone()),
        );
    }
}

pub(super) async fn wait_gone<K>(api: &Api<K>, name: &str)
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
}

//! Watching the plugin's pods (and EndpointSlices) and deciding what each change means:
//! a replica to connect, one that left, or a failure to report.

use super::*;

/// The plugin's watch loop: pods (and EndpointSlices in `Endpoints` mode) and the
/// Deployment; runs until the plugin is killed or its Deployment deleted.
pub(super) async fn watch_plugin(
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
            ev = deployments.next() => if deployment_changed(&shared, ev) {
                return;
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
                *lock(&shared.endpoints) = merged;
                evaluate_all(&shared, &retry_tx).await;
            }
            Some(pod) = retry_rx.recv() => {
                evaluate(&shared, &pod, &retry_tx).await;
            }
            Some(ev) = replica_sets.next() => match plugin.owners.take(ev) {
                Ok(true) => evaluate_all(&shared, &retry_tx).await,
                Ok(false) => {}
                Err(err) => fail_waiting_start(&shared, err),
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

/// Looks at every known pod again (the endpoints or the trusted ReplicaSets changed).
async fn evaluate_all(shared: &Arc<Shared>, retry_tx: &tokio::sync::mpsc::UnboundedSender<String>) {
    let names: Vec<String> = lock(&shared.seen).keys().cloned().collect();
    for name in names {
        evaluate(shared, &name, retry_tx).await;
    }
}

/// A change of the plugin's Deployment: a failure to report while starting, or its
/// deletion (`true`: the watch ends).
fn deployment_changed(
    shared: &Shared,
    ev: Option<Result<watcher::Event<Deployment>, watcher::Error>>,
) -> bool {
    let plugin = &shared.plugin;
    match ev {
        Some(Ok(watcher::Event::Delete(_))) => {
            tracing::debug!(deployment = %plugin.deployment, "plugin Deployment deleted");
            plugin.mark_exited();
            let _ = shared.start.send(failed(KubeError::Deleted {
                deployment: plugin.deployment.clone(),
            }));
            true
        }
        Some(Ok(watcher::Event::Apply(d) | watcher::Event::InitApply(d))) => {
            if let Some(message) = progress_deadline_exceeded(&d) {
                fail_waiting_start(
                    shared,
                    KubeError::ProgressDeadlineExceeded {
                        deployment: plugin.deployment.clone(),
                        message,
                    },
                );
            }
            if let Some((reason, message)) = replica_failure(&d) {
                fail_waiting_start(
                    shared,
                    KubeError::PodsRejected {
                        deployment: plugin.deployment.clone(),
                        reason,
                        message,
                    },
                );
            }
            false
        }
        _ => false,
    }
}

/// `ServiceDns`: when the one connection through the Service is gone (its pod left or is
/// not ready), looks at the other ready replicas again so that one of them dials anew.
pub(super) fn redial_through_service(
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
pub(super) fn ready_endpoints(slice: &EndpointSlice) -> BTreeMap<String, String> {
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
pub(super) async fn evaluate(
    shared: &Arc<Shared>,
    name: &str,
    retry: &tokio::sync::mpsc::UnboundedSender<String>,
) {
    let plugin = &shared.plugin;
    let Some(pod) = trusted_pod(shared, name, retry) else {
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
        report_pod_failure(shared, name, starting, reason, message).await;
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
    if !claim_connection(shared, name, &key, current.as_deref()) {
        return;
    }
    if starting {
        let _ = shared.start.send(Start::Waiting(
            "reading the handshake from the pod log and connecting",
        ));
    }
    let image_id = container.and_then(|c| Some(c.image_id).filter(|s| !s.is_empty()));
    spawn_connect(
        shared.clone(),
        name.to_string(),
        retry.clone(),
        address.unwrap_or_default(),
        key,
        image_id,
    );
}

/// The pod `name` as last seen, if it is the Deployment's. If not (gone, or not (yet)
/// known to be the Deployment's), what it had is dropped, and `None`.
fn trusted_pod(
    shared: &Shared,
    name: &str,
    retry: &tokio::sync::mpsc::UnboundedSender<String>,
) -> Option<Pod> {
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
        return None;
    };
    Some(pod)
}

/// A failing pod fails a start that waits (with the container's last log lines), and is
/// only warned about afterwards.
async fn report_pod_failure(
    shared: &Shared,
    name: &str,
    starting: bool,
    reason: String,
    message: String,
) {
    if starting {
        let logs = last_logs(&shared.plugin.pods, name, &shared.container).await;
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

/// Whether the ready replica `name` (container `key`, connected now as `current`) needs
/// a new connection, and this call is the one to make it: not while its container is
/// connected, yielded to another host, or (`ServiceDns`) pinned while the one connection
/// through the Service is up, nor while another attempt is in flight. A new container of
/// a connected pod drops the old connection.
fn claim_connection(shared: &Shared, name: &str, key: &str, current: Option<&str>) -> bool {
    let plugin = &shared.plugin;
    if current == Some(key) || lock(&shared.yielded).contains(key) {
        return false;
    }
    if shared.mode == ConnectMode::ServiceDns
        && current.is_none()
        && lock(&shared.pinned).get(name).map(|p| p.key.as_str()) == Some(key)
        && !lock(&plugin.legs).is_empty()
    {
        // Its certificate is pinned and the one connection through the Service is up.
        return false;
    }
    if current.is_some() {
        // Same pod, new container: a new plugin process with a new handshake.
        plugin.remove_leg(name);
    }
    lock(&shared.connecting).insert(name.to_string())
}

/// Connects to replica `name` in the background; a failure fails a waiting start when
/// retrying cannot help, else the replica is looked at again after
/// [`CONNECT_RETRY_DELAY`].
fn spawn_connect(
    shared: Arc<Shared>,
    name: String,
    retry: tokio::sync::mpsc::UnboundedSender<String>,
    address: String,
    key: String,
    image_id: Option<String>,
) {
    tokio::spawn(async move {
        let result = connect_pod(&shared, &name, address, key, image_id).await;
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
                        tokio::time::sleep(CONNECT_RETRY_DELAY).await;
                        let _ = retry.send(name);
                    });
                }
            }
        }
    });
}

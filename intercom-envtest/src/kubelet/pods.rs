//! Watches the pods bound to this node and feeds one worker per pod uid.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument as _;

use super::Shared;
use super::worker::{self, PodUpdate};

/// Runs until aborted; aborting drops every pod worker (which kills their processes).
pub(crate) async fn run(shared: Arc<Shared>) {
    let api: Api<Pod> = Api::all(shared.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", shared.node_name));
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    let mut workers: HashMap<String, watch::Sender<PodUpdate>> = HashMap::new();
    let mut tasks = JoinSet::new();
    let mut relist: Option<HashSet<String>> = None;
    let mut shutdown = shared.shutdown.subscribe();
    let shutdown = async move {
        // Err: the sender (in `shared`) is gone, which also means stop.
        let _ = shutdown.wait_for(|s| *s).await;
    };
    tokio::pin!(shutdown);

    let upsert = |pod: Pod,
                  workers: &mut HashMap<String, watch::Sender<PodUpdate>>,
                  tasks: &mut JoinSet<()>| {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let update = PodUpdate {
            pod: Arc::new(pod),
            removed: false,
        };
        match workers.get(&uid) {
            Some(tx) => {
                // A finished worker dropped its receiver; the entry goes with the Delete event.
                let _ = tx.send(update);
            }
            None => {
                let span = tracing::info_span!(
                    "pod",
                    pod = %format!(
                        "{}/{}",
                        update.pod.metadata.namespace.as_deref().unwrap_or_default(),
                        update.pod.metadata.name.as_deref().unwrap_or_default()
                    )
                );
                let (tx, rx) = watch::channel(update);
                tasks.spawn(worker::run(shared.clone(), rx).instrument(span));
                workers.insert(uid, tx);
            }
        }
    };
    let remove = |pod: Pod, workers: &mut HashMap<String, watch::Sender<PodUpdate>>| {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        if let Some(tx) = workers.remove(&uid) {
            let _ = tx.send(PodUpdate {
                pod: Arc::new(pod),
                removed: true,
            });
        }
    };

    loop {
        tokio::select! {
            () = &mut shutdown => {
                // Closing the channels tells every worker to stop its processes.
                workers.clear();
                while tasks.join_next().await.is_some() {}
                return;
            }
            event = events.next() => match event {
                Some(Ok(Event::Init)) => relist = Some(HashSet::new()),
                Some(Ok(Event::InitApply(pod))) => {
                    if let (Some(seen), Some(uid)) = (relist.as_mut(), pod.metadata.uid.clone()) {
                        seen.insert(uid);
                    }
                    upsert(pod, &mut workers, &mut tasks);
                }
                Some(Ok(Event::InitDone)) => {
                    if let Some(seen) = relist.take() {
                        let gone: Vec<String> = workers.keys().filter(|uid| !seen.contains(*uid)).cloned().collect();
                        for uid in gone {
                            if let Some(tx) = workers.remove(&uid) {
                                tx.send_modify(|u| u.removed = true);
                            }
                        }
                    }
                }
                Some(Ok(Event::Apply(pod))) => upsert(pod, &mut workers, &mut tasks),
                Some(Ok(Event::Delete(pod))) => remove(pod, &mut workers),
                Some(Err(error)) => {
                    tracing::warn!(error = &error as &dyn std::error::Error, "pod watch failed; retrying");
                }
                None => return,
            },
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(error) = joined
                    && error.is_panic()
                {
                    tracing::error!(error = &error as &dyn std::error::Error, "pod worker panicked");
                }
            }
        }
    }
}

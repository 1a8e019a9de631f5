//! The [`Target::Kubernetes`](super::Target::Kubernetes) start: a Deployment and Service
//! (or an adopted one), its replicas' handshakes read from their logs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use futures::future::BoxFuture;

use super::stop::{Stop, Stopped};
use super::{StartContext, Started, Target};
use crate::client::config::Offer;
use crate::client::{ClientError, Connection};
use crate::runtime::PluginHandle;
use crate::runtime::kubernetes::{self as k8s, KubeError, KubernetesConfig};
use crate::sync::lock;

impl From<KubernetesConfig> for Target {
    fn from(kube: KubernetesConfig) -> Self {
        Target::Kubernetes(Box::new(kube))
    }
}

/// Creates (or adopts) the Deployment and connects to its replicas: the broker rides the
/// one connection, each replica's stdio is pumped by the runtime.
pub(super) async fn start(
    kube: &KubernetesConfig,
    ctx: StartContext<'_>,
) -> Result<Started, ClientError> {
    let StartContext {
        name,
        config,
        handle: handle_slot,
        exited,
    } = ctx;
    let name = name.to_string();
    // Only one port of the pod is reachable: the broker must ride it.
    let Offer {
        host_versions,
        identity,
        env,
    } = config.offer(None, true)?;
    let started = Instant::now();
    let ctx = k8s::pods_context(
        name.clone(),
        env,
        identity,
        host_versions,
        config.start_timeout,
        config.sync_stdout.take(),
        config.sync_stderr.take(),
    );
    let result = match &kube.reattach {
        Some(deployment) => k8s::reattach(kube, deployment, ctx).await,
        None => k8s::launch(kube, ctx).await,
    };
    let (conn, plugin, version) = result.map_err(|e| match e {
        KubeError::Timeout {
            deployment, step, ..
        } => KubeError::Timeout {
            deployment,
            step,
            waited: started.elapsed(),
        },
        other => other,
    })?;
    let handle: Arc<dyn PluginHandle> = Arc::new(plugin);
    *lock(handle_slot) = Some(handle.clone());
    let mut tasks = tokio::task::JoinSet::new();
    {
        let exited = exited.clone();
        let wait = handle.wait();
        tasks.spawn(async move {
            wait.await;
            exited.store(true, std::sync::atomic::Ordering::SeqCst);
        });
    }
    tracing::debug!(plugin = %name, version, elapsed = ?started.elapsed(), "plugin connected on Kubernetes");
    Ok(Started {
        conn: Arc::new(conn),
        version,
        tasks,
        stop: Box::new(RuntimeStop(handle)),
    })
}

/// Stops a plugin on Kubernetes the runtime's way: every replica is asked to shut down
/// over its own connection, then the objects are deleted (the handle's `kill` does it
/// all). The replicas' pumps are the runtime's, ended by then.
struct RuntimeStop(Arc<dyn PluginHandle>);

impl Stop for RuntimeStop {
    fn stop<'a>(
        &'a self,
        _conn: &'a Connection,
        name: &'a str,
        _kill_timeout: Duration,
    ) -> BoxFuture<'a, Stopped> {
        async move {
            if let Err(err) = self.0.kill().await {
                tracing::warn!(plugin = %name, error = &err as &dyn std::error::Error, "failed to stop plugin");
            }
            Stopped {
                gone: true,
                flush_pumps: false,
            }
        }
        .boxed()
    }
}

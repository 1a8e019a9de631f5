//! The one seam every runtime starts through. A [`Target`] names what a client starts;
//! each kind's `start` (one module each) launches or finds the plugin, reads or skips the
//! handshake, connects, and returns a [`Started`]. The client then does what is the same
//! for all of them once: the dispense set, the broker session, the stdio pump.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use tokio::task::JoinSet;

use super::{ClientConfig, ClientError, ReattachConfig};
use crate::connection::Conn;
use crate::runtime::{Launcher, PluginHandle};

mod deadline;
#[cfg(feature = "kubernetes")]
mod kubernetes;
mod launch;
mod reattach;
mod stop;

pub(super) use stop::Stop;

/// The one thing a client starts (go-plugin's `Cmd`/`RunnerFunc` and `Reattach`, as one
/// choice rather than fields of which exactly one must be set).
///
/// Anything that converts into a target can be passed to [`ClientConfig::new`]: any
/// [`Launcher`], a [`ReattachConfig`], or (feature `kubernetes`) a `KubernetesConfig`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Target {
    /// Launch the plugin with a [`Launcher`] and read its handshake from stdout.
    Launch(Arc<dyn Launcher>),
    /// Connect to a plugin that already runs; no handshake is performed.
    Reattach(ReattachConfig),
    /// Run the plugin on Kubernetes, as a Deployment and Service (or adopt a running one).
    #[cfg(feature = "kubernetes")]
    #[cfg_attr(docsrs, doc(cfg(feature = "kubernetes")))]
    Kubernetes(Box<crate::runtime::kubernetes::KubernetesConfig>),
}

impl Target {
    /// The name the target suggests for logs and errors: the launcher's name, or the
    /// Deployment's. A reattached plugin suggests none.
    pub fn name(&self) -> Option<String> {
        match self {
            Target::Launch(launcher) => Some(launcher.name()),
            Target::Reattach(_) => None,
            #[cfg(feature = "kubernetes")]
            Target::Kubernetes(kube) => kube.name(),
        }
    }

    /// Starts this target: on error, nothing it started still runs.
    pub(super) async fn start(&self, ctx: StartContext<'_>) -> Result<Started, ClientError> {
        match self {
            Target::Launch(launcher) => launch::start(launcher.as_ref(), ctx).await,
            Target::Reattach(reattach) => reattach::start(reattach, ctx).await,
            #[cfg(feature = "kubernetes")]
            Target::Kubernetes(kube) => kubernetes::start(kube, ctx).await,
        }
    }
}

impl<L: Launcher> From<L> for Target {
    fn from(launcher: L) -> Self {
        Target::Launch(Arc::new(launcher))
    }
}

impl From<Arc<dyn Launcher>> for Target {
    fn from(launcher: Arc<dyn Launcher>) -> Self {
        Target::Launch(launcher)
    }
}

impl From<ReattachConfig> for Target {
    fn from(reattach: ReattachConfig) -> Self {
        Target::Reattach(reattach)
    }
}

/// What a target's start borrows from its client.
pub(super) struct StartContext<'a> {
    /// The plugin's name in logs and errors.
    pub(super) name: &'a str,
    /// The settings: the target reads them and takes the writers it pumps into.
    pub(super) config: &'a mut ClientConfig,
    /// Where a target publishes what runs as soon as it runs, so `Client::id` names it
    /// and `Client::kill` reaches it whatever happens next.
    pub(super) handle: &'a Mutex<Option<Arc<dyn PluginHandle>>>,
    /// Set once the plugin is known to be gone.
    pub(super) exited: &'a Arc<AtomicBool>,
}

/// What a started target hands its client.
pub(super) struct Started {
    /// The connection, its broker and (multiplexed) session not yet running.
    pub(super) conn: Arc<Conn>,
    /// The negotiated app protocol version: picks the dispense set.
    pub(super) version: u32,
    /// The target's background tasks (pumps, exit watches); the client adds its own.
    pub(super) tasks: JoinSet<()>,
    /// How `kill` stops what the target started.
    pub(super) stop: Box<dyn Stop>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::{HandshakeConfig, Network};
    use crate::plugin::PluginSet;
    use crate::runtime::ProcessLauncher;
    use crate::{Client, ClientConfig};

    const HANDSHAKE: HandshakeConfig = HandshakeConfig::new(1, "TARGET_TEST", "1");

    /// Each kind converts into its target, and the client is named after what it starts
    /// unless a name is given.
    #[test]
    fn each_target_kind_converts_and_names_its_client() {
        let launch = ClientConfig::new(
            HANDSHAKE,
            PluginSet::new(),
            ProcessLauncher::new("/opt/plugins/kv-plugin"),
        );
        assert!(matches!(launch.target, Target::Launch(_)));
        assert_eq!(Client::new(launch).name(), "kv-plugin");

        let reattach = ReattachConfig::new(1, Network::Unix, "/tmp/plugin.sock");
        let config = ClientConfig::new(HANDSHAKE, PluginSet::new(), reattach.clone());
        assert!(matches!(&config.target, Target::Reattach(r) if *r == reattach));
        assert_eq!(Client::new(config).name(), "plugin");

        let named = ClientConfig::new(HANDSHAKE, PluginSet::new(), reattach).name("kv");
        assert_eq!(Client::new(named).name(), "kv");
    }
}

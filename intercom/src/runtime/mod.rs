//! Where a plugin runs. The host-side [`Client`](crate::Client) talks to a [`Launcher`]
//! (go-plugin's `Runner`): start with an environment, read stdout/stderr, wait, kill, and
//! translate addresses. [`process`] is the embedded default.

use std::fmt;
use std::io;
use std::pin::Pin;

use futures::future::BoxFuture;
use tokio::io::AsyncRead;

#[cfg(feature = "kubernetes")]
#[cfg_attr(docsrs, doc(cfg(feature = "kubernetes")))]
pub mod kubernetes;
pub mod process;

pub use process::{Hash, PluginStdin, ProcessLauncher, SecureConfig};

/// A byte stream from the plugin (its stdout or stderr).
pub type Output = Pin<Box<dyn AsyncRead + Send + 'static>>;

/// Starts plugins. Implemented by [`ProcessLauncher`]; the Kubernetes runtime plugs in here.
pub trait Launcher: Send + Sync + fmt::Debug + 'static {
    /// A short name for logs (e.g. the executable's file name).
    fn name(&self) -> String;

    /// Starts the plugin with `env` added to its environment.
    ///
    /// # Cancel safety
    /// Dropping the future before it resolves must leave nothing running.
    fn launch(&self, env: Vec<(String, String)>) -> BoxFuture<'_, Result<Launched, LaunchError>>;
}

/// A started plugin and its output streams.
#[non_exhaustive]
pub struct Launched {
    /// Control over the running plugin.
    pub handle: Box<dyn PluginHandle>,
    /// Its stdout: the first line is the handshake.
    pub stdout: Output,
    /// Its stderr: log lines.
    pub stderr: Output,
}

impl fmt::Debug for Launched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Launched")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

impl Launched {
    /// Bundles a handle and its streams.
    pub fn new(handle: Box<dyn PluginHandle>, stdout: Output, stderr: Output) -> Self {
        Self {
            handle,
            stdout,
            stderr,
        }
    }
}

/// Control over one running plugin.
pub trait PluginHandle: Send + Sync + fmt::Debug + 'static {
    /// An id: the pid for processes, the Deployment name for pods.
    fn id(&self) -> String;

    /// Resolves when the plugin has exited, with how it ended. May be called many times.
    fn wait(&self) -> BoxFuture<'static, ExitInfo>;

    /// Whether it has exited.
    fn exited(&self) -> bool;

    /// Forcefully stops it (and anything it started) and waits until it is gone.
    fn kill(&self) -> BoxFuture<'_, io::Result<()>>;

    /// The address the host should dial for one the plugin announced (go-plugin's
    /// `AddrTranslator::PluginToHost`); identity by default.
    fn plugin_to_host(&self, network: &str, address: &str) -> (String, String) {
        (network.to_string(), address.to_string())
    }
}

/// How a plugin ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ExitInfo {
    /// Exit code, when it exited normally.
    pub code: Option<i32>,
    /// Signal number, when a signal ended it.
    pub signal: Option<i32>,
}

impl fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(c), _) => write!(f, "exit status {c}"),
            (None, Some(s)) => write!(f, "killed by signal {s}"),
            (None, None) => f.write_str("unknown exit status"),
        }
    }
}

/// Failures to start a plugin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    /// The executable could not be started.
    #[error("failed to start plugin `{program}`: check that the path exists and is executable")]
    Spawn {
        /// What was run.
        program: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `SecureConfig` has no checksum.
    #[error(
        "no checksum provided in SecureConfig: set `checksum` to the plugin binary's expected digest"
    )]
    MissingChecksum,
    /// `SecureConfig` has no hash algorithm.
    #[error("no hash implementation provided in SecureConfig: set `hash` (e.g. Hash::Sha256)")]
    MissingHash,
    /// The binary on disk is not the expected one.
    #[error(
        "checksums did not match for plugin binary {path}: expected {expected}, found {actual}; the binary was changed or the configured checksum is stale"
    )]
    ChecksumMismatch {
        /// The binary.
        path: String,
        /// Expected digest (hex).
        expected: String,
        /// Actual digest (hex).
        actual: String,
    },
    /// The binary could not be read for hashing.
    #[error("error verifying checksum of plugin binary {path}")]
    Checksum {
        /// The binary.
        path: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The plugin's private unix socket directory could not be made.
    #[error("failed to prepare the plugin's unix socket directory")]
    SocketDir(#[from] crate::unix_socket::SocketDirError),
    /// Any other runtime's failure.
    #[error("failed to launch plugin")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

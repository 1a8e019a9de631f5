//! The embedded default: the plugin as a local subprocess.
//!
//! The child runs in its own process group, so a kill reaches whatever it started
//! (`sh -c "…"` wrappers included) and Ctrl-C in the host's terminal does not reach it.
//! Kill and drop both signal the whole group and the child is always reaped.
//!
//! No orphans: on Linux the kernel kills the plugin when the host process dies, even by
//! SIGKILL (the parent-death signal, see [`ProcessLauncher::outlive_host`]); a Rust plugin
//! also watches its parent and shuts down when it is gone, on every Unix.
//!
//! Each launch gets a private unix socket directory (`0700`, or `0770` for the group of
//! [`ProcessLauncher::unix_socket_group`]) passed as `PLUGIN_UNIX_SOCKET_DIR`, as go-plugin
//! does; it is removed when the plugin is killed or its last handle is dropped, together
//! with any socket the plugin left in it.

mod handle;
mod secure;
mod spawn;

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;
use std::process::Stdio;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::watch;

pub use self::handle::ProcessHandle;
pub use self::secure::{Hash, SecureConfig};
use super::{ExitInfo, LaunchError, Launched, Launcher};
use crate::transport::env::{UNIX_SOCKET_DIR, UNIX_SOCKET_GROUP};
use crate::unix_socket::{self, SocketGroup};

/// What a plugin process reads on its stdin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PluginStdin {
    /// `/dev/null` (the default): a plugin cannot read the host's terminal or input.
    #[default]
    Null,
    /// The host's own stdin, as go-plugin does (`cmd.Stdin = os.Stdin`).
    Inherit,
}

/// Runs the plugin as a local process.
///
/// ```
/// use intercom::runtime::ProcessLauncher;
/// let direct = ProcessLauncher::new("./target/debug/kv-plugin").arg("--verbose");
/// let shell = ProcessLauncher::shell("exec ./kv-plugin"); // like go-plugin's examples: sh -c
/// ```
#[derive(Debug, Clone)]
pub struct ProcessLauncher {
    program: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    cwd: Option<PathBuf>,
    skip_host_env: bool,
    secure: Option<SecureConfig>,
    socket_base: Option<PathBuf>,
    socket_group: Option<SocketGroup>,
    outlive_host: bool,
    stdin: PluginStdin,
}

impl ProcessLauncher {
    /// Runs `program` (a path, or a name looked up in `PATH`).
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            envs: Vec::new(),
            cwd: None,
            skip_host_env: false,
            secure: None,
            socket_base: None,
            socket_group: None,
            outlive_host: false,
            stdin: PluginStdin::Null,
        }
    }

    /// Runs `command` through `sh -c`, as go-plugin's example hosts do.
    pub fn shell(command: impl Into<OsString>) -> Self {
        Self::new("sh").arg("-c").arg(command)
    }

    /// Adds an argument.
    #[must_use]
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments.
    #[must_use]
    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable (the SDK's own variables are added after, and win).
    #[must_use]
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Sets the working directory.
    #[must_use]
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Starts the plugin with only the variables set here and the SDK's, not the host's
    /// environment (go-plugin's `SkipHostEnv`).
    #[must_use]
    pub fn skip_host_env(mut self, skip: bool) -> Self {
        self.skip_host_env = skip;
        self
    }

    /// Verifies the executable against a digest before every start.
    #[must_use]
    pub fn secure(mut self, secure: SecureConfig) -> Self {
        self.secure = Some(secure);
        self
    }

    /// Makes each plugin's private socket directory inside `dir` instead of the temp dir
    /// (go-plugin's `UnixSocketConfig.TempDir`). `dir` must exist and be writable.
    #[must_use]
    pub fn unix_socket_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.socket_base = Some(dir.into());
        self
    }

    /// Gives `group` (a name or gid) access to the plugin's unix sockets (go-plugin's
    /// `UnixSocketConfig.Group`): the socket directory becomes `0770` owned by the group,
    /// and the plugin is told `PLUGIN_UNIX_SOCKET_GROUP` so its socket is `0660`. The host
    /// must be a member of the group. Without it, only the host's user can connect.
    #[must_use]
    pub fn unix_socket_group(mut self, group: impl Into<String>) -> Self {
        self.socket_group = Some(SocketGroup::new(group));
        self
    }

    /// Lets the plugin outlive the host process (default `false`: it dies with the host).
    ///
    /// By default the plugin gets the parent-death signal (SIGKILL when the host process
    /// dies; Linux), and a Rust plugin watches its parent too (`INTERCOM_OUTLIVE_HOST`
    /// turns that off). Set this for a plugin that a later host reattaches to after this
    /// one exits, as Nomad does with its executors.
    #[must_use]
    pub fn outlive_host(mut self, outlive: bool) -> Self {
        self.outlive_host = outlive;
        self
    }

    /// What the plugin reads on stdin (default [`PluginStdin::Null`]; go-plugin passes the
    /// host's stdin, [`PluginStdin::Inherit`]).
    #[must_use]
    pub fn stdin(mut self, stdin: PluginStdin) -> Self {
        self.stdin = stdin;
        self
    }

    fn resolved_program(&self) -> PathBuf {
        if self.program.components().count() > 1 {
            return self.program.clone();
        }
        std::env::var_os("PATH")
            .and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join(&self.program))
                    .find(|p| p.is_file())
            })
            .unwrap_or_else(|| self.program.clone())
    }
}

impl Launcher for ProcessLauncher {
    fn name(&self) -> String {
        self.program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "plugin".into())
    }

    fn launch(&self, env: Vec<(String, String)>) -> BoxFuture<'_, Result<Launched, LaunchError>> {
        async move {
            let program = self.resolved_program();
            if let Some(secure) = self.secure.clone() {
                let path = program.clone();
                tokio::task::spawn_blocking(move || secure.verify(&path))
                    .await
                    .map_err(|e| LaunchError::Other(Box::new(e)))??;
            }
            let base = self.socket_base.clone().unwrap_or_else(std::env::temp_dir);
            let group = self.socket_group.as_ref();
            let socket_dir =
                unix_socket::private_dir(&base, "plugin-dir", group, unix_socket::GROUP_HOST_DIR)?;
            let mut cmd = tokio::process::Command::new(&program);
            cmd.args(&self.args)
                .stdin(match self.stdin {
                    PluginStdin::Null => Stdio::null(),
                    PluginStdin::Inherit => Stdio::inherit(),
                })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .process_group(0);
            if self.skip_host_env {
                cmd.env_clear();
            }
            if let Some(dir) = &self.cwd {
                cmd.current_dir(dir);
            }
            cmd.envs(self.envs.iter().map(|(k, v)| (k, v)));
            cmd.env(UNIX_SOCKET_DIR, socket_dir.path());
            if let Some(group) = group {
                cmd.env(UNIX_SOCKET_GROUP, group.as_str());
            }
            if self.outlive_host {
                cmd.env(crate::serve::env::OUTLIVE_HOST, "1");
            }
            cmd.envs(env);
            let mut child = spawn::spawn(cmd, self.outlive_host)
                .await
                .map_err(|source| LaunchError::Spawn {
                    program: program.display().to_string(),
                    source,
                })?;
            let pid = child.id().unwrap_or_default();
            let (stdout, stderr) = match (child.stdout.take(), child.stderr.take()) {
                (Some(o), Some(e)) => (o, e),
                _ => {
                    let _ = child.start_kill();
                    return Err(LaunchError::Spawn {
                        program: program.display().to_string(),
                        source: io::Error::other("the child's stdout/stderr pipes are missing"),
                    });
                }
            };
            let (tx, rx) = watch::channel(None);
            let reaper = tokio::spawn(async move {
                let status = child.wait().await;
                let info = match status {
                    Ok(s) => {
                        use std::os::unix::process::ExitStatusExt;
                        ExitInfo {
                            code: s.code(),
                            signal: s.signal(),
                        }
                    }
                    Err(_) => ExitInfo::default(),
                };
                let _ = tx.send(Some(info));
            });
            let handle = ProcessHandle::new(pid, rx, reaper.abort_handle(), socket_dir);
            tracing::debug!(pid, program = %program.display(), "plugin process started");
            Ok(Launched::new(
                Box::new(handle),
                Box::pin(stdout),
                Box::pin(stderr),
            ))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests;

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

mod secure;
mod spawn;

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::watch;

pub use self::secure::{Hash, SecureConfig};
use super::{ExitInfo, LaunchError, Launched, Launcher, PluginHandle};
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
            let handle = ProcessHandle {
                pid,
                exit: rx,
                reaper: Arc::new(Reaper {
                    task: reaper.abort_handle(),
                    socket_dir: Mutex::new(Some(socket_dir)),
                }),
            };
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

/// Kills the process group when the last handle goes away (the backstop for a host that
/// never called `kill`), and removes the plugin's socket directory.
struct Reaper {
    task: tokio::task::AbortHandle,
    /// Taken (removed) by `kill`, else dropped with the last handle.
    socket_dir: Mutex<Option<tempfile::TempDir>>,
}

impl Reaper {
    fn remove_socket_dir(&self) {
        let dir = self.socket_dir.lock().map(|mut d| d.take());
        if let Ok(Some(dir)) = dir
            && let Err(e) = dir.close()
        {
            tracing::debug!(error = %e, "could not remove the plugin's socket directory");
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        // The reaper task owns the Child (kill_on_drop); aborting it drops the Child,
        // which SIGKILLs the leader and lets tokio reap it in the background.
        self.task.abort();
        self.remove_socket_dir();
    }
}

/// A running plugin process.
#[derive(Clone)]
pub struct ProcessHandle {
    pid: u32,
    exit: watch::Receiver<Option<ExitInfo>>,
    reaper: Arc<Reaper>,
}

impl fmt::Debug for ProcessHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessHandle")
            .field("pid", &self.pid)
            .field("exit", &*self.exit.borrow())
            .finish()
    }
}

impl ProcessHandle {
    fn signal_group(&self, signal: nix::sys::signal::Signal) -> io::Result<()> {
        let Ok(pid) = i32::try_from(self.pid) else {
            return Ok(());
        };
        if pid <= 0 {
            return Ok(());
        }
        match nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(io::Error::from(e)),
        }
    }
}

impl Drop for ProcessHandle {
    fn drop(&mut self) {
        // Last clone of a still-running plugin: take the whole group down.
        if Arc::strong_count(&self.reaper) == 1 && self.exit.borrow().is_none() {
            let _ = self.signal_group(nix::sys::signal::Signal::SIGKILL);
        }
    }
}

impl PluginHandle for ProcessHandle {
    fn id(&self) -> String {
        self.pid.to_string()
    }

    fn wait(&self) -> BoxFuture<'static, ExitInfo> {
        let mut rx = self.exit.clone();
        async move {
            match rx.wait_for(Option::is_some).await {
                Ok(v) => v.unwrap_or_default(),
                Err(_) => ExitInfo::default(),
            }
        }
        .boxed()
    }

    fn exited(&self) -> bool {
        self.exit.borrow().is_some()
    }

    fn kill(&self) -> BoxFuture<'_, io::Result<()>> {
        async move {
            self.signal_group(nix::sys::signal::Signal::SIGKILL)?;
            self.wait().await;
            // Anything the leader left behind in its group.
            let _ = self.signal_group(nix::sys::signal::Signal::SIGKILL);
            self.reaper.remove_socket_dir();
            Ok(())
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn kill_takes_down_the_whole_group() {
        // `sh` starts a grandchild that prints its pid; killing must reach it too.
        let launcher = ProcessLauncher::shell("sleep 30 & echo $!; wait");
        let mut launched = launcher.launch(vec![]).await.unwrap();
        let mut buf = [0u8; 32];
        let n = launched.stdout.read(&mut buf).await.unwrap();
        let grandchild: i32 = std::str::from_utf8(&buf[..n])
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let leader: i32 = launched.handle.id().parse().unwrap();
        launched.handle.kill().await.unwrap();
        assert!(launched.handle.exited());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        for pid in [leader, grandchild] {
            let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
                && !is_zombie(pid);
            assert!(!alive, "pid {pid} survived kill");
        }
    }

    #[tokio::test]
    async fn drop_kills_the_process() {
        let launched = ProcessLauncher::new("sleep")
            .arg("30")
            .launch(vec![])
            .await
            .unwrap();
        let pid: i32 = launched.handle.id().parse().unwrap();
        drop(launched);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("pid {pid} still exists after drop");
    }

    #[tokio::test]
    async fn environment_is_inherited_unless_skipped() {
        let script = "echo ${INTERCOM_PROBE:-unset} ${SDK_VAR:-unset}";
        let read = |launcher: ProcessLauncher| async move {
            let mut launched = launcher
                .launch(vec![("SDK_VAR".into(), "sdk".into())])
                .await
                .unwrap();
            let mut out = String::new();
            launched.stdout.read_to_string(&mut out).await.unwrap();
            out.trim().to_string()
        };
        let with_env = ProcessLauncher::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .env("INTERCOM_PROBE", "set");
        assert_eq!(read(with_env.clone()).await, "set sdk");
        // skip_host_env drops the host's variables but keeps the launcher's own and the SDK's.
        let skipped = with_env.skip_host_env(true);
        assert_eq!(read(skipped).await, "set sdk");
        // cargo sets CARGO_PKG_NAME in the test process's environment.
        let probe = "echo ${CARGO_PKG_NAME:-none}";
        let inherit = ProcessLauncher::new("/bin/sh").arg("-c").arg(probe);
        assert_eq!(read(inherit.clone()).await, "intercom");
        assert_eq!(read(inherit.skip_host_env(true)).await, "none");
    }

    async fn first_line(out: &mut crate::runtime::Output) -> String {
        use tokio::io::AsyncBufReadExt;
        let mut line = String::new();
        tokio::io::BufReader::new(out)
            .read_line(&mut line)
            .await
            .unwrap();
        line.trim_end().to_string()
    }

    fn mode(path: &std::path::Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[tokio::test]
    async fn each_launch_gets_a_private_socket_dir_removed_on_kill_and_on_drop() {
        let base = tempfile::tempdir().unwrap();
        let launcher = ProcessLauncher::shell(r#"echo "$PLUGIN_UNIX_SOCKET_DIR"; exec sleep 30"#)
            .unix_socket_dir(base.path());
        let mut launched = launcher.launch(vec![]).await.unwrap();
        let dir = PathBuf::from(first_line(&mut launched.stdout).await);
        assert_eq!(
            dir.parent(),
            Some(base.path()),
            "made inside unix_socket_dir"
        );
        assert_eq!(mode(&dir), 0o700);
        // What go-plugin's multiplexer leaves behind: its socket is never removed.
        std::fs::write(dir.join("plugin123.sock"), b"").unwrap();
        launched.handle.kill().await.unwrap();
        assert!(!dir.exists(), "kill removes the socket directory");

        let mut launched = launcher.launch(vec![]).await.unwrap();
        let dir = PathBuf::from(first_line(&mut launched.stdout).await);
        assert!(dir.exists());
        drop(launched);
        assert!(!dir.exists(), "dropping the last handle removes it");
        assert_eq!(std::fs::read_dir(base.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn a_unix_socket_group_owns_the_dir_and_is_passed_to_the_plugin() {
        use std::os::unix::fs::MetadataExt;
        let gid = nix::unistd::getegid().as_raw();
        let script =
            r#"echo "$PLUGIN_UNIX_SOCKET_DIR"; echo "$PLUGIN_UNIX_SOCKET_GROUP"; exec sleep 30"#;
        let launcher = ProcessLauncher::shell(script).unix_socket_group(gid.to_string());
        let launched = launcher.launch(vec![]).await.unwrap();
        let mut out = tokio::io::BufReader::new(launched.stdout);
        let mut dir = String::new();
        let mut group = String::new();
        use tokio::io::AsyncBufReadExt;
        out.read_line(&mut dir).await.unwrap();
        out.read_line(&mut group).await.unwrap();
        let dir = PathBuf::from(dir.trim_end());
        assert_eq!(mode(&dir), 0o770);
        assert_eq!(std::fs::metadata(&dir).unwrap().gid(), gid);
        assert_eq!(group.trim_end(), gid.to_string());
        launched.handle.kill().await.unwrap();
        assert!(!dir.exists());
    }

    #[tokio::test]
    async fn an_unknown_unix_socket_group_fails_the_launch_before_spawning() {
        let base = tempfile::tempdir().unwrap();
        let err = ProcessLauncher::new("true")
            .unix_socket_dir(base.path())
            .unix_socket_group("no-such-group-intercom-test")
            .launch(vec![])
            .await
            .unwrap_err();
        assert!(matches!(err, LaunchError::SocketDir(_)), "{err:?}");
        assert_eq!(std::fs::read_dir(base.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn stdin_is_null_unless_inherited() {
        let script = r#"readlink /proc/self/fd/0"#;
        let mut null = ProcessLauncher::shell(script).launch(vec![]).await.unwrap();
        assert_eq!(first_line(&mut null.stdout).await, "/dev/null");
        let ours = std::fs::read_link("/proc/self/fd/0").unwrap();
        let mut inherited = ProcessLauncher::shell(script)
            .stdin(PluginStdin::Inherit)
            .launch(vec![])
            .await
            .unwrap();
        assert_eq!(
            first_line(&mut inherited.stdout).await,
            ours.display().to_string()
        );
    }

    fn is_zombie(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|rest| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(true)
    }
}

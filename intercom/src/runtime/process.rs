//! The embedded default: the plugin as a local subprocess.
//!
//! The child runs in its own process group, so a kill reaches whatever it started
//! (`sh -c "…"` wrappers included) and Ctrl-C in the host's terminal does not reach it.
//! Kill and drop both signal the whole group and the child is always reaped.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use sha2::Digest;
use tokio::sync::watch;

use super::{ExitInfo, LaunchError, Launched, Launcher, PluginHandle};

/// Hash algorithms for [`SecureConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Hash {
    /// SHA-256.
    Sha256,
}

/// Pins the plugin binary to a digest (go-plugin's `SecureConfig`): the file about to be
/// executed is hashed first and must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SecureConfig {
    /// Expected digest bytes.
    pub checksum: Option<Vec<u8>>,
    /// The algorithm.
    pub hash: Option<Hash>,
}

impl SecureConfig {
    /// SHA-256 pinning to `checksum`.
    pub fn sha256(checksum: impl Into<Vec<u8>>) -> Self {
        Self {
            checksum: Some(checksum.into()),
            hash: Some(Hash::Sha256),
        }
    }

    fn verify(&self, path: &Path) -> Result<(), LaunchError> {
        let expected = self
            .checksum
            .as_deref()
            .filter(|c| !c.is_empty())
            .ok_or(LaunchError::MissingChecksum)?;
        let hash = self.hash.ok_or(LaunchError::MissingHash)?;
        let bytes = std::fs::read(path).map_err(|source| LaunchError::Checksum {
            path: path.display().to_string(),
            source,
        })?;
        let actual = match hash {
            Hash::Sha256 => sha2::Sha256::digest(&bytes).to_vec(),
        };
        // Constant-time compare: the digest is not secret, but this costs nothing.
        let same = actual.len() == expected.len()
            && actual
                .iter()
                .zip(expected)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if same {
            Ok(())
        } else {
            Err(LaunchError::ChecksumMismatch {
                path: path.display().to_string(),
                expected: hex::encode(expected),
                actual: hex::encode(actual),
            })
        }
    }
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
            let mut cmd = tokio::process::Command::new(&program);
            cmd.args(&self.args)
                .stdin(Stdio::null())
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
            cmd.envs(env);
            let mut child = cmd.spawn().map_err(|source| LaunchError::Spawn {
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
                reaper: Arc::new(Reaper(reaper.abort_handle())),
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
/// never called `kill`).
struct Reaper(tokio::task::AbortHandle);

impl Drop for Reaper {
    fn drop(&mut self) {
        // The reaper task owns the Child (kill_on_drop); aborting it drops the Child,
        // which SIGKILLs the leader and lets tokio reap it in the background.
        self.0.abort();
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
            Ok(())
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[test]
    fn secure_config_errors_are_distinct() {
        let exe = std::env::current_exe().unwrap();
        assert!(matches!(
            SecureConfig::default().verify(&exe),
            Err(LaunchError::MissingChecksum)
        ));
        let no_hash = SecureConfig {
            checksum: Some(vec![1; 32]),
            hash: None,
        };
        assert!(matches!(
            no_hash.verify(&exe),
            Err(LaunchError::MissingHash)
        ));
        assert!(matches!(
            SecureConfig::sha256(vec![0; 32]).verify(&exe),
            Err(LaunchError::ChecksumMismatch { .. })
        ));
        let good = sha2::Sha256::digest(std::fs::read(&exe).unwrap()).to_vec();
        SecureConfig::sha256(good).verify(&exe).unwrap();
    }

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

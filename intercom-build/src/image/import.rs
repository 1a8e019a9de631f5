//! Handing an archive to a container runtime: containerd through `ctr`, kind through `kind`.

use std::io;
use std::path::Path;
use std::process::{Command, ExitStatus};

/// How many bytes of a failed tool's stderr an [`ImportError::ToolFailed`] keeps (the end).
const STDERR_TAIL: usize = 2000;

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The tool is not on `PATH`.
    #[error("`{tool}` was not found on PATH: {install}")]
    ToolMissing {
        /// `ctr` or `kind`.
        tool: &'static str,
        /// How to install it.
        install: &'static str,
    },
    /// The tool exists but could not be started.
    #[error("failed to start `{tool}`")]
    Spawn {
        /// `ctr` or `kind`.
        tool: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The tool ran and failed.
    #[error("`{}` failed ({status}): {stderr_tail}", command.join(" "))]
    ToolFailed {
        /// `ctr` or `kind`.
        tool: &'static str,
        /// The command line run.
        command: Vec<String>,
        /// Its exit status.
        status: ExitStatus,
        /// The end of its stderr.
        stderr_tail: String,
    },
}

/// Imports an OCI archive into the containerd listening on `socket`, in `namespace`
/// (`k8s.io` is the one the kubelet's CRI uses), with
/// `ctr -a <socket> -n <namespace> images import --all-platforms <archive>`.
///
/// `--all-platforms` imports the image whatever its platform: without it, containerd
/// 1.6's `ctr` filters out an image for another CPU and fails with "image might be
/// filtered out". The image is unpacked into the snapshotter `ctr` picks: its default, or
/// `$CONTAINERD_SNAPSHOTTER`.
///
/// # Errors
/// [`ImportError::ToolMissing`] without `ctr`; [`ImportError::ToolFailed`] with the end
/// of its stderr when the import fails (no daemon on `socket`, a bad archive).
pub fn import_into_containerd(
    archive: impl AsRef<Path>,
    socket: impl AsRef<Path>,
    namespace: &str,
) -> Result<(), ImportError> {
    let mut cmd = Command::new("ctr");
    cmd.arg("-a").arg(socket.as_ref()).args(["-n", namespace]);
    cmd.args(["images", "import", "--all-platforms"])
        .arg(archive.as_ref());
    run(
        "ctr",
        "install containerd, which ships `ctr` (Debian: `apt-get install containerd`)",
        cmd,
    )
}

/// Loads an OCI archive into every node of the kind cluster `cluster`, with
/// `kind load image-archive <archive> --name <cluster>`.
///
/// # Errors
/// [`ImportError::ToolMissing`] without `kind`; [`ImportError::ToolFailed`] with the end
/// of its stderr (no such cluster, no container engine).
pub fn load_into_kind(archive: impl AsRef<Path>, cluster: &str) -> Result<(), ImportError> {
    let mut cmd = Command::new("kind");
    cmd.args(["load", "image-archive"])
        .arg(archive.as_ref())
        .args(["--name", cluster]);
    let install = "install kind (`go install sigs.k8s.io/kind@latest`, or a release binary from \
                   https://kind.sigs.k8s.io/docs/user/quick-start/#installation)";
    run("kind", install, cmd)
}

fn run(tool: &'static str, install: &'static str, mut cmd: Command) -> Result<(), ImportError> {
    let output = cmd.output().map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => ImportError::ToolMissing { tool, install },
        _ => ImportError::Spawn { tool, source },
    })?;
    if output.status.success() {
        return Ok(());
    }
    let mut command = vec![tool.to_owned()];
    command.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    Err(ImportError::ToolFailed {
        tool,
        command,
        status: output.status,
        stderr_tail: tail(&String::from_utf8_lossy(&output.stderr), STDERR_TAIL),
    })
}

/// The last `max` bytes of `text` (cut at a char boundary), trimmed.
fn tail(text: &str, max: usize) -> String {
    let text = text.trim();
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text.get(start..).unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_end_on_a_char_boundary() {
        assert_eq!(tail("  hello\n", 100), "hello");
        assert_eq!(tail("ab€cd", 3), "cd");
        assert_eq!(tail("abcdef", 2), "ef");
    }

    #[test]
    fn a_missing_tool_says_what_to_install() {
        let cmd = Command::new("/nonexistent/intercom-no-such-tool");
        let err = run("ctr", "install containerd", cmd).err();
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(text, "`ctr` was not found on PATH: install containerd");
    }

    #[test]
    fn a_failing_tool_reports_its_stderr() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo boom >&2; exit 3"]);
        match run("kind", "", cmd) {
            Err(ImportError::ToolFailed {
                stderr_tail,
                command,
                ..
            }) => {
                assert_eq!(stderr_tail, "boom");
                assert_eq!(command[0], "kind");
            }
            other => panic!("expected ToolFailed, got {other:?}"),
        }
    }
}

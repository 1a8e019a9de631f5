//! `e2e_*`: an image built by `intercom_build::image` imported into a real, private
//! containerd (its own root, state, sockets and opt dir in a temp dir; no CRI plugin) and
//! run with runc. Needs root, `containerd`, `ctr` and `runc` on PATH (Debian:
//! `apt-get install containerd runc`); without them the test fails, it does not skip.
//! Nothing is left outside the temp dir but the (empty) `/run/containerd/s`, where
//! containerd 1.6 shims put their sockets whatever the config says.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use intercom_build::image::{ImageBuilder, Platform, import_into_containerd};

mod support;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const NAMESPACE: &str = "intercom-test";
const START_TIMEOUT: Duration = Duration::from_secs(30);
const CTR_TIMEOUT: Duration = Duration::from_secs(60);

/// A containerd of our own; `Drop` kills it and the shims it started and unmounts what
/// they left below its directory, even when the test fails.
struct Containerd {
    child: Child,
    socket: PathBuf,
    dir: tempfile::TempDir,
}

impl Containerd {
    fn start() -> Result<Self, Box<dyn std::error::Error>> {
        for tool in ["containerd", "ctr", "runc"] {
            let found = Command::new(tool)
                .arg("--version")
                .stdout(Stdio::null())
                .status()
                .is_ok();
            assert!(
                found,
                "`{tool}` is not on PATH: this test needs containerd and runc (Debian: apt-get install containerd runc)"
            );
        }
        let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:")?.split_whitespace().nth(1));
        assert_eq!(
            uid,
            Some("0"),
            "this test starts containerd and runs runc: run it as root"
        );
        // Unix socket paths are limited to ~108 bytes: keep the directory short.
        let dir = tempfile::Builder::new()
            .prefix("intercom-ctd")
            .tempdir_in("/tmp")?;
        let d = dir.path().display();
        let socket = dir.path().join("c.sock");
        let config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{d}/c.sock\"\n[ttrpc]\n  address = \"{d}/c.sock.ttrpc\"\n\
             [debug]\n  address = \"{d}/debug.sock\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{d}/opt\"\n"
        );
        fs::write(dir.path().join("config.toml"), config)?;
        let log = fs::File::create(dir.path().join("containerd.log"))?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.path().join("config.toml"))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let ctd = Self { child, socket, dir };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if ctd.ctr(&["version"]).is_ok_and(|o| o.status.success()) {
                return Ok(ctd);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "containerd did not answer within {START_TIMEOUT:?}: {}",
                    ctd.log()
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `ctr -a <socket> -n intercom-test <args>`, killed after `CTR_TIMEOUT`.
    fn ctr(&self, args: &[&str]) -> Result<Output, Box<dyn std::error::Error>> {
        let mut child = Command::new("ctr")
            .arg("-a")
            .arg(&self.socket)
            .args(["-n", NAMESPACE])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let deadline = Instant::now() + CTR_TIMEOUT;
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                child.kill()?;
                return Err(
                    format!("`ctr {}` took longer than {CTR_TIMEOUT:?}", args.join(" ")).into(),
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(child.wait_with_output()?)
    }

    fn log(&self) -> String {
        let log = fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default();
        let start = log.len().saturating_sub(3000);
        log.get(start..).unwrap_or(&log).to_owned()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // The graceful path first: a shim exits (removing its socket under
        // /run/containerd/s) once its task and container are deleted.
        let ids = self
            .ctr(&["containers", "ls", "-q"])
            .map(|o| o.stdout)
            .unwrap_or_default();
        for id in String::from_utf8_lossy(&ids).split_whitespace() {
            let _ = self.ctr(&["tasks", "kill", "-s", "SIGKILL", id]);
            let _ = self.ctr(&["tasks", "delete", "--force", id]);
            let _ = self.ctr(&["containers", "delete", id]);
        }
        // Backstop: shims (`containerd-shim-runc-v2 … -address <socket>`) outlive
        // containerd; kill the ones pointed at our socket, by pid.
        let socket = self.socket.to_string_lossy().into_owned();
        for pid in pids_with_arg(&socket) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for mount in mounts_below(self.dir.path()) {
            let _ = Command::new("umount").arg("-l").arg(mount).status();
        }
    }
}

/// Processes other than containerd itself whose command line has `arg` as an argument.
fn pids_with_arg(arg: &str) -> Vec<u32> {
    let Ok(procs) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let pids = procs.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok());
    pids.filter(|pid| {
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        cmdline.split(|b| *b == 0).any(|a| a == arg.as_bytes())
    })
    .collect()
}

/// Mount points at or below `dir`, deepest first.
fn mounts_below(dir: &Path) -> Vec<String> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = dir.to_string_lossy();
    let mut mounts: Vec<String> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|m| m.starts_with(prefix.as_ref()))
        .map(str::to_owned)
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    mounts
}

/// `/bin/echo` with its loader and libc, default args `hi`: the import names the image
/// with the manifest digest the builder reported, and running it prints `hi`, which only
/// works if the loader sits at its PT_INTERP path and finds libc.
#[test]
fn e2e_containerd_imports_and_runs_the_image() -> TestResult {
    let ctd = Containerd::start()?;
    let reference = "example.com/intercom-test/echo:1";
    let image = ImageBuilder::new(reference)
        .entrypoint_binary("/bin/echo")
        .dir("/tmp", 0o1777)
        .args(["hi"])
        .build()?;
    let archive = ctd.dir.path().join("echo.tar");
    image.write_oci_archive(&archive)?;
    import_into_containerd(&archive, &ctd.socket, NAMESPACE)?;

    let ls = ctd.ctr(&["images", "ls"])?;
    let ls = String::from_utf8(ls.stdout)?;
    let line = ls
        .lines()
        .find(|l| l.split_whitespace().next() == Some(reference));
    let line = line.ok_or(format!("`ctr images ls` does not list {reference}:\n{ls}"))?;
    let digest = image.manifest_digest().as_str();
    assert!(
        line.split_whitespace().any(|f| f == digest),
        "listed with digest {digest}: {line}"
    );

    // runc's state and the IO fifos default to /run/containerd: keep them in our dir too.
    let runc_root = ctd.dir.path().join("runc").display().to_string();
    let fifo_dir = ctd.dir.path().join("fifo").display().to_string();
    let id = format!("intercom-echo-{}", std::process::id());
    let run = ctd.ctr(&[
        "run",
        "--rm",
        "--runc-root",
        &runc_root,
        "--fifo-dir",
        &fifo_dir,
        reference,
        &id,
    ])?;
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "`ctr run` failed: {stderr}\ncontainerd log: {}",
        ctd.log()
    );
    assert_eq!(String::from_utf8(run.stdout)?, "hi\n");
    let containers = ctd.ctr(&["containers", "ls", "-q"])?;
    assert!(
        containers.stdout.trim_ascii().is_empty(),
        "`--rm` removed the container"
    );
    Ok(())
}

/// An image for another CPU (a static ELF header for it; never run) imports and unpacks:
/// `import_into_containerd` passes `--all-platforms`, without which containerd 1.6's
/// `ctr` filters the image out ("image might be filtered out").
#[test]
fn e2e_containerd_imports_an_image_for_another_platform() -> TestResult {
    let ctd = Containerd::start()?;
    // e_machine 183 is arm64, 62 amd64: whichever this machine is not.
    let arm_host = Platform::host().architecture == "arm64";
    let (machine, other) = if arm_host {
        (62, "amd64")
    } else {
        (183, "arm64")
    };
    let binary = support::fake_static_elf(ctd.dir.path(), machine)?;
    let reference = "example.com/intercom-test/foreign:1";
    let image = ImageBuilder::new(reference)
        .entrypoint_binary(&binary)
        .platform(Platform::new("linux", other))
        .build()?;
    let archive = ctd.dir.path().join("foreign.tar");
    image.write_oci_archive(&archive)?;
    import_into_containerd(&archive, &ctd.socket, NAMESPACE)?;
    let ls = String::from_utf8(ctd.ctr(&["images", "ls"])?.stdout)?;
    let line = ls
        .lines()
        .find(|l| l.split_whitespace().next() == Some(reference));
    let line = line.ok_or(format!("`ctr images ls` does not list {reference}:\n{ls}"))?;
    let platform = format!("linux/{other}");
    assert!(
        line.split_whitespace().any(|f| f == platform),
        "listed as {platform}: {line}"
    );
    Ok(())
}

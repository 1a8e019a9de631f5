//! Tests of the process runtime: process groups, reaping, socket directories, stdin.

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

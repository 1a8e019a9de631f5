//! Launching and dropping plugins over and over leaves no file, process or fd behind.
//!
//! One test in its own binary: fd and child counts are per process, and other tests
//! running beside it would move them. `INTERCOM_LAUNCH_CYCLES=10000` runs the long
//! measurement (the suite runs a short one).

use std::path::Path;
use std::time::{Duration, Instant};

use intercom::runtime::ProcessLauncher;
use intercom::{Client, ClientConfig};
use intercom_tests::{HANDSHAKE, go_fixture, host_plugins, kv};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Our children that still exist (zombies included: a zombie is a leak of its own).
fn children() -> usize {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s.rsplit_once(") ")?.1.to_string();
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(me)
        })
        .count()
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

async fn cycle(program: &Path, work: &Path, sockets: &Path, by_drop: bool) {
    // The KV plugins write their values to files in the working directory.
    let client = Client::new(ClientConfig::new(
        HANDSHAKE,
        host_plugins(),
        ProcessLauncher::new(program)
            .unix_socket_dir(sockets)
            .current_dir(work),
    ));
    let protocol = client.connect().await.expect("start");
    let mut kv: kv::kv_client::KvClient<intercom::tonic::transport::Channel> =
        protocol.dispense("kv_grpc").expect("dispense");
    kv.put(kv::PutRequest {
        key: "k".into(),
        value: b"v".to_vec(),
    })
    .await
    .expect("put");
    if by_drop {
        drop((kv, protocol, client));
    } else {
        client.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_and_drop_cycles_leave_no_file_process_or_fd() {
    let cycles: usize = std::env::var("INTERCOM_LAUNCH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let work = tempfile::tempdir().unwrap();
    let sockets = work.path().join("sockets");
    std::fs::create_dir(&sockets).unwrap();
    let rust = Path::new(env!("CARGO_BIN_EXE_test-plugin")).to_path_buf();
    // go-plugin's multiplexer never removes its socket: the host's directory must go.
    let go = go_fixture("kv-plugin");
    // Warm-up: the runtime's own fds (signal pipe, process driver) open on first use.
    cycle(&rust, work.path(), &sockets, false).await;
    let (fds, kids) = (open_fds(), children());

    let started = Instant::now();
    for i in 0..cycles {
        let program = if i % 2 == 0 { &rust } else { &go };
        cycle(program, work.path(), &sockets, i % 4 >= 2).await;
    }
    let took = started.elapsed();

    // Dropped clients are reaped in the background: give them a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    while (open_fds() > fds || children() > kids || entries(&sockets) > 0)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("{cycles} launch/call/stop cycles in {took:?}");
    assert_eq!(entries(&sockets), 0, "socket files or directories left");
    assert!(
        children() <= kids,
        "{} child processes left",
        children() - kids
    );
    assert!(open_fds() <= fds, "{} fds left open", open_fds() - fds);
}

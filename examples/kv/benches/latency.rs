//! Unary call latency of the KV example over a unix socket, per transport choice.
//!
//! `cargo bench -p kv` prints p50/p99 of `KV.Get` for the default (multiplexed broker,
//! AutoMTLS) and for classic plaintext, measured in the same run so the ratio is
//! meaningful on a noisy machine.

use std::time::{Duration, Instant};

use intercom::runtime::ProcessLauncher;
use intercom::tonic::transport::Channel;
use intercom::{Client, ClientConfig, Multiplex, PluginSet};
use kv::{HANDSHAKE, KvClient, KvPlugin, PLUGIN_NAME, proto};

const WARMUP: usize = 200;
const CALLS: usize = 2000;

async fn measure(label: &str, multiplex: Multiplex, mtls: bool) -> Duration {
    let dir = std::env::temp_dir().join(format!("kv-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let plugin = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent()?.parent().map(|d| d.join("kv-plugin")))
        .filter(|p| p.is_file())
        .expect("kv-plugin next to the bench binary: run `cargo bench -p kv`");
    let client = Client::new(
        ClientConfig::new(
            HANDSHAKE,
            PluginSet::new().with(PLUGIN_NAME, KvPlugin::client()),
            ProcessLauncher::new(plugin).current_dir(&dir),
        )
        .multiplex(multiplex)
        .auto_mtls(mtls),
    );
    let mut kv: KvClient<Channel> = client
        .connect()
        .await
        .expect("start")
        .dispense(PLUGIN_NAME)
        .expect("dispense");
    kv.put(proto::PutRequest {
        key: "bench".into(),
        value: b"value".to_vec(),
    })
    .await
    .expect("put");
    let mut samples = Vec::with_capacity(CALLS);
    for i in 0..WARMUP + CALLS {
        let started = Instant::now();
        kv.get(proto::GetRequest {
            key: "bench".into(),
        })
        .await
        .expect("get");
        if i >= WARMUP {
            samples.push(started.elapsed());
        }
    }
    client.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    samples.sort();
    let p50 = samples[samples.len() / 2];
    let p99 = samples[samples.len() * 99 / 100];
    println!("{label:<32} p50 {p50:>10.1?}  p99 {p99:>10.1?}  ({CALLS} calls)");
    p50
}

#[tokio::main]
async fn main() {
    let default = measure("multiplexed + AutoMTLS (default)", Multiplex::Auto, true).await;
    let mux_plain = measure("multiplexed, plaintext", Multiplex::Auto, false).await;
    let classic = measure("classic, plaintext", Multiplex::Off, false).await;
    println!(
        "ratios to classic plaintext: default {:.2}x, multiplexed plaintext {:.2}x",
        default.as_secs_f64() / classic.as_secs_f64(),
        mux_plain.as_secs_f64() / classic.as_secs_f64()
    );
}

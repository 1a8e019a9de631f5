//! The Rust side of the benchmark harness: an intercom host (or, with `--raw`, a plain
//! tonic client with no intercom) running the same loops as `bench-go-host`
//! (bench/go/cmd/bench-go-host), printing one JSON object on stdout.
//!
//! ```text
//! bench-host get    (--plugin PATH [--mux] [--mtls] | --raw unix:PATH|tcp:ADDR)
//!                   [--runtime multi|current] --key K --warmup W --calls N --callers C
//!                   [--plugins P]
//! bench-host launch --plugin PATH [--mux] [--mtls] --reps R
//! bench-host idle   --plugin PATH [--mux] [--mtls] --clients N
//! bench-host counter --plugin PATH [--mux] [--mtls] --warmup W --calls N
//! bench-host stream (--plugin PATH [--mux] [--mtls] | --raw unix:PATH|tcp:ADDR)
//!                   --count N --size S --reps R
//! ```
//!
//! `get`: W untimed then N timed `KV.Get(K)` calls shared by C tasks on P clients (one
//! plugin each, caller c on client c % P; one client by default); prints
//! `{"p50_ns","p99_ns","calls_per_s","bytes_per_s"}`. `launch`: R times launch, dispense and
//! `Get("small")` (`first_call_ns`), then kill (`kill_ns`); prints the medians. `idle`: this
//! process's RSS and open fds before and after launching N plugins (one call on each),
//! as `rss_per_client_bytes` and `fds_per_client`. `counter`: examples/bidirectional's
//! `Counter.Put("counter", 1)` through a counter-plugin, W untimed then N timed; each serves
//! the host's `AddHelper` on a fresh broker id and the plugin calls it back; prints
//! `{"p50_ns","p99_ns"}`. `stream`: R server-streaming calls of N chunks of S bytes each
//! (scenario 6: `intercom_bench::Chunks` through a bench-stream-plugin, or its raw tonic
//! twin), one warm-up call first; prints `{"bytes_per_s"}`. The plugin
//! runs in this process's working directory; `INTERCOM_TRANSPORT=tcp` reaches it through
//! the environment.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use intercom::tonic::transport::{Channel, Endpoint, Uri};
use intercom::{Client, ClientConfig, HandshakeConfig, Multiplex, PluginSet, ProcessLauncher};
use kv::{HANDSHAKE, KvClient, KvPlugin, PLUGIN_NAME, proto};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug)]
struct Options {
    mode: String,
    plugin: Option<PathBuf>,
    raw: Option<String>,
    mux: bool,
    mtls: bool,
    current_thread: bool,
    key: String,
    warmup: usize,
    calls: usize,
    callers: usize,
    reps: usize,
    clients: usize,
    plugins: usize,
    count: u32,
    size: u32,
}

fn parse() -> Result<Options, BoxError> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().ok_or("usage: bench-host get|launch [flags]")?;
    let mut o = Options {
        mode,
        plugin: None,
        raw: None,
        mux: false,
        mtls: false,
        current_thread: false,
        key: "small".into(),
        warmup: 200,
        calls: 3000,
        callers: 1,
        reps: 10,
        plugins: 1,
        count: 1000,
        size: 64 << 10,
        clients: 100,
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--plugin" => o.plugin = Some(value()?.into()),
            "--raw" => o.raw = Some(value()?),
            "--mux" => o.mux = true,
            "--mtls" => o.mtls = true,
            "--runtime" => o.current_thread = value()? == "current",
            "--key" => o.key = value()?,
            "--warmup" => o.warmup = value()?.parse()?,
            "--calls" => o.calls = value()?.parse()?,
            "--callers" => o.callers = value()?.parse::<usize>()?.max(1),
            "--reps" => o.reps = value()?.parse::<usize>()?.max(1),
            "--clients" => o.clients = value()?.parse::<usize>()?.max(1),
            "--plugins" => o.plugins = value()?.parse::<usize>()?.max(1),
            "--count" => o.count = value()?.parse()?,
            "--size" => o.size = value()?.parse()?,
            _ => return Err(format!("unknown flag {flag}").into()),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let result = parse().and_then(|o| {
        let mut rt = if o.current_thread {
            tokio::runtime::Builder::new_current_thread()
        } else {
            tokio::runtime::Builder::new_multi_thread()
        };
        rt.enable_all().build()?.block_on(run(o))
    });
    match result {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("bench-host: error: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(o: Options) -> Result<serde_json::Value, BoxError> {
    match o.mode.as_str() {
        "get" => {
            if let Some(addr) = &o.raw {
                let kv = KvClient::new(raw_channel(addr).await?)
                    .max_decoding_message_size(intercom::MAX_MESSAGE_SIZE);
                get_loop(vec![kv], &o).await
            } else {
                let clients = (0..o.plugins)
                    .map(|_| new_client(&o))
                    .collect::<Result<Vec<_>, _>>()?;
                let result = async {
                    let mut kvs = Vec::with_capacity(clients.len());
                    for client in &clients {
                        let kv: KvClient<Channel> =
                            client.connect().await?.dispense(PLUGIN_NAME)?;
                        kvs.push(kv);
                    }
                    get_loop(kvs, &o).await
                }
                .await;
                for client in &clients {
                    client.kill().await;
                }
                result
            }
        }
        "launch" => launch_loop(&o).await,
        "idle" => idle_clients(&o).await,
        "counter" => counter_loop(&o).await,
        "stream" => stream_bench(&o).await,
        other => Err(format!(
            "unknown mode {other:?}, expected get, launch, idle, counter or stream"
        )
        .into()),
    }
}

fn new_client(o: &Options) -> Result<Client, BoxError> {
    new_client_with(
        o,
        HANDSHAKE,
        PluginSet::new().with(PLUGIN_NAME, KvPlugin::client()),
    )
}

fn new_client_with(
    o: &Options,
    handshake: HandshakeConfig,
    plugins: PluginSet,
) -> Result<Client, BoxError> {
    let plugin = o.plugin.clone().ok_or("--plugin or --raw is required")?;
    Ok(Client::new(
        ClientConfig::new(handshake, plugins, ProcessLauncher::new(plugin))
            .multiplex(if o.mux {
                Multiplex::Required
            } else {
                Multiplex::Off
            })
            .auto_mtls(o.mtls)
            .sync_stdout(tokio::io::sink())
            .sync_stderr(tokio::io::sink())
            .name("bench"),
    ))
}

/// A plain tonic channel to `unix:PATH` or `tcp:ADDR`.
async fn raw_channel(addr: &str) -> Result<Channel, BoxError> {
    if let Some(path) = addr.strip_prefix("unix:") {
        let path = PathBuf::from(path);
        let connector = tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        });
        Ok(Endpoint::try_from("http://localhost")?
            .connect_with_connector(connector)
            .await?)
    } else if let Some(tcp) = addr.strip_prefix("tcp:") {
        Ok(Endpoint::from_shared(format!("http://{tcp}"))?
            .tcp_nodelay(true)
            .connect()
            .await?)
    } else {
        Err(format!("bad --raw address {addr:?}, expected unix:PATH or tcp:ADDR").into())
    }
}

fn percentile(sorted: &[Duration], p: usize) -> u128 {
    sorted
        .get(sorted.len() * p / 100)
        .map_or(0, Duration::as_nanos)
}

/// The timed loop over `kvs` (caller c calls `kvs[c % kvs.len()]`).
async fn get_loop(kvs: Vec<KvClient<Channel>>, o: &Options) -> Result<serde_json::Value, BoxError> {
    let req = proto::GetRequest { key: o.key.clone() };
    for i in 0..o.warmup {
        let mut warm = kvs[i % kvs.len()].clone();
        warm.get(req.clone()).await?;
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let shared = Arc::new(req);
    for c in 0..o.callers {
        let mut kv = kvs[c % kvs.len()].clone();
        let req = Arc::clone(&shared);
        let n = (c..o.calls).step_by(o.callers).count();
        tasks.spawn(async move {
            let mut samples = Vec::with_capacity(n);
            let mut bytes = 0usize;
            for _ in 0..n {
                let t = Instant::now();
                let resp = kv.get((*req).clone()).await?;
                samples.push(t.elapsed());
                bytes += resp.into_inner().value.len();
            }
            Ok::<_, tonic::Status>((samples, bytes))
        });
    }
    let mut samples = Vec::with_capacity(o.calls);
    let mut bytes = 0usize;
    while let Some(done) = tasks.join_next().await {
        let (s, b) = done??;
        samples.extend(s);
        bytes += b;
    }
    let elapsed = started.elapsed().as_secs_f64();
    samples.sort();
    Ok(serde_json::json!({
        "p50_ns": percentile(&samples, 50),
        "p99_ns": percentile(&samples, 99),
        "calls_per_s": o.calls as f64 / elapsed,
        "bytes_per_s": bytes as f64 / elapsed,
    }))
}

async fn launch_loop(o: &Options) -> Result<serde_json::Value, BoxError> {
    let mut first = Vec::with_capacity(o.reps);
    let mut kill = Vec::with_capacity(o.reps);
    for _ in 0..o.reps {
        let t0 = Instant::now();
        let client = new_client(o)?;
        let called = async {
            let mut kv: KvClient<Channel> = client.connect().await?.dispense(PLUGIN_NAME)?;
            kv.get(proto::GetRequest {
                key: "small".into(),
            })
            .await?;
            Ok::<_, BoxError>(())
        }
        .await;
        let t1 = Instant::now();
        client.kill().await;
        kill.push(t1.elapsed());
        first.push(t1 - t0);
        called?;
    }
    first.sort();
    kill.sort();
    Ok(serde_json::json!({
        "first_call_ns": percentile(&first, 50),
        "kill_ns": percentile(&kill, 50),
    }))
}

/// This process's resident set size in bytes and its number of open fds.
fn usage() -> Result<(f64, f64), BoxError> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or("no VmRSS in /proc/self/status")?;
    let fds = std::fs::read_dir("/proc/self/fd")?.count();
    Ok((kib * 1024.0, fds as f64))
}

async fn idle_clients(o: &Options) -> Result<serde_json::Value, BoxError> {
    let (rss0, fds0) = usage()?;
    let mut held = Vec::with_capacity(o.clients);
    for _ in 0..o.clients {
        let client = new_client(o)?;
        let mut kv: KvClient<Channel> = client.connect().await?.dispense(PLUGIN_NAME)?;
        kv.get(proto::GetRequest {
            key: "small".into(),
        })
        .await?;
        held.push((client, kv));
    }
    // Let connection set-up tasks finish before sampling.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (rss1, fds1) = usage()?;
    let mut kills = tokio::task::JoinSet::new();
    for (client, _) in held {
        kills.spawn(async move { client.kill().await });
    }
    while kills.join_next().await.is_some() {}
    let n = o.clients as f64;
    Ok(serde_json::json!({
        "rss_per_client_bytes": (rss1 - rss0) / n,
        "fds_per_client": (fds1 - fds0) / n,
    }))
}

/// The host's side of the callback (examples/bidirectional's host adder).
#[derive(Debug, Clone, Copy)]
struct HostAdder;

#[tonic::async_trait]
impl bidirectional::AddHelper for HostAdder {
    async fn sum(
        &self,
        req: tonic::Request<bidirectional::proto::SumRequest>,
    ) -> Result<tonic::Response<bidirectional::proto::SumResponse>, tonic::Status> {
        let bidirectional::proto::SumRequest { a, b } = req.into_inner();
        Ok(tonic::Response::new(bidirectional::proto::SumResponse {
            r: a.wrapping_add(b),
        }))
    }
}

async fn counter_loop(o: &Options) -> Result<serde_json::Value, BoxError> {
    use bidirectional::{CounterClient, CounterPlugin, proto as cp};
    let client = new_client_with(
        o,
        bidirectional::HANDSHAKE,
        PluginSet::new().with(bidirectional::PLUGIN_NAME, CounterPlugin::client()),
    )?;
    let result = async {
        let protocol = client.connect().await?;
        let mut counter: CounterClient<Channel> = protocol.dispense(bidirectional::PLUGIN_NAME)?;
        let mut samples = Vec::with_capacity(o.calls);
        for i in 0..o.warmup + o.calls {
            let t = Instant::now();
            // Served for the length of the call, as in examples/bidirectional's host.
            let (add_server, adder) = cp::serve_add_server(protocol.broker(), HostAdder)?;
            counter
                .put(cp::PutRequest {
                    add_server,
                    key: "counter".into(),
                    value: 1,
                })
                .await?;
            drop(adder);
            if i >= o.warmup {
                samples.push(t.elapsed());
            }
        }
        samples.sort();
        Ok::<_, BoxError>(serde_json::json!({
            "p50_ns": percentile(&samples, 50),
            "p99_ns": percentile(&samples, 99),
        }))
    }
    .await;
    client.kill().await;
    result
}

/// Scenario 6 through intercom (`--plugin`) or raw tonic (`--raw`).
async fn stream_bench(o: &Options) -> Result<serde_json::Value, BoxError> {
    use intercom_bench::raw::{ChunksRequest, chunks_client::ChunksClient as RawClient};
    use intercom_bench::{CHUNKS_PLUGIN, Chunks as _, ChunksClient, ChunksPlugin};

    if let Some(addr) = &o.raw {
        let raw = RawClient::new(raw_channel(addr).await?);
        return timed_streams(o, || {
            let mut raw = raw.clone();
            async move {
                let req = ChunksRequest {
                    count: o.count,
                    size: o.size,
                };
                let mut chunks = raw.chunks(req).await?.into_inner();
                let mut bytes = 0;
                while let Some(chunk) = chunks.message().await? {
                    bytes += chunk.data.len();
                }
                Ok(bytes)
            }
        })
        .await;
    }
    let client = new_client_with(
        o,
        ChunksPlugin::HANDSHAKE,
        PluginSet::new().with(CHUNKS_PLUGIN, ChunksPlugin::client()),
    )?;
    let result = async {
        let chunks: ChunksClient = client.connect().await?.dispense(CHUNKS_PLUGIN)?;
        timed_streams(o, || async {
            let mut stream = chunks.chunks(o.count, o.size).await?;
            let mut bytes = 0;
            while let Some(chunk) = stream.message().await? {
                bytes += chunk.len();
            }
            Ok(bytes)
        })
        .await
    }
    .await;
    client.kill().await;
    result
}

/// One warm-up call of `call`, then `o.reps` timed ones; `call` returns the bytes it read.
async fn timed_streams<F, Fut>(o: &Options, call: F) -> Result<serde_json::Value, BoxError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<usize, tonic::Status>>,
{
    let expected = o.count as usize * o.size as usize;
    call().await?;
    let started = Instant::now();
    let mut bytes = 0usize;
    for _ in 0..o.reps {
        let n = call().await?;
        if n != expected {
            return Err(format!("a stream carried {n} bytes, expected {expected}").into());
        }
        bytes += n;
    }
    Ok(serde_json::json!({ "bytes_per_s": bytes as f64 / started.elapsed().as_secs_f64() }))
}

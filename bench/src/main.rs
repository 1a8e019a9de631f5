//! The benchmark driver behind `scripts/bench.sh`: runs every host × plugin pairing in
//! interleaved rounds and writes one markdown table of same-run ratios.
//!
//! ```text
//! intercom-bench --go-dir DIR [--rounds N] [--smoke] [--only 1,5] [--nojitter-plugin PATH]
//!                [--out FILE] [--date D] [--command C] [--kubernetes JSON]
//! ```
//!
//! `--kubernetes` adds scenario 8's section from bench-kube's output (scripts/bench.sh runs
//! bench-kube in a network namespace of its own) and, unless `--smoke`, fails the run when
//! the SDK's overhead after pod Ready is over its bound.
//! `--nojitter-plugin` adds launch rows for a kv-plugin built with
//! `AWS_LC_SYS_NO_JITTER_ENTROPY=1`. `--only` keeps the scenarios with those numbers and then writes no `--out` file (a
//! partial table must not replace BENCHMARKS.md).
//!
//! Peers: `bench-go-host` (go-plugin v1.8.0 host, bench/go) and `kv-plugin` (go-plugin
//! plugin, tests/fixtures/go) from `--go-dir`; `bench-host`, `kv-plugin` and
//! `bench-raw-server` next to this binary. Each job is one host process that launches its
//! plugin, runs one loop and prints JSON; each round runs every job once (starting at a
//! different job each round), so load from other work on the machine falls on both sides
//! of a ratio alike. A ratio is computed within each round, then the median and the
//! min–max over rounds are shown.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod kubernetes;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Host {
    /// go-plugin v1.8.0's host.
    Go,
    /// intercom's host; `true` = current-thread runtime.
    Intercom(bool),
    /// A plain tonic client against `bench-raw-server`; `true` = current-thread runtime.
    Raw(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Plugin {
    Go,
    Rust,
    /// `kv-plugin` built with `AWS_LC_SYS_NO_JITTER_ENTROPY=1` (aws-lc seeds its RNG from
    /// the OS only, without its once-per-process CPU jitter entropy collection).
    RustNoJitter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Transport {
    Unix,
    Tcp,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Self::Unix => "unix",
            Self::Tcp => "tcp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Wire {
    mux: bool,
    mtls: bool,
}

impl Wire {
    const CLASSIC: Self = Self {
        mux: false,
        mtls: false,
    };
    const ALL: [Self; 4] = [
        Self::CLASSIC,
        Self {
            mux: true,
            mtls: false,
        },
        Self {
            mux: false,
            mtls: true,
        },
        Self {
            mux: true,
            mtls: true,
        },
    ];

    fn name(self) -> &'static str {
        match (self.mux, self.mtls) {
            (false, false) => "classic, plaintext",
            (true, false) => "multiplexed, plaintext",
            (false, true) => "classic, AutoMTLS",
            (true, true) => "multiplexed, AutoMTLS",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Job {
    host: Host,
    plugin: Plugin,
    transport: Transport,
    wire: Wire,
    /// Mode and its flags, e.g. `["get", "--key", "small", ...]`.
    args: Vec<String>,
}

impl Job {
    fn subject(&self) -> String {
        let plugin = match self.plugin {
            Plugin::Go => "Go plugin",
            Plugin::Rust => "Rust plugin",
            Plugin::RustNoJitter => "Rust plugin built without aws-lc jitter entropy",
        };
        let tcp = if self.transport == Transport::Tcp {
            " (tcp)"
        } else {
            ""
        };
        match self.host {
            Host::Go => format!("go-plugin host + {plugin}{tcp}"),
            Host::Intercom(false) => format!("intercom host + {plugin}{tcp}"),
            Host::Intercom(true) => format!("intercom host (current-thread) + {plugin}{tcp}"),
            Host::Raw(false) => format!("raw tonic client + server{tcp}"),
            Host::Raw(true) => format!("raw tonic (current-thread client) + server{tcp}"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Better {
    Lower,
    Higher,
}

#[derive(Debug, Clone, Copy)]
struct Metric {
    key: &'static str,
    label: &'static str,
    better: Better,
}

const P50: Metric = Metric {
    key: "p50_ns",
    label: "p50",
    better: Better::Lower,
};
const P99: Metric = Metric {
    key: "p99_ns",
    label: "p99",
    better: Better::Lower,
};
const CALLS: Metric = Metric {
    key: "calls_per_s",
    label: "calls/s",
    better: Better::Higher,
};
const BYTES: Metric = Metric {
    key: "bytes_per_s",
    label: "MB/s",
    better: Better::Higher,
};
const FIRST_CALL: Metric = Metric {
    key: "first_call_ns",
    label: "launch → first call",
    better: Better::Lower,
};
const KILL: Metric = Metric {
    key: "kill_ns",
    label: "kill → complete",
    better: Better::Lower,
};
const RSS: Metric = Metric {
    key: "rss_per_client_bytes",
    label: "host RSS per idle client",
    better: Better::Lower,
};
const FDS: Metric = Metric {
    key: "fds_per_client",
    label: "host fds per idle client",
    better: Better::Lower,
};

/// What a row must reach.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// The ratio, against the row's reference.
    Ratio(f64),
    /// The subject's median, in the metric's raw unit, at most this.
    AtMost(f64),
}

#[derive(Debug)]
struct Row {
    scenario: String,
    metric: Metric,
    subject: usize,
    reference: usize,
    target: Option<Target>,
}

#[derive(Debug, Default)]
struct Plan {
    jobs: Vec<Job>,
    index: HashMap<Job, usize>,
    rows: Vec<Row>,
}

impl Plan {
    fn job(&mut self, job: Job) -> usize {
        if let Some(&i) = self.index.get(&job) {
            return i;
        }
        self.jobs.push(job.clone());
        self.index.insert(job, self.jobs.len() - 1);
        self.jobs.len() - 1
    }

    fn row(
        &mut self,
        scenario: impl Into<String>,
        metric: Metric,
        subject: Job,
        reference: Job,
        target: Option<Target>,
    ) {
        let subject = self.job(subject);
        let reference = self.job(reference);
        self.rows.push(Row {
            scenario: scenario.into(),
            metric,
            subject,
            reference,
            target,
        });
    }
}

#[derive(Debug)]
struct Sizes {
    warmup: usize,
    calls: usize,
    throughput_calls: usize,
    launch_reps: usize,
    payload_calls: [usize; 4],
    idle_clients: usize,
    counter_calls: usize,
    /// Scenario 6: streams per job.
    stream_reps: usize,
}

/// A job that fails is run again, at most this many times in all; every retry is listed
/// under the table (go-plugin's multiplexed broker can refuse a knock that races
/// `AcceptAndServe`, "no listener for id N", on a loaded machine).
const ATTEMPTS: usize = 3;

const PAYLOADS: [(&str, usize); 4] = [
    ("1k", 1 << 10),
    ("64k", 64 << 10),
    ("1m", 1 << 20),
    ("16m", 16 << 20),
];

fn get_args(key: &str, warmup: usize, calls: usize, callers: usize) -> Vec<String> {
    let mut args = vec!["get".to_string(), "--key".into(), key.into()];
    for (flag, n) in [
        ("--warmup", warmup),
        ("--calls", calls),
        ("--callers", callers),
    ] {
        args.push(flag.into());
        args.push(n.to_string());
    }
    args
}

fn plan(s: &Sizes, nojitter: bool) -> Plan {
    let mut p = Plan::default();
    let job = |host, plugin, transport, wire, args: &Vec<String>| Job {
        host,
        plugin,
        transport,
        wire,
        args: args.clone(),
    };
    let raw = |current, transport, args: &Vec<String>| Job {
        host: Host::Raw(current),
        plugin: Plugin::Rust,
        transport,
        wire: Wire::CLASSIC,
        args: args.clone(),
    };
    use Transport::{Tcp, Unix};

    // 1. Unary round trip, one caller.
    let unary = get_args("small", s.warmup, s.calls, 1);
    for wire in Wire::ALL {
        let go = job(Host::Go, Plugin::Go, Unix, wire, &unary);
        let ours = job(Host::Intercom(false), Plugin::Rust, Unix, wire, &unary);
        let sc = format!("1 unary, unix, {}", wire.name());
        p.row(&sc, P50, ours.clone(), go.clone(), Some(Target::Ratio(0.8)));
        p.row(&sc, P99, ours.clone(), go.clone(), None);
        let host = job(Host::Intercom(false), Plugin::Go, Unix, wire, &unary);
        p.row(&sc, P50, host, go.clone(), None);
        let plugin = job(Host::Go, Plugin::Rust, Unix, wire, &unary);
        p.row(&sc, P50, plugin, go, None);
        if !wire.mtls {
            p.row(
                &sc,
                P50,
                ours,
                raw(false, Unix, &unary),
                Some(Target::Ratio(1.1)),
            );
        }
    }
    let sc = "1 unary, unix, classic, plaintext";
    let go = job(Host::Go, Plugin::Go, Unix, Wire::CLASSIC, &unary);
    let cur = job(
        Host::Intercom(true),
        Plugin::Rust,
        Unix,
        Wire::CLASSIC,
        &unary,
    );
    p.row(sc, P50, cur, go.clone(), None);
    p.row(sc, P50, raw(true, Unix, &unary), go.clone(), None);
    p.row(sc, P50, raw(false, Unix, &unary), go, None);
    for wire in [Wire::CLASSIC, Wire::ALL[3]] {
        let sc = format!("1 unary, tcp, {}", wire.name());
        let ours = job(Host::Intercom(false), Plugin::Rust, Tcp, wire, &unary);
        let unix = job(Host::Intercom(false), Plugin::Rust, Unix, wire, &unary);
        p.row(&sc, P50, ours.clone(), raw(false, Tcp, &unary), None);
        p.row(&sc, P50, ours, unix, None);
    }

    // 2. Throughput, 1/16/64 concurrent callers on one client.
    for callers in [1, 16, 64] {
        let args = get_args("small", s.warmup, s.throughput_calls, callers);
        for wire in [Wire::CLASSIC, Wire::ALL[3]] {
            let sc = format!("2 {callers} callers, unix, {}", wire.name());
            let go = job(Host::Go, Plugin::Go, Unix, wire, &args);
            let ours = job(Host::Intercom(false), Plugin::Rust, Unix, wire, &args);
            let target = (callers == 64).then_some(Target::Ratio(1.3));
            p.row(&sc, CALLS, ours.clone(), go, target);
            if !wire.mtls {
                p.row(&sc, CALLS, ours, raw(false, Unix, &args), None);
            }
        }
    }

    // 2b. 4 plugins, 16 callers each (64 in all), every caller on its own plugin's client.
    let mut four = get_args("small", s.warmup, s.throughput_calls, 64);
    four.extend(["--plugins".to_string(), "4".into()]);
    for wire in [Wire::CLASSIC, Wire::ALL[3]] {
        let sc = format!("2 4 plugins × 16 callers, unix, {}", wire.name());
        let go = job(Host::Go, Plugin::Go, Unix, wire, &four);
        let ours = job(Host::Intercom(false), Plugin::Rust, Unix, wire, &four);
        p.row(&sc, CALLS, ours, go, None);
    }

    // 5. Launch → first call, and kill.
    let launch = vec![
        "launch".to_string(),
        "--reps".into(),
        s.launch_reps.to_string(),
    ];
    for wire in [Wire::CLASSIC, Wire::ALL[2], Wire::ALL[3]] {
        let sc = format!("5 launch, unix, {}", wire.name());
        let go = job(Host::Go, Plugin::Go, Unix, wire, &launch);
        let ours = job(Host::Intercom(false), Plugin::Rust, Unix, wire, &launch);
        let target = Target::Ratio(if wire.mtls { 0.8 } else { 0.6 });
        p.row(&sc, FIRST_CALL, ours.clone(), go.clone(), Some(target));
        p.row(&sc, KILL, ours, go.clone(), None);
        if nojitter && wire.mtls {
            let nj = job(
                Host::Intercom(false),
                Plugin::RustNoJitter,
                Unix,
                wire,
                &launch,
            );
            p.row(&sc, FIRST_CALL, nj, go, Some(target));
        }
    }
    let sc = "5 launch, unix, each side's defaults (go-plugin classic plaintext, intercom multiplexed AutoMTLS)";
    let go = job(Host::Go, Plugin::Go, Unix, Wire::CLASSIC, &launch);
    let ours = job(
        Host::Intercom(false),
        Plugin::Rust,
        Unix,
        Wire::ALL[3],
        &launch,
    );
    p.row(sc, FIRST_CALL, ours, go, None);

    // 3. Payloads: Get of a value of each size (the plugin reads it from a file).
    for ((name, _), calls) in PAYLOADS.iter().zip(s.payload_calls) {
        let args = get_args(name, 2, calls, 1);
        for wire in [Wire::CLASSIC, Wire::ALL[3]] {
            let sc = format!("3 payload {name}, unix, {}", wire.name());
            let go = job(Host::Go, Plugin::Go, Unix, wire, &args);
            let ours = job(Host::Intercom(false), Plugin::Rust, Unix, wire, &args);
            p.row(&sc, BYTES, ours.clone(), go, None);
            if !wire.mtls {
                p.row(&sc, BYTES, ours, raw(false, Unix, &args), None);
            }
        }
    }

    // 4. Broker callback round trip (go-plugin's bidirectional counter).
    let counter = vec![
        "counter".to_string(),
        "--warmup".into(),
        (s.warmup / 4).to_string(),
        "--calls".into(),
        s.counter_calls.to_string(),
    ];
    for wire in Wire::ALL {
        let sc = format!("4 broker callback (Counter.Put), unix, {}", wire.name());
        let go = job(Host::Go, Plugin::Go, Unix, wire, &counter);
        let ours = job(Host::Intercom(false), Plugin::Rust, Unix, wire, &counter);
        p.row(&sc, P50, ours.clone(), go.clone(), Some(Target::Ratio(0.9)));
        p.row(&sc, P99, ours, go, None);
    }

    // 6. Server streaming: the macro's Streaming<T> against raw tonic (go-plugin has no
    //    streaming example to compare with).
    for (name, count, size) in [("1k", 20_000u32, 1u32 << 10), ("64k", 2_000, 64 << 10)] {
        let args = vec![
            "stream".to_string(),
            "--count".into(),
            (count / if s.stream_reps == 1 { 20 } else { 1 }).to_string(),
            "--size".into(),
            size.to_string(),
            "--reps".into(),
            s.stream_reps.to_string(),
        ];
        for wire in [Wire::CLASSIC, Wire::ALL[3]] {
            let sc = format!("6 server streaming, {name} chunks, unix, {}", wire.name());
            let ours = job(Host::Intercom(false), Plugin::Rust, Unix, wire, &args);
            let target = (!wire.mtls).then_some(Target::Ratio(0.9));
            p.row(&sc, BYTES, ours, raw(false, Unix, &args), target);
        }
    }

    // 7. Idle plugin clients held by one host.
    let idle = vec![
        "idle".to_string(),
        "--clients".into(),
        s.idle_clients.to_string(),
    ];
    for wire in [Wire::CLASSIC, Wire::ALL[3]] {
        let sc = format!("7 {} idle clients, unix, {}", s.idle_clients, wire.name());
        let go = job(Host::Go, Plugin::Go, Unix, wire, &idle);
        let ours = job(Host::Intercom(false), Plugin::Rust, Unix, wire, &idle);
        let target = Target::AtMost(2.0 * 1024.0 * 1024.0);
        p.row(&sc, RSS, ours.clone(), go.clone(), Some(target));
        p.row(&sc, FDS, ours, go, None);
    }
    p
}

#[derive(Debug)]
struct Peers {
    go_host: PathBuf,
    go_plugin: PathBuf,
    go_counter_plugin: PathBuf,
    host: PathBuf,
    plugin: PathBuf,
    counter_plugin: PathBuf,
    stream_plugin: PathBuf,
    nojitter_plugin: Option<PathBuf>,
    raw_server: PathBuf,
}

fn output(mut cmd: Command) -> Result<HashMap<String, f64>, BoxError> {
    let out = cmd.stderr(Stdio::piped()).stdout(Stdio::piped()).output()?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    Ok(serde_json::from_str(line).map_err(|e| format!("{cmd:?} printed {line:?}: {e}"))?)
}

fn run_job(job: &Job, peers: &Peers, dir: &Path) -> Result<HashMap<String, f64>, BoxError> {
    let mode = job.args.first().map(String::as_str);
    let counter = mode == Some("counter");
    let program = match job.host {
        Host::Go => &peers.go_host,
        Host::Intercom(_) | Host::Raw(_) => &peers.host,
    };
    let plugin = match (job.plugin, counter) {
        (Plugin::Rust, false) if mode == Some("stream") => &peers.stream_plugin,
        (Plugin::Go, false) => &peers.go_plugin,
        (Plugin::Go, true) => &peers.go_counter_plugin,
        (Plugin::Rust, false) => &peers.plugin,
        (Plugin::Rust, true) => &peers.counter_plugin,
        (Plugin::RustNoJitter, _) => peers
            .nojitter_plugin
            .as_ref()
            .ok_or("--nojitter-plugin was not given")?,
    };
    let mut cmd = Command::new(program);
    cmd.current_dir(dir).args(&job.args);
    if job.transport == Transport::Tcp {
        cmd.env("INTERCOM_TRANSPORT", "tcp");
    }
    if matches!(job.host, Host::Intercom(true) | Host::Raw(true)) {
        cmd.args(["--runtime", "current"]);
    }
    let Host::Raw(_) = job.host else {
        cmd.arg("--plugin").arg(plugin);
        if job.wire.mux {
            cmd.arg("--mux");
        }
        if job.wire.mtls {
            cmd.arg("--mtls");
        }
        return output(cmd);
    };
    let mut server = Command::new(&peers.raw_server)
        .arg(job.transport.name())
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    if let Some(stdout) = server.stdout.take() {
        BufReader::new(stdout).read_line(&mut line)?;
    }
    cmd.arg("--raw").arg(line.trim());
    let result = output(cmd);
    drop(server.stdin.take());
    server.wait()?;
    result
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn value(metric: Metric, v: f64) -> String {
    match metric.key {
        "p50_ns" | "p99_ns" => format!("{:.0} µs", v / 1e3),
        "first_call_ns" | "kill_ns" => format!("{:.1} ms", v / 1e6),
        "rss_per_client_bytes" => format!("{:.2} MiB", v / 1048576.0),
        "fds_per_client" => format!("{v:.1}"),
        "calls_per_s" => format!("{:.1} k/s", v / 1e3),
        _ => format!("{:.0} MB/s", v / 1e6),
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

#[derive(Debug)]
struct Args {
    go_dir: PathBuf,
    rounds: usize,
    smoke: bool,
    out: Option<PathBuf>,
    date: String,
    command: String,
    only: Vec<String>,
    nojitter_plugin: Option<PathBuf>,
    /// bench-kube's JSON (scenario 8), when it ran.
    kubernetes: Option<PathBuf>,
}

fn parse() -> Result<Args, BoxError> {
    let mut a = Args {
        go_dir: PathBuf::new(),
        rounds: 5,
        smoke: false,
        out: None,
        date: "unknown date".into(),
        command: "scripts/bench.sh".into(),
        only: Vec::new(),
        nojitter_plugin: None,
        kubernetes: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--go-dir" => a.go_dir = value()?.into(),
            "--rounds" => a.rounds = value()?.parse::<usize>()?.max(1),
            "--smoke" => a.smoke = true,
            "--out" => a.out = Some(value()?.into()),
            "--date" => a.date = value()?,
            "--command" => a.command = value()?,
            "--nojitter-plugin" => a.nojitter_plugin = Some(value()?.into()),
            "--kubernetes" => a.kubernetes = Some(value()?.into()),
            "--only" => a.only = value()?.split(',').map(str::to_string).collect(),
            _ => return Err(format!("unknown flag {flag}").into()),
        }
    }
    if a.go_dir.as_os_str().is_empty() {
        return Err("--go-dir DIR (bench-go-host and the Go kv-plugin) is required".into());
    }
    if a.smoke {
        a.rounds = 1;
    }
    Ok(a)
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("intercom-bench: error: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), BoxError> {
    let args = parse()?;
    let exe = std::env::current_exe()?;
    let here = exe.parent().ok_or("current_exe has no parent")?;
    let peers = Peers {
        go_host: args.go_dir.join("bench-go-host"),
        go_plugin: args.go_dir.join("kv-plugin"),
        go_counter_plugin: args.go_dir.join("counter-plugin"),
        host: here.join("bench-host"),
        plugin: here.join("kv-plugin"),
        counter_plugin: here.join("counter-plugin"),
        stream_plugin: here.join("bench-stream-plugin"),
        nojitter_plugin: args.nojitter_plugin.clone(),
        raw_server: here.join("bench-raw-server"),
    };
    for p in [
        &peers.go_host,
        &peers.go_plugin,
        &peers.go_counter_plugin,
        &peers.host,
        &peers.plugin,
        &peers.counter_plugin,
        &peers.stream_plugin,
        &peers.raw_server,
    ]
    .into_iter()
    .chain(&peers.nojitter_plugin)
    {
        if !p.is_file() {
            return Err(format!("peer {} is missing: run scripts/bench.sh", p.display()).into());
        }
    }
    let sizes = if args.smoke {
        Sizes {
            warmup: 10,
            calls: 200,
            throughput_calls: 256,
            launch_reps: 1,
            payload_calls: [20, 10, 4, 1],
            idle_clients: 4,
            counter_calls: 50,
            stream_reps: 1,
        }
    } else {
        Sizes {
            warmup: 200,
            calls: 3000,
            throughput_calls: 6000,
            launch_reps: 10,
            payload_calls: [2000, 500, 100, 12],
            idle_clients: 100,
            counter_calls: 1000,
            stream_reps: 10,
        }
    };
    let mut plan = plan(&sizes, peers.nojitter_plugin.is_some());
    if !args.only.is_empty() {
        let full = plan;
        plan = Plan::default();
        for row in full.rows {
            let number = row.scenario.split(' ').next().unwrap_or_default();
            if args.only.iter().any(|o| o == number) {
                let subject = full.jobs[row.subject].clone();
                let reference = full.jobs[row.reference].clone();
                plan.row(row.scenario, row.metric, subject, reference, row.target);
            }
        }
    }

    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("kv_small"), b"value")?;
    for (name, len) in PAYLOADS {
        std::fs::write(dir.path().join(format!("kv_{name}")), vec![0x5a; len])?;
    }

    let load_before = loadavg();
    let n = plan.jobs.len();
    let mut results: Vec<Vec<HashMap<String, f64>>> = vec![Vec::new(); n];
    let mut retried = Vec::new();
    for round in 0..args.rounds {
        eprintln!(
            "intercom-bench: round {}/{} ({n} jobs)",
            round + 1,
            args.rounds
        );
        for k in 0..n {
            let i = (k + round * n / args.rounds) % n;
            let job = &plan.jobs[i];
            let mut attempt = 1;
            let got = loop {
                match run_job(job, &peers, dir.path()) {
                    Ok(got) => break got,
                    Err(err) if attempt < ATTEMPTS => {
                        let last = err.to_string();
                        let last = last.lines().last().unwrap_or_default().trim().to_string();
                        eprintln!("intercom-bench: retrying a failed job: {err}");
                        retried.push(format!("{} {:?}: {last}", job.subject(), job.args));
                        attempt += 1;
                    }
                    Err(err) => return Err(err),
                }
            };
            results[i].push(got);
        }
    }
    let load_after = loadavg();

    let mut table = String::new();
    table.push_str(
        "| scenario | figure | subject | reference | subject | reference | ratio: median (min–max) | target |\n\
         |---|---|---|---|---:|---:|---|---|\n",
    );
    for row in &plan.rows {
        let get = |i: usize, r: usize| {
            results[i]
                .get(r)
                .and_then(|m| m.get(row.metric.key))
                .copied()
                .unwrap_or(f64::NAN)
        };
        let mut subj: Vec<f64> = (0..args.rounds).map(|r| get(row.subject, r)).collect();
        let mut refs: Vec<f64> = (0..args.rounds).map(|r| get(row.reference, r)).collect();
        let mut ratios: Vec<f64> = subj.iter().zip(&refs).map(|(s, r)| s / r).collect();
        let ratio = median(&mut ratios);
        let (lo, hi) = (ratios[0], ratios[ratios.len() - 1]);
        let (better, cmp) = match row.metric.better {
            Better::Lower => ("lower is better", "≤"),
            Better::Higher => ("higher is better", "≥"),
        };
        let subject = median(&mut subj);
        let verdict = |met: bool| if met { "met" } else { "**missed**" };
        let target = match row.target {
            None => String::new(),
            Some(Target::Ratio(t)) => {
                let met = match row.metric.better {
                    Better::Lower => ratio <= t,
                    Better::Higher => ratio >= t,
                };
                format!("ratio {cmp} {t}: {}", verdict(met))
            }
            Some(Target::AtMost(t)) => {
                format!("≤ {}: {}", value(row.metric, t), verdict(subject <= t))
            }
        };
        let _ = writeln!(
            table,
            "| {} | {} ({better}) | {} | {} | {} | {} | {ratio:.2}× ({lo:.2}–{hi:.2}) | {target} |",
            row.scenario,
            row.metric.label,
            plan.jobs[row.subject].subject(),
            plan.jobs[row.reference].subject(),
            value(row.metric, subject),
            value(row.metric, median(&mut refs)),
        );
    }

    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let mut doc = String::new();
    let _ = write!(
        doc,
        "# Benchmarks\n\n\
         Generated by `{cmd}` on {date}; regenerate with that command, do not edit by hand.\n\n\
         Machine: {cores} cores, {cpu}; load average {load_before} before, {load_after} after. \
         The machine may be shared with other work while measuring, so absolute figures are \
         noisy; every ratio compares two jobs of the same round ({rounds} rounds, each job \
         once per round, rounds starting at different jobs).\n\n\
         Each job is one host process that launches its plugin (stdin/stdout handshake, \
         unix socket unless the row says tcp), calls `KV.Get` (go-plugin's examples/grpc \
         service; the plugin reads the value from a file), and exits. Unary: {warm} warm-up \
         then {calls} timed sequential calls; throughput: {tput} calls shared by N callers on \
         one client (or, for \"4 plugins × 16 callers\", by 64 callers on 4 clients of 4 \
         plugins, 16 on each); launch: median of {reps} launches per job; payload: Get of a value of \
         that size; server streaming: {streams} calls of `Chunks(count, size)` per job after \
         one warm-up, each N zero-filled chunks of that size produced 4 ahead by a task \
         (20000 × 1 KiB or 2000 × 64 KiB), through `#[intercom::plugin]`'s `Streaming<T>` on \
         both sides against the same service as plain tonic code (bench/proto/chunks.proto); idle: (RSS, fds) after launching {idle} plugins and one call on each, \
         minus before, over {idle}; broker callback: examples/bidirectional's `Counter.Put`, \
         {counter} sequential calls, each serving the host's `AddHelper` on a fresh broker \
         id that the plugin dials and calls (go-plugin's multiplexed broker sometimes \
         refuses the plugin's knock, \"no listener for id N\", when the knock beats the \
         host's `AcceptAndServe` goroutine; bench-go-host then makes that call again and \
         counts the failed attempt in its time; refused knocks in this run: {refused}). go-plugin plugins listen only on unix sockets on Linux, so tcp rows \
         compare intercom with raw tonic. A \"Rust plugin built without aws-lc jitter \
         entropy\" is examples/kv's plugin built with `AWS_LC_SYS_NO_JITTER_ENTROPY=1` \
         (aws-lc-rs's build switch; its RNG then seeds from the OS only), to show what \
         aws-lc's once-per-process jitter entropy collection costs a launch with AutoMTLS. \
         Ratio = subject / reference.\n\n",
        cmd = args.command,
        date = args.date,
        cpu = cpu_model(),
        rounds = args.rounds,
        streams = sizes.stream_reps,
        warm = sizes.warmup,
        calls = sizes.calls,
        tput = sizes.throughput_calls,
        reps = sizes.launch_reps,
        idle = sizes.idle_clients,
        counter = sizes.counter_calls,
        refused = results
            .iter()
            .flatten()
            .filter_map(|m| m.get("knock_refused"))
            .sum::<f64>(),
    );
    doc.push_str(&table);
    if retried.is_empty() {
        doc.push_str("\nNo job failed.\n");
    } else {
        let _ = writeln!(
            doc,
            "\n{} job runs failed and were run again (the table has only successful runs):\n",
            retried.len()
        );
        for r in &retried {
            let _ = writeln!(doc, "- {r}");
        }
    }
    print!("{table}");
    let kube = args
        .kubernetes
        .as_deref()
        .map(kubernetes::section)
        .transpose()?;
    if let Some(k) = &kube {
        doc.push_str(&k.markdown);
        print!("{}", k.markdown);
    }
    std::io::stdout().flush()?;
    if let Some(out) = args.out.as_ref().filter(|_| args.only.is_empty()) {
        std::fs::write(out, doc)?;
        eprintln!("intercom-bench: wrote {}", out.display());
    }
    // The bound is asserted here, in the benchmark (a smoke run's dev build is not timed).
    match kube {
        Some(k) if !args.smoke && !k.over_bound.is_empty() => Err(format!(
            "scenario 8: the SDK's overhead after pod Ready is over {} ms: {:?}",
            kubernetes::OVERHEAD_BOUND_MS,
            k.over_bound
        )
        .into()),
        _ => Ok(()),
    }
}

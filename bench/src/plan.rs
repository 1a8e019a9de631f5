//! What a run measures: the jobs (one host process each) and the table's rows, which pair
//! a subject job with its same-run reference.

use std::collections::HashMap;

use Transport::{Tcp, Unix};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Host {
    /// go-plugin v1.8.0's host.
    Go,
    /// intercom's host; `true` = current-thread runtime.
    Intercom(bool),
    /// A plain tonic client against `bench-raw-server`; `true` = current-thread runtime.
    Raw(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Plugin {
    Go,
    Rust,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Transport {
    Unix,
    Tcp,
}

impl Transport {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Unix => "unix",
            Self::Tcp => "tcp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Wire {
    pub(crate) mux: bool,
    pub(crate) mtls: bool,
}

impl Wire {
    pub(crate) const CLASSIC: Self = Self {
        mux: false,
        mtls: false,
    };
    pub(crate) const ALL: [Self; 4] = [
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

    pub(crate) fn name(self) -> &'static str {
        match (self.mux, self.mtls) {
            (false, false) => "classic, plaintext",
            (true, false) => "multiplexed, plaintext",
            (false, true) => "classic, AutoMTLS",
            (true, true) => "multiplexed, AutoMTLS",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Job {
    pub(crate) host: Host,
    pub(crate) plugin: Plugin,
    pub(crate) transport: Transport,
    pub(crate) wire: Wire,
    /// Mode and its flags, e.g. `["get", "--key", "small", ...]`.
    pub(crate) args: Vec<String>,
}

impl Job {
    pub(crate) fn subject(&self) -> String {
        let plugin = match self.plugin {
            Plugin::Go => "Go plugin",
            Plugin::Rust => "Rust plugin",
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
pub(crate) enum Better {
    Lower,
    Higher,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Metric {
    pub(crate) key: &'static str,
    pub(crate) label: &'static str,
    pub(crate) better: Better,
}

pub(crate) const P50: Metric = Metric {
    key: "p50_ns",
    label: "p50",
    better: Better::Lower,
};
pub(crate) const P99: Metric = Metric {
    key: "p99_ns",
    label: "p99",
    better: Better::Lower,
};
pub(crate) const CALLS: Metric = Metric {
    key: "calls_per_s",
    label: "calls/s",
    better: Better::Higher,
};
pub(crate) const BYTES: Metric = Metric {
    key: "bytes_per_s",
    label: "MB/s",
    better: Better::Higher,
};
pub(crate) const FIRST_CALL: Metric = Metric {
    key: "first_call_ns",
    label: "launch → first call",
    better: Better::Lower,
};
pub(crate) const KILL: Metric = Metric {
    key: "kill_ns",
    label: "kill → complete",
    better: Better::Lower,
};
pub(crate) const RSS: Metric = Metric {
    key: "rss_per_client_bytes",
    label: "host RSS per idle client",
    better: Better::Lower,
};
pub(crate) const FDS: Metric = Metric {
    key: "fds_per_client",
    label: "host fds per idle client",
    better: Better::Lower,
};

/// What a row must reach.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target {
    /// The ratio, against the row's reference.
    Ratio(f64),
    /// The subject's median, in the metric's raw unit, at most this.
    AtMost(f64),
}

#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) scenario: String,
    pub(crate) metric: Metric,
    pub(crate) subject: usize,
    pub(crate) reference: usize,
    pub(crate) target: Option<Target>,
}

#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub(crate) jobs: Vec<Job>,
    pub(crate) index: HashMap<Job, usize>,
    pub(crate) rows: Vec<Row>,
}

impl Plan {
    pub(crate) fn job(&mut self, job: Job) -> usize {
        if let Some(&i) = self.index.get(&job) {
            return i;
        }
        self.jobs.push(job.clone());
        self.index.insert(job, self.jobs.len() - 1);
        self.jobs.len() - 1
    }

    pub(crate) fn row(
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
pub(crate) struct Sizes {
    pub(crate) warmup: usize,
    pub(crate) calls: usize,
    pub(crate) throughput_calls: usize,
    pub(crate) launch_reps: usize,
    pub(crate) payload_calls: [usize; 4],
    pub(crate) idle_clients: usize,
    pub(crate) counter_calls: usize,
    /// Scenario 6: streams per job.
    pub(crate) stream_reps: usize,
}

/// A job that fails is run again, at most this many times in all; every retry is listed
/// under the table (go-plugin's multiplexed broker can refuse a knock that races
/// `AcceptAndServe`, "no listener for id N", on a loaded machine).
pub(crate) const ATTEMPTS: usize = 3;

pub(crate) const PAYLOADS: [(&str, usize); 4] = [
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

/// Every job and row of a run, in the order BENCHMARKS.md shows them.
pub(crate) fn plan(s: &Sizes) -> Plan {
    let mut p = Plan::default();
    unary(&mut p, s);
    throughput(&mut p, s);
    plugins_by_callers(&mut p, s);
    launch(&mut p, s);
    payloads(&mut p, s);
    callbacks(&mut p, s);
    streaming(&mut p, s);
    idle(&mut p, s);
    p
}

fn job(host: Host, plugin: Plugin, transport: Transport, wire: Wire, args: &[String]) -> Job {
    Job {
        host,
        plugin,
        transport,
        wire,
        args: args.to_vec(),
    }
}

/// The raw tonic floor; `current` = a current-thread client runtime.
fn raw(current: bool, transport: Transport, args: &[String]) -> Job {
    job(
        Host::Raw(current),
        Plugin::Rust,
        transport,
        Wire::CLASSIC,
        args,
    )
}

/// Scenario 1: Unary round trip, one caller.
fn unary(p: &mut Plan, s: &Sizes) {
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
}

/// Scenario 2: Throughput, 1/16/64 concurrent callers on one client.
fn throughput(p: &mut Plan, s: &Sizes) {
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
}

/// Scenario 2b: 4 plugins, 16 callers each (64 in all), every caller on its own plugin's client.
fn plugins_by_callers(p: &mut Plan, s: &Sizes) {
    let mut four = get_args("small", s.warmup, s.throughput_calls, 64);
    four.extend(["--plugins".to_string(), "4".into()]);
    for wire in [Wire::CLASSIC, Wire::ALL[3]] {
        let sc = format!("2 4 plugins × 16 callers, unix, {}", wire.name());
        let go = job(Host::Go, Plugin::Go, Unix, wire, &four);
        let ours = job(Host::Intercom(false), Plugin::Rust, Unix, wire, &four);
        p.row(&sc, CALLS, ours, go, None);
    }
}

/// Scenario 5: Launch → first call, and kill.
fn launch(p: &mut Plan, s: &Sizes) {
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
        p.row(&sc, KILL, ours, go, None);
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
}

/// Scenario 3: Payloads: Get of a value of each size (the plugin reads it from a file).
fn payloads(p: &mut Plan, s: &Sizes) {
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
}

/// Scenario 4: Broker callback round trip (go-plugin's bidirectional counter).
fn callbacks(p: &mut Plan, s: &Sizes) {
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
}

/// Scenario 6: Server streaming: the macro's `Streaming<T>` against raw tonic (go-plugin has
/// no streaming example to compare with).
fn streaming(p: &mut Plan, s: &Sizes) {
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
}

/// Scenario 7: Idle plugin clients held by one host.
fn idle(p: &mut Plan, s: &Sizes) {
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
}

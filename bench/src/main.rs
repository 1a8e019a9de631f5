//! The benchmark driver behind `scripts/bench.sh`: runs every host × plugin pairing in
//! interleaved rounds and writes one markdown table of same-run ratios.
//!
//! ```text
//! intercom-bench --go-dir DIR [--rounds N] [--smoke] [--only 1,5]
//!                [--out FILE] [--date D] [--command C] [--kubernetes JSON]
//! ```
//!
//! `--kubernetes` adds scenario 8's section from bench-kube's output (scripts/bench.sh runs
//! bench-kube in a network namespace of its own) and, unless `--smoke`, fails the run when
//! the SDK's overhead after pod Ready is over its bound.
//! `--only` keeps the scenarios with those numbers and then writes no `--out` file (a
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

mod args;
mod kubernetes;
mod plan;
mod render;

use plan::{ATTEMPTS, Host, Job, PAYLOADS, Plan, Plugin, Sizes, Transport, plan};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Each job's figures (a JSON object of its host's output), one map per round.
type Measured = Vec<Vec<HashMap<String, f64>>>;

#[derive(Debug)]
struct Peers {
    go_host: PathBuf,
    go_plugin: PathBuf,
    go_counter_plugin: PathBuf,
    host: PathBuf,
    plugin: PathBuf,
    counter_plugin: PathBuf,
    stream_plugin: PathBuf,
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

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
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
    let args = args::parse()?;
    let peers = peers(&args)?;
    let sizes = sizes(args.smoke);
    let plan = only(plan(&sizes), &args.only);

    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("kv_small"), b"value")?;
    for (name, len) in PAYLOADS {
        std::fs::write(dir.path().join(format!("kv_{name}")), vec![0x5a; len])?;
    }

    let load_before = loadavg();
    let (results, retried) = measure(&plan, &peers, dir.path(), args.rounds)?;
    let load_after = loadavg();

    let table = render::table(&plan, &results, args.rounds);

    let mut doc = render::header(&render::Header {
        command: &args.command,
        date: &args.date,
        load: (&load_before, &load_after),
        rounds: args.rounds,
        sizes: &sizes,
        results: &results,
    });
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

/// The peers' paths: the Go ones in `--go-dir`, ours beside this binary.
fn peers(args: &args::Args) -> Result<Peers, BoxError> {
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
    ] {
        if !p.is_file() {
            return Err(format!("peer {} is missing: run scripts/bench.sh", p.display()).into());
        }
    }
    Ok(peers)
}

/// How many calls, launches and clients each job makes.
fn sizes(smoke: bool) -> Sizes {
    if smoke {
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
    }
}

/// The plan's rows of the scenarios numbered `only` (all when empty), with their jobs.
fn only(full: Plan, only: &[String]) -> Plan {
    if only.is_empty() {
        return full;
    }
    let mut plan = Plan::default();
    for row in full.rows {
        let number = row.scenario.split(' ').next().unwrap_or_default();
        if only.iter().any(|o| o == number) {
            let subject = full.jobs[row.subject].clone();
            let reference = full.jobs[row.reference].clone();
            plan.row(row.scenario, row.metric, subject, reference, row.target);
        }
    }
    plan
}

/// Every job of `plan` once per round, each round starting at another job; a failed job
/// is run again up to [`ATTEMPTS`] times, and listed.
fn measure(
    plan: &Plan,
    peers: &Peers,
    dir: &Path,
    rounds: usize,
) -> Result<(Measured, Vec<String>), BoxError> {
    let n = plan.jobs.len();
    let mut results: Measured = vec![Vec::new(); n];
    let mut retried = Vec::new();
    for round in 0..rounds {
        eprintln!("intercom-bench: round {}/{} ({n} jobs)", round + 1, rounds);
        for k in 0..n {
            let i = (k + round * n / rounds) % n;
            let job = &plan.jobs[i];
            let mut attempt = 1;
            let got = loop {
                match run_job(job, peers, dir) {
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
    Ok((results, retried))
}

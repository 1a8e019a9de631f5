//! Scenario 8's section of `BENCHMARKS.md`: bench-kube's figures (the Kubernetes runtime on
//! intercom-envtest) and the SDK-overhead bound it is held to.

use std::fmt::Write as _;
use std::path::Path;

use crate::BoxError;

/// The most the SDK may add after a plugin's pod is Ready, to its first call's reply.
pub const OVERHEAD_BOUND_MS: f64 = 100.0;

/// What bench-kube measured, and whether it kept [`OVERHEAD_BOUND_MS`].
pub struct Section {
    /// The markdown, a heading and a table.
    pub markdown: String,
    /// The sequential-start overheads over the bound, as `(mode, ms)`.
    pub over_bound: Vec<(&'static str, f64)>,
}

/// Renders bench-kube's JSON at `path`.
pub fn section(path: &Path) -> Result<Section, BoxError> {
    let text = std::fs::read_to_string(path)?;
    let json: serde_json::Value = serde_json::from_str(&text)?;
    let ms = |key: &str| -> Result<f64, BoxError> {
        json.get(key)
            .and_then(serde_json::Value::as_f64)
            .map(|ns| ns / 1e6)
            .ok_or_else(|| format!("bench-kube's output has no {key}").into())
    };
    let mut md = String::from(
        "\n## 8 Kubernetes on intercom-envtest\n\n\
         bench-kube: real etcd, kube-apiserver and kube-controller-manager with envtest's \
         process kubelet, examples/kv's plugin as the image, `ClientConfig`'s defaults \
         (AutoMTLS, multiplexing when the plugin offers it). Each start is `Client::new` → `connect()` → a first \
         `Put` and `Get`, split where a watch of bench-kube's own first sees the pod Ready: \
         before it is Kubernetes' share (scheduling, the kubelet, the readiness probe), after \
         it the SDK's. Medians of the sequential starts; then plugins started all at once. \
         No go-plugin figure: go-plugin has no Kubernetes runtime.\n\n\
         | connect mode | start → first call | pod Ready | SDK overhead after pod Ready | target |\n\
         |---|---:|---:|---:|---|\n",
    );
    let mut over_bound = Vec::new();
    for (mode, key) in [("port-forward", "port_forward"), ("endpoints", "endpoints")] {
        let overhead = ms(&format!("{key}_overhead_ns"))?;
        let met = overhead <= OVERHEAD_BOUND_MS;
        if !met {
            over_bound.push((mode, overhead));
        }
        let _ = writeln!(
            md,
            "| {mode} | {:.0} ms | {:.0} ms | {overhead:.1} ms | ≤ {OVERHEAD_BOUND_MS:.0} ms: {} |",
            ms(&format!("{key}_first_call_ns"))?,
            ms(&format!("{key}_pod_ready_ns"))?,
            if met { "met" } else { "**missed**" },
        );
    }
    let n = json
        .get("concurrent")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    let _ = writeln!(
        md,
        "\n{n} plugins started at once (port-forward): all {n} first calls done after {:.0} ms; \
         the largest SDK overhead after a plugin's own pod Ready: {:.1} ms.",
        ms("concurrent_all_first_calls_ns")?,
        ms("concurrent_max_overhead_ns")?,
    );
    Ok(Section {
        markdown: md,
        over_bound,
    })
}

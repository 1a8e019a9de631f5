//! The pod worker: one task per pod bound to this node, from adoption to the final delete.

use std::ffi::OsString;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodStatus};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument as _;

use super::Shared;
use super::container_env::{self, ConfigError, EnvList, PodFacts, expand};
use super::images::Image;
use super::logs::LogFile;
use super::probe::{self, ProbeTarget, Timing};
use super::process::{Launch, Process, exit_code};
use super::runtime::{
    Backoff, ContainerRuntime, Current, Kind, PodRuntime, Terminated, new_container_id,
};
use super::status::{self, ConditionClock, HOST_IP};

/// Port put into `INTERCOM_LISTEN_ADDR` for a container that declares none (intercom's
/// default plugin port).
pub const DEFAULT_LISTEN_PORT: u16 = 50077;

/// The latest state of a pod as seen by the node's watch.
#[derive(Debug, Clone)]
pub(crate) struct PodUpdate {
    pub(crate) pod: Arc<Pod>,
    /// The object is gone from the API (deleted with grace 0 by someone else).
    pub(crate) removed: bool,
}

/// `restartPolicy` as applied to one container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    Always,
    OnFailure,
    Never,
}

impl Policy {
    fn of(spec: &PodSpec) -> Self {
        match spec.restart_policy.as_deref() {
            Some("Never") => Self::Never,
            Some("OnFailure") => Self::OnFailure,
            _ => Self::Always,
        }
    }
}

/// How a container's runner ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Succeeded,
    Failed,
    Stopped,
}

/// Everything a pod's tasks share.
#[derive(Debug)]
struct PodCtx {
    shared: Arc<Shared>,
    rt: Arc<PodRuntime>,
    pod: Arc<Pod>,
    spec: PodSpec,
}

/// The listen port of a container: its first TCP port, else [`DEFAULT_LISTEN_PORT`].
fn listen_port(c: &Container) -> u16 {
    c.ports
        .iter()
        .flatten()
        .filter(|p| p.protocol.as_deref().is_none_or(|p| p == "TCP"))
        .find_map(|p| u16::try_from(p.container_port).ok())
        .unwrap_or(DEFAULT_LISTEN_PORT)
}

fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// Termination grace of the pod, capped by the kubelet config.
fn grace_of(pod: &Pod, shared: &Shared) -> Duration {
    let seconds = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30);
    Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
        .min(shared.config.max_termination_grace)
}

/// Go's `time.Duration` formatting, as in the kubelet's back-off messages.
fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    let millis = format!("{:03}", d.subsec_millis());
    let millis = millis.trim_end_matches('0');
    let s = if millis.is_empty() {
        format!("{}s", secs % 60)
    } else {
        format!("{}.{millis}s", secs % 60)
    };
    match (secs / 3600, (secs / 60) % 60) {
        (0, 0) => s,
        (0, m) => format!("{m}m{s}"),
        (h, m) => format!("{h}h{m}m{s}"),
    }
}

/// Runs one pod until it is deleted (or the kubelet stops).
///
/// # Cancel safety
/// Dropping the future kills the pod's processes (each `Process` SIGKILLs its group on drop).
pub(crate) async fn run(shared: Arc<Shared>, mut updates: watch::Receiver<PodUpdate>) {
    let first = updates.borrow_and_update().clone();
    let pod = first.pod;
    let (Some(namespace), Some(name), Some(uid), Some(spec)) = (
        pod.metadata.namespace.clone(),
        pod.metadata.name.clone(),
        pod.metadata.uid.clone(),
        pod.spec.clone(),
    ) else {
        return;
    };
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), &namespace);

    let already_terminal = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    if first.removed {
        return;
    }
    if already_terminal {
        // Nothing to run (left over from another kubelet); just finish a deletion.
        if wait_for_deletion(&mut updates).await == Some(false) {
            final_delete(&api, &name, &uid).await;
        }
        return;
    }

    let mut ports: Vec<u16> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .flat_map(|c| {
            c.ports
                .iter()
                .flatten()
                .filter_map(|p| u16::try_from(p.container_port).ok())
                .chain([listen_port(c)])
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    let Some(ip) = shared.ips.allocate(&ports) else {
        tracing::error!(pod = %name, ?ports, "failed to allocate a loopback pod IP with free ports");
        if wait_for_deletion(&mut updates).await == Some(false) {
            final_delete(&api, &name, &uid).await;
        }
        return;
    };
    let dir = shared.root.join(format!("{namespace}_{name}_{uid}"));
    if let Err(error) = tokio::fs::create_dir_all(&dir).await {
        tracing::error!(
            error = &error as &dyn std::error::Error,
            ?dir,
            "failed to create pod directory"
        );
        return;
    }
    let has_init = spec.init_containers.as_ref().is_some_and(|v| !v.is_empty());
    let make = |c: &Container, kind: Kind| {
        let rt = ContainerRuntime::new(c.name.clone(), c.image.clone().unwrap_or_default(), kind);
        if has_init && kind != Kind::Sidecar {
            rt.lock().current = Current::Waiting {
                reason: "PodInitializing".into(),
                message: None,
            };
        }
        Arc::new(rt)
    };
    let rt = Arc::new(PodRuntime {
        namespace: namespace.clone(),
        name: name.clone(),
        uid: uid.clone(),
        ip: ip.addr(),
        dir: dir.clone(),
        start_time: Timestamp::now(),
        init: spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| {
                make(
                    c,
                    if is_sidecar(c) {
                        Kind::Sidecar
                    } else {
                        Kind::Init
                    },
                )
            })
            .collect(),
        containers: spec
            .containers
            .iter()
            .map(|c| make(c, Kind::Regular))
            .collect(),
        changed: tokio::sync::Notify::new(),
    });
    shared.register(&rt);
    tracing::info!(pod = %format!("{namespace}/{name}"), ip = %rt.ip, "starting pod");
    let ctx = Arc::new(PodCtx {
        shared: shared.clone(),
        rt: rt.clone(),
        pod: pod.clone(),
        spec,
    });
    let clock = Arc::new(Mutex::new(ConditionClock::default()));
    let writer = write_statuses(api.clone(), rt.clone(), updates.clone(), clock.clone());
    tokio::pin!(writer);
    let lifecycle = lifecycle(ctx.clone());
    tokio::pin!(lifecycle);
    rt.touch();

    // Run until deleted; the status writer and the containers make progress meanwhile.
    let mut lifecycle_done = false;
    let removed = loop {
        let update = updates.borrow_and_update().clone();
        if update.removed {
            break Some(true);
        }
        if update.pod.metadata.deletion_timestamp.is_some() {
            break Some(false);
        }
        tokio::select! {
            () = &mut lifecycle, if !lifecycle_done => lifecycle_done = true,
            never = &mut writer => match never {},
            changed = updates.changed() => if changed.is_err() { break None },
        }
    };
    let latest = updates.borrow().pod.clone();
    let Some(removed) = removed else {
        // The kubelet is shutting down: kill and reap the processes, leave the API alone.
        rt.stop_all(Duration::ZERO);
        if !lifecycle_done {
            lifecycle.await;
        }
        shared.deregister(&rt);
        return;
    };
    rt.stop_all(if removed {
        Duration::ZERO
    } else {
        grace_of(&latest, &shared)
    });
    if !lifecycle_done {
        // Keep writing statuses while the containers stop.
        tokio::select! {
            () = &mut lifecycle => {}
            never = &mut writer => match never {},
        }
    }
    if !removed {
        let final_status = status::build(
            &rt,
            &latest,
            &mut clock.lock().unwrap_or_else(|e| e.into_inner()),
            true,
        );
        if let Err(error) = patch_status(&api, &rt, &final_status).await {
            tracing::debug!(
                error = &error as &dyn std::error::Error,
                "failed to write the final pod status"
            );
        }
        final_delete(&api, &name, &uid).await;
    }
    shared.deregister(&rt);
    drop(ip);
    if let Err(error) = tokio::fs::remove_dir_all(&dir).await {
        tracing::debug!(
            error = &error as &dyn std::error::Error,
            ?dir,
            "failed to remove pod directory"
        );
    }
    tracing::info!(pod = %format!("{namespace}/{name}"), "pod finished");
}

/// Waits for a deletion: `Some(false)` graceful delete requested, `Some(true)` object
/// removed, `None` the kubelet is stopping.
async fn wait_for_deletion(updates: &mut watch::Receiver<PodUpdate>) -> Option<bool> {
    loop {
        let update = updates.borrow_and_update().clone();
        if update.removed {
            return Some(true);
        }
        if update.pod.metadata.deletion_timestamp.is_some() {
            return Some(false);
        }
        updates.changed().await.ok()?;
    }
}

/// The kubelet's last word on a pod: delete it with grace 0 so the object goes away.
async fn final_delete(api: &Api<Pod>, name: &str, uid: &str) {
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid.to_owned()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(error) => {
            tracing::warn!(error = &error as &dyn std::error::Error, pod = %name, "failed to delete terminated pod");
        }
    }
}

async fn patch_status(api: &Api<Pod>, rt: &PodRuntime, status: &PodStatus) -> kube::Result<Pod> {
    let patch = serde_json::json!({
        "metadata": { "uid": rt.uid },
        "status": status,
    });
    api.patch_status(&rt.name, &PatchParams::default(), &Patch::Merge(patch))
        .await
}

/// Patches the pod status whenever the runtime state changes (coalescing bursts).
/// Never completes; once the pod is gone it idles.
async fn write_statuses(
    api: Api<Pod>,
    rt: Arc<PodRuntime>,
    updates: watch::Receiver<PodUpdate>,
    clock: Arc<Mutex<ConditionClock>>,
) -> std::convert::Infallible {
    let mut written: Option<PodStatus> = None;
    loop {
        rt.changed.notified().await;
        let pod = updates.borrow().pod.clone();
        let status = status::build(
            &rt,
            &pod,
            &mut clock.lock().unwrap_or_else(|e| e.into_inner()),
            false,
        );
        if written.as_ref() == Some(&status) {
            continue;
        }
        match patch_status(&api, &rt, &status).await {
            Ok(_) => written = Some(status),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {
                return futures::future::pending().await;
            }
            Err(error) => {
                tracing::warn!(error = &error as &dyn std::error::Error, pod = %rt.name, "failed to patch pod status; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                rt.touch();
            }
        }
    }
}

/// Init containers in order, then the regular containers, then stops the sidecars.
async fn lifecycle(ctx: Arc<PodCtx>) {
    let policy = Policy::of(&ctx.spec);
    let mut sidecars = JoinSet::new();
    let init_specs = ctx.spec.init_containers.clone().unwrap_or_default();
    for (c, spec) in ctx.rt.init.iter().zip(init_specs) {
        if c.kind == Kind::Sidecar {
            sidecars.spawn(
                run_container(ctx.clone(), c.clone(), spec, Policy::Always).in_current_span(),
            );
            let mut started = c.started.subscribe();
            tokio::select! {
                _ = started.wait_for(|s| *s) => continue,
                _ = c.stopped() => break,
            }
        }
        let init_policy = if policy == Policy::Never {
            Policy::Never
        } else {
            Policy::OnFailure
        };
        if run_container(ctx.clone(), c.clone(), spec, init_policy).await != Outcome::Succeeded {
            stop_and_join(&ctx, &mut sidecars).await;
            return;
        }
    }
    let mut main = JoinSet::new();
    for (c, spec) in ctx.rt.containers.iter().zip(ctx.spec.containers.clone()) {
        if c.stop_requested().is_none() {
            main.spawn(run_container(ctx.clone(), c.clone(), spec, policy).in_current_span());
        }
    }
    while main.join_next().await.is_some() {}
    stop_and_join(&ctx, &mut sidecars).await;
}

async fn stop_and_join(ctx: &PodCtx, sidecars: &mut JoinSet<Outcome>) {
    let grace = grace_of(&ctx.pod, &ctx.shared);
    for c in ctx.rt.init.iter().filter(|c| c.kind == Kind::Sidecar) {
        c.stop
            .send_if_modified(|s| s.is_none() && s.replace(grace).is_none());
    }
    while sidecars.join_next().await.is_some() {}
}

impl PodCtx {
    fn set_waiting(&self, c: &ContainerRuntime, reason: &str, message: String) {
        c.lock().current = Current::Waiting {
            reason: reason.into(),
            message: Some(message),
        };
        self.rt.touch();
    }

    async fn environment(&self, spec: &Container) -> Result<EnvList, ConfigError> {
        let mut base = EnvList::default();
        for name in &self.shared.config.inherit_env {
            if let Some(value) = std::env::var_os(name) {
                base.set(name.clone(), value.to_string_lossy());
            }
        }
        base.set("HOSTNAME", self.rt.name.clone());
        base.set("HOME", self.rt.dir.to_string_lossy());
        base.set("POD_IP", self.rt.ip.to_string());
        base.set(
            super::LISTEN_ADDR_ENV,
            format!("{}:{}", self.rt.ip, listen_port(spec)),
        );
        let facts = PodFacts {
            pod: &self.pod,
            pod_ip: self.rt.ip,
            host_ip: HOST_IP,
        };
        let mut env = container_env::resolve(&self.shared.client, spec, facts, base).await?;
        container_env::pin_listen_addr(&mut env, self.rt.ip);
        Ok(env)
    }
}

/// `command` replaces the image entrypoint (run as given, `PATH` lookup for bare names);
/// without it the image's executable runs. `args` follow; `$(VAR)` is expanded in both.
fn launch_of(spec: &Container, image: &Image, env: EnvList) -> Launch {
    let args = spec.args.iter().flatten().map(|a| expand(a, &env));
    let (program, args) = match spec.command.as_deref().and_then(<[String]>::split_first) {
        Some((first, rest)) => (
            OsString::from(expand(first, &env)),
            rest.iter().map(|a| expand(a, &env)).chain(args).collect(),
        ),
        None => (image.executable.clone().into_os_string(), args.collect()),
    };
    Launch {
        program,
        args,
        env: env.into_vec(),
    }
}

/// One container from image pull to its last exit, restarting per `policy`.
async fn run_container(
    ctx: Arc<PodCtx>,
    c: Arc<ContainerRuntime>,
    spec: Container,
    policy: Policy,
) -> Outcome {
    let config = &ctx.shared.config;
    let mut restart_backoff = Backoff::new(config.backoff_base, config.backoff_max);
    let mut pull_backoff = Backoff::new(config.backoff_base, config.backoff_max);
    let mut config_backoff = Backoff::new(config.backoff_base, config.backoff_max);
    let mut instances: i32 = 0;
    loop {
        if c.stop_requested().is_some() {
            return Outcome::Stopped;
        }
        let image = match ctx.shared.images.pull(&c.image).await {
            Ok(image) => image,
            Err(error) => {
                let delay = pull_backoff.next_retry();
                ctx.set_waiting(&c, "ErrImagePull", error.to_string());
                let hold = config.backoff_base.min(Duration::from_secs(1));
                if !c.sleep(hold).await {
                    return Outcome::Stopped;
                }
                let message = format!(
                    "Back-off pulling image {:?}: ErrImagePull: {error}",
                    c.image
                );
                ctx.set_waiting(&c, "ImagePullBackOff", message);
                if !c.sleep(delay).await {
                    return Outcome::Stopped;
                }
                continue;
            }
        };
        pull_backoff.reset();
        c.lock().image_id = image.id.clone();
        let env = match ctx.environment(&spec).await {
            Ok(env) => env,
            Err(error) => {
                ctx.set_waiting(&c, "CreateContainerConfigError", error.to_string());
                if !c.sleep(config_backoff.next_retry()).await {
                    return Outcome::Stopped;
                }
                continue;
            }
        };
        config_backoff.reset();
        let target = ProbeTarget {
            ip: ctx.rt.ip,
            ports: spec.ports.clone().unwrap_or_default(),
            env: env.clone().into_vec(),
            dir: ctx.rt.dir.clone(),
        };
        let launch = launch_of(&spec, &image, env);
        let id = new_container_id();
        let started_at = Timestamp::now();
        let started = Instant::now();
        let log_path = ctx
            .rt
            .dir
            .join("logs")
            .join(&c.name)
            .join(format!("{instances}.log"));
        let spawned = LogFile::create(log_path)
            .and_then(|log| Process::spawn(&launch, &ctx.rt.dir, log.clone()).map(|p| (p, log)));
        let terminated = match spawned {
            Err(error) => Terminated {
                exit_code: 128,
                signal: None,
                reason: "StartError".into(),
                message: Some(format!(
                    "failed to start container process {:?}: {error}",
                    launch.program
                )),
                started_at: None,
                finished_at: Timestamp::now(),
                container_id: Some(id),
            },
            Ok((mut process, log)) => {
                {
                    let mut st = c.lock();
                    st.current = Current::Running { started_at };
                    st.restart_count = instances;
                    st.container_id = Some(id.clone());
                    st.pgid = Some(process.pid());
                    st.ready = false;
                    st.started = false;
                    st.logs.push_back((id.clone(), log));
                    while st.logs.len() > 3 {
                        st.logs.pop_front();
                    }
                }
                ctx.rt.touch();
                ctx.shared.started(&ctx.rt.namespace, process.pid());
                tracing::info!(container = %c.name, pid = process.pid(), program = ?launch.program, "container started");
                let probes =
                    supervise_probes(ctx.clone(), c.clone(), spec.clone(), target, started);
                let status = tokio::select! {
                    status = process.wait() => status,
                    grace = c.stopped() => process.stop(grace).await,
                    reason = probes => {
                        tracing::info!(container = %c.name, %reason, "restarting container");
                        process.stop(grace_of(&ctx.pod, &ctx.shared)).await
                    }
                };
                process.finish().await;
                let (exit_code, signal, message) = match status {
                    Ok(status) => {
                        let (code, signal) = exit_code(status);
                        (code, signal, None)
                    }
                    Err(error) => (
                        128,
                        None,
                        Some(format!("failed to wait for the process: {error}")),
                    ),
                };
                Terminated {
                    exit_code,
                    signal,
                    reason: if exit_code == 0 { "Completed" } else { "Error" }.into(),
                    message,
                    started_at: Some(started_at),
                    finished_at: Timestamp::now(),
                    container_id: Some(id),
                }
            }
        };
        tracing::info!(container = %c.name, exit_code = terminated.exit_code, reason = %terminated.reason, "container exited");
        instances += 1;
        let failed = terminated.exit_code != 0;
        {
            let mut st = c.lock();
            st.pgid = None;
            st.ready = false;
            st.started = false;
            st.container_id = terminated.container_id.clone();
            st.current = Current::Terminated(terminated.clone());
        }
        c.started.send_replace(false);
        ctx.rt.touch();
        if c.stop_requested().is_some() {
            return Outcome::Stopped;
        }
        let restart = match policy {
            Policy::Always => true,
            Policy::OnFailure => failed,
            Policy::Never => false,
        };
        if !restart {
            return if failed {
                Outcome::Failed
            } else {
                Outcome::Succeeded
            };
        }
        let delay = restart_backoff.next_restart(started.elapsed());
        {
            let mut st = c.lock();
            st.last = Some(terminated);
            if !delay.is_zero() {
                st.current = Current::Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: Some(format!(
                        "back-off {} restarting failed container={} pod={}_{}({})",
                        go_duration(delay),
                        c.name,
                        ctx.rt.name,
                        ctx.rt.namespace,
                        ctx.rt.uid
                    )),
                };
            }
        }
        ctx.rt.touch();
        if !delay.is_zero() && !c.sleep(delay).await {
            return Outcome::Stopped;
        }
    }
}

/// Startup, readiness and liveness probes of one container instance. Completes only when
/// the instance must be restarted (the reason is returned).
async fn supervise_probes(
    ctx: Arc<PodCtx>,
    c: Arc<ContainerRuntime>,
    spec: Container,
    target: ProbeTarget,
    started: Instant,
) -> String {
    if let Some(startup) = &spec.startup_probe {
        let t = Timing::of(startup);
        tokio::time::sleep_until(started + t.initial_delay).await;
        let mut failures = 0;
        loop {
            match probe::run(startup, &target).await {
                Ok(()) => break,
                Err(message) => {
                    failures += 1;
                    if failures >= t.failure_threshold {
                        return format!("Startup probe failed: {message}");
                    }
                }
            }
            tokio::time::sleep(t.period).await;
        }
    }
    c.lock().started = true;
    c.started.send_replace(true);
    ctx.rt.touch();
    let set_ready = |ready: bool| {
        let changed = {
            let mut st = c.lock();
            std::mem::replace(&mut st.ready, ready) != ready
        };
        if changed {
            ctx.rt.touch();
        }
    };
    let readiness = async {
        let Some(probe) = &spec.readiness_probe else {
            set_ready(true);
            return futures::future::pending::<String>().await;
        };
        let t = Timing::of(probe);
        tokio::time::sleep_until(started + t.initial_delay).await;
        let (mut successes, mut failures) = (0, 0);
        loop {
            match probe::run(probe, &target).await {
                Ok(()) => {
                    (successes, failures) = (successes + 1, 0);
                    if successes >= t.success_threshold {
                        set_ready(true);
                    }
                }
                Err(message) => {
                    (successes, failures) = (0, failures + 1);
                    tracing::debug!(container = %c.name, %message, "readiness probe failed");
                    if failures >= t.failure_threshold {
                        set_ready(false);
                    }
                }
            }
            tokio::time::sleep(t.period).await;
        }
    };
    let liveness = async {
        let Some(probe) = &spec.liveness_probe else {
            return futures::future::pending::<String>().await;
        };
        let t = Timing::of(probe);
        tokio::time::sleep_until(started + t.initial_delay).await;
        let mut failures = 0;
        loop {
            match probe::run(probe, &target).await {
                Ok(()) => failures = 0,
                Err(message) => {
                    failures += 1;
                    if failures >= t.failure_threshold {
                        return format!("Liveness probe failed: {message}");
                    }
                }
            }
            tokio::time::sleep(t.period).await;
        }
    };
    tokio::select! {
        reason = readiness => reason,
        reason = liveness => reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::from_millis(200)), "200ms");
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(80)), "1m20s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
    }
}

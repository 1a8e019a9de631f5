//! `PodStatus` as the kubelet computes it (`generateAPIPodStatus`, `getPhase`).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    ContainerState as ApiState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::runtime::{ContainerState, Current, Kind, PodRuntime, Terminated};

/// The host address of every pod (the node's InternalIP).
pub(crate) const HOST_IP: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// Condition types the kubelet owns.
const OWNED: [&str; 4] = [
    "PodReadyToStartContainers",
    "Initialized",
    "ContainersReady",
    "Ready",
];

/// Remembers when each owned condition last changed, so `lastTransitionTime` only moves on
/// a real transition.
#[derive(Debug, Default)]
pub(crate) struct ConditionClock(BTreeMap<&'static str, (bool, Timestamp)>);

impl ConditionClock {
    fn stamp(&mut self, kind: &'static str, status: bool, now: Timestamp) -> Timestamp {
        let entry = self.0.entry(kind).or_insert((status, now));
        if entry.0 != status {
            *entry = (status, now);
        }
        entry.1
    }
}

fn terminated_state(t: &Terminated) -> ContainerStateTerminated {
    ContainerStateTerminated {
        container_id: t.container_id.clone(),
        exit_code: t.exit_code,
        finished_at: Some(Time(t.finished_at)),
        message: t.message.clone(),
        reason: Some(t.reason.clone()),
        signal: t.signal,
        started_at: t.started_at.map(Time),
    }
}

pub(crate) fn container_status(name: &str, image: &str, st: &ContainerState) -> ContainerStatus {
    let state = match &st.current {
        Current::Waiting { reason, message } => ApiState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: message.clone(),
            }),
            ..ApiState::default()
        },
        Current::Running { started_at } => ApiState {
            running: Some(ContainerStateRunning {
                started_at: Some(Time(*started_at)),
            }),
            ..ApiState::default()
        },
        Current::Terminated(t) => ApiState {
            terminated: Some(terminated_state(t)),
            ..ApiState::default()
        },
    };
    ContainerStatus {
        name: name.to_owned(),
        image: image.to_owned(),
        image_id: st.image_id.clone(),
        container_id: st.container_id.clone(),
        ready: st.ready,
        restart_count: st.restart_count,
        started: Some(st.started),
        state: Some(state),
        last_state: Some(ApiState {
            terminated: st.last.as_ref().map(terminated_state),
            ..ApiState::default()
        }),
        ..ContainerStatus::default()
    }
}

/// `getPhase`: `terminal` is set once the pod is being torn down after deletion.
pub(crate) fn phase(
    restart_policy: &str,
    init: &[(Kind, ContainerState)],
    regular: &[ContainerState],
    terminal: bool,
) -> &'static str {
    let (mut pending_init, mut failed_init) = (0, 0);
    for (kind, st) in init {
        if *kind == Kind::Sidecar {
            pending_init += usize::from(!st.started);
            continue;
        }
        match &st.current {
            Current::Terminated(t) if t.exit_code == 0 => {}
            Current::Terminated(_) => failed_init += 1,
            Current::Waiting { .. } if st.last.as_ref().is_some_and(|t| t.exit_code != 0) => {
                failed_init += 1;
            }
            _ => pending_init += 1,
        }
    }
    if failed_init > 0 && restart_policy == "Never" {
        return "Failed";
    }
    if pending_init + failed_init > 0 {
        return if terminal { "Failed" } else { "Pending" };
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for st in regular {
        match &st.current {
            Current::Running { .. } => running += 1,
            Current::Terminated(t) => {
                stopped += 1;
                succeeded += usize::from(t.exit_code == 0);
            }
            Current::Waiting { .. } if st.last.is_some() => {
                stopped += 1;
                succeeded += usize::from(st.last.as_ref().is_some_and(|t| t.exit_code == 0));
            }
            Current::Waiting { .. } => waiting += 1,
        }
    }
    if terminal {
        return if running == 0 && waiting == 0 && stopped == succeeded {
            "Succeeded"
        } else {
            "Failed"
        };
    }
    match () {
        () if waiting > 0 => "Pending",
        () if running > 0 => "Running",
        () if stopped > 0 && restart_policy == "Always" => "Running",
        () if stopped > 0 && stopped == succeeded => "Succeeded",
        () if stopped > 0 && restart_policy == "Never" => "Failed",
        () if stopped > 0 => "Running",
        () => "Pending",
    }
}

fn names(list: &[&str]) -> String {
    format!("[{}]", list.join(" "))
}

/// The full status to write for `rt`, given the latest `pod` object.
pub(crate) fn build(
    rt: &PodRuntime,
    pod: &Pod,
    clock: &mut ConditionClock,
    terminal: bool,
) -> PodStatus {
    let now = Timestamp::now();
    let spec = pod.spec.as_ref();
    let restart_policy = spec
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    let init: Vec<(Kind, ContainerState)> =
        rt.init.iter().map(|c| (c.kind, c.snapshot())).collect();
    let regular: Vec<ContainerState> = rt.containers.iter().map(|c| c.snapshot()).collect();
    let phase = phase(restart_policy, &init, &regular, terminal);
    let generation = pod.metadata.generation;

    let incomplete_init: Vec<&str> = rt
        .init
        .iter()
        .zip(&init)
        .filter(|(_, (kind, st))| match kind {
            Kind::Sidecar => !st.started,
            _ => !matches!(&st.current, Current::Terminated(t) if t.exit_code == 0),
        })
        .map(|(c, _)| c.name.as_str())
        .collect();
    let unready: Vec<&str> = rt
        .init
        .iter()
        .zip(&init)
        .filter(|(_, (kind, st))| *kind == Kind::Sidecar && !st.ready)
        .map(|(c, _)| c.name.as_str())
        .chain(
            rt.containers
                .iter()
                .zip(&regular)
                .filter(|(_, st)| !st.ready)
                .map(|(c, _)| c.name.as_str()),
        )
        .collect();
    let completed = phase == "Succeeded";
    let existing = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let gates_missing: Vec<String> = spec
        .and_then(|s| s.readiness_gates.as_ref())
        .into_iter()
        .flatten()
        .filter(|g| {
            !existing
                .iter()
                .any(|c| c.type_ == g.condition_type && c.status == "True")
        })
        .map(|g| g.condition_type.clone())
        .collect();

    let mut condition =
        |kind: &'static str, ok: bool, reason: Option<&str>, message: Option<String>| {
            PodCondition {
                type_: kind.to_owned(),
                status: if ok { "True" } else { "False" }.to_owned(),
                last_transition_time: Some(Time(clock.stamp(kind, ok, now))),
                reason: reason.map(str::to_owned),
                message,
                observed_generation: generation,
                ..PodCondition::default()
            }
        };
    let containers_ready = unready.is_empty() && !terminal;
    let (not_ready_reason, not_ready_message) = if completed {
        (Some("PodCompleted"), None)
    } else if !containers_ready {
        (
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: {}",
                names(&unready)
            )),
        )
    } else {
        (None, None)
    };
    let initialized = incomplete_init.is_empty();
    let ready = containers_ready && gates_missing.is_empty();
    let ready_reason = if !containers_ready {
        (not_ready_reason, not_ready_message.clone())
    } else if !gates_missing.is_empty() {
        (
            Some("ReadinessGatesNotReady"),
            Some(format!(
                "corresponding condition of pod readiness gate {:?} does not exist.",
                gates_missing.join(", ")
            )),
        )
    } else {
        (None, None)
    };
    let ours = [
        condition("PodReadyToStartContainers", !terminal, None, None),
        condition(
            "Initialized",
            initialized,
            (!initialized).then_some("ContainersNotInitialized"),
            (!initialized).then(|| {
                format!(
                    "containers with incomplete status: {}",
                    names(&incomplete_init)
                )
            }),
        ),
        condition("Ready", ready, ready_reason.0, ready_reason.1),
        condition(
            "ContainersReady",
            containers_ready,
            not_ready_reason,
            not_ready_message,
        ),
    ];
    let mut conditions: Vec<PodCondition> = existing
        .into_iter()
        .filter(|c| !OWNED.contains(&c.type_.as_str()))
        .collect();
    if !conditions.iter().any(|c| c.type_ == "PodScheduled") {
        conditions.push(PodCondition {
            type_: "PodScheduled".into(),
            status: "True".into(),
            last_transition_time: Some(Time(rt.start_time)),
            ..PodCondition::default()
        });
    }
    conditions.extend(ours);

    let statuses = |list: &[std::sync::Arc<super::runtime::ContainerRuntime>],
                    states: Vec<&ContainerState>| {
        list.iter()
            .zip(states)
            .map(|(c, st)| container_status(&c.name, &c.image, st))
            .collect::<Vec<_>>()
    };
    let init_statuses = statuses(&rt.init, init.iter().map(|(_, st)| st).collect());
    let pod_ip = rt.ip.to_string();
    PodStatus {
        phase: Some(phase.to_owned()),
        conditions: Some(conditions),
        container_statuses: Some(statuses(&rt.containers, regular.iter().collect())),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        host_ip: Some(HOST_IP.to_string()),
        host_ips: Some(vec![HostIP {
            ip: HOST_IP.to_string(),
        }]),
        pod_ip: Some(pod_ip.clone()),
        pod_ips: Some(vec![PodIP { ip: pod_ip }]),
        start_time: Some(Time(rt.start_time)),
        observed_generation: generation,
        ..PodStatus::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(current: Current, last: Option<i32>) -> ContainerState {
        ContainerState {
            current,
            last: last.map(|code| Terminated {
                exit_code: code,
                signal: None,
                reason: "Error".into(),
                message: None,
                started_at: None,
                finished_at: Timestamp::now(),
                container_id: None,
            }),
            restart_count: 0,
            ready: false,
            started: false,
            image_id: String::new(),
            container_id: None,
            pgid: None,
            logs: Default::default(),
        }
    }

    fn waiting(reason: &str) -> Current {
        Current::Waiting {
            reason: reason.into(),
            message: None,
        }
    }

    fn exited(code: i32) -> Current {
        match st(waiting("x"), Some(code)).last {
            Some(t) => Current::Terminated(t),
            None => unreachable!(),
        }
    }

    #[test]
    fn phases() {
        let running = Current::Running {
            started_at: Timestamp::now(),
        };
        assert_eq!(
            phase(
                "Always",
                &[],
                &[st(waiting("ContainerCreating"), None)],
                false
            ),
            "Pending"
        );
        assert_eq!(
            phase("Always", &[], &[st(running.clone(), None)], false),
            "Running"
        );
        assert_eq!(
            phase(
                "Always",
                &[],
                &[st(waiting("CrashLoopBackOff"), Some(1))],
                false
            ),
            "Running"
        );
        assert_eq!(
            phase("Never", &[], &[st(exited(0), None)], false),
            "Succeeded"
        );
        assert_eq!(phase("Never", &[], &[st(exited(2), None)], false), "Failed");
        assert_eq!(
            phase("OnFailure", &[], &[st(exited(0), None)], false),
            "Succeeded"
        );
        assert_eq!(
            phase("Always", &[], &[st(exited(143), None)], true),
            "Failed"
        );
        assert_eq!(
            phase("Always", &[], &[st(exited(0), None)], true),
            "Succeeded"
        );
        let init = [(Kind::Init, st(waiting("PodInitializing"), None))];
        assert_eq!(
            phase(
                "Always",
                &init,
                &[st(waiting("PodInitializing"), None)],
                false
            ),
            "Pending"
        );
        let failed_init = [(Kind::Init, st(exited(1), None))];
        assert_eq!(
            phase(
                "Never",
                &failed_init,
                &[st(waiting("PodInitializing"), None)],
                false
            ),
            "Failed"
        );
    }
}

//! Reading failures off pods and Deployments: crash loops, image pulls, progress
//! deadlines, pods the ReplicaSet cannot create.

use super::*;

pub(super) fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A reason this pod cannot start (reason, message with what to do about it).
pub(super) fn pod_failure(
    pod: &Pod,
    container: Option<&k8s_openapi::api::core::v1::ContainerStatus>,
) -> Option<(String, String)> {
    if let Some(cond) = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        })
        && cond.reason.as_deref() == Some("Unschedulable")
    {
        return Some((
            "Unschedulable".into(),
            format!(
                "{}; check the node selector, resources and taints",
                cond.message.clone().unwrap_or_default()
            ),
        ));
    }
    let waiting = container?.state.as_ref()?.waiting.as_ref()?;
    let reason = waiting.reason.clone().unwrap_or_default();
    let message = waiting.message.clone().unwrap_or_default();
    let hint = match reason.as_str() {
        "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" => {
            "the image cannot be pulled; check the image reference and imagePullSecrets"
        }
        "CrashLoopBackOff" => "the plugin keeps exiting; its last log lines say why",
        "CreateContainerConfigError" | "CreateContainerError" => {
            "the container spec refers to something missing (a ConfigMap, Secret or key)"
        }
        _ => return None,
    };
    Some((reason, format!("{message} ({hint})")))
}

pub(super) fn progress_deadline_exceeded(d: &Deployment) -> Option<String> {
    d.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| {
            c.type_ == "Progressing"
                && c.status == "False"
                && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
        })
        .map(|c| c.message.clone().unwrap_or_default())
}

/// The Deployment's `ReplicaFailure` condition (copied from its ReplicaSet): pods cannot
/// be created at all, e.g. rejected by admission. Reason and message.
pub(super) fn replica_failure(d: &Deployment) -> Option<(String, String)> {
    d.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
        .map(|c| {
            (
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

pub(super) async fn last_logs(pods: &Api<Pod>, pod: &str, container: &str) -> String {
    for previous in [true, false] {
        let params = LogParams {
            container: Some(container.into()),
            tail_lines: Some(20),
            previous,
            ..LogParams::default()
        };
        if let Ok(Ok(text)) = tokio::time::timeout(LOG_READ_TIMEOUT, pods.logs(pod, &params)).await
            && !text.trim().is_empty()
        {
            return text;
        }
    }
    String::new()
}

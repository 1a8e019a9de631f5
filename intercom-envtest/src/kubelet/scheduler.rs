//! A one-node scheduler: binds pending pods that fit this node through the `binding`
//! subresource, and marks the rest `PodScheduled=False/Unschedulable` like kube-scheduler.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{
    Binding, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference, Pod, PodCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};

use super::Shared;

/// Does `pod` fit a node named `node` with `labels`? `Err` explains why not.
pub(crate) fn fits(pod: &Pod, node: &str, labels: &BTreeMap<String, String>) -> Result<(), String> {
    let Some(spec) = &pod.spec else {
        return Err("pod has no spec".into());
    };
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let terms = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|s| s.node_selector_terms.as_slice());
    let affinity_ok = match terms {
        None | Some([]) => true,
        Some(terms) => terms.iter().any(|t| term_matches(t, node, labels)),
    };
    if selector_ok && affinity_ok {
        Ok(())
    } else {
        Err(
            "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. \
             preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
                .into(),
        )
    }
}

fn term_matches(term: &NodeSelectorTerm, node: &str, labels: &BTreeMap<String, String>) -> bool {
    let fields = BTreeMap::from([("metadata.name".to_owned(), node.to_owned())]);
    let exprs = term.match_expressions.iter().flatten();
    let field_exprs = term.match_fields.iter().flatten();
    let any = term
        .match_expressions
        .as_ref()
        .is_some_and(|v| !v.is_empty())
        || term.match_fields.as_ref().is_some_and(|v| !v.is_empty());
    any && exprs.clone().all(|r| requirement_matches(r, labels))
        && field_exprs.clone().all(|r| requirement_matches(r, &fields))
}

fn requirement_matches(r: &NodeSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let value = labels.get(&r.key);
    let number = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), Some(want)) = (
                value.and_then(|v| number(v)),
                values.first().and_then(|v| number(v)),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                have > want
            } else {
                have < want
            }
        }
        _ => false,
    }
}

/// Runs until aborted.
pub(crate) async fn run(shared: Arc<Shared>) {
    let api: Api<Pod> = Api::all(shared.client.clone());
    let config = watcher::Config::default()
        .fields("spec.nodeName=,status.phase!=Succeeded,status.phase!=Failed");
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Apply(pod) | Event::InitApply(pod)) => schedule(&shared, pod).await,
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "unscheduled-pod watch failed; retrying"
                );
            }
        }
    }
}

async fn schedule(shared: &Shared, pod: Pod) {
    let spec = pod.spec.as_ref();
    let scheduler = spec
        .and_then(|s| s.scheduler_name.as_deref())
        .unwrap_or("default-scheduler");
    if scheduler != "default-scheduler"
        || pod.metadata.deletion_timestamp.is_some()
        || spec
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    {
        return;
    }
    let (Some(namespace), Some(name)) = (pod.metadata.namespace.clone(), pod.metadata.name.clone())
    else {
        return;
    };
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), &namespace);
    match fits(&pod, &shared.node_name, &shared.node_labels) {
        Ok(()) => {
            let binding = Binding {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(namespace.clone()),
                    uid: pod.metadata.uid.clone(),
                    ..ObjectMeta::default()
                },
                target: ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Node".into()),
                    name: Some(shared.node_name.clone()),
                    ..ObjectReference::default()
                },
            };
            let bound: kube::Result<serde_json::Value> = api
                .create_subresource("binding", &name, &PostParams::default(), &binding)
                .await;
            match bound {
                Ok(_) => {
                    tracing::debug!(pod = %format!("{namespace}/{name}"), node = %shared.node_name, "bound pod")
                }
                // Already bound (by us or another scheduler) or gone.
                Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {}
                Err(error) => {
                    tracing::warn!(error = &error as &dyn std::error::Error, pod = %format!("{namespace}/{name}"), "failed to bind pod");
                }
            }
        }
        Err(message) => {
            let already = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .any(|c| {
                    c.type_ == "PodScheduled"
                        && c.status == "False"
                        && c.message.as_deref() == Some(message.as_str())
                });
            if already {
                return;
            }
            let condition = PodCondition {
                type_: "PodScheduled".into(),
                status: "False".into(),
                reason: Some("Unschedulable".into()),
                message: Some(message),
                last_transition_time: Some(Time(jiff::Timestamp::now())),
                ..PodCondition::default()
            };
            // Strategic merge: conditions merge by `type`.
            let patch = serde_json::json!({ "status": { "conditions": [condition] } });
            if let Err(error) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
                .await
            {
                tracing::debug!(
                    error = &error as &dyn std::error::Error,
                    "failed to mark pod unschedulable"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "spec": spec}))
            .unwrap()
    }

    #[test]
    fn selectors_and_affinity() {
        let labels = BTreeMap::from([
            ("kubernetes.io/os".to_owned(), "linux".to_owned()),
            ("zone".to_owned(), "a".to_owned()),
        ]);
        let ok = |spec| fits(&pod(spec), "n1", &labels).is_ok();
        assert!(ok(serde_json::json!({"containers": []})));
        assert!(ok(
            serde_json::json!({"containers": [], "nodeSelector": {"kubernetes.io/os": "linux"}})
        ));
        assert!(!ok(
            serde_json::json!({"containers": [], "nodeSelector": {"kubernetes.io/os": "windows"}})
        ));
        let affinity = |op: &str, values: serde_json::Value| {
            serde_json::json!({"containers": [], "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": op, "values": values}]}
            ]}}}})
        };
        assert!(ok(affinity("In", serde_json::json!(["a", "b"]))));
        assert!(!ok(affinity("NotIn", serde_json::json!(["a"]))));
        assert!(ok(affinity("Exists", serde_json::json!([]))));
        let by_name = serde_json::json!({"containers": [], "affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}
        ]}}}});
        assert!(!ok(by_name));
    }
}

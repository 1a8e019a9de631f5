//! Which pods are the plugin's: those controlled by a ReplicaSet that the plugin's
//! Deployment controls, by UID.
//!
//! Labels only say which pods to look at. Anyone who may create pods in the namespace can
//! copy them, instance label included, so a pod is pinned, dialled, balanced to and has
//! its log forwarded only when its controller ownerReference names a ReplicaSet whose own
//! controller is the Deployment this host created (or reattached to), UID for UID. The
//! ReplicaSets are watched (the Deployment controller copies the pod labels onto them).
//!
//! What this does not stop: someone allowed to create pods who also reads the
//! ReplicaSet's UID can write a pod claiming that ReplicaSet as its controller. The
//! ReplicaSet controller then counts it as one of its replicas (and may delete it to
//! scale down); keep pod creation in the plugin namespace to those you trust.

use std::collections::HashSet;
use std::sync::Mutex;

use futures::stream::BoxStream;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};

use super::KubeError;
use crate::sync::lock;

/// Watches the ReplicaSets carrying the plugin's instance label (`selector`).
pub(crate) fn watch(
    api: Api<ReplicaSet>,
    selector: &str,
) -> BoxStream<'static, Result<Event<ReplicaSet>, watcher::Error>> {
    use futures::StreamExt;
    watcher::watcher(api, watcher::Config::default().labels(selector))
        .default_backoff()
        .boxed()
}

/// The ReplicaSets of one plugin Deployment, by UID.
#[derive(Debug, Default)]
pub(crate) struct Owners {
    /// The Deployment's UID (empty: nothing is trusted).
    deployment_uid: String,
    /// UIDs of the ReplicaSets the Deployment controls.
    replica_sets: Mutex<HashSet<String>>,
    /// During a (re)list: the ReplicaSets seen so far, which replace `replica_sets` when
    /// the list is complete.
    relist: Mutex<Option<HashSet<String>>>,
}

impl Owners {
    /// Trusts the pods of the ReplicaSets controlled by the Deployment `deployment_uid`.
    pub(crate) fn new(deployment_uid: String) -> Self {
        Self {
            deployment_uid,
            ..Self::default()
        }
    }

    /// Takes what the ReplicaSet watch yielded: whether the owned set changed, or the
    /// error that retrying cannot fix (the host may not list or watch ReplicaSets, so no
    /// pod would ever be trusted). Other watch errors are retried by the watch.
    pub(crate) fn take(
        &self,
        item: Result<Event<ReplicaSet>, watcher::Error>,
    ) -> Result<bool, KubeError> {
        match item {
            Ok(event) => Ok(self.event(&event)),
            Err(err) => {
                tracing::debug!(
                    error = &err as &dyn std::error::Error,
                    "ReplicaSet watch error"
                );
                match err {
                    watcher::Error::InitialListFailed(source)
                    | watcher::Error::WatchStartFailed(source)
                        if matches!(&source, kube::Error::Api(s) if s.code == 403) =>
                    {
                        Err(KubeError::Api {
                            step: "watch the plugin's ReplicaSets (its pods are trusted by owner)"
                                .into(),
                            source,
                        })
                    }
                    _ => Ok(false),
                }
            }
        }
    }

    /// Takes one event of the ReplicaSet watch; returns whether the owned set changed.
    fn event(&self, event: &Event<ReplicaSet>) -> bool {
        match event {
            Event::Apply(rs) => self.apply(rs),
            Event::Delete(rs) => rs
                .metadata
                .uid
                .as_ref()
                .is_some_and(|uid| lock(&self.replica_sets).remove(uid)),
            Event::Init => {
                *lock(&self.relist) = Some(HashSet::new());
                false
            }
            Event::InitApply(rs) => {
                if let (Some(uid), true) = (&rs.metadata.uid, self.owns(rs))
                    && let Some(seen) = lock(&self.relist).as_mut()
                {
                    seen.insert(uid.clone());
                }
                self.apply(rs)
            }
            Event::InitDone => match lock(&self.relist).take() {
                Some(seen) => {
                    let mut current = lock(&self.replica_sets);
                    let changed = *current != seen;
                    *current = seen;
                    changed
                }
                None => false,
            },
        }
    }

    /// Whether `pod` is controlled by one of the Deployment's ReplicaSets.
    pub(crate) fn trusts(&self, pod: &Pod) -> bool {
        controller_uid(&pod.metadata, "ReplicaSet")
            .is_some_and(|uid| lock(&self.replica_sets).contains(uid))
    }

    fn owns(&self, rs: &ReplicaSet) -> bool {
        !self.deployment_uid.is_empty()
            && controller_uid(&rs.metadata, "Deployment") == Some(self.deployment_uid.as_str())
    }

    fn apply(&self, rs: &ReplicaSet) -> bool {
        let Some(uid) = rs.metadata.uid.clone() else {
            return false;
        };
        if self.owns(rs) {
            lock(&self.replica_sets).insert(uid)
        } else {
            lock(&self.replica_sets).remove(&uid)
        }
    }
}

/// The UID of the object's controller, if that is an `apps/v1` `kind`.
fn controller_uid<'a>(meta: &'a ObjectMeta, kind: &str) -> Option<&'a str> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
        .filter(|o| o.kind == kind && o.api_version == "apps/v1")
        .map(|o| o.uid.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn meta(uid: &str, owner_kind: &str, owner_uid: &str, controller: bool) -> ObjectMeta {
        ObjectMeta {
            uid: Some(uid.into()),
            owner_references: Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: owner_kind.into(),
                name: "x".into(),
                uid: owner_uid.into(),
                controller: Some(controller),
                block_owner_deletion: None,
            }]),
            ..ObjectMeta::default()
        }
    }

    fn rs(uid: &str, deployment: &str) -> ReplicaSet {
        ReplicaSet {
            metadata: meta(uid, "Deployment", deployment, true),
            ..ReplicaSet::default()
        }
    }

    fn pod(rs: &str, controller: bool) -> Pod {
        Pod {
            metadata: meta("pod", "ReplicaSet", rs, controller),
            ..Pod::default()
        }
    }

    #[test]
    fn only_pods_of_the_deployments_replica_sets_are_trusted() {
        let owners = Owners::new("dep".into());
        assert!(
            !owners.trusts(&pod("rs1", true)),
            "before its ReplicaSet is known"
        );
        assert!(owners.event(&Event::Apply(rs("rs1", "dep"))));
        assert!(!owners.event(&Event::Apply(rs("other", "another-deployment"))));
        assert!(owners.trusts(&pod("rs1", true)));
        assert!(
            !owners.trusts(&pod("other", true)),
            "another Deployment's pod"
        );
        assert!(!owners.trusts(&pod("rs1", false)), "not its controller");
        assert!(!owners.trusts(&Pod::default()), "no owner at all");
        assert!(owners.event(&Event::Delete(rs("rs1", "dep"))));
        assert!(!owners.trusts(&pod("rs1", true)), "its ReplicaSet is gone");
        assert!(
            !Owners::default().trusts(&pod("", true)),
            "no Deployment UID"
        );
    }

    #[test]
    fn a_relist_forgets_replica_sets_deleted_meanwhile() {
        let owners = Owners::new("dep".into());
        owners.event(&Event::Apply(rs("old", "dep")));
        owners.event(&Event::Init);
        owners.event(&Event::InitApply(rs("new", "dep")));
        assert!(owners.event(&Event::InitDone));
        assert!(owners.trusts(&pod("new", true)));
        assert!(!owners.trusts(&pod("old", true)));
    }

    #[test]
    fn a_forbidden_replica_set_watch_fails_the_start_with_the_rbac_hint() {
        let api = |code| {
            kube::Error::Api(Box::new(kube::core::Status {
                code,
                ..kube::core::Status::default()
            }))
        };
        let owners = Owners::new("dep".into());
        let err = owners
            .take(Err(watcher::Error::InitialListFailed(api(403))))
            .expect_err("forbidden is fatal");
        assert!(err.to_string().contains("deploy/rbac.yaml"), "{err}");
        assert!(err.to_string().contains("ReplicaSets"), "{err}");
        assert!(matches!(
            owners.take(Err(watcher::Error::InitialListFailed(api(503)))),
            Ok(false)
        ));
        assert!(matches!(
            owners.take(Ok(Event::Apply(rs("rs1", "dep")))),
            Ok(true)
        ));
    }
}

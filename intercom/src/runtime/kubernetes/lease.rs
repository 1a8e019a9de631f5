//! Host Leases: what removes the plugins of a host that died.
//!
//! A host that launches a plugin creates a `coordination.k8s.io` Lease named after the
//! plugin's Deployment (owned by it, so it goes with it) and renews it every third of
//! its duration while the plugin handle lives. A host that dies without `kill` — SIGKILL,
//! a lost machine, a host outside the cluster whose Deployments no garbage collector
//! would touch — stops renewing. Every live intercom host running plugins in the
//! namespace reads the namespace's Leases at each renewal and deletes the Deployment of a
//! Lease it has seen unchanged for longer than the Lease's duration: on its own clock,
//! as client-go's leader election reads Leases, so clock skew between hosts does not
//! matter. The delete carries the Deployment's UID as a precondition, so a newer
//! Deployment of the same name is never touched.
//!
//! Reattachable plugins get no Lease: they are meant to outlive their host.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};

use super::objects::{INSTANCE_LABEL, MANAGED_BY, MANAGED_BY_LABEL, owner_reference};

/// How long a host's Lease lasts without renewal, by default.
pub(crate) const DEFAULT_HOST_LEASE: Duration = Duration::from_secs(30);
/// The shortest host Lease: shorter ones are raised to this.
pub(crate) const MIN_HOST_LEASE: Duration = Duration::from_secs(1);

/// How long one Lease API call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

fn seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX)
}

/// Creates the Lease of `deployment`, held by this start's `instance`.
pub(crate) async fn create(
    leases: &Api<Lease>,
    deployment: &Deployment,
    instance: &str,
    duration: Duration,
) -> Result<(), kube::Error> {
    let lease = Lease {
        metadata: ObjectMeta {
            name: deployment.metadata.name.clone(),
            labels: Some(
                [
                    (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
                    (INSTANCE_LABEL.to_owned(), instance.to_owned()),
                ]
                .into(),
            ),
            owner_references: owner_reference(deployment).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(instance.to_owned()),
            lease_duration_seconds: Some(seconds(duration)),
            acquire_time: Some(now()),
            renew_time: Some(now()),
            ..LeaseSpec::default()
        }),
    };
    match tokio::time::timeout(CALL_TIMEOUT, leases.create(&PostParams::default(), &lease)).await {
        Ok(Ok(_)) => Ok(()),
        // An earlier attempt of this start made it (see `create_or_adopt`).
        Ok(Err(kube::Error::Api(s))) if s.code == 409 => Ok(()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(kube::Error::Service(
            "timed out creating the host Lease".into(),
        )),
    }
}

/// Renews `own` (if any) and reaps abandoned plugins every third of `duration`, until
/// aborted.
pub(crate) async fn keep(
    leases: Api<Lease>,
    deployments: Api<Deployment>,
    own: Option<String>,
    duration: Duration,
) {
    let mut reaper = Reaper::default();
    let mut tick = tokio::time::interval(duration / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Some(name) = &own {
            let patch = Patch::Merge(serde_json::json!({ "spec": { "renewTime": now() } }));
            let params = PatchParams::default();
            let renew = leases.patch(name, &params, &patch);
            match tokio::time::timeout(CALL_TIMEOUT, renew).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(lease = %name, error = &e as &dyn std::error::Error, "failed to renew the host Lease of a plugin")
                }
                Err(_) => {
                    tracing::warn!(lease = %name, "timed out renewing the host Lease of a plugin")
                }
            }
        }
        reaper.reap(&leases, &deployments, own.as_deref()).await;
    }
}

/// What one host has seen of the namespace's Leases.
#[derive(Default)]
struct Reaper {
    /// Lease name → (resourceVersion, when this host first saw it).
    seen: HashMap<String, (String, Instant)>,
}

impl Reaper {
    async fn reap(
        &mut self,
        leases: &Api<Lease>,
        deployments: &Api<Deployment>,
        own: Option<&str>,
    ) {
        let lp = ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
        let list = match tokio::time::timeout(CALL_TIMEOUT, leases.list(&lp)).await {
            Ok(Ok(list)) => list,
            Ok(Err(e)) => {
                tracing::debug!(
                    error = &e as &dyn std::error::Error,
                    "cannot list host Leases"
                );
                return;
            }
            Err(_) => return,
        };
        let mut listed = HashMap::new();
        for lease in list.items {
            let Some(name) = lease.metadata.name.clone() else {
                continue;
            };
            let version = lease.metadata.resource_version.clone().unwrap_or_default();
            let first_seen = match self.seen.get(&name) {
                Some((v, at)) if *v == version => *at,
                _ => Instant::now(),
            };
            listed.insert(name.clone(), (version, first_seen));
            if Some(name.as_str()) == own {
                continue;
            }
            if let Some(expired) = expired(&lease, first_seen.elapsed()) {
                delete_owner(deployments, &name, &lease, expired).await;
            }
        }
        self.seen = listed;
    }
}

/// How long `lease` has gone unrenewed past its duration, if it has, given that it has not
/// changed for `unchanged`.
fn expired(lease: &Lease, unchanged: Duration) -> Option<Duration> {
    let secs = lease.spec.as_ref()?.lease_duration_seconds?;
    let duration = Duration::from_secs(u64::try_from(secs).ok()?);
    unchanged.checked_sub(duration).filter(|d| !d.is_zero())
}

/// Deletes the Deployment that owns `lease` (only that one: UID precondition).
async fn delete_owner(
    deployments: &Api<Deployment>,
    name: &str,
    lease: &Lease,
    unchanged: Duration,
) {
    let Some(owner) = lease
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.kind == "Deployment" && o.api_version == "apps/v1")
    else {
        return;
    };
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(owner.uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match tokio::time::timeout(CALL_TIMEOUT, deployments.delete(&owner.name, &params)).await {
        Ok(Ok(_)) => tracing::info!(
            deployment = %owner.name,
            lease = name,
            "deleted a plugin Deployment whose host stopped renewing its Lease {unchanged:?} past its duration (the host died without kill)"
        ),
        Ok(Err(kube::Error::Api(s))) if matches!(s.code, 404 | 409) => {}
        Ok(Err(e)) => tracing::warn!(
            deployment = %owner.name,
            error = &e as &dyn std::error::Error,
            "failed to delete the plugin Deployment of an expired host Lease"
        ),
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(secs: i32) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                lease_duration_seconds: Some(secs),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        }
    }

    #[test]
    fn a_lease_expires_only_after_its_duration_unchanged() {
        assert_eq!(expired(&lease(30), Duration::from_secs(29)), None);
        assert_eq!(expired(&lease(30), Duration::from_secs(30)), None);
        assert_eq!(
            expired(&lease(30), Duration::from_secs(31)),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            expired(&Lease::default(), Duration::from_secs(3600)),
            None,
            "no duration: never"
        );
        assert_eq!(expired(&lease(-1), Duration::from_secs(3600)), None);
    }

    #[test]
    fn durations_become_whole_seconds() {
        assert_eq!(seconds(Duration::from_millis(10)), 1);
        assert_eq!(seconds(Duration::from_secs(30)), 30);
        assert_eq!(seconds(Duration::MAX), i32::MAX);
    }
}

//! A container's environment, command and args, resolved like the kubelet does.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVarSource, Pod, Secret};
use kube::{Api, Client};

/// Why a container can't be configured (the kubelet's `CreateContainerConfigError`).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    #[error("configmap {name:?} not found")]
    ConfigMapNotFound { name: String },
    #[error("secret {name:?} not found")]
    SecretNotFound { name: String },
    #[error("couldn't find key {key} in {kind} {namespace}/{name}")]
    KeyNotFound {
        kind: &'static str,
        namespace: String,
        name: String,
        key: String,
    },
    #[error("failed to read {kind} {namespace}/{name}")]
    Api {
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("unsupported fieldPath {path:?} in env var {var}")]
    FieldPath { var: String, path: String },
    #[error(
        "env var {var}: only fieldRef, configMapKeyRef and secretKeyRef are supported by the envtest kubelet"
    )]
    UnsupportedSource { var: String },
}

/// An ordered environment: a later value for a name replaces the earlier one in place.
#[derive(Debug, Default, Clone)]
pub(crate) struct EnvList(Vec<(String, String)>);

impl EnvList {
    pub(crate) fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let (name, value) = (name.into(), value.into());
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn into_vec(self) -> Vec<(String, String)> {
        self.0
    }
}

/// Expands `$(VAR)` references like Kubernetes (`$$` escapes; unknown references stay as written).
pub(crate) fn expand(input: &str, env: &EnvList) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(close) => {
                    let name = &inner[..close];
                    match env.get(name) {
                        Some(value) => out.push_str(value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[close + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The pod facts a `fieldRef` can read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PodFacts<'a> {
    pub(crate) pod: &'a Pod,
    pub(crate) pod_ip: Ipv4Addr,
    pub(crate) host_ip: Ipv4Addr,
}

fn field_ref(var: &str, path: &str, facts: PodFacts<'_>) -> Result<String, ConfigError> {
    let meta = &facts.pod.metadata;
    let spec = facts.pod.spec.as_ref();
    let map_key = |prefix: &str| -> Option<String> {
        let key = path
            .strip_prefix(prefix)?
            .strip_prefix("['")?
            .strip_suffix("']")?;
        Some(key.to_owned())
    };
    let value = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.podIPs" => facts.pod_ip.to_string(),
        "status.hostIP" | "status.hostIPs" => facts.host_ip.to_string(),
        "metadata.labels" | "metadata.annotations" => {
            let map = if path == "metadata.labels" {
                meta.labels.as_ref()
            } else {
                meta.annotations.as_ref()
            };
            map.map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={v:?}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
        }
        _ => {
            if let Some(key) = map_key("metadata.labels") {
                meta.labels
                    .as_ref()
                    .and_then(|m| m.get(&key).cloned())
                    .unwrap_or_default()
            } else if let Some(key) = map_key("metadata.annotations") {
                meta.annotations
                    .as_ref()
                    .and_then(|m| m.get(&key).cloned())
                    .unwrap_or_default()
            } else {
                return Err(ConfigError::FieldPath {
                    var: var.to_owned(),
                    path: path.to_owned(),
                });
            }
        }
    };
    Ok(value)
}

async fn get_opt<K>(client: &Client, namespace: &str, name: &str) -> Result<Option<K>, ConfigError>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + k8s_openapi::serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let kind = if K::kind(&K::DynamicType::default()) == "Secret" {
        "secret"
    } else {
        "configmap"
    };
    Api::<K>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|source| ConfigError::Api {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source: Box::new(source),
        })
}

fn secret_data(secret: &Secret) -> Vec<(String, String)> {
    let mut data: Vec<(String, String)> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
        .collect();
    data.extend(
        secret
            .string_data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    data
}

fn config_map_data(cm: &ConfigMap) -> Vec<(String, String)> {
    cm.data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

async fn value_from(
    client: &Client,
    namespace: &str,
    var: &str,
    source: &EnvVarSource,
    facts: PodFacts<'_>,
) -> Result<Option<String>, ConfigError> {
    if let Some(field) = &source.field_ref {
        return field_ref(var, &field.field_path, facts).map(Some);
    }
    if let Some(sel) = &source.config_map_key_ref {
        let optional = sel.optional.unwrap_or(false);
        let Some(cm) = get_opt::<ConfigMap>(client, namespace, &sel.name).await? else {
            return if optional {
                Ok(None)
            } else {
                Err(ConfigError::ConfigMapNotFound {
                    name: sel.name.clone(),
                })
            };
        };
        return match config_map_data(&cm)
            .into_iter()
            .find(|(k, _)| *k == sel.key)
        {
            Some((_, v)) => Ok(Some(v)),
            None if optional => Ok(None),
            None => Err(ConfigError::KeyNotFound {
                kind: "ConfigMap",
                namespace: namespace.to_owned(),
                name: sel.name.clone(),
                key: sel.key.clone(),
            }),
        };
    }
    if let Some(sel) = &source.secret_key_ref {
        let optional = sel.optional.unwrap_or(false);
        let Some(secret) = get_opt::<Secret>(client, namespace, &sel.name).await? else {
            return if optional {
                Ok(None)
            } else {
                Err(ConfigError::SecretNotFound {
                    name: sel.name.clone(),
                })
            };
        };
        return match secret_data(&secret)
            .into_iter()
            .find(|(k, _)| *k == sel.key)
        {
            Some((_, v)) => Ok(Some(v)),
            None if optional => Ok(None),
            None => Err(ConfigError::KeyNotFound {
                kind: "Secret",
                namespace: namespace.to_owned(),
                name: sel.name.clone(),
                key: sel.key.clone(),
            }),
        };
    }
    Err(ConfigError::UnsupportedSource {
        var: var.to_owned(),
    })
}

/// Builds the environment: `base` (kubelet-provided), then `envFrom` sources, then `env`
/// entries in order (later wins; `$(VAR)` in values refers to what is defined so far).
pub(crate) async fn resolve(
    client: &Client,
    container: &Container,
    facts: PodFacts<'_>,
    base: EnvList,
) -> Result<EnvList, ConfigError> {
    let namespace = facts.pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut env = base;
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.as_deref().unwrap_or_default();
        if let Some(r) = &source.config_map_ref {
            match get_opt::<ConfigMap>(client, namespace, &r.name).await? {
                Some(cm) => config_map_data(&cm)
                    .into_iter()
                    .for_each(|(k, v)| env.set(format!("{prefix}{k}"), v)),
                None if r.optional.unwrap_or(false) => {}
                None => {
                    return Err(ConfigError::ConfigMapNotFound {
                        name: r.name.clone(),
                    });
                }
            }
        }
        if let Some(r) = &source.secret_ref {
            match get_opt::<Secret>(client, namespace, &r.name).await? {
                Some(secret) => secret_data(&secret)
                    .into_iter()
                    .for_each(|(k, v)| env.set(format!("{prefix}{k}"), v)),
                None if r.optional.unwrap_or(false) => {}
                None => {
                    return Err(ConfigError::SecretNotFound {
                        name: r.name.clone(),
                    });
                }
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (_, Some(source)) => value_from(client, namespace, &var.name, source, facts).await?,
            (Some(value), None) => Some(expand(value, &env)),
            (None, None) => Some(String::new()),
        };
        if let Some(value) = value {
            env.set(var.name.clone(), value);
        }
    }
    Ok(env)
}

/// Puts the pod IP in place of an unspecified IP (`0.0.0.0`, `::`) in the container's
/// `INTERCOM_LISTEN_ADDR`.
///
/// On a real node a pod has its own network namespace, so `0.0.0.0:<port>` (what
/// intercom's generated pods ask for, to be reachable on the pod IP and on the pod's
/// loopback, where a container runtime's port-forward dials) means "this pod's
/// addresses". Here every pod shares the host's network namespace and the pod's only
/// address is its IP: `0.0.0.0:<port>` would take the port on every pod's IP and on the
/// host's loopback, so two replicas could not both listen. This kubelet's port-forward
/// dials the pod IP, so nothing is lost. Values that are not `ip:port` are left for the
/// plugin to report.
pub(crate) fn pin_listen_addr(env: &mut EnvList, pod_ip: Ipv4Addr) {
    let Some(addr) = env
        .get(super::LISTEN_ADDR_ENV)
        .and_then(|v| v.parse::<std::net::SocketAddr>().ok())
    else {
        return;
    };
    if addr.ip().is_unspecified() {
        env.set(super::LISTEN_ADDR_ENV, format!("{pod_ip}:{}", addr.port()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_listen_ip_becomes_the_pod_ip() {
        let ip = Ipv4Addr::new(10, 213, 0, 7);
        let listen = |value: &str| {
            let mut env = EnvList::default();
            env.set(super::super::LISTEN_ADDR_ENV, value);
            pin_listen_addr(&mut env, ip);
            env.get(super::super::LISTEN_ADDR_ENV).map(str::to_owned)
        };
        assert_eq!(listen("0.0.0.0:50077").as_deref(), Some("10.213.0.7:50077"));
        assert_eq!(listen("[::]:9000").as_deref(), Some("10.213.0.7:9000"));
        assert_eq!(
            listen("10.213.0.9:50077").as_deref(),
            Some("10.213.0.9:50077"),
            "a specific address is the container's choice"
        );
        assert_eq!(listen("nope").as_deref(), Some("nope"));
        let mut none = EnvList::default();
        pin_listen_addr(&mut none, ip);
        assert_eq!(none.get(super::super::LISTEN_ADDR_ENV), None);
    }

    #[test]
    fn expands_like_kubernetes() {
        let mut env = EnvList::default();
        env.set("IP", "127.1.2.3");
        env.set("EMPTY", "");
        assert_eq!(expand("$(IP):50077", &env), "127.1.2.3:50077");
        assert_eq!(expand("$$(IP) $(NOPE) $(EMPTY)x", &env), "$(IP) $(NOPE) x");
        assert_eq!(expand("a$b $(IP", &env), "a$b $(IP");
        assert_eq!(expand("100$", &env), "100$");
    }

    #[test]
    fn later_values_replace_in_place() {
        let mut env = EnvList::default();
        env.set("A", "1");
        env.set("B", "2");
        env.set("A", "3");
        assert_eq!(
            env.into_vec(),
            vec![("A".into(), "3".into()), ("B".into(), "2".into())]
        );
    }

    #[test]
    fn field_refs() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "x"}},
            "spec": {"containers": [], "nodeName": "n1"}
        }))
        .unwrap();
        let facts = PodFacts {
            pod: &pod,
            pod_ip: Ipv4Addr::new(127, 9, 9, 2),
            host_ip: Ipv4Addr::LOCALHOST,
        };
        assert_eq!(field_ref("V", "metadata.name", facts).unwrap(), "p");
        assert_eq!(field_ref("V", "metadata.namespace", facts).unwrap(), "ns");
        assert_eq!(field_ref("V", "status.podIP", facts).unwrap(), "127.9.9.2");
        assert_eq!(
            field_ref("V", "metadata.labels['app']", facts).unwrap(),
            "x"
        );
        assert_eq!(field_ref("V", "spec.nodeName", facts).unwrap(), "n1");
        assert!(field_ref("V", "spec.bogus", facts).is_err());
    }
}

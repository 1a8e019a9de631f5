//! [`ServiceProxy`]: what kube-proxy and cluster DNS do for a test cluster.
//!
//! For every Service with a ClusterIP it listens on `<clusterIP>:<port>` (TCP) and forwards
//! each accepted connection to one ready endpoint from the Service's EndpointSlices, round
//! robin, like kube-proxy's userspace mode. With a hosts file it also publishes
//! `<service>.<namespace>.svc` and `<service>.<namespace>.svc.cluster.local` for each
//! ClusterIP, the names cluster DNS would answer.
//!
//! The ClusterIP range must be routed to this host (`ip route add local <range> dev lo`),
//! which the project's `scripts/test.sh` does inside the tests' private network namespace,
//! together with a private `/etc/hosts` bind-mounted there; see [`EnvBuilder::service_network`](crate::EnvBuilder::service_network).

mod hosts;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use hosts::HostsBlock;

/// Forwards Service ClusterIP traffic to ready endpoints and publishes Service names;
/// dropping it stops every listener and removes its names from the hosts file.
#[derive(Debug)]
pub struct ServiceProxy {
    state: Arc<State>,
    task: AbortHandle,
}

#[derive(Debug)]
struct State {
    /// Connections forwarded, by `namespace/name` of the Service.
    connections: Mutex<BTreeMap<String, u64>>,
    /// Backend every new connection of a Service goes to while it is ready, by
    /// `namespace/name` (see [`ServiceProxy::steer`]).
    steer: Mutex<BTreeMap<String, IpAddr>>,
    /// `namespace/name` of a Service whose forwarded connections are to be closed.
    reset: tokio::sync::broadcast::Sender<String>,
    hosts: Option<HostsBlock>,
}

/// One ClusterIP port: where its connections go.
#[derive(Debug)]
struct Route {
    service: String,
    backends: RwLock<Vec<SocketAddr>>,
    next: AtomicUsize,
}

impl ServiceProxy {
    /// Starts watching Services and EndpointSlices in all namespaces through `client`
    /// (which may list and watch both). With `hosts_file`, keeps this proxy's block of
    /// Service names in it.
    pub fn start(client: kube::Client, hosts_file: Option<&Path>) -> Self {
        static PROXIES: AtomicU64 = AtomicU64::new(0);
        let owner = format!(
            "{}-{}",
            std::process::id(),
            PROXIES.fetch_add(1, Ordering::Relaxed)
        );
        let state = Arc::new(State {
            connections: Mutex::new(BTreeMap::new()),
            steer: Mutex::new(BTreeMap::new()),
            reset: tokio::sync::broadcast::Sender::new(16),
            hosts: hosts_file.map(|p| HostsBlock::new(p, &owner)),
        });
        let task = tokio::spawn(run(client, state.clone())).abort_handle();
        Self { state, task }
    }

    /// How many connections were forwarded to Service `namespace/name` so far.
    pub fn connections(&self, namespace: &str, name: &str) -> u64 {
        lock(&self.state.connections)
            .get(&format!("{namespace}/{name}"))
            .copied()
            .unwrap_or(0)
    }

    /// Sends every new connection of Service `namespace/name` to the endpoint `ip` while it
    /// is ready (`None`: round robin again), e.g. to make a test deterministic.
    pub fn steer(&self, namespace: &str, name: &str, ip: Option<IpAddr>) {
        let key = format!("{namespace}/{name}");
        let mut steer = lock(&self.state.steer);
        match ip {
            Some(ip) => steer.insert(key, ip),
            None => steer.remove(&key),
        };
    }

    /// Closes every connection forwarded for Service `namespace/name`, as a lost
    /// connection-tracking entry or a proxy restart would.
    pub fn reset(&self, namespace: &str, name: &str) {
        // Err: no connection is open.
        let _ = self.state.reset.send(format!("{namespace}/{name}"));
    }
}

impl Drop for ServiceProxy {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(hosts) = &self.state.hosts
            && let Err(error) = hosts.write(&[])
        {
            tracing::warn!(%error, "failed to remove Service names from the hosts file");
        }
    }
}

/// Listeners by ClusterIP address; dropping it closes them.
#[derive(Default)]
struct Listeners(HashMap<SocketAddr, (Arc<Route>, AbortHandle)>);

impl Drop for Listeners {
    fn drop(&mut self) {
        for (_, task) in self.0.values() {
            task.abort();
        }
    }
}

async fn run(client: kube::Client, state: Arc<State>) {
    let services: Api<Service> = Api::all(client.clone());
    let slices: Api<EndpointSlice> = Api::all(client);
    let mut services = watcher::watcher(services, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut slices = watcher::watcher(slices, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut known_services: BTreeMap<String, Service> = BTreeMap::new();
    let mut known_slices: BTreeMap<String, EndpointSlice> = BTreeMap::new();
    let mut listeners = Listeners::default();
    let mut published: Vec<String> = Vec::new();
    loop {
        let changed = tokio::select! {
            Some(event) = services.next() => apply(&mut known_services, event),
            Some(event) = slices.next() => apply(&mut known_slices, event),
            else => return,
        };
        if !changed {
            continue;
        }
        let routes = routes(&known_services, &known_slices);
        sync_listeners(&mut listeners, routes, &state).await;
        if let Some(hosts) = &state.hosts {
            let names = host_lines(&known_services);
            if names != published {
                match hosts.write(&names) {
                    Ok(()) => published = names,
                    Err(error) => tracing::warn!(%error, "failed to publish Service names"),
                }
            }
        }
    }
}

/// Folds one watch event into `store`; whether something changed.
fn apply<K: kube::Resource>(
    store: &mut BTreeMap<String, K>,
    event: Result<Event<K>, watcher::Error>,
) -> bool {
    let key = |o: &K| {
        format!(
            "{}/{}",
            o.meta().namespace.as_deref().unwrap_or_default(),
            o.meta().name.as_deref().unwrap_or_default()
        )
    };
    match event {
        Ok(Event::Apply(o)) => {
            store.insert(key(&o), o);
            true
        }
        // A (re)list: routes are recomputed once it is complete, so live listeners stay.
        Ok(Event::InitApply(o)) => {
            store.insert(key(&o), o);
            false
        }
        Ok(Event::Delete(o)) => {
            store.remove(&key(&o));
            true
        }
        Ok(Event::Init) => {
            store.clear();
            false
        }
        Ok(Event::InitDone) => true,
        Err(error) => {
            tracing::debug!(error = &error as &dyn std::error::Error, "watch error");
            false
        }
    }
}

/// Wanted routes: ClusterIP address → (`namespace/name`, ready backends).
fn routes(
    services: &BTreeMap<String, Service>,
    slices: &BTreeMap<String, EndpointSlice>,
) -> HashMap<SocketAddr, (String, Vec<SocketAddr>)> {
    let mut out = HashMap::new();
    for (key, service) in services {
        let Some(spec) = &service.spec else { continue };
        let Some(ip) = cluster_ip(service) else {
            continue;
        };
        let namespace = service.metadata.namespace.as_deref().unwrap_or_default();
        let name = service.metadata.name.as_deref().unwrap_or_default();
        let own_slices: Vec<&EndpointSlice> = slices
            .values()
            .filter(|s| {
                s.metadata.namespace.as_deref() == Some(namespace)
                    && s.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get("kubernetes.io/service-name"))
                        .map(String::as_str)
                        == Some(name)
            })
            .collect();
        for port in spec.ports.iter().flatten() {
            if port.protocol.as_deref().is_some_and(|p| p != "TCP") {
                continue;
            }
            let Ok(service_port) = u16::try_from(port.port) else {
                continue;
            };
            let port_name = port.name.clone().unwrap_or_default();
            let backends = own_slices
                .iter()
                .flat_map(|s| ready_backends(s, &port_name))
                .collect();
            out.insert(SocketAddr::new(ip, service_port), (key.clone(), backends));
        }
    }
    out
}

fn cluster_ip(service: &Service) -> Option<IpAddr> {
    service.spec.as_ref()?.cluster_ip.as_deref()?.parse().ok()
}

/// Ready endpoint addresses of `slice` for the port named `port_name`.
fn ready_backends(slice: &EndpointSlice, port_name: &str) -> Vec<SocketAddr> {
    let Some(port) = slice
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref().unwrap_or_default() == port_name)
        .and_then(|p| p.port)
        .and_then(|p| u16::try_from(p).ok())
    else {
        return Vec::new();
    };
    slice
        .endpoints
        .iter()
        // Unknown readiness counts as ready, as for kube-proxy.
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
        .flat_map(|e| e.addresses.iter())
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, port))
        .collect()
}

/// Opens listeners for new routes, closes those of removed ones, updates backends.
async fn sync_listeners(
    listeners: &mut Listeners,
    wanted: HashMap<SocketAddr, (String, Vec<SocketAddr>)>,
    state: &Arc<State>,
) {
    listeners.0.retain(|address, (_, task)| {
        let keep = wanted.contains_key(address);
        if !keep {
            task.abort();
        }
        keep
    });
    for (address, (service, backends)) in wanted {
        if let Some((route, _)) = listeners.0.get(&address) {
            *route.backends.write().unwrap_or_else(|e| e.into_inner()) = backends;
            continue;
        }
        let listener = match TcpListener::bind(address).await {
            Ok(l) => l,
            Err(error) => {
                // Not routed here, or another cluster holds the address: no traffic for it.
                tracing::warn!(%address, %service, %error, "cannot listen on a Service address");
                continue;
            }
        };
        let route = Arc::new(Route {
            service,
            backends: RwLock::new(backends),
            next: AtomicUsize::new(0),
        });
        let task = tokio::spawn(accept(listener, route.clone(), state.clone())).abort_handle();
        listeners.0.insert(address, (route, task));
    }
}

async fn accept(listener: TcpListener, route: Arc<Route>, state: Arc<State>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((inbound, _)) = accepted else { continue };
                let steer = lock(&state.steer).get(&route.service).copied();
                let backend = {
                    let backends = route.backends.read().unwrap_or_else(|e| e.into_inner());
                    if let Some(b) = backends.iter().find(|b| Some(b.ip()) == steer) {
                        Some(*b)
                    } else if backends.is_empty() {
                        None
                    } else {
                        let i = route.next.fetch_add(1, Ordering::Relaxed) % backends.len();
                        Some(backends[i])
                    }
                };
                // No ready endpoint: the connection is closed at once (kube-proxy rejects it).
                let Some(backend) = backend else { continue };
                *lock(&state.connections).entry(route.service.clone()).or_default() += 1;
                let reset = state.reset.subscribe();
                connections.spawn(forward(inbound, backend, (reset, route.service.clone())));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Copies both ways until either side closes or a reset names `service`.
async fn forward(
    mut inbound: TcpStream,
    backend: SocketAddr,
    (mut reset, service): (tokio::sync::broadcast::Receiver<String>, String),
) {
    let _ = inbound.set_nodelay(true);
    let Ok(mut outbound) = TcpStream::connect(backend).await else {
        return;
    };
    let _ = outbound.set_nodelay(true);
    let reset = async move {
        loop {
            match reset.recv().await {
                Ok(s) if s == service => return,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    std::future::pending::<()>().await;
                }
            }
        }
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
        () = reset => {}
    }
}

/// The hosts-file lines for every Service with a ClusterIP.
fn host_lines(services: &BTreeMap<String, Service>) -> Vec<String> {
    services
        .values()
        .filter_map(|s| {
            let ip = cluster_ip(s)?;
            let name = s.metadata.name.as_deref()?;
            let namespace = s.metadata.namespace.as_deref()?;
            Some(format!(
                "{ip} {name}.{namespace}.svc {name}.{namespace}.svc.cluster.local"
            ))
        })
        .collect()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};
    use kube::api::ObjectMeta;

    fn service(name: &str, ip: &str, ports: &[(&str, i32)]) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.into()),
                ports: Some(
                    ports
                        .iter()
                        .map(|(n, p)| ServicePort {
                            name: Some((*n).into()),
                            port: *p,
                            ..ServicePort::default()
                        })
                        .collect(),
                ),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }

    fn slice(
        service: &str,
        port: (&str, i32),
        endpoints: &[(&str, Option<bool>)],
    ) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                name: Some(format!("{service}-abc")),
                namespace: Some("ns".into()),
                labels: Some(
                    [(
                        "kubernetes.io/service-name".to_string(),
                        service.to_string(),
                    )]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            address_type: "IPv4".into(),
            endpoints: endpoints
                .iter()
                .map(|(ip, ready)| Endpoint {
                    addresses: vec![(*ip).into()],
                    conditions: Some(EndpointConditions {
                        ready: *ready,
                        ..EndpointConditions::default()
                    }),
                    ..Endpoint::default()
                })
                .collect(),
            ports: Some(vec![EndpointPort {
                name: Some(port.0.into()),
                port: Some(port.1),
                ..EndpointPort::default()
            }]),
        }
    }

    #[test]
    fn routes_map_cluster_ports_to_ready_endpoints_of_the_same_port_name() {
        let services = BTreeMap::from([
            (
                "ns/a".to_string(),
                service("a", "10.0.0.7", &[("grpc", 80)]),
            ),
            ("ns/h".to_string(), service("h", "None", &[("grpc", 80)])),
        ]);
        let slices = BTreeMap::from([
            (
                "ns/a-abc".to_string(),
                slice(
                    "a",
                    ("grpc", 50077),
                    &[
                        ("10.1.0.2", Some(true)),
                        ("10.1.0.3", Some(false)),
                        ("10.1.0.4", None),
                    ],
                ),
            ),
            (
                "ns/b-abc".to_string(),
                slice("b", ("grpc", 1), &[("10.1.0.9", Some(true))]),
            ),
        ]);
        let routes = routes(&services, &slices);
        assert_eq!(routes.len(), 1, "headless Service has no route: {routes:?}");
        let (service, backends) = &routes[&"10.0.0.7:80".parse().expect("addr")];
        assert_eq!(service, "ns/a");
        assert_eq!(
            backends,
            &[
                "10.1.0.2:50077".parse().expect("a"),
                "10.1.0.4:50077".parse().expect("b")
            ]
        );
        assert_eq!(
            host_lines(&services),
            ["10.0.0.7 a.ns.svc a.ns.svc.cluster.local"]
        );
    }

    #[test]
    fn a_port_name_without_slice_port_has_no_backends() {
        let services = BTreeMap::from([(
            "ns/a".to_string(),
            service("a", "10.0.0.7", &[("other", 80)]),
        )]);
        let slices = BTreeMap::from([(
            "ns/a-abc".to_string(),
            slice("a", ("grpc", 50077), &[("10.1.0.2", Some(true))]),
        )]);
        let routes = routes(&services, &slices);
        assert!(routes[&"10.0.0.7:80".parse().expect("addr")].1.is_empty());
    }
}

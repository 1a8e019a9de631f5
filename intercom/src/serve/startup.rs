//! The steps of a plugin's start that are not negotiation: its routes, the handshake
//! line, the plaintext health server for probes, the panic hook and SIGINT.

use std::io::Write;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::service::RoutesBuilder;

use super::ServeError;
use super::negotiated::Negotiated;
use crate::broker::{GrpcBroker, Session};
use crate::handshake::{Handshake, Protocol};
use crate::plugin::PluginSet;
use crate::transport::{Io, Listener};

/// Health, broker, controller and the negotiated plugins' services.
pub(super) async fn build_routes(
    plugins: &PluginSet,
    session: &Session,
    broker: &GrpcBroker,
    shutdown: &CancellationToken,
) -> Result<RoutesBuilder, ServeError> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status(
            crate::GRPC_SERVICE_NAME,
            tonic_health::ServingStatus::Serving,
        )
        .await;
    let mut routes = RoutesBuilder::default();
    routes
        .add_service(health)
        .add_service(session.service())
        .add_service(crate::controller::service(shutdown.clone()));
    for (name, plugin) in plugins.iter() {
        plugin
            .server(broker, &mut routes)
            .map_err(|source| ServeError::Register {
                name: name.to_string(),
                source,
            })?;
    }
    Ok(routes)
}

/// Prints the handshake line on stdout.
pub(super) fn print_handshake(
    negotiated: &Negotiated,
    listener: &Listener,
    address: String,
) -> Result<(), ServeError> {
    let line = Handshake {
        core_version: crate::CORE_PROTOCOL_VERSION,
        app_version: negotiated.version,
        network: listener.network(),
        address: negotiated.announced(listener, address),
        protocol: Protocol::Grpc,
        server_cert: negotiated.identity.as_ref().map(|i| i.cert_der().to_vec()),
        multiplex: negotiated.mux_requested.then_some(true),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(ServeError::Stdout)
}

/// With AutoMTLS, plaintext connections get only the health service: that is what a
/// kubelet's gRPC readiness probe needs, and all it can reach. Returns where to send them.
pub(super) async fn probe_server(
    tls: bool,
    shutdown: &CancellationToken,
) -> (
    Option<mpsc::Sender<Io>>,
    Option<tokio::task::JoinHandle<()>>,
) {
    if !tls {
        return (None, None);
    }
    let (probe_tx, probe_rx) = mpsc::channel::<Io>(16);
    let (probe_reporter, probe_health) = tonic_health::server::health_reporter();
    probe_reporter
        .set_service_status(
            crate::GRPC_SERVICE_NAME,
            tonic_health::ServingStatus::Serving,
        )
        .await;
    let incoming = ReceiverStream::new(probe_rx).map(Ok::<_, std::io::Error>);
    let shutdown = shutdown.clone();
    let task = tokio::spawn(async move {
        let _keep = probe_reporter;
        let _ = tonic::transport::Server::builder()
            .add_service(probe_health)
            .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
            .await;
    });
    (Some(probe_tx), Some(task))
}

/// Panics are logged as errors through `tracing` (so the host sees them at error level
/// with the plugin's name) before the previous hook runs.
pub(super) fn install_panic_logger() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!(target: "intercom::panic", panic = %info, "plugin panicked");
        previous(info);
    }));
}

pub(super) fn ignore_sigint() {
    if let Ok(mut sig) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()) {
        tokio::spawn(async move {
            let mut count = 0u64;
            while sig.recv().await.is_some() {
                count += 1;
                tracing::trace!(count, "plugin received interrupt signal, ignoring");
            }
        });
    }
}

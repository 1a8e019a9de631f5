//! [`Connection`]: the live connection to a started plugin.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::Channel;

use super::ClientError;
use crate::broker::GrpcBroker;
use crate::connection::{Conn, Writer, pump_stdio};
use crate::handshake::Network;
use crate::plugin::{PluginSet, TypedPlugin};

/// The live connection to a plugin (go-plugin's `ClientProtocol`): dispense typed
/// clients, ping, reach the broker. Cheap to clone.
#[derive(Clone)]
pub struct Connection {
    name: Arc<str>,
    pub(super) conn: Arc<Conn>,
    plugins: PluginSet,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("name", &self.name)
            .field("plugins", &self.plugins)
            .field("broker", &self.conn.broker)
            .finish()
    }
}

impl Connection {
    /// The connection a target started, with its broker session and (for a single
    /// plugin process) its GRPCStdio pump running in `tasks`.
    pub(super) fn new(
        name: String,
        conn: Arc<Conn>,
        plugins: PluginSet,
        tasks: &mut tokio::task::JoinSet<()>,
        sync_stdout: Option<Writer>,
        sync_stderr: Option<Writer>,
    ) -> Self {
        if let Some(session) = &conn.session {
            tasks.spawn(session.clone().run_host(
                crate::proto::grpc_broker_client::GrpcBrokerClient::new(conn.channel.clone()),
            ));
        }
        if conn.pump_stdio {
            let stdout = sync_stdout.unwrap_or_else(|| Box::new(tokio::io::sink()));
            let stderr = sync_stderr.unwrap_or_else(|| Box::new(tokio::io::sink()));
            tasks.spawn(pump_stdio(
                conn.channel.clone(),
                stdout,
                stderr,
                name.clone(),
                conn.broker.closed_token(),
            ));
        }
        Self {
            name: name.into(),
            conn,
            plugins,
        }
    }

    /// A typed client for the plugin registered as `name` in the host's plugin map.
    ///
    /// Purely local, as in go-plugin: nothing is sent to the plugin.
    ///
    /// # Errors
    /// [`ClientError::UnknownPlugin`], [`ClientError::DispenseType`] when `T` is not
    /// what the plugin map entry builds, [`ClientError::Dispense`].
    pub fn dispense<T: Any + Send + Sync>(&self, name: &str) -> Result<T, ClientError> {
        self.dispense_any(name)?
            .downcast::<T>()
            .map(|b| *b)
            .map_err(|_| ClientError::DispenseType {
                name: name.to_string(),
                requested: std::any::type_name::<T>(),
            })
    }

    /// The client of the plugin registered as a `P`, whatever its name:
    /// `connection.dispense_plugin::<GreeterPlugin>()?` returns a `GreeterClient`. Purely
    /// local, as [`dispense`](Self::dispense).
    ///
    /// # Errors
    /// [`ClientError::NoPluginOfType`] when the plugin set has no `P`,
    /// [`ClientError::AmbiguousPlugin`] when it has several (dispense one by name),
    /// [`ClientError::Dispense`].
    pub fn dispense_plugin<P: TypedPlugin>(&self) -> Result<P::Client, ClientError> {
        let plugin = std::any::type_name::<P>();
        let mut names = self.plugins.names_of::<P>();
        let (Some(name), None) = (names.next(), names.next()) else {
            let names: Vec<String> = self.plugins.names_of::<P>().map(str::to_owned).collect();
            return Err(if names.is_empty() {
                ClientError::NoPluginOfType {
                    plugin,
                    available: self.plugins.iter().map(|(n, _)| n.to_string()).collect(),
                }
            } else {
                ClientError::AmbiguousPlugin { plugin, names }
            });
        };
        self.dispense::<P::Client>(name)
    }

    /// As [`dispense`](Self::dispense), untyped.
    ///
    /// # Errors
    /// As [`dispense`](Self::dispense).
    pub fn dispense_any(&self, name: &str) -> Result<Box<dyn Any + Send + Sync>, ClientError> {
        let plugin = self
            .plugins
            .get(name)
            .ok_or_else(|| ClientError::UnknownPlugin {
                name: name.to_string(),
                available: self.plugins.iter().map(|(n, _)| n.to_string()).collect(),
            })?;
        plugin
            .client(&self.conn.broker, self.conn.channel.clone())
            .map_err(|source| ClientError::Dispense {
                name: name.to_string(),
                source,
            })
    }

    /// Checks the plugin is alive (gRPC health `Check` for service `plugin`).
    ///
    /// # Errors
    /// [`ClientError::Ping`] with the gRPC status.
    pub async fn ping(&self) -> Result<(), ClientError> {
        let mut health =
            tonic_health::pb::health_client::HealthClient::new(self.conn.channel.clone());
        health
            .check(tonic_health::pb::HealthCheckRequest {
                service: crate::GRPC_SERVICE_NAME.into(),
            })
            .await
            .map(drop)
            .map_err(|source| ClientError::Ping {
                name: self.name.to_string(),
                source,
            })
    }

    /// The host's broker for this connection.
    pub fn broker(&self) -> &GrpcBroker {
        &self.conn.broker
    }

    /// Where the plugin listens, as dialed by the host.
    pub fn address(&self) -> (Network, &str) {
        (self.conn.network, &self.conn.address)
    }

    /// The plugin's AutoMTLS certificate (DER), the only one this connection trusts.
    pub fn plugin_certificate(&self) -> Option<&[u8]> {
        self.conn.plugin_cert.as_deref()
    }

    /// The gRPC channel to the plugin.
    pub fn channel(&self) -> Channel {
        self.conn.channel.clone()
    }

    /// Closes the connection (not the plugin process): broker and, when multiplexed,
    /// the session. Calls in flight fail.
    pub fn close(&self) {
        self.conn.close();
    }

    /// Sends `GRPCController/Shutdown`; true when the plugin acknowledged (or hung up,
    /// as go-plugin plugins may while stopping).
    pub(super) async fn shutdown(&self, timeout: Duration) -> bool {
        let mut ctl = crate::proto::grpc_controller_client::GrpcControllerClient::new(
            self.conn.channel.clone(),
        );
        match tokio::time::timeout(timeout, ctl.shutdown(crate::proto::Empty {})).await {
            Ok(Ok(_)) => true,
            Ok(Err(status)) => {
                // Unimplemented: no controller (e.g. Python); Unavailable/Cancelled:
                // it stopped before replying, which is success.
                tracing::debug!(plugin = %self.name, code = ?status.code(), "shutdown RPC");
                !matches!(status.code(), tonic::Code::Unimplemented)
            }
            Err(_) => false,
        }
    }
}

/// The old name of [`Connection`] (go-plugin's `ClientProtocol`).
#[deprecated(since = "0.1.0", note = "renamed to `Connection`")]
pub type ClientProtocol = Connection;

//! How a started plugin stops. Each target hands its client a [`Stop`] with what it
//! started (go-plugin's `Runner.Kill` and the reattach path); [`Client::kill`] runs it
//! and then does what is the same for all: close the connection, record the exit, let
//! the pumps flush.
//!
//! [`Client::kill`]: crate::Client::kill

use std::time::Duration;

use futures::future::BoxFuture;

use crate::client::Connection;

/// What a [`Stop`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::client) struct Stopped {
    /// The plugin is known to be gone (`Client::exited` becomes true).
    pub(in crate::client) gone: bool,
    /// The target's pumps may still hold what the plugin said last: give them a moment.
    pub(in crate::client) flush_pumps: bool,
}

/// Stops one started plugin, its own way, within about `kill_timeout` per step. The
/// client closes the connection afterwards (closing it twice is harmless).
pub(in crate::client) trait Stop: Send + Sync {
    /// Stops the plugin reached through `conn`, named `name` in logs.
    fn stop<'a>(
        &'a self,
        conn: &'a Connection,
        name: &'a str,
        kill_timeout: Duration,
    ) -> BoxFuture<'a, Stopped>;
}

/// The graceful first step, the same for every plugin the host reached itself: close the
/// broker, send `GRPCController/Shutdown`, close the connection. True when the plugin
/// acknowledged.
pub(super) async fn ask_to_shut_down(conn: &Connection, kill_timeout: Duration) -> bool {
    conn.conn.broker.close();
    let acknowledged = conn.shutdown(kill_timeout).await;
    conn.close();
    acknowledged
}

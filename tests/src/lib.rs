//! Shared pieces of intercom's integration tests: the fixture protos, plugin glue for
//! them, where the Go and Python peers live, the `#[intercom::plugin]` interfaces of the
//! `macro-plugin` binary ([`macro_api`]) and the Kubernetes e2e support ([`kubernetes`]).

use std::any::Any;
use std::path::{Path, PathBuf};

use intercom::tonic::service::RoutesBuilder;
use intercom::tonic::transport::Channel;
use intercom::{BoxError, GrpcBroker, GrpcPlugin, HandshakeConfig};

/// `proto.KV` (go-plugin examples/grpc), with intercom-build's glue (`KvPlugin`).
pub mod kv {
    #![allow(missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/kv/proto.rs"));
    include!(concat!(env!("OUT_DIR"), "/kv/proto.intercom.rs"));
}

/// `proto.Counter` and `proto.AddHelper` (go-plugin examples/bidirectional).
pub mod counter {
    #![allow(missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/counter/proto.rs"));
}

/// `reverse.Spawner` and `reverse.Adder`: the plugin serves through the broker.
pub mod reverse {
    #![allow(missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/reverse/reverse.rs"));
}

#[cfg(feature = "kubernetes")]
pub mod kubernetes;
pub mod macro_api;

/// go-plugin's example handshake.
pub const HANDSHAKE: HandshakeConfig = HandshakeConfig::new(1, "BASIC_PLUGIN", "hello");

/// Registers services on the plugin side (absent on the host side).
type Register = Box<dyn Fn(&GrpcBroker, &mut RoutesBuilder) + Send + Sync>;

/// Plugin glue built from two closures: what the plugin registers, what the host builds.
pub struct Glue {
    register: Option<Register>,
    client: fn(&GrpcBroker, Channel) -> Box<dyn Any + Send + Sync>,
}

impl Glue {
    /// Host-side entry building the client with `client`.
    pub fn client(client: fn(&GrpcBroker, Channel) -> Box<dyn Any + Send + Sync>) -> Self {
        Self {
            register: None,
            client,
        }
    }

    /// Plugin-side entry registering services with `register`.
    pub fn server(
        register: impl Fn(&GrpcBroker, &mut RoutesBuilder) + Send + Sync + 'static,
    ) -> Self {
        Self {
            register: Some(Box::new(register)),
            client: |_, _| Box::new(()),
        }
    }
}

impl GrpcPlugin for Glue {
    fn server(&self, broker: &GrpcBroker, routes: &mut RoutesBuilder) -> Result<(), BoxError> {
        let register = self
            .register
            .as_ref()
            .ok_or("host-side entry cannot serve")?;
        register(broker, routes);
        Ok(())
    }

    fn client(
        &self,
        broker: &GrpcBroker,
        channel: Channel,
    ) -> Result<Box<dyn Any + Send + Sync>, BoxError> {
        Ok((self.client)(broker, channel))
    }
}

/// The host-side `proto.AddHelper` the counter tests serve through the broker: `a + b`.
#[derive(Debug, Clone, Copy)]
pub struct Sum;

#[tonic::async_trait]
impl counter::add_helper_server::AddHelper for Sum {
    async fn sum(
        &self,
        req: tonic::Request<counter::SumRequest>,
    ) -> Result<tonic::Response<counter::SumResponse>, tonic::Status> {
        let r = req.into_inner();
        Ok(tonic::Response::new(counter::SumResponse { r: r.a + r.b }))
    }
}

/// `Counter.Put(key, value)` with the host serving `AddHelper` ([`Sum`]) on a fresh broker
/// id for the duration of the call, so the plugin adds through a callback.
///
/// # Errors
/// The broker refused the id (as a `Status`), or the call failed.
pub async fn put_with_callback(
    broker: &GrpcBroker,
    counter: &mut counter::counter_client::CounterClient<Channel>,
    key: &str,
    value: i64,
) -> Result<(), tonic::Status> {
    let id = broker.next_id();
    let server = broker
        .accept_and_serve(
            id,
            tonic::service::Routes::new(counter::add_helper_server::AddHelperServer::new(Sum)),
        )
        .map_err(|e| tonic::Status::internal(format!("broker id {id}: {e}")))?;
    let result = counter
        .put(counter::PutRequest {
            add_server: id,
            key: key.into(),
            value,
        })
        .await;
    server.stop();
    result.map(drop)
}

/// The host's plugin map for the test plugin and go-plugin's fixtures.
pub fn host_plugins() -> intercom::PluginSet {
    intercom::PluginSet::new()
        .with(
            "kv_grpc",
            Glue::client(|_, ch| Box::new(kv::kv_client::KvClient::new(ch))),
        )
        .with(
            "counter",
            Glue::client(|_, ch| Box::new(counter::counter_client::CounterClient::new(ch))),
        )
        .with(
            "reverse",
            Glue::client(|_, ch| Box::new(reverse::spawner_client::SpawnerClient::new(ch))),
        )
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A Go fixture built by `scripts/build-go-fixtures.sh`. Panics (fails the test) with
/// the command to run when it is missing: a missing peer is never a skip.
pub fn go_fixture(name: &str) -> PathBuf {
    let dir = std::env::var_os("INTERCOM_GO_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/go-fixtures"));
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "Go fixture {} is missing: run `scripts/build-go-fixtures.sh` (the README test command does)",
        path.display()
    );
    path
}

/// The Python interpreter of the venv made by `scripts/setup-python.sh`.
pub fn python() -> PathBuf {
    let path = workspace_root().join(".deps/python/bin/python");
    assert!(
        path.is_file(),
        "the Python venv is missing: run `scripts/setup-python.sh` (the README test command does)"
    );
    path
}

/// The Python KV plugin script.
pub fn python_kv_plugin() -> PathBuf {
    workspace_root().join("tests/fixtures/python/kv_plugin.py")
}

/// Whether `pid` still runs (a zombie counts as gone).
pub fn pid_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Spawns `cmd` with stdout piped (killed on drop) and reads its first stdout line: a
/// plugin's handshake, or what a wrapping shell prints first.
///
/// # Panics
/// When the command cannot start or its stdout cannot be read: test set-up.
pub async fn spawn_and_read_line(
    mut cmd: tokio::process::Command,
) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt as _;
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the command");
    let mut line = String::new();
    tokio::io::BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .await
        .expect("read its first line");
    (child, line)
}

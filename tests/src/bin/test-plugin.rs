//! The Rust plugin the integration tests launch. It serves `proto.KV`, `proto.Counter`
//! and `reverse.Spawner`, and misbehaves on request through `INTERCOM_TEST_MODE`:
//!
//! | mode | behaviour |
//! |---|---|
//! | (unset) | a well-behaved plugin |
//! | `garbage` | prints a non-handshake first line |
//! | `chatty-start` | writes plain text to stderr before its handshake, then behaves |
//! | `exit-early` | writes an error to stderr and exits 3 before the handshake |
//! | `panic-early` | panics before the handshake, 30 calls deep (a long backtrace with `RUST_BACKTRACE=1`) |
//! | `silent` | never prints anything |
//! | `version7` | only speaks app protocol version 7 |
//! | `linger` | ignores the shutdown request (keeps running after serving ends) |
//! | `versioned` | serves KV at app versions 2 and 3 only (go-plugin's `VersionedPlugins`) |
//! | `fd-limit` | a well-behaved plugin with few fds to spare (`RLIMIT_NOFILE` = open + 24) |
//!
//! KV keys with special meaning: `get crash` aborts the process mid-call; `get whoami`
//! answers the pod IP (`INTERCOM_POD_IP`); `get sleep` takes 30 s; `put stdio` writes
//! numbered lines to stdout and stderr and logs through `tracing`.
//!
//! KV values and counters are files `kv_<key>` in `INTERCOM_TEST_PLUGIN_DIR` (default:
//! the working directory, as go-plugin's examples keep them; a pod with a read-only root
//! filesystem and `/` as its working directory needs `/tmp`).

use std::time::Duration;

use intercom::{GrpcBroker, HandshakeConfig, ServeConfig};
use intercom_tests::{Glue, HANDSHAKE, counter, kv, reverse};
use tonic::{Request, Response, Status};

#[derive(Clone)]
struct Kv;

#[tonic::async_trait]
impl kv::kv_server::Kv for Kv {
    async fn get(&self, req: Request<kv::GetRequest>) -> Result<Response<kv::GetResponse>, Status> {
        let key = req.into_inner().key;
        match key.as_str() {
            "crash" => std::process::abort(),
            // Which replica answered (Kubernetes tests): its pod IP.
            "whoami" => {
                let who = std::env::var("INTERCOM_POD_IP").unwrap_or_default();
                return Ok(Response::new(kv::GetResponse {
                    value: who.into_bytes(),
                }));
            }
            "sleep" => tokio::time::sleep(Duration::from_secs(30)).await,
            _ => {}
        }
        let value = tokio::fs::read(data_file(&key))
            .await
            .map_err(|e| Status::not_found(format!("{key}: {e}")))?;
        Ok(Response::new(kv::GetResponse { value }))
    }

    async fn put(&self, req: Request<kv::PutRequest>) -> Result<Response<kv::Empty>, Status> {
        let kv::PutRequest { key, mut value } = req.into_inner();
        if key == "stdio" {
            use std::io::Write;
            for i in 1..=3 {
                println!("out-{i}");
                // One write per line (eprintln! may split it), so readers that share the
                // host's stderr with other writers see whole lines.
                let _ = std::io::stderr().write_all(format!("err-{i}\n").as_bytes());
                tracing::info!(line = i, "log-{i}");
            }
            tracing::warn!("log-warn");
            let _ = std::io::stdout().flush();
        }
        value.extend_from_slice(b"\n\nWritten from plugin-rust-grpc");
        let file = data_file(&key);
        tokio::fs::write(&file, value)
            .await
            .map_err(|e| Status::internal(format!("write {file:?}: {e}")))?;
        Ok(Response::new(kv::Empty {}))
    }
}

#[derive(Clone)]
struct Counter(GrpcBroker);

/// The file holding `key`'s value (see the module docs).
fn data_file(key: &str) -> std::path::PathBuf {
    let dir = std::env::var_os("INTERCOM_TEST_PLUGIN_DIR").unwrap_or_default();
    std::path::Path::new(&dir).join(format!("kv_{key}"))
}

fn read_counter(key: &str) -> i64 {
    std::fs::read(data_file(key))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("Value").and_then(serde_json::Value::as_i64))
        .unwrap_or(0)
}

#[tonic::async_trait]
impl counter::counter_server::Counter for Counter {
    async fn get(
        &self,
        req: Request<counter::GetRequest>,
    ) -> Result<Response<counter::GetResponse>, Status> {
        Ok(Response::new(counter::GetResponse {
            value: read_counter(&req.into_inner().key),
        }))
    }

    async fn put(
        &self,
        req: Request<counter::PutRequest>,
    ) -> Result<Response<counter::Empty>, Status> {
        let counter::PutRequest {
            add_server,
            key,
            value,
        } = req.into_inner();
        let channel = self
            .0
            .dial(add_server)
            .await
            .map_err(|e| Status::unavailable(format!("dial add_server {add_server}: {e}")))?;
        let mut helper = counter::add_helper_client::AddHelperClient::new(channel);
        let sum = helper
            .sum(counter::SumRequest {
                a: read_counter(&key),
                b: value,
            })
            .await?
            .into_inner()
            .r;
        let file = data_file(&key);
        std::fs::write(&file, format!("{{\"Value\":{sum}}}"))
            .map_err(|e| Status::internal(format!("write {file:?}: {e}")))?;
        Ok(Response::new(counter::Empty {}))
    }
}

#[derive(Clone)]
struct Spawner(GrpcBroker);

struct Adder;

#[tonic::async_trait]
impl reverse::adder_server::Adder for Adder {
    async fn add(
        &self,
        req: Request<reverse::AddRequest>,
    ) -> Result<Response<reverse::AddResponse>, Status> {
        let r = req.into_inner();
        Ok(Response::new(reverse::AddResponse { r: r.a + r.b }))
    }
}

#[tonic::async_trait]
impl reverse::spawner_server::Spawner for Spawner {
    async fn spawn(
        &self,
        _: Request<reverse::SpawnRequest>,
    ) -> Result<Response<reverse::SpawnResponse>, Status> {
        let id = self.0.next_id();
        let routes = tonic::service::Routes::new(reverse::adder_server::AdderServer::new(Adder));
        self.0
            .accept_and_serve(id, routes)
            .map_err(|e| Status::internal(e.to_string()))?
            .detach();
        Ok(Response::new(reverse::SpawnResponse { broker_id: id }))
    }
}

/// Panics `depth` calls deep, so a backtrace has at least `depth` frames.
#[inline(never)]
fn panic_deep(depth: u32) -> ! {
    if depth == 0 {
        panic!("the configuration file is missing");
    }
    panic_deep(std::hint::black_box(depth - 1));
}

#[tokio::main]
async fn main() -> Result<(), intercom::ServeError> {
    let mode = std::env::var("INTERCOM_TEST_MODE").unwrap_or_default();
    let mut handshake = HANDSHAKE;
    match mode.as_str() {
        "garbage" => {
            println!("this is not a handshake line");
            tokio::time::sleep(Duration::from_secs(60)).await;
            return Ok(());
        }
        "chatty-start" => {
            eprintln!("booting: plain text before the handshake");
            eprintln!("Picked up JAVA_TOOL_OPTIONS: -Xmx1g");
        }
        "non-utf8" => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(b"1|1|unix|/tmp/\xff\xfe|grpc|\n");
            let _ = out.flush();
            tokio::time::sleep(Duration::from_secs(60)).await;
            return Ok(());
        }
        "exit-early" => {
            eprintln!("fatal: the configuration file is missing");
            std::process::exit(3);
        }
        "panic-early" => panic_deep(30),
        "silent" => {
            tokio::time::sleep(Duration::from_secs(300)).await;
            return Ok(());
        }
        "version7" => handshake = HandshakeConfig::new(7, "BASIC_PLUGIN", "hello"),
        "fd-limit" => limit_fds(24),
        _ => {}
    }
    if mode == "versioned" {
        let kv_set = || {
            intercom::PluginSet::new().with(
                "kv_grpc",
                Glue::server(|_, routes| {
                    routes.add_service(kv::kv_server::KvServer::new(Kv));
                }),
            )
        };
        let config = ServeConfig::new(handshake)
            .versioned(2, kv_set())
            .versioned(3, kv_set());
        return intercom::serve(config).await;
    }
    let config = ServeConfig::new(handshake)
        .plugin(
            "kv_grpc",
            Glue::server(|_, routes| {
                routes.add_service(kv::kv_server::KvServer::new(Kv));
            }),
        )
        .plugin(
            "counter",
            Glue::server(|broker, routes| {
                routes.add_service(counter::counter_server::CounterServer::new(Counter(
                    broker.clone(),
                )));
            }),
        )
        .plugin(
            "reverse",
            Glue::server(|broker, routes| {
                routes.add_service(reverse::spawner_server::SpawnerServer::new(Spawner(
                    broker.clone(),
                )));
            }),
        );
    let result = intercom::serve(config).await;
    if mode == "linger" {
        tokio::time::sleep(Duration::from_secs(300)).await;
    }
    result
}

/// Lowers the soft fd limit to what is open now plus `spare`.
fn limit_fds(spare: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let open = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count()) as u64;
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    setrlimit(Resource::RLIMIT_NOFILE, open + spare, hard).expect("setrlimit");
}

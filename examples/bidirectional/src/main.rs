//! The counter host: `COUNTER_PLUGIN="<command>" counter put KEY N` / `counter get KEY`.
//!
//! Runs `$COUNTER_PLUGIN` through `sh -c`, like go-plugin's examples/bidirectional host.
//! On `put` the host serves its adder on a fresh broker id for the length of the call; the
//! plugin calls it back to compute the new value.

use std::process::ExitCode;

use bidirectional::{AddHelper, CounterClient, CounterPlugin, HANDSHAKE, PLUGIN_NAME, proto};
use intercom::runtime::ProcessLauncher;
use intercom::tonic::transport::Channel;
use intercom::{Client, ClientConfig, PluginSet};
use tonic::{Request, Response, Status};

/// The host's side of the callback: the plugin asks it to add.
#[derive(Debug, Clone, Copy)]
struct HostAdder;

#[intercom::tonic::async_trait]
impl AddHelper for HostAdder {
    async fn sum(
        &self,
        req: Request<proto::SumRequest>,
    ) -> Result<Response<proto::SumResponse>, Status> {
        let proto::SumRequest { a, b } = req.into_inner();
        let r = a
            .checked_add(b)
            .ok_or_else(|| Status::out_of_range(format!("{a} + {b} overflows")))?;
        Ok(Response::new(proto::SumResponse { r }))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprint!("error: {err}");
            let mut source = err.source();
            while let Some(cause) = source {
                eprint!(": {cause}");
                source = cause.source();
            }
            eprintln!();
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let command = std::env::var("COUNTER_PLUGIN").map_err(|_| {
        "set COUNTER_PLUGIN to the command that starts the plugin, e.g. ./target/debug/counter-plugin"
    })?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let client = Client::new(
        ClientConfig::new(
            HANDSHAKE,
            PluginSet::new().with(PLUGIN_NAME, CounterPlugin::client()),
            ProcessLauncher::shell(command),
        )
        .name("counter"),
    );
    let result = async {
        let protocol = client.connect().await?;
        let mut counter: CounterClient<Channel> = protocol.dispense(PLUGIN_NAME)?;
        match args
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["get", key] => {
                let resp = counter
                    .get(proto::GetRequest {
                        key: key.to_string(),
                    })
                    .await?;
                println!("{}", resp.into_inner().value);
            }
            ["put", key, n] => {
                let value: i64 = n
                    .parse()
                    .map_err(|e| format!("N must be an integer, got {n:?}: {e}"))?;
                // Serve the adder for the length of the call; it stops when dropped.
                let (add_server, _adder) = proto::serve_add_server(protocol.broker(), HostAdder)?;
                counter
                    .put(proto::PutRequest {
                        add_server,
                        key: key.to_string(),
                        value,
                    })
                    .await?;
            }
            _ => return Err("usage: counter put KEY N | counter get KEY".into()),
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    }
    .await;
    client.kill().await;
    result
}

//! The KV host: `KV_PLUGIN="<command>" kv put KEY VALUE` / `kv get KEY`.
//!
//! Runs `$KV_PLUGIN` through `sh -c`, like go-plugin's examples/grpc host, so it loads the
//! Rust plugin (`kv-plugin`), go-plugin's Go plugin, or a Python one alike.
//!
//! Like go-plugin's example host, it runs **without AutoMTLS**: go-plugin's Python
//! plugin cannot do it, and a host that asks for AutoMTLS refuses a plugin that does not
//! (`ClientError::AutoMtlsUnsupported`). A host of your own should keep the default
//! (AutoMTLS on) unless it must load such plugins; without it, any local process that
//! finds the plugin's socket can call the plugin (see SECURITY.md).

use std::process::ExitCode;

use intercom::runtime::ProcessLauncher;
use intercom::{Client, ClientConfig, PluginSet};
use kv::{HANDSHAKE, KvPlugin, PLUGIN_NAME, proto};

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
    let command = std::env::var("KV_PLUGIN").map_err(
        |_| "set KV_PLUGIN to the command that starts the plugin, e.g. ./target/debug/kv-plugin",
    )?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let client = Client::new(
        ClientConfig::new(
            HANDSHAKE,
            PluginSet::new().with(PLUGIN_NAME, KvPlugin::client()),
            ProcessLauncher::shell(command),
        )
        // As go-plugin's examples/grpc host: plaintext, so Python plugins load too.
        .auto_mtls(false)
        .name("kv"),
    );
    let result = async {
        // The KvPlugin entry's client, by type: a KvClient<Channel>.
        let mut kv = client.connect().await?.dispense_plugin::<KvPlugin>()?;
        match args
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["get", key] => {
                let resp = kv
                    .get(proto::GetRequest {
                        key: key.to_string(),
                    })
                    .await?;
                println!("{}", String::from_utf8_lossy(&resp.into_inner().value));
            }
            ["put", key, value] => {
                kv.put(proto::PutRequest {
                    key: key.to_string(),
                    value: value.as_bytes().to_vec(),
                })
                .await?;
            }
            _ => return Err("usage: kv put KEY VALUE | kv get KEY".into()),
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    }
    .await;
    client.kill().await;
    result
}

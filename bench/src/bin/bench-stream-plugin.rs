//! Scenario 6's plugin: [`intercom_bench::Zeros`] served through `#[intercom::plugin]`.

use std::process::ExitCode;

use intercom::ServeConfig;
use intercom_bench::{CHUNKS_PLUGIN, ChunksPlugin, Zeros};

#[tokio::main]
async fn main() -> ExitCode {
    let config = ServeConfig::new(ChunksPlugin::HANDSHAKE)
        .plugin(CHUNKS_PLUGIN, ChunksPlugin::server(Zeros));
    match intercom::serve(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench-stream-plugin: error: {err}");
            ExitCode::FAILURE
        }
    }
}

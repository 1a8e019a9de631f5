//! `stream`: a plugin streams a file to the host in chunks, and the host streams them
//! back for a checksum.
//!
//! ```text
//! $ cargo run -p stream                       # streams examples/stream/src/main.rs
//! chunk 1: 1024 bytes
//! …
//! read 9876 bytes in 10 chunks
//! checksum: plugin 0x3b1c… = host 0x3b1c…
//! $ cargo run -p stream -- /etc/services 4096 2   # PATH, chunk size, stop after 2 chunks
//! ```
//!
//! - [`Files::read`] returns `Streaming<Vec<u8>>`: a server-streaming call. The plugin
//!   produces chunks from a task through [`Streaming::channel`], whose sender waits while
//!   the host is behind (back-pressure) and fails once the host drops the stream, which
//!   is how the task learns to stop (cancellation: try a chunk limit).
//! - [`Files::checksum`] takes `Streaming<Vec<u8>>`: a client-streaming call.
#![warn(missing_docs)]

use std::error::Error;
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use intercom::runtime::ProcessLauncher;
use intercom::{Client, ClientConfig, PluginSet, ServeConfig, Status, Streaming};
use tokio::io::AsyncReadExt as _;
use tokio_util::task::TaskTracker;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// Files on the plugin's side.
#[intercom::plugin(handshake(version = 1, cookie_key = "STREAM_PLUGIN", cookie_value = "hello"))]
pub trait Files: Send + Sync + 'static {
    /// The file at `path`, in chunks of `chunk_size` bytes (the last may be shorter).
    async fn read(&self, path: String, chunk_size: u32) -> Result<Streaming<Vec<u8>>, Status>;
    /// FNV-1a (64-bit) of everything streamed in.
    async fn checksum(&self, chunks: Streaming<Vec<u8>>) -> Result<u64, Status>;
}

/// The key of the plugin in both sides' plugin maps.
const PLUGIN_NAME: &str = "files";

/// If the first argument is this, the binary runs as the plugin.
const PLUGIN_ARG: &str = "plugin";

/// How many chunks the plugin reads ahead of the host.
const READ_AHEAD: usize = 4;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let result = if args.first().map(String::as_str) == Some(PLUGIN_ARG) {
        plugin().await
    } else {
        host(&args).await
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// FNV-1a, 64 bits, continued from `hash`.
fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// FNV-1a's initial value.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

// ---------------------------------------------------------------------------------------
// Plugin side
// ---------------------------------------------------------------------------------------

/// The plugin's implementation: the local file system.
#[derive(Debug, Clone, Default)]
struct LocalFiles {
    /// The file readers still running: the plugin waits for them before it exits, so a
    /// reader's last log line ("the host stopped reading") always reaches the host.
    readers: TaskTracker,
}

#[intercom::async_trait]
impl Files for LocalFiles {
    async fn read(&self, path: String, chunk_size: u32) -> Result<Streaming<Vec<u8>>, Status> {
        if chunk_size == 0 {
            return Err(Status::invalid_argument("chunk_size must be positive"));
        }
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| Status::not_found(format!("failed to open {path}: {e}")))?;
        let (tx, chunks) = Streaming::channel(READ_AHEAD);
        self.readers.spawn(async move {
            let mut sent = 0u64;
            loop {
                let mut chunk = vec![0; chunk_size as usize];
                let n = match file.read(&mut chunk).await {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) => {
                        let _ = tx
                            .send_error(Status::internal(format!("failed to read {path}: {e}")))
                            .await;
                        return;
                    }
                };
                chunk.truncate(n);
                // Waits while READ_AHEAD chunks are unread; fails once the host hangs up.
                if tx.send(chunk).await.is_err() {
                    tracing::info!(%path, sent, "the host stopped reading; closing the file");
                    return;
                }
                sent += n as u64;
            }
            tracing::info!(%path, sent, "sent the whole file");
        });
        Ok(chunks)
    }

    async fn checksum(&self, mut chunks: Streaming<Vec<u8>>) -> Result<u64, Status> {
        let mut hash = FNV_OFFSET;
        while let Some(chunk) = chunks.message().await? {
            hash = fnv1a(hash, &chunk);
        }
        Ok(hash)
    }
}

/// `stream plugin`: serves [`LocalFiles`] until the host shuts it down.
async fn plugin() -> Result<(), Box<dyn Error>> {
    let files = LocalFiles::default();
    let readers = files.readers.clone();
    intercom::serve(
        ServeConfig::new(FilesPlugin::HANDSHAKE).plugin(PLUGIN_NAME, FilesPlugin::server(files)),
    )
    .await?;
    // The connections are closed now, so every reader's next send fails and it ends.
    readers.close();
    if tokio::time::timeout(READERS_GRACE, readers.wait())
        .await
        .is_err()
    {
        tracing::warn!("file readers still running after {READERS_GRACE:?}; exiting anyway");
    }
    Ok(())
}

/// How long the plugin waits for its file readers after serving ends.
const READERS_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// Host side
// ---------------------------------------------------------------------------------------

/// `stream [PATH [CHUNK_SIZE [MAX_CHUNKS]]]`.
async fn host(args: &[String]) -> Result<(), Box<dyn Error>> {
    init_host_logging();
    let path = match args.first() {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/main.rs"),
    };
    let path = std::path::absolute(&path)?;
    let chunk_size: u32 = match args.get(1) {
        Some(n) => n
            .parse()
            .map_err(|e| format!("CHUNK_SIZE must be a positive integer: {e}"))?,
        None => 1024,
    };
    let max_chunks: Option<usize> = match args.get(2) {
        Some(n) => Some(
            n.parse()
                .map_err(|e| format!("MAX_CHUNKS must be a count: {e}"))?,
        ),
        None => None,
    };
    let exe = std::env::current_exe()?;
    let client = Client::new(
        ClientConfig::new(
            FilesPlugin::HANDSHAKE,
            PluginSet::new().with(PLUGIN_NAME, FilesPlugin::client()),
            ProcessLauncher::new(exe).arg(PLUGIN_ARG),
        )
        .name("files"),
    );
    let result = stream(
        &client,
        path.to_string_lossy().into_owned(),
        chunk_size,
        max_chunks,
    )
    .await;
    client.kill().await;
    result
}

/// Reads the file through the plugin, then has the plugin checksum what arrived.
async fn stream(
    client: &Client,
    path: String,
    chunk_size: u32,
    max_chunks: Option<usize>,
) -> Result<(), Box<dyn Error>> {
    let files: FilesClient = client.connect().await?.dispense(PLUGIN_NAME)?;
    let mut chunks = files.read(path, chunk_size).await?;
    let mut received = Vec::new();
    let mut total = 0usize;
    let mut out = std::io::stdout();
    while let Some(chunk) = chunks.message().await? {
        total += chunk.len();
        received.push(chunk);
        writeln!(
            out,
            "chunk {}: {} bytes",
            received.len(),
            received.last().map_or(0, Vec::len)
        )?;
        if max_chunks == Some(received.len()) {
            writeln!(
                out,
                "stopping after {} chunks (the plugin's reader stops too)",
                received.len()
            )?;
            break;
        }
    }
    // Dropping the stream cancels the call if it is still running.
    drop(chunks);
    writeln!(out, "read {total} bytes in {} chunks", received.len())?;

    let local = received
        .iter()
        .fold(FNV_OFFSET, |hash, chunk| fnv1a(hash, chunk));
    let remote = files.checksum(Streaming::from_iter(received)).await?;
    writeln!(out, "checksum: plugin {remote:#018x} = host {local:#018x}")?;
    if remote != local {
        return Err("the checksums differ".into());
    }
    Ok(())
}

/// The host's logs go to stderr, filtered by `RUST_LOG` (default `info`).
fn init_host_logging() {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env_lossy();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

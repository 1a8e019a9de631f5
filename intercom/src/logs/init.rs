//! [`init_plugin_logging`]: the plugin's global hclog subscriber and its level filter.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use super::HclogLayer;

/// Installs a global `tracing` subscriber that writes hclog JSON lines (go-plugin's
/// log format, which its hosts parse), unless a global subscriber is already set. Returns whether it
/// installed one.
///
/// The level filter is an [`EnvFilter`] read from `INTERCOM_LOG`, else `RUST_LOG`, else
/// `info` (invalid directives are skipped with a note on stderr). Pass
/// `std::io::stderr`, never stdout, which carries the handshake. Records of the `log`
/// crate are bridged into the same subscriber (`tracing_subscriber`'s `try_init`), unless
/// a `log` logger is already set; then it returns false although the subscriber is
/// installed.
///
/// ```no_run
/// if !intercom::init_plugin_logging(std::io::stderr) {
///     // The application installed its own subscriber; keep it.
/// }
/// tracing::info!(answer = 42, "plugin starting");
/// ```
pub fn init_plugin_logging<W>(make_writer: W) -> bool
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = env_filter(
        std::env::var("INTERCOM_LOG").ok(),
        std::env::var("RUST_LOG").ok(),
    );
    let subscriber = tracing_subscriber::registry()
        .with(filter)
        .with(HclogLayer::new(make_writer));
    subscriber.try_init().is_ok()
}

/// The filter from the first non-blank of `INTERCOM_LOG` and `RUST_LOG`, default `info`.
pub(super) fn env_filter(intercom_log: Option<String>, rust_log: Option<String>) -> EnvFilter {
    let directives = [intercom_log, rust_log]
        .into_iter()
        .flatten()
        .find(|value| !value.trim().is_empty())
        .unwrap_or_default();
    EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .parse_lossy(directives.trim())
}

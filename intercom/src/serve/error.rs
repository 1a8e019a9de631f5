//! [`ServeError`]: why a plugin could not serve.

use crate::plugin::BoxError;

/// Why a plugin could not serve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The plugin's own handshake config is incomplete.
    #[error(
        "misconfigured ServeConfig: no magic cookie key or value was set; set `handshake` to the host's HandshakeConfig"
    )]
    Misconfigured,
    /// No plugins were given.
    #[error("misconfigured ServeConfig: no plugins to serve; add one with `ServeConfig::plugin`")]
    NoPlugins,
    /// The listener could not be opened.
    #[error("failed to open the plugin listener")]
    Listen(#[from] crate::transport::ListenError),
    /// `PLUGIN_CLIENT_CERT` is not a PEM certificate.
    #[error("failed to read the host's certificate from PLUGIN_CLIENT_CERT")]
    ClientCert(#[source] crate::tls::TlsError),
    /// AutoMTLS material could not be made.
    #[error("failed to set up AutoMTLS")]
    Tls(#[source] crate::tls::TlsError),
    /// A plugin refused to register.
    #[error("failed to register plugin `{name}` on the gRPC server")]
    Register {
        /// The plugin's name.
        name: String,
        /// Its error.
        #[source]
        source: BoxError,
    },
    /// Writing the handshake line failed.
    #[error("failed to write the handshake line to stdout")]
    Stdout(#[source] std::io::Error),
    /// Capturing stdio failed.
    #[error("failed to capture the plugin's stdout/stderr")]
    Stdio(#[source] std::io::Error),
    /// The gRPC server failed.
    #[error("the plugin's gRPC server failed")]
    Server(#[source] tonic::transport::Error),
}

//! [`HandshakeError`]: why a handshake line was rejected.

use super::{Protocol, format_versions};

/// Why a handshake line was rejected.
///
/// Every variant that concerns a piece of the line carries that piece, truncated to 200
/// characters.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The first line of the plugin's stdout was empty (or only whitespace).
    #[error(
        "unrecognized remote plugin message: the first line of the plugin's stdout is empty; \
         the plugin printed something other than a handshake line as its first line of stdout; \
         plugins must print nothing to stdout before the handshake"
    )]
    EmptyLine,

    /// Fewer than 4 `|`-separated fields: not a handshake line at all.
    #[error(
        "unrecognized remote plugin message {line:?} ({fields} `|`-separated fields, a handshake \
         needs at least 4): the plugin printed something other than a handshake line as its \
         first line of stdout; plugins must print nothing to stdout before the handshake"
    )]
    Unrecognized {
        /// The offending line.
        line: String,
        /// How many `|`-separated fields it has.
        fields: usize,
    },

    /// The first line of the plugin's stdout is not UTF-8.
    #[error(
        "unrecognized remote plugin message {line:?}: the first line of the plugin's stdout is \
         not UTF-8 text; plugins must print nothing to stdout before the handshake"
    )]
    InvalidUtf8 {
        /// The line, with invalid sequences replaced by U+FFFD.
        line: String,
    },

    /// The CORE field is not a decimal number.
    #[error(
        "failed to parse core protocol version {value:?} in plugin handshake: expected a decimal \
         number (it is 1 for every go-plugin compatible plugin)"
    )]
    InvalidCoreVersion {
        /// The CORE field.
        value: String,
        /// Why it is not a number.
        #[source]
        source: std::num::ParseIntError,
    },

    /// The CORE field names a core protocol this crate does not speak.
    #[error(
        "incompatible core protocol version with plugin: plugin speaks version {plugin}, intercom \
         speaks version {supported}; the plugin must be recompiled against a compatible \
         go-plugin/intercom SDK"
    )]
    IncompatibleCoreVersion {
        /// The plugin's core version.
        plugin: u32,
        /// The only core version intercom speaks.
        supported: u32,
    },

    /// The APP field is not a decimal number.
    #[error(
        "failed to parse app protocol version {value:?} in plugin handshake: expected a decimal number"
    )]
    InvalidAppVersion {
        /// The APP field.
        value: String,
        /// Why it is not a number.
        #[source]
        source: std::num::ParseIntError,
    },

    /// The plugin chose an app protocol version the host does not offer.
    #[error(
        "incompatible app protocol version with plugin: plugin version {plugin}, host versions [{}]; \
         build the plugin and the host so that they share a protocol version",
        format_versions(.host)
    )]
    IncompatibleAppVersion {
        /// The version the plugin announced.
        plugin: u32,
        /// The versions the host offered.
        host: Vec<u32>,
    },

    /// The NETWORK field is neither `unix` nor `tcp`.
    #[error("unknown network {network:?} in plugin handshake: expected `unix` or `tcp`")]
    UnknownNetwork {
        /// The NETWORK field.
        network: String,
    },

    /// A `unix` address that is not an absolute path.
    #[error(
        "invalid unix socket address {address:?} in plugin handshake: it must be an absolute path \
         such as `/tmp/plugin123` (without NUL bytes)"
    )]
    InvalidUnixAddress {
        /// The ADDR field.
        address: String,
    },

    /// A `tcp` address that is not an `ip:port` socket address with a non-zero port.
    #[error(
        "invalid tcp address {address:?} in plugin handshake: it must be `ip:port` with a non-zero \
         port, such as `127.0.0.1:1234` or `[::1]:1234`"
    )]
    InvalidTcpAddress {
        /// The ADDR field.
        address: String,
        /// The parse failure; `None` when it parsed but the port is 0.
        #[source]
        source: Option<std::net::AddrParseError>,
    },

    /// The PROTOCOL field is neither `grpc` nor `netrpc`.
    #[error("unknown plugin protocol {protocol:?} in plugin handshake: expected `grpc`")]
    UnknownProtocol {
        /// The PROTOCOL field.
        protocol: String,
    },

    /// The plugin serves a protocol intercom does not speak (`netrpc`).
    #[error(
        "unsupported plugin protocol `{protocol}`: intercom speaks only `grpc`; build the plugin \
         with gRPC support (a go-plugin plugin needs a GRPCServer in its ServeConfig and plugins \
         implementing GRPCPlugin)"
    )]
    UnsupportedProtocol {
        /// The protocol the plugin announced.
        protocol: Protocol,
    },

    /// The CERT field is longer than 50 characters but not base64.
    #[error(
        "failed to parse server certificate {cert:?} in plugin handshake: it is not base64 (standard \
         alphabet); the plugin must print the base64 of its DER certificate, or nothing when \
         PLUGIN_CLIENT_CERT was not set"
    )]
    CertificateNotBase64 {
        /// The CERT field.
        cert: String,
        /// The decoding failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// The CERT field decodes, but not to exactly one DER X.509 certificate.
    #[error(
        "failed to parse server certificate {cert:?} in plugin handshake: it is not one DER X.509 \
         certificate; the plugin must print the base64 of its DER certificate, or nothing when \
         PLUGIN_CLIENT_CERT was not set"
    )]
    CertificateNotDer {
        /// The CERT field.
        cert: String,
        /// The parse failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// The MUX field is not a Go boolean (`1 t T TRUE true True 0 f F FALSE false False`).
    #[error(
        "failed to parse {value:?} as a boolean for gRPC broker multiplexing support in plugin \
         handshake: expected `true` or `false`"
    )]
    InvalidMultiplex {
        /// The MUX field.
        value: String,
    },

    /// The host asked for broker multiplexing but the plugin's MUX field is absent or false.
    #[error(
        "the host requested gRPC broker multiplexing but the plugin does not support it (MUX field {}); \
         for Go plugins, update the github.com/hashicorp/go-plugin dependency and recompile, \
         or turn multiplexing off in the host",
        match .advertised { None => "absent", Some(_) => "false" }
    )]
    MultiplexUnsupported {
        /// The MUX field: `None` if absent, else `Some(false)`.
        advertised: Option<bool>,
    },
}

/// How much of an offending input an error keeps, in characters.
pub(super) const SNIPPET_MAX_CHARS: usize = 200;

/// The offending input for an error, cut to [`SNIPPET_MAX_CHARS`] characters.
pub(super) fn snippet(s: &str) -> String {
    match s.char_indices().nth(SNIPPET_MAX_CHARS) {
        Some((cut, _)) => format!("{}…", s.get(..cut).unwrap_or_default()),
        None => s.to_owned(),
    }
}

//! The handshake line a plugin prints on stdout and the host parses.
//!
//! A go-plugin compatible plugin prints exactly one line on its real stdout once it is
//! ready to serve:
//!
//! ```text
//! CORE|APP|NETWORK|ADDR|PROTOCOL|CERT[|MUX]
//! ```
//!
//! for example `1|1|unix|/tmp/plugin1234567890|grpc|`. The host reads the *first* line of
//! the plugin's stdout, parses it with [`Handshake::parse`] (or [`str::parse`]) and checks
//! it against its own configuration with [`Handshake::validate`]. The plugin builds the
//! same line with [`Handshake`]'s [`Display`](fmt::Display) implementation.
//!
//! Everything here is pure: no environment access and no I/O. The environment variable
//! `PLUGIN_PROTOCOL_VERSIONS` is handled by [`negotiate_version`] (plugin side) and
//! [`format_versions`] (host side) on plain strings.
//!
//! # Strictness
//!
//! Parsing follows go-plugin v1.8.0's host (`client.go`), with these deliberate
//! differences, all of which turn silently ignored garbage into an error:
//!
//! - the address must be an absolute path (`unix`) or an `ip:port` socket address with a
//!   non-zero port (`tcp`); go-plugin defers that to the dial;
//! - a MUX field that is not a Go boolean is an error even when the host did not ask for
//!   multiplexing; go-plugin only looks at it when multiplexing was requested.
//!
//! As in go-plugin, fields after the seventh (MUX) are ignored: a newer plugin may add
//! some. A first line that is not UTF-8 is a bad handshake
//! ([`HandshakeError::InvalidUtf8`], see [`Handshake::parse_bytes`]).
//!
//! A CERT field of 1 to 50 characters is legacy filler and is ignored, exactly as
//! go-plugin does; a longer one must be the base64 (standard alphabet, padding optional)
//! of one DER X.509 certificate.

use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::CORE_PROTOCOL_VERSION;

/// Longest CERT field go-plugin treats as legacy filler rather than a certificate.
const CERT_FILLER_MAX_LEN: usize = 50;

/// How much of an offending input an error keeps, in characters.
const SNIPPET_MAX_CHARS: usize = 200;

/// Most `|`-separated fields a handshake line may have (`CORE` … `MUX`).
/// Fields after this many (`CORE|APP|NETWORK|ADDR|PROTOCOL|CERT|MUX`) are ignored.
const KNOWN_FIELDS: usize = 7;

/// Fewest `|`-separated fields a handshake line may have (`CORE` … `ADDR`).
const MIN_FIELDS: usize = 4;

/// Decodes the CERT field: standard alphabet, `=` padding optional, non-zero trailing bits
/// tolerated (Go's non-strict `RawStdEncoding` accepts them too).
const CERT_DECODER: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// The settings host and plugin must agree on before they talk; mirrors go-plugin's
/// `HandshakeConfig`.
///
/// The magic cookie is not a security measure: it only tells a plugin binary that it was
/// started by a host (rather than by a user at a shell). The host sets the environment
/// variable `magic_cookie_key` to `magic_cookie_value`; the plugin refuses to run otherwise.
///
/// ```
/// use intercom::handshake::HandshakeConfig;
///
/// pub const HANDSHAKE: HandshakeConfig = HandshakeConfig::new(1, "BASIC_PLUGIN", "hello");
/// assert_eq!(HANDSHAKE.protocol_version, 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HandshakeConfig {
    /// The application protocol version (the handshake's APP field) of an un-versioned
    /// plugin set.
    pub protocol_version: u32,
    /// Name of the environment variable carrying the magic cookie.
    pub magic_cookie_key: Cow<'static, str>,
    /// Value the magic cookie variable must have.
    pub magic_cookie_value: Cow<'static, str>,
}

impl HandshakeConfig {
    /// A config from static strings; `const`, so it can back a `pub const`.
    pub const fn new(protocol_version: u32, key: &'static str, value: &'static str) -> Self {
        Self {
            protocol_version,
            magic_cookie_key: Cow::Borrowed(key),
            magic_cookie_value: Cow::Borrowed(value),
        }
    }
}

/// The kind of address in a handshake line (the NETWORK field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Network {
    /// A unix domain socket; the address is an absolute filesystem path.
    Unix,
    /// TCP; the address is `ip:port`.
    Tcp,
}

impl Network {
    /// The spelling used on the wire: `unix` or `tcp`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Network::Unix => "unix",
            Network::Tcp => "tcp",
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Network {
    type Err = HandshakeError;

    /// Parses `unix` or `tcp` (exact, lower case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "unix" => Ok(Network::Unix),
            "tcp" => Ok(Network::Tcp),
            other => Err(HandshakeError::UnknownNetwork {
                network: snippet(other),
            }),
        }
    }
}

/// The RPC protocol a plugin serves (the PROTOCOL field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// gRPC over HTTP/2, the only protocol intercom speaks.
    Grpc,
    /// go-plugin's legacy `net/rpc` protocol. It parses, so the host can say precisely
    /// why it refuses such a plugin ([`HandshakeError::UnsupportedProtocol`]).
    NetRpc,
}

impl Protocol {
    /// The spelling used on the wire: `grpc` or `netrpc`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::NetRpc => "netrpc",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = HandshakeError;

    /// Parses `grpc` or `netrpc` (exact, lower case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "grpc" => Ok(Protocol::Grpc),
            "netrpc" => Ok(Protocol::NetRpc),
            other => Err(HandshakeError::UnknownProtocol {
                protocol: snippet(other),
            }),
        }
    }
}

/// One handshake line, `CORE|APP|NETWORK|ADDR|PROTOCOL[|CERT[|MUX]]`, as data.
///
/// [`Display`](fmt::Display) prints exactly what a go-plugin plugin prints: the CERT field
/// is always present (empty without a certificate, otherwise the base64 of the DER,
/// standard alphabet, no padding), and the MUX field is appended only when
/// [`multiplex`](Self::multiplex) is `Some`. For every `h` that [`Handshake::parse`]
/// returns, `Handshake::parse(&h.to_string())` returns `h` again.
///
/// ```
/// use intercom::handshake::{Handshake, Network, Protocol};
///
/// let h: Handshake = "1|1|unix|/tmp/plugin1234567890|grpc||true\r\n".parse()?;
/// assert_eq!(h.network, Network::Unix);
/// assert_eq!(h.protocol, Protocol::Grpc);
/// assert_eq!(h.multiplex, Some(true));
/// assert_eq!(h.to_string(), "1|1|unix|/tmp/plugin1234567890|grpc||true");
/// h.validate(&[1], true)?;
/// # Ok::<(), intercom::handshake::HandshakeError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Handshake {
    /// CORE: the go-plugin core protocol version; always
    /// [`CORE_PROTOCOL_VERSION`] in a line that parsed.
    pub core_version: u32,
    /// APP: the application protocol version the plugin chose (see [`negotiate_version`]).
    pub app_version: u32,
    /// NETWORK: how to reach the plugin.
    pub network: Network,
    /// ADDR: where the plugin listens, as printed: a socket path or `ip:port`. It must not
    /// contain `|`.
    pub address: String,
    /// PROTOCOL: the RPC protocol; a line without the field means [`Protocol::NetRpc`], as
    /// in go-plugin.
    pub protocol: Protocol,
    /// CERT: the plugin's TLS server certificate (DER) when AutoMTLS is on.
    pub server_cert: Option<Vec<u8>>,
    /// MUX: whether the plugin multiplexes broker connections over its one connection;
    /// `None` when the field is absent.
    pub multiplex: Option<bool>,
}

impl Handshake {
    /// A gRPC handshake for core version 1 with no certificate and no MUX field.
    pub fn new(app_version: u32, network: Network, address: impl Into<String>) -> Self {
        Self {
            core_version: CORE_PROTOCOL_VERSION,
            app_version,
            network,
            address: address.into(),
            protocol: Protocol::Grpc,
            server_cert: None,
            multiplex: None,
        }
    }

    /// Parses a handshake line strictly; surrounding whitespace (including `\r\n`) is
    /// ignored.
    ///
    /// This checks the line's syntax and everything that does not depend on the host's
    /// configuration; [`validate`](Self::validate) checks the rest.
    ///
    /// # Errors
    ///
    /// One [`HandshakeError`] variant per problem, checked in go-plugin's order: the shape
    /// of the line ([`EmptyLine`](HandshakeError::EmptyLine),
    /// [`Unrecognized`](HandshakeError::Unrecognized)), then each field from CORE to MUX.
    /// Fields after MUX are ignored.
    pub fn parse(line: &str) -> Result<Self, HandshakeError> {
        let line = line.trim();
        if line.is_empty() {
            return Err(HandshakeError::EmptyLine);
        }
        let fields: Vec<&str> = line.split('|').take(KNOWN_FIELDS).collect();
        if fields.len() < MIN_FIELDS {
            return Err(HandshakeError::Unrecognized {
                line: snippet(line),
                fields: fields.len(),
            });
        }
        let [core, app, network, address, rest @ ..] = fields.as_slice() else {
            // Unreachable: the length was checked above; kept as an error, not a panic.
            return Err(HandshakeError::Unrecognized {
                line: snippet(line),
                fields: fields.len(),
            });
        };

        let core_version =
            core.parse::<u32>()
                .map_err(|source| HandshakeError::InvalidCoreVersion {
                    value: snippet(core),
                    source,
                })?;
        if core_version != CORE_PROTOCOL_VERSION {
            return Err(HandshakeError::IncompatibleCoreVersion {
                plugin: core_version,
                supported: CORE_PROTOCOL_VERSION,
            });
        }
        let app_version =
            app.parse::<u32>()
                .map_err(|source| HandshakeError::InvalidAppVersion {
                    value: snippet(app),
                    source,
                })?;
        let network: Network = network.parse()?;
        check_address(network, address)?;
        let protocol = match rest.first() {
            Some(p) => p.parse()?,
            None => Protocol::NetRpc,
        };
        let server_cert = match rest.get(1) {
            Some(cert) if cert.len() > CERT_FILLER_MAX_LEN => Some(decode_cert(cert)?),
            _ => None,
        };
        let multiplex = match rest.get(2) {
            Some(mux) => {
                Some(
                    parse_go_bool(mux).ok_or_else(|| HandshakeError::InvalidMultiplex {
                        value: snippet(mux),
                    })?,
                )
            }
            None => None,
        };

        Ok(Self {
            core_version,
            app_version,
            network,
            address: (*address).to_owned(),
            protocol,
            server_cert,
            multiplex,
        })
    }

    /// Parses the raw first line of a plugin's stdout: as [`parse`](Self::parse), after
    /// checking that it is UTF-8.
    ///
    /// # Errors
    ///
    /// [`HandshakeError::InvalidUtf8`], or whatever [`parse`](Self::parse) returns.
    pub fn parse_bytes(line: &[u8]) -> Result<Self, HandshakeError> {
        match std::str::from_utf8(line) {
            Ok(text) => Self::parse(text),
            Err(_) => Err(HandshakeError::InvalidUtf8 {
                line: snippet(&String::from_utf8_lossy(line)),
            }),
        }
    }

    /// Checks a parsed handshake against the host's configuration.
    ///
    /// - the core version must be [`CORE_PROTOCOL_VERSION`];
    /// - the app version must be one of `host_versions`;
    /// - the protocol must be [`Protocol::Grpc`];
    /// - if the host asked for broker multiplexing (`want_multiplex`, i.e. it set
    ///   `PLUGIN_MULTIPLEX_GRPC`), the MUX field must be present and true. A plugin that
    ///   says `true` although the host did not ask is accepted, as go-plugin does.
    ///
    /// # Errors
    ///
    /// [`IncompatibleCoreVersion`](HandshakeError::IncompatibleCoreVersion),
    /// [`IncompatibleAppVersion`](HandshakeError::IncompatibleAppVersion),
    /// [`UnsupportedProtocol`](HandshakeError::UnsupportedProtocol) or
    /// [`MultiplexUnsupported`](HandshakeError::MultiplexUnsupported), in that order.
    pub fn validate(
        &self,
        host_versions: &[u32],
        want_multiplex: bool,
    ) -> Result<(), HandshakeError> {
        if self.core_version != CORE_PROTOCOL_VERSION {
            return Err(HandshakeError::IncompatibleCoreVersion {
                plugin: self.core_version,
                supported: CORE_PROTOCOL_VERSION,
            });
        }
        if !host_versions.contains(&self.app_version) {
            return Err(HandshakeError::IncompatibleAppVersion {
                plugin: self.app_version,
                host: host_versions.to_vec(),
            });
        }
        if self.protocol != Protocol::Grpc {
            return Err(HandshakeError::UnsupportedProtocol {
                protocol: self.protocol,
            });
        }
        if want_multiplex && self.multiplex != Some(true) {
            return Err(HandshakeError::MultiplexUnsupported {
                advertised: self.multiplex,
            });
        }
        Ok(())
    }
}

impl FromStr for Handshake {
    type Err = HandshakeError;

    /// Same as [`Handshake::parse`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Handshake {
    /// Prints the line without a trailing newline; `Some(false)` in `multiplex` prints
    /// `|false` (a go-plugin plugin only ever prints `|true`) so that parsing the output
    /// gives the same value back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}|{}|{}|{}|{}|",
            self.core_version, self.app_version, self.network, self.address, self.protocol
        )?;
        if let Some(der) = &self.server_cert {
            f.write_str(&base64::engine::general_purpose::STANDARD_NO_PAD.encode(der))?;
        }
        match self.multiplex {
            Some(true) => f.write_str("|true"),
            Some(false) => f.write_str("|false"),
            None => Ok(()),
        }
    }
}

/// Picks the app protocol version a plugin announces, by go-plugin's rule.
///
/// `env_value` is the host's `PLUGIN_PROTOCOL_VERSIONS` (comma-separated decimals;
/// `None` when unset), `plugin_versions` the versions the plugin implements. The highest
/// plugin version that the host also lists wins; if there is none (or the variable is
/// unset or empty) the plugin's **lowest** version is returned and the host will reject
/// it with a clear error. Returns 0 (which no host offers) if `plugin_versions` is empty.
///
/// The second value lists the host entries that are not decimal numbers (surrounding
/// spaces are tolerated), for a warning; go-plugin prints
/// `server sent invalid plugin version "<s>"` to stderr for each.
///
/// ```
/// use intercom::handshake::negotiate_version;
///
/// assert_eq!(negotiate_version(Some("1,2,3"), &[2, 3, 4]), (3, vec![]));
/// assert_eq!(negotiate_version(None, &[2, 3, 4]), (2, vec![]));
/// assert_eq!(negotiate_version(Some("x,2"), &[1, 2]), (2, vec!["x".to_owned()]));
/// ```
pub fn negotiate_version(env_value: Option<&str>, plugin_versions: &[u32]) -> (u32, Vec<String>) {
    let (host, invalid) = match env_value {
        Some(value) => parse_versions(value),
        None => (Vec::new(), Vec::new()),
    };
    let chosen = plugin_versions
        .iter()
        .copied()
        .filter(|v| host.contains(v))
        .max()
        .or_else(|| plugin_versions.iter().copied().min())
        .unwrap_or(0);
    (chosen, invalid)
}

/// Parses the `PLUGIN_PROTOCOL_VERSIONS` format (`"1,2,3"`) into the valid versions, in
/// order, and the entries that are not decimal numbers (truncated). An empty string is an
/// empty list; surrounding spaces around an entry are tolerated.
pub fn parse_versions(value: &str) -> (Vec<u32>, Vec<String>) {
    let mut versions = Vec::new();
    let mut invalid = Vec::new();
    if value.trim().is_empty() {
        return (versions, invalid);
    }
    for entry in value.split(',') {
        match entry.trim().parse::<u32>() {
            Ok(v) => versions.push(v),
            Err(_) => invalid.push(snippet(entry)),
        }
    }
    (versions, invalid)
}

/// Builds the `PLUGIN_PROTOCOL_VERSIONS` value: decimals joined by `,`, no spaces.
///
/// ```
/// assert_eq!(intercom::handshake::format_versions(&[1, 2, 3]), "1,2,3");
/// ```
pub fn format_versions(versions: &[u32]) -> String {
    versions
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

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

/// Checks ADDR for its NETWORK.
fn check_address(network: Network, address: &str) -> Result<(), HandshakeError> {
    match network {
        Network::Unix => {
            let absolute = address.starts_with('/') || std::path::Path::new(address).is_absolute();
            if absolute && !address.contains('\0') {
                Ok(())
            } else {
                Err(HandshakeError::InvalidUnixAddress {
                    address: snippet(address),
                })
            }
        }
        Network::Tcp => match address.parse::<SocketAddr>() {
            Ok(addr) if addr.port() != 0 => Ok(()),
            Ok(_) => Err(HandshakeError::InvalidTcpAddress {
                address: snippet(address),
                source: None,
            }),
            Err(e) => Err(HandshakeError::InvalidTcpAddress {
                address: snippet(address),
                source: Some(e),
            }),
        },
    }
}

/// Decodes a CERT field longer than the filler limit into one DER certificate.
fn decode_cert(cert: &str) -> Result<Vec<u8>, HandshakeError> {
    let der = CERT_DECODER
        .decode(cert)
        .map_err(|e| HandshakeError::CertificateNotBase64 {
            cert: snippet(cert),
            source: Box::new(e),
        })?;
    // rustls' own parser (webpki), the one that later checks the certificate in the TLS
    // handshake; it rejects trailing data after the certificate.
    let parsed =
        webpki::EndEntityCert::try_from(&rustls::pki_types::CertificateDer::from(der.as_slice()))
            .map(drop);
    match parsed {
        Ok(()) => Ok(der),
        Err(e) => Err(HandshakeError::CertificateNotDer {
            cert: snippet(cert),
            source: Box::new(e),
        }),
    }
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The offending input for an error, cut to [`SNIPPET_MAX_CHARS`] characters.
fn snippet(s: &str) -> String {
    match s.char_indices().nth(SNIPPET_MAX_CHARS) {
        Some((cut, _)) => format!("{}…", s.get(..cut).unwrap_or_default()),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_cert_der() -> Vec<u8> {
        let key = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("rcgen generates a self-signed certificate");
        key.cert.der().to_vec()
    }

    #[test]
    fn fields_after_mux_are_ignored_as_in_go_plugin() {
        let h = Handshake::parse("1|1|unix|/tmp/p|grpc||true|extra|and more").unwrap();
        assert_eq!(
            h,
            Handshake {
                multiplex: Some(true),
                ..Handshake::new(1, Network::Unix, "/tmp/p")
            }
        );
        // What the fields after MUX hold does not matter, not even `|` garbage.
        let h = Handshake::parse("1|1|tcp|127.0.0.1:1234|grpc||false||||").unwrap();
        assert_eq!(h.multiplex, Some(false));
        assert_eq!(Handshake::parse(&h.to_string()).unwrap(), h);
    }

    #[test]
    fn a_non_utf8_first_line_is_a_bad_handshake() {
        let err = Handshake::parse_bytes(b"1|1|unix|/tmp/\xff\xfe|grpc|\n").unwrap_err();
        match &err {
            HandshakeError::InvalidUtf8 { line } => assert!(line.contains('\u{fffd}'), "{line}"),
            other => panic!("unexpected: {other:?}"),
        }
        assert!(err.to_string().contains("not UTF-8"), "{err}");
        assert_eq!(
            Handshake::parse_bytes(b"1|1|unix|/tmp/p|grpc|\n").unwrap(),
            Handshake::new(1, Network::Unix, "/tmp/p")
        );
    }

    #[test]
    fn go_plugin_example_lines() {
        let filler = format!("1|1|unix|/tmp/p|grpc|{}|1", "x".repeat(CERT_FILLER_MAX_LEN));
        let cases: &[(&str, Handshake)] = &[
            (
                "1|1|unix|/tmp/plugin1234567890|grpc|",
                Handshake::new(1, Network::Unix, "/tmp/plugin1234567890"),
            ),
            (
                "1|1|unix|/tmp/plugin1234567890|grpc||true",
                Handshake {
                    multiplex: Some(true),
                    ..Handshake::new(1, Network::Unix, "/tmp/plugin1234567890")
                },
            ),
            (
                "1|1|tcp|127.0.0.1:1234|grpc",
                Handshake::new(1, Network::Tcp, "127.0.0.1:1234"),
            ),
            (
                "1|3|tcp|[::1]:50077|grpc|",
                Handshake::new(3, Network::Tcp, "[::1]:50077"),
            ),
            (
                "  1|1|unix|/tmp/p|grpc|\r\n",
                Handshake::new(1, Network::Unix, "/tmp/p"),
            ),
            (
                "1|1|unix|/tmp/p",
                Handshake {
                    protocol: Protocol::NetRpc,
                    ..Handshake::new(1, Network::Unix, "/tmp/p")
                },
            ),
            (
                "1|1|unix|/tmp/p|netrpc|",
                Handshake {
                    protocol: Protocol::NetRpc,
                    ..Handshake::new(1, Network::Unix, "/tmp/p")
                },
            ),
            // Legacy filler (<= 50 chars) is ignored.
            (
                "1|1|unix|/tmp/p|grpc|aGVsbG8gd29ybGQ",
                Handshake::new(1, Network::Unix, "/tmp/p"),
            ),
            (
                &filler,
                Handshake {
                    multiplex: Some(true),
                    ..Handshake::new(1, Network::Unix, "/tmp/p")
                },
            ),
            (
                "1|1|unix|/tmp/p|grpc||False",
                Handshake {
                    multiplex: Some(false),
                    ..Handshake::new(1, Network::Unix, "/tmp/p")
                },
            ),
        ];
        for (line, want) in cases {
            let got = Handshake::parse(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            assert_eq!(&got, want, "{line:?}");
            assert_eq!(Handshake::parse(&got.to_string()).unwrap(), got, "{line:?}");
        }
        // Display is byte-for-byte what a Go plugin prints.
        for line in [
            "1|1|unix|/tmp/plugin1234567890|grpc|",
            "1|1|unix|/tmp/plugin1234567890|grpc||true",
        ] {
            assert_eq!(Handshake::parse(line).unwrap().to_string(), line);
        }
        assert_eq!(
            Handshake::parse("1|1|tcp|127.0.0.1:1234|grpc")
                .unwrap()
                .to_string(),
            "1|1|tcp|127.0.0.1:1234|grpc|"
        );
    }

    #[test]
    fn certificate_round_trip() {
        let der = test_cert_der();
        let unpadded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&der);
        let padded = base64::engine::general_purpose::STANDARD.encode(&der);
        let h = Handshake {
            server_cert: Some(der.clone()),
            ..Handshake::new(1, Network::Unix, "/tmp/p")
        };
        assert_eq!(h.to_string(), format!("1|1|unix|/tmp/p|grpc|{unpadded}"));
        assert!(!h.to_string().ends_with('='));
        for cert in [&unpadded, &padded] {
            let line = format!("1|1|unix|/tmp/p|grpc|{cert}|true");
            let got = Handshake::parse(&line).unwrap();
            assert_eq!(got.server_cert.as_deref(), Some(der.as_slice()));
            assert_eq!(got.multiplex, Some(true));
        }
        assert_eq!(Handshake::parse(&h.to_string()).unwrap(), h);
    }

    /// Every error variant, with the text its message must contain.
    #[test]
    fn error_variants() {
        let der = test_cert_der();
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&der);
        let not_der = base64::engine::general_purpose::STANDARD_NO_PAD.encode([0x30u8; 60]);
        let trailing = base64::engine::general_purpose::STANDARD_NO_PAD
            .encode([der.as_slice(), &[0u8, 1, 2]].concat());
        let long_garbage = "x".repeat(1000);

        type Check = fn(&HandshakeError) -> bool;
        let cases: Vec<(String, Check, &str)> = vec![
            (
                "".into(),
                |e| matches!(e, HandshakeError::EmptyLine),
                "must print nothing to stdout before the handshake",
            ),
            (
                " \r\n".into(),
                |e| matches!(e, HandshakeError::EmptyLine),
                "unrecognized remote plugin message",
            ),
            (
                "hello world".into(),
                |e| matches!(e, HandshakeError::Unrecognized { fields: 1, .. }),
                "unrecognized remote plugin message \"hello world\"",
            ),
            (
                "1|1|unix".into(),
                |e| matches!(e, HandshakeError::Unrecognized { fields: 3, .. }),
                "must print nothing to stdout before the handshake",
            ),
            (
                long_garbage.clone(),
                |e| matches!(e, HandshakeError::Unrecognized { line, .. } if line.chars().count() == 201),
                "…",
            ),
            (
                "x|1|unix|/tmp/p|grpc|".into(),
                |e| matches!(e, HandshakeError::InvalidCoreVersion { value, .. } if value == "x"),
                "core protocol version \"x\"",
            ),
            (
                "99999999999|1|unix|/tmp/p|grpc|".into(),
                |e| matches!(e, HandshakeError::InvalidCoreVersion { .. }),
                "decimal number",
            ),
            (
                "2|1|unix|/tmp/p|grpc|".into(),
                |e| {
                    matches!(
                        e,
                        HandshakeError::IncompatibleCoreVersion {
                            plugin: 2,
                            supported: 1
                        }
                    )
                },
                "recompiled",
            ),
            (
                "1|v1|unix|/tmp/p|grpc|".into(),
                |e| matches!(e, HandshakeError::InvalidAppVersion { value, .. } if value == "v1"),
                "app protocol version \"v1\"",
            ),
            (
                "1|1|udp|/tmp/p|grpc|".into(),
                |e| matches!(e, HandshakeError::UnknownNetwork { network } if network == "udp"),
                "expected `unix` or `tcp`",
            ),
            (
                "1|1|unix|tmp/p|grpc|".into(),
                |e| matches!(e, HandshakeError::InvalidUnixAddress { address } if address == "tmp/p"),
                "absolute path",
            ),
            (
                "1|1|unix||grpc|".into(),
                |e| matches!(e, HandshakeError::InvalidUnixAddress { .. }),
                "absolute path",
            ),
            (
                "1|1|unix|/tmp/a\0b|grpc|".into(),
                |e| matches!(e, HandshakeError::InvalidUnixAddress { .. }),
                "NUL",
            ),
            (
                "1|1|tcp|localhost:1234|grpc|".into(),
                |e| {
                    matches!(
                        e,
                        HandshakeError::InvalidTcpAddress {
                            source: Some(_),
                            ..
                        }
                    )
                },
                "ip:port",
            ),
            (
                "1|1|tcp|127.0.0.1|grpc|".into(),
                |e| matches!(e, HandshakeError::InvalidTcpAddress { .. }),
                "127.0.0.1:1234",
            ),
            (
                "1|1|tcp|::1:1234|grpc|".into(),
                |e| matches!(e, HandshakeError::InvalidTcpAddress { .. }),
                "[::1]:1234",
            ),
            (
                "1|1|tcp|127.0.0.1:0|grpc|".into(),
                |e| matches!(e, HandshakeError::InvalidTcpAddress { source: None, .. }),
                "non-zero port",
            ),
            (
                "1|1|tcp|/tmp/p|grpc|".into(),
                |e| matches!(e, HandshakeError::InvalidTcpAddress { .. }),
                "\"/tmp/p\"",
            ),
            (
                "1|1|unix|/tmp/p|GRPC|".into(),
                |e| matches!(e, HandshakeError::UnknownProtocol { protocol } if protocol == "GRPC"),
                "expected `grpc`",
            ),
            (
                "1|1|unix|/tmp/p||".into(),
                |e| matches!(e, HandshakeError::UnknownProtocol { .. }),
                "unknown plugin protocol \"\"",
            ),
            (
                format!("1|1|unix|/tmp/p|grpc|{}!", &b64),
                |e| matches!(e, HandshakeError::CertificateNotBase64 { .. }),
                "not base64",
            ),
            (
                format!("1|1|unix|/tmp/p|grpc|{}", "-".repeat(51)),
                |e| matches!(e, HandshakeError::CertificateNotBase64 { .. }),
                "PLUGIN_CLIENT_CERT",
            ),
            (
                format!("1|1|unix|/tmp/p|grpc|{not_der}"),
                |e| matches!(e, HandshakeError::CertificateNotDer { .. }),
                "DER X.509",
            ),
            (
                format!("1|1|unix|/tmp/p|grpc|{trailing}"),
                |e| matches!(e, HandshakeError::CertificateNotDer { .. }),
                "DER X.509",
            ),
            (
                "1|1|unix|/tmp/p|grpc||yes".into(),
                |e| matches!(e, HandshakeError::InvalidMultiplex { value } if value == "yes"),
                "as a boolean",
            ),
            (
                "1|1|unix|/tmp/p|grpc||".into(),
                |e| matches!(e, HandshakeError::InvalidMultiplex { .. }),
                "multiplexing",
            ),
        ];
        for (line, check, text) in &cases {
            let err = Handshake::parse(line).expect_err(line);
            assert!(check(&err), "{line:?}: wrong variant {err:?}");
            let msg = err.to_string();
            assert!(msg.contains(text), "{line:?}: {msg:?} lacks {text:?}");
        }
    }

    #[test]
    fn validate_rules() {
        let ok = Handshake::parse("1|2|unix|/tmp/p|grpc|").unwrap();
        ok.validate(&[1, 2], false).unwrap();

        let err = ok.validate(&[3, 4], false).unwrap_err();
        assert!(
            matches!(&err, HandshakeError::IncompatibleAppVersion { plugin: 2, host } if host == &[3, 4])
        );
        let msg = err.to_string();
        assert!(
            msg.contains("plugin version 2") && msg.contains("host versions [3,4]"),
            "{msg}"
        );

        let err = ok.validate(&[2], true).unwrap_err();
        assert!(matches!(
            err,
            HandshakeError::MultiplexUnsupported { advertised: None }
        ));
        assert!(
            err.to_string().contains("absent") && err.to_string().contains("go-plugin dependency")
        );

        let no_mux = Handshake::parse("1|2|unix|/tmp/p|grpc||false").unwrap();
        let err = no_mux.validate(&[2], true).unwrap_err();
        assert!(matches!(
            err,
            HandshakeError::MultiplexUnsupported {
                advertised: Some(false)
            }
        ));
        no_mux.validate(&[2], false).unwrap();

        let mux = Handshake::parse("1|2|unix|/tmp/p|grpc||true").unwrap();
        mux.validate(&[2], true).unwrap();
        mux.validate(&[2], false).unwrap(); // go-plugin ignores an unrequested MUX

        // The Python example cannot multiplex.
        let python = Handshake::parse("1|1|tcp|127.0.0.1:1234|grpc").unwrap();
        python.validate(&[1], false).unwrap();
        assert!(matches!(
            python.validate(&[1], true),
            Err(HandshakeError::MultiplexUnsupported { advertised: None })
        ));

        let netrpc = Handshake::parse("1|1|unix|/tmp/p").unwrap();
        let err = netrpc.validate(&[1], false).unwrap_err();
        assert!(matches!(
            err,
            HandshakeError::UnsupportedProtocol {
                protocol: Protocol::NetRpc
            }
        ));
        assert!(err.to_string().contains("intercom speaks only `grpc`"));

        let core2 = Handshake {
            core_version: 2,
            ..ok.clone()
        };
        assert!(matches!(
            core2.validate(&[2], false),
            Err(HandshakeError::IncompatibleCoreVersion {
                plugin: 2,
                supported: 1
            })
        ));
    }

    #[test]
    fn network_and_protocol_spellings() {
        for n in [Network::Unix, Network::Tcp] {
            assert_eq!(n.to_string().parse::<Network>().unwrap(), n);
        }
        for p in [Protocol::Grpc, Protocol::NetRpc] {
            assert_eq!(p.to_string().parse::<Protocol>().unwrap(), p);
        }
        assert_eq!(Network::Unix.to_string(), "unix");
        assert_eq!(Protocol::NetRpc.to_string(), "netrpc");
        assert!("Unix".parse::<Network>().is_err());
        assert!("gRPC".parse::<Protocol>().is_err());
    }

    #[test]
    fn handshake_config_is_const() {
        const HS: HandshakeConfig = HandshakeConfig::new(1, "BASIC_PLUGIN", "hello");
        assert_eq!(HS.magic_cookie_key, "BASIC_PLUGIN");
        assert_eq!(HS.magic_cookie_value, "hello");
        assert_eq!(HS.protocol_version, 1);
    }

    #[test]
    fn version_negotiation() {
        type Case<'a> = (Option<&'a str>, &'a [u32], u32, &'a [&'a str]);
        let cases: &[Case<'_>] = &[
            (Some("1,2,3"), &[2, 3, 4], 3, &[]),
            (Some("3,1,2"), &[4, 3, 2], 3, &[]),
            (None, &[2, 3, 4], 2, &[]),
            (Some(""), &[4, 2, 3], 2, &[]),
            (Some("x,2"), &[1, 2, 3], 2, &["x"]),
            (Some("5,6"), &[3, 1, 2], 1, &[]),
            (Some("1,,2"), &[1], 1, &[""]),
            (Some(" 2 , 1"), &[1, 2], 2, &[]),
            (Some("-1,2"), &[1], 1, &["-1"]),
            (Some("1"), &[], 0, &[]),
        ];
        for (env, plugin, want, invalid) in cases {
            let (got, bad) = negotiate_version(*env, plugin);
            assert_eq!(got, *want, "{env:?} {plugin:?}");
            assert_eq!(bad, *invalid, "{env:?} {plugin:?}");
        }
    }

    #[test]
    fn versions_format_and_parse() {
        assert_eq!(format_versions(&[1, 2, 3]), "1,2,3");
        assert_eq!(format_versions(&[7]), "7");
        assert_eq!(format_versions(&[]), "");
        assert_eq!(parse_versions("1,2,3"), (vec![1, 2, 3], vec![]));
        assert_eq!(parse_versions(""), (vec![], vec![]));
        let vs = [4, 10, 1];
        assert_eq!(parse_versions(&format_versions(&vs)).0, vs);
    }

    #[test]
    fn snippet_truncates_on_char_boundary() {
        assert_eq!(snippet("abc"), "abc");
        let long = "é".repeat(300);
        let s = snippet(&long);
        assert_eq!(s.chars().count(), SNIPPET_MAX_CHARS + 1);
        assert!(s.ends_with('…'));
    }

    /// splitmix64: a tiny deterministic PRNG so the fuzz test needs no crate.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len())]
        }
    }

    #[test]
    fn fuzz_never_panics_and_round_trips() {
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(test_cert_der());
        let seeds: Vec<String> = vec![
            "1|1|unix|/tmp/plugin1234567890|grpc|".into(),
            "1|1|unix|/tmp/plugin1234567890|grpc||true".into(),
            "1|1|tcp|127.0.0.1:1234|grpc".into(),
            "1|2|tcp|[::1]:50077|grpc||T".into(),
            "1|1|unix|/tmp/p|netrpc".into(),
            format!("1|1|unix|/tmp/p|grpc|{b64}"),
            format!("1|1|tcp|10.0.0.1:80|grpc|{b64}|true"),
        ];
        let alphabet: Vec<char> = "|0123456789:/.[]aefgiprtuxTF=+ \t\r\n\0é€🦀\u{7f}"
            .chars()
            .collect();
        let mut rng = Rng(0x1234_5678);
        let mut valid = 0;
        for i in 0..5000 {
            let mut line: Vec<char> = if i % 10 == 0 {
                // Purely random.
                (0..rng.below(80)).map(|_| *rng.pick(&alphabet)).collect()
            } else {
                rng.pick(&seeds).chars().collect()
            };
            for _ in 0..rng.below(4) {
                match rng.below(4) {
                    0 if !line.is_empty() => {
                        let at = rng.below(line.len());
                        line.remove(at);
                    }
                    1 => {
                        let at = rng.below(line.len() + 1);
                        line.insert(at, *rng.pick(&alphabet));
                    }
                    2 if !line.is_empty() => {
                        let at = rng.below(line.len());
                        line[at] = *rng.pick(&alphabet);
                    }
                    _ => line.truncate(rng.below(line.len() + 1)),
                }
            }
            let line: String = line.into_iter().collect();
            match Handshake::parse(&line) {
                Ok(h) => {
                    valid += 1;
                    let printed = h.to_string();
                    assert_eq!(
                        Handshake::parse(&printed).unwrap(),
                        h,
                        "{line:?} -> {printed:?}"
                    );
                    let _ = h.validate(&[1, 2], rng.below(2) == 0);
                }
                Err(e) => {
                    // Messages render and stay bounded even for huge inputs.
                    let _ = e.to_string();
                }
            }
        }
        assert!(
            valid > 500,
            "only {valid} valid lines; the mutator is too aggressive"
        );
    }
}

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

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;

use crate::CORE_PROTOCOL_VERSION;

mod config;
mod error;
mod fields;
// The pod-log half (logs before the handshake) only the Kubernetes runtime reads.
#[cfg_attr(not(feature = "kubernetes"), allow(dead_code))]
pub(crate) mod find;
mod versions;

pub use config::HandshakeConfig;
pub use error::HandshakeError;
pub use fields::{Network, Protocol};
pub use versions::{format_versions, negotiate_version, parse_versions};

use error::snippet;
pub(crate) use fields::parse_go_bool;
use fields::{CERT_FILLER_MAX_LEN, check_address, decode_cert};

/// Most `|`-separated fields a handshake line may have (`CORE` … `MUX`).
/// Fields after this many (`CORE|APP|NETWORK|ADDR|PROTOCOL|CERT|MUX`) are ignored.
const KNOWN_FIELDS: usize = 7;

/// Fewest `|`-separated fields a handshake line may have (`CORE` … `ADDR`).
const MIN_FIELDS: usize = 4;

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

#[cfg(test)]
mod tests;

//! The handshake's fields that are not plain numbers or text: NETWORK, PROTOCOL, the
//! address check, the CERT field and the MUX boolean.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use super::HandshakeError;
use super::error::snippet;

/// Longest CERT field go-plugin treats as legacy filler rather than a certificate.
pub(super) const CERT_FILLER_MAX_LEN: usize = 50;

/// Decodes the CERT field: standard alphabet, `=` padding optional, non-zero trailing bits
/// tolerated (Go's non-strict `RawStdEncoding` accepts them too).
const CERT_DECODER: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

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

/// Checks ADDR for its NETWORK.
pub(super) fn check_address(network: Network, address: &str) -> Result<(), HandshakeError> {
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
pub(super) fn decode_cert(cert: &str) -> Result<Vec<u8>, HandshakeError> {
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
pub(crate) fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

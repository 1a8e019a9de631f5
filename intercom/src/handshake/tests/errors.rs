//! Tests of [`HandshakeError`]: the variant each kind of bad line gives and the text of
//! its message, and the snippet that quotes the offending input.

use base64::Engine as _;

use super::test_cert_der;
use crate::handshake::error::{SNIPPET_MAX_CHARS, snippet};
use crate::handshake::{Handshake, HandshakeError};

/// Whether an error is the variant a case expects.
type Check = fn(&HandshakeError) -> bool;

/// A bad line, the variant it must give, and text its message must contain.
type Case = (String, Check, &'static str);

/// Every error variant, with the text its message must contain.
#[test]
fn error_variants() {
    let cases = [
        empty_and_unrecognized_lines(),
        bad_versions(),
        bad_addresses(),
        bad_protocols(),
        bad_certificates(),
        bad_multiplex_fields(),
    ]
    .concat();
    for (line, check, text) in &cases {
        let err = Handshake::parse(line).expect_err(line);
        assert!(check(&err), "{line:?}: wrong variant {err:?}");
        let msg = err.to_string();
        assert!(msg.contains(text), "{line:?}: {msg:?} lacks {text:?}");
    }
}

/// Empty lines, and lines that are not a handshake at all.
fn empty_and_unrecognized_lines() -> Vec<Case> {
    let long_garbage = "x".repeat(1000);
    vec![
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
            long_garbage,
            |e| matches!(e, HandshakeError::Unrecognized { line, .. } if line.chars().count() == 201),
            "…",
        ),
    ]
}

/// Core and app protocol versions that are not numbers, or the wrong core version.
fn bad_versions() -> Vec<Case> {
    vec![
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
    ]
}

/// Unknown networks, and addresses that are not absolute paths or `ip:port`.
fn bad_addresses() -> Vec<Case> {
    vec![
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
    ]
}

/// Protocols other than `grpc` and `netrpc` (spelled exactly).
fn bad_protocols() -> Vec<Case> {
    vec![
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
    ]
}

/// CERT fields that are not base64, or not one DER X.509 certificate.
fn bad_certificates() -> Vec<Case> {
    let der = test_cert_der();
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&der);
    let not_der = base64::engine::general_purpose::STANDARD_NO_PAD.encode([0x30u8; 60]);
    let trailing = base64::engine::general_purpose::STANDARD_NO_PAD
        .encode([der.as_slice(), &[0u8, 1, 2]].concat());
    vec![
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
    ]
}

/// MUX fields that are not Go booleans.
fn bad_multiplex_fields() -> Vec<Case> {
    vec![
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
    ]
}

#[test]
fn snippet_truncates_on_char_boundary() {
    assert_eq!(snippet("abc"), "abc");
    let long = "é".repeat(300);
    let s = snippet(&long);
    assert_eq!(s.chars().count(), SNIPPET_MAX_CHARS + 1);
    assert!(s.ends_with('…'));
}

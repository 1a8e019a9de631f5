//! Tests of parsing and printing handshake lines as go-plugin writes them, and of the
//! network and protocol spellings.

use base64::Engine as _;

use super::test_cert_der;
use crate::handshake::fields::CERT_FILLER_MAX_LEN;
use crate::handshake::{Handshake, HandshakeError, Network, Protocol};

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

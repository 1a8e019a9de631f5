//! Tests of the handshake line: parsing, printing, validation and versions.

use super::error::SNIPPET_MAX_CHARS;
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
    assert!(err.to_string().contains("absent") && err.to_string().contains("go-plugin dependency"));

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

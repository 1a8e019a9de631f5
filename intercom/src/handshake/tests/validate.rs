//! Tests of checking a parsed line against the host's configuration.

use crate::handshake::{Handshake, HandshakeConfig, HandshakeError, Protocol};

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
fn handshake_config_is_const() {
    const HS: HandshakeConfig = HandshakeConfig::new(1, "BASIC_PLUGIN", "hello");
    assert_eq!(HS.magic_cookie_key, "BASIC_PLUGIN");
    assert_eq!(HS.magic_cookie_value, "hello");
    assert_eq!(HS.protocol_version, 1);
}

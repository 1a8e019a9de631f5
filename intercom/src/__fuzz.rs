//! Entry points for the fuzz targets under `fuzz/` and the bounded smoke test
//! `tests/tests/fuzz_smoke.rs`: one function per fuzzed surface, taking arbitrary bytes.
//!
//! Each wrapper calls the real code (also crate-private code such as the yamux session)
//! and checks the properties that code documents. A wrapper panics only when the code
//! under test panics or breaks one of those properties, so every panic is a finding.
//! The return value says whether the input was accepted, so a caller can check that its
//! inputs reach past the first rejection.
//!
//! Not a public API: no semver guarantees.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;

use crate::handshake::{Handshake, format_versions, negotiate_version, parse_versions};

/// The handshake line: parse (bytes and text agree), validate, Display round trip, and
/// the `PLUGIN_PROTOCOL_VERSIONS` list round trip. Returns whether the line parsed.
///
/// # Panics
/// If the parser panics, or `Handshake::parse(&h.to_string())` is not `Ok(h)` for a
/// parsed `h`, or the version list does not survive `format_versions`.
pub fn handshake(data: &[u8]) -> bool {
    let parsed = Handshake::parse_bytes(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let from_text = Handshake::parse(text);
        assert_eq!(
            parsed.as_ref().ok(),
            from_text.as_ref().ok(),
            "parse_bytes and parse disagree on {text:?}"
        );
        let (versions, _invalid) = parse_versions(text);
        let again = parse_versions(&format_versions(&versions));
        assert_eq!(
            again,
            (versions.clone(), Vec::new()),
            "versions of {text:?}"
        );
        let _ = negotiate_version(Some(text), &versions);
    }
    let handshake = match parsed {
        Ok(handshake) => handshake,
        Err(error) => {
            let _ = error.to_string();
            return false;
        }
    };
    for (versions, multiplex) in [(&[1][..], false), (&[handshake.app_version][..], true)] {
        if let Err(error) = handshake.validate(versions, multiplex) {
            let _ = error.to_string();
        }
    }
    let line = handshake.to_string();
    match Handshake::parse(&line) {
        Ok(again) => assert_eq!(again, handshake, "Display round trip of {line:?}"),
        Err(error) => panic!("Display output {line:?} does not parse: {error}"),
    }
    true
}

/// The certificate checks: `tls::parse_pem_certificate` on the input as PEM text, the
/// same check on the input wrapped as one PEM `CERTIFICATE` block (the DER check of
/// `PLUGIN_CLIENT_CERT`), and the DER check of a handshake's CERT field on the input's
/// base64. Returns whether either check accepted the input as a certificate.
///
/// # Panics
/// If a check panics, or an accepted certificate is not the input's bytes.
pub fn certificate(data: &[u8]) -> bool {
    if let Ok(text) = std::str::from_utf8(data)
        && let Err(error) = crate::tls::parse_pem_certificate(text)
    {
        let _ = error.to_string();
    }

    let base64 = base64::engine::general_purpose::STANDARD.encode(data);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in base64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(chunk));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    let pem_ok = match crate::tls::parse_pem_certificate(&pem) {
        Ok(der) => {
            assert_eq!(der, data, "PEM check returned other bytes");
            true
        }
        Err(error) => {
            let _ = error.to_string();
            false
        }
    };

    let unpadded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(data);
    let line = format!("1|1|unix|/tmp/plugin|grpc|{unpadded}");
    let handshake_ok = match Handshake::parse(&line) {
        Ok(handshake) => {
            // Short CERT fields are go-plugin's legacy filler and ignored.
            if let Some(der) = &handshake.server_cert {
                assert_eq!(der, data, "handshake CERT check returned other bytes");
            }
            handshake.server_cert.is_some()
        }
        Err(error) => {
            let _ = error.to_string();
            false
        }
    };
    pem_ok || handshake_ok
}

/// The plugin stderr parser: every `\n`-terminated line (UTF-8, lossily, as the host's
/// stderr pump reads them) through one `logs::StderrParser`, each record emitted as the
/// host does. Returns whether any line was an hclog JSON entry with fields.
///
/// # Panics
/// If the parser or `logs::emit` panics.
pub fn hclog(data: &[u8]) -> bool {
    let mut parser = crate::logs::StderrParser::new();
    let mut structured = false;
    for raw in data.split_inclusive(|b| *b == b'\n') {
        let line = String::from_utf8_lossy(raw);
        let record = parser.parse(&line);
        structured |= !record.fields.is_empty();
        crate::logs::emit_with("fuzz", Some("pod"), &record);
    }
    structured
}

/// The multiplexed session (`PLUGIN_MULTIPLEX_GRPC`): the input is what the peer sends
/// on the one socket, then the peer closes its write half. The first byte picks the role
/// (bit 0: host or plugin) and whether this side also opens a stream (bit 1); inbound
/// streams are read to their end. Returns whether a stream was accepted.
///
/// # Panics
/// If the session panics, or it is still running 10 s after the peer closed (a hang).
pub fn mux_session(data: &[u8]) -> bool {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let (mode, bytes) = data.split_first().map_or((0, data), |(m, b)| (*m, b));
    let role = if mode & 1 == 0 {
        crate::mux::Role::Client
    } else {
        crate::mux::Role::Server
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime needs no resources that can run out");
    runtime.block_on(async move {
        let (ours, peer) = tokio::io::duplex(64 * 1024);
        let (mux, mut inbound) =
            crate::mux::Mux::start(crate::transport::Io::Boxed(Box::pin(ours)), role);
        let (mut peer_read, mut peer_write) = tokio::io::split(peer);
        let session = async {
            let mut tasks = tokio::task::JoinSet::new();
            let bytes = bytes.to_vec();
            tasks.spawn(async move {
                let _ = peer_write.write_all(&bytes).await;
                let _ = peer_write.shutdown().await;
            });
            tasks.spawn(async move {
                let mut sink = Vec::new();
                let _ = peer_read.read_to_end(&mut sink).await;
            });
            if mode & 2 != 0 {
                let mux = mux.clone();
                tasks.spawn(async move {
                    if let Ok(mut stream) = mux.open().await {
                        let _ = stream.write_all(b"ping").await;
                        let mut sink = Vec::new();
                        let _ = stream.read_to_end(&mut sink).await;
                    }
                });
            }
            let mut accepted = false;
            loop {
                tokio::select! {
                    stream = inbound.recv() => match stream {
                        Some(mut stream) => {
                            accepted = true;
                            tasks.spawn(async move {
                                let mut sink = Vec::new();
                                let _ = stream.read_to_end(&mut sink).await;
                                let _ = stream.write_all(b"pong").await;
                            });
                        }
                        None => break,
                    },
                    () = mux.closed() => break,
                }
            }
            mux.closed().await;
            accepted
        };
        match tokio::time::timeout(Duration::from_secs(10), session).await {
            Ok(accepted) => accepted,
            Err(_) => panic!("the yamux session did not end 10 s after its peer closed"),
        }
    })
}

/// A nested message (as `Point` in `tests/src/macro_api.rs`).
#[derive(crate::Message, Debug, Clone, PartialEq)]
#[intercom(crate = "crate")]
pub struct Point {
    /// A varint.
    pub x: i32,
    /// A varint (ten bytes when negative).
    pub y: i32,
    /// An optional string.
    pub label: Option<String>,
    /// A repeated string.
    pub tags: Vec<String>,
}

/// An enum; unknown values are decode errors.
#[derive(crate::Enumeration, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[intercom(crate = "crate")]
pub enum Color {
    /// 0, the default.
    Red,
    /// 1.
    Green,
    /// A gap.
    Blue = 7,
}

/// A recursive message (depth-limited on decode).
#[derive(crate::Message, Debug, Clone, PartialEq)]
#[intercom(crate = "crate")]
pub struct Node {
    /// A value.
    pub value: u32,
    /// The rest of the list.
    pub next: Option<Box<Node>>,
}

/// One field of every supported shape (as `Everything` in `tests/src/macro_api.rs`), with
/// ordered maps only so that encoding is deterministic.
#[derive(crate::Message, Debug, Clone, PartialEq)]
#[intercom(crate = "crate")]
pub struct Everything {
    /// i8.
    pub a: i8,
    /// i16.
    pub b: i16,
    /// i32.
    pub c: i32,
    /// i64.
    pub d: i64,
    /// u8.
    pub e: u8,
    /// u16.
    pub f: u16,
    /// u32.
    pub g: u32,
    /// u64.
    pub h: u64,
    /// f32.
    pub i: f32,
    /// f64.
    pub j: f64,
    /// bool.
    pub k: bool,
    /// String.
    pub s: String,
    /// `Vec<u8>`.
    pub bytes: Vec<u8>,
    /// `Bytes`.
    pub shared: prost::bytes::Bytes,
    /// Packed integers.
    pub numbers: Vec<i64>,
    /// Packed floats.
    pub floats: Vec<f64>,
    /// Repeated strings.
    pub strings: Vec<String>,
    /// Repeated bytes.
    pub blobs: Vec<Vec<u8>>,
    /// Optional scalar.
    pub maybe: Option<u64>,
    /// Optional string.
    pub maybe_text: Option<String>,
    /// A map with string keys.
    pub map: BTreeMap<String, i64>,
    /// A map with enum values.
    pub ordered: BTreeMap<u32, Color>,
    /// A map with message values.
    pub points_by_name: BTreeMap<String, Point>,
    /// A message.
    pub point: Point,
    /// An optional message.
    pub maybe_point: Option<Point>,
    /// Repeated messages.
    pub points: Vec<Point>,
    /// An enum.
    pub color: Color,
    /// Repeated enums.
    pub colors: Vec<Color>,
    /// A recursive message.
    pub list: Option<Node>,
}

/// Whether `data` decodes as `M`; a decoded value must re-encode to bytes that decode
/// to a value encoding to the same bytes (values are compared as bytes: NaN ≠ NaN).
fn decode_as<M: prost::Message + Default>(data: &[u8]) -> bool {
    let Ok(value) = M::decode(data) else {
        return false;
    };
    let encoded = value.encode_to_vec();
    assert_eq!(encoded.len(), value.encoded_len(), "encoded_len is wrong");
    match M::decode(encoded.as_slice()) {
        Ok(again) => assert_eq!(again.encode_to_vec(), encoded, "re-encoding differs"),
        Err(error) => panic!("a re-encoded value does not decode: {error}"),
    }
    true
}

/// Wire decoding of `#[derive(intercom::Message)]` types: the input as [`Everything`],
/// [`Node`] and [`Point`]. Returns whether it decoded as [`Everything`].
///
/// # Panics
/// If decoding or encoding panics, or a decoded value does not re-encode stably.
pub fn message_decode(data: &[u8]) -> bool {
    let everything = decode_as::<Everything>(data);
    let _ = decode_as::<Node>(data);
    let _ = decode_as::<Point>(data);
    everything
}

/// Kubernetes object validation from arbitrary JSON: a `{"deployment": …, "service": …}`
/// object, or one object used as both. A Deployment that passes is checked with the
/// Service; a Service is also checked against a made-up plugin container. Returns
/// whether the Deployment passed.
///
/// # Panics
/// If validation panics.
#[cfg(feature = "kubernetes")]
#[cfg_attr(docsrs, doc(cfg(feature = "kubernetes")))]
pub fn kube_validate(data: &[u8]) -> bool {
    use crate::runtime::kubernetes::validate::{
        PluginContainer, validate_deployment, validate_service,
    };
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Service;

    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else {
        return false;
    };
    let (deployment, service) = match (json.get("deployment"), json.get("service")) {
        (Some(d), Some(s)) => (d.clone(), s.clone()),
        _ => (json.clone(), json),
    };
    let service = serde_json::from_value::<Service>(service).ok();
    let Ok(deployment) = serde_json::from_value::<Deployment>(deployment) else {
        return false;
    };
    let report = |errors: Vec<crate::runtime::kubernetes::ValidationError>| {
        for error in errors {
            let _ = error.to_string();
        }
    };
    let passed = match validate_deployment(&deployment) {
        Ok(plugin) => {
            if let Some(service) = &service
                && let Err(errors) = validate_service(service, &deployment, &plugin)
            {
                report(errors);
            }
            true
        }
        Err(errors) => {
            report(errors);
            false
        }
    };
    if let Some(service) = &service {
        let plugin = PluginContainer {
            index: data.len() % 3,
            name: String::new(),
            port: i32::from(crate::DEFAULT_SERVER_PORT),
        };
        if let Err(errors) = validate_service(service, &deployment, &plugin) {
            report(errors);
        }
    }
    passed
}

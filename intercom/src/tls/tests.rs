use std::io;
use std::time::Duration;

use rustls::pki_types::alg_id;
use rustls::{AlertDescription, CipherSuite, ProtocolVersion};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};

use super::pins::NotPinned;
use super::*;
use rustls::CertificateError;

const TIMEOUT: Duration = Duration::from_secs(30);
const TLS12_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];
const TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

type ServerStream = tokio_rustls::server::TlsStream<DuplexStream>;
type ClientStream = tokio_rustls::client::TlsStream<DuplexStream>;

fn identity() -> Identity {
    Identity::generate().expect("identity generation works")
}

/// Runs both handshake halves concurrently over an in-memory pipe.
async fn handshake(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
) -> (io::Result<ServerStream>, io::Result<ClientStream>) {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let acceptor = TlsAcceptor::from(server);
    let connector = TlsConnector::from(client);
    tokio::time::timeout(TIMEOUT, async move {
        tokio::join!(
            acceptor.accept(server_io),
            connector.connect(server_name(), client_io)
        )
    })
    .await
    .expect("handshake finishes within the timeout")
}

fn rustls_error(err: &io::Error) -> &rustls::Error {
    err.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .unwrap_or_else(|| panic!("expected a rustls error, got {err:?}"))
}

/// The error is our pin check failing for a peer in `role`.
fn assert_not_pinned(err: &io::Error, role: Role) {
    match rustls_error(err) {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
            let not_pinned = other
                .0
                .downcast_ref::<NotPinned>()
                .unwrap_or_else(|| panic!("expected NotPinned, got {other:?}"));
            assert_eq!(not_pinned.role, role);
            assert!(
                not_pinned
                    .to_string()
                    .contains("is not the pinned certificate"),
                "{not_pinned}"
            );
        }
        other => panic!("expected a pin mismatch, got {other:?}"),
    }
}

/// The peer aborted the handshake with `alert`: either during `connect`/`accept` or, for a
/// TLS 1.3 client (which finishes before the server has judged its certificate), on first read.
async fn assert_peer_alert<S>(result: io::Result<S>, alert: AlertDescription)
where
    S: tokio::io::AsyncRead + Unpin,
{
    let err = match result {
        Err(err) => err,
        Ok(mut stream) => {
            let mut buf = [0u8; 16];
            tokio::time::timeout(TIMEOUT, stream.read(&mut buf))
                .await
                .expect("read finishes within the timeout")
                .expect_err("a rejected peer must not get data")
        }
    };
    match rustls_error(&err) {
        rustls::Error::AlertReceived(received) => assert_eq!(*received, alert),
        other => panic!("expected alert {alert:?}, got {other:?}"),
    }
}

/// Both sides see the pinned peer, `h2` and `version`, and bytes flow both ways.
async fn assert_mutual_tls(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    server_id: &Identity,
    client_id: &Identity,
    version: ProtocolVersion,
) {
    let (server_stream, client_stream) = handshake(server, client).await;
    let mut server_stream = server_stream.expect("server accepts the pinned client");
    let mut client_stream = client_stream.expect("client accepts the pinned server");

    let (_, server_conn) = server_stream.get_ref();
    assert_eq!(server_conn.protocol_version(), Some(version));
    assert_eq!(server_conn.alpn_protocol(), Some(&b"h2"[..]));
    let seen = server_conn.peer_certificates().expect("client sent a cert");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].as_ref(), client_id.cert_der());

    let (_, client_conn) = client_stream.get_ref();
    assert_eq!(client_conn.protocol_version(), Some(version));
    assert_eq!(client_conn.alpn_protocol(), Some(&b"h2"[..]));
    let seen = client_conn.peer_certificates().expect("server sent a cert");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].as_ref(), server_id.cert_der());

    let exchange = async {
        client_stream.write_all(b"ping from host").await?;
        client_stream.flush().await?;
        let mut buf = [0u8; 14];
        server_stream.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"ping from host");
        server_stream.write_all(b"pong from plugin").await?;
        server_stream.flush().await?;
        let mut buf = [0u8; 16];
        client_stream.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"pong from plugin");
        io::Result::Ok(())
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .expect("exchange finishes within the timeout")
        .expect("bytes flow both ways");
}

#[tokio::test]
async fn mutual_handshake_with_pinned_certs_succeeds() {
    let (plugin, host) = (identity(), identity());
    let server = server_config(&plugin, host.cert_der()).expect("server config");
    let client = client_config(&host, plugin.cert_der()).expect("client config");
    assert_mutual_tls(server, client, &plugin, &host, ProtocolVersion::TLSv1_3).await;
}

#[tokio::test]
async fn tls12_and_tls13_both_work_with_p521() {
    for (versions, expected) in [
        (TLS12_ONLY, ProtocolVersion::TLSv1_2),
        (TLS13_ONLY, ProtocolVersion::TLSv1_3),
    ] {
        let (plugin, host) = (identity(), identity());
        // The server keeps its default (1.2 + 1.3); the client restricts the version.
        let server = server_config(&plugin, host.cert_der()).expect("server config");
        let client =
            client_config_with_versions(&host, plugin.cert_der(), versions).expect("client config");
        let (server_stream, _client_stream) =
            handshake(Arc::clone(&server), Arc::clone(&client)).await;
        let suite = server_stream
            .expect("handshake succeeds")
            .get_ref()
            .1
            .negotiated_cipher_suite()
            .expect("suite negotiated")
            .suite();
        if expected == ProtocolVersion::TLSv1_2 {
            // A P-521 certificate forces an ECDHE_ECDSA suite in TLS 1.2.
            assert!(
                matches!(
                    suite,
                    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
                        | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                        | CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
                ),
                "{suite:?}"
            );
        }
        assert_mutual_tls(server, client, &plugin, &host, expected).await;
    }
}

#[tokio::test]
async fn server_rejects_client_with_unrelated_identity() {
    for versions in [TLS12_ONLY, TLS13_ONLY] {
        let (plugin, host, stranger) = (identity(), identity(), identity());
        let server = server_config(&plugin, host.cert_der()).expect("server config");
        // The stranger pins the right server, but presents its own certificate.
        let client = client_config_with_versions(&stranger, plugin.cert_der(), versions)
            .expect("client config");
        let (server_result, client_result) = handshake(server, client).await;
        let err = server_result.expect_err("server must reject the stranger");
        assert_not_pinned(&err, Role::Client);
        assert_peer_alert(client_result, AlertDescription::CertificateUnknown).await;
    }
}

#[tokio::test]
async fn client_rejects_server_with_unpinned_cert() {
    for versions in [TLS12_ONLY, TLS13_ONLY] {
        let (plugin, host, impostor) = (identity(), identity(), identity());
        // The impostor serves its own certificate and would accept the host.
        let server = server_config(&impostor, host.cert_der()).expect("server config");
        let client =
            client_config_with_versions(&host, plugin.cert_der(), versions).expect("client config");
        let (server_result, client_result) = handshake(server, client).await;
        let err = client_result.expect_err("client must reject the impostor");
        assert_not_pinned(&err, Role::Server);
        assert_peer_alert(server_result, AlertDescription::CertificateUnknown).await;
    }
}

#[tokio::test]
async fn pin_set_accepts_any_member_and_follows_changes() {
    let (a, b, host) = (identity(), identity(), identity());
    let pins = PinSet::default();
    pins.insert("a", a.cert_der()).expect("pin a");
    pins.insert("b", b.cert_der()).expect("pin b");
    let client = client_config_any(&host, &pins).expect("client config");
    for plugin in [&a, &b] {
        let server = server_config(plugin, host.cert_der()).expect("server config");
        let (server_result, client_result) = handshake(server, client.clone()).await;
        server_result.expect("server side");
        client_result.expect("a pinned replica is accepted");
    }
    pins.remove("b");
    let server = server_config(&b, host.cert_der()).expect("server config");
    let (_, client_result) = handshake(server, client.clone()).await;
    let err = client_result.expect_err("a removed pin is refused");
    assert_not_pinned(&err, Role::Server);
    assert!(
        err.to_string().contains(&a.fingerprint()),
        "the message lists what is pinned: {err}"
    );
    assert!(pins.insert("c", b"not a certificate").is_err());

    let server_side = server_config_any(&a, &pins).expect("server config");
    pins.insert("host", host.cert_der()).expect("pin host");
    let (server_result, client_result) = handshake(
        server_side,
        client_config(&host, a.cert_der()).expect("client"),
    )
    .await;
    server_result.expect("the server accepts a client pinned later");
    client_result.expect("client side");
}

#[tokio::test]
async fn server_rejects_client_without_certificate() {
    for versions in [TLS12_ONLY, TLS13_ONLY] {
        let (plugin, host) = (identity(), identity());
        let server = server_config(&plugin, host.cert_der()).expect("server config");
        let provider = provider(KeyExchange::Local);
        let verifier = PinnedCertVerifier {
            pins: PinSet::one(plugin.cert_der()).expect("pin"),
            role: Role::Server,
            algorithms: provider.signature_verification_algorithms,
        };
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        client.alpn_protocols = vec![b"h2".to_vec()];
        let (server_result, client_result) = handshake(server, Arc::new(client)).await;
        let err = server_result.expect_err("server must require a client certificate");
        assert!(
            matches!(rustls_error(&err), rustls::Error::NoCertificatesPresented),
            "{err:?}"
        );
        assert_peer_alert(client_result, AlertDescription::CertificateRequired).await;
    }
}

#[test]
fn generated_cert_has_go_plugin_shape() {
    let before = time::OffsetDateTime::now_utc().unix_timestamp();
    let id = identity();
    let after = time::OffsetDateTime::now_utc().unix_timestamp();

    let (rest, cert) = X509Certificate::from_der(id.cert_der()).expect("valid X.509");
    assert!(rest.is_empty(), "no trailing bytes");

    // Key: ECDSA on P-521; signature: ECDSA with SHA-512.
    let spki = cert.public_key();
    assert_eq!(
        spki.algorithm.algorithm,
        x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
    );
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .expect("named curve");
    assert_eq!(curve, x509_parser::oid_registry::OID_NIST_EC_P521);
    assert_eq!(
        cert.signature_algorithm.algorithm,
        x509_parser::oid_registry::OID_SIG_ECDSA_WITH_SHA512
    );

    // Self-signed: issuer == subject, and the signature verifies with the cert's own key.
    assert_eq!(cert.issuer().as_raw(), cert.subject().as_raw());
    let p521_sha512 = rustls::crypto::aws_lc_rs::default_provider()
        .signature_verification_algorithms
        .all
        .iter()
        .find(|alg| {
            alg.public_key_alg_id() == alg_id::ECDSA_P521
                && alg.signature_alg_id() == alg_id::ECDSA_SHA512
        })
        .expect("aws-lc-rs verifies ECDSA P-521 SHA-512");
    p521_sha512
        .verify_signature(
            &spki.subject_public_key.data,
            cert.tbs_certificate.as_ref(),
            &cert.signature_value.data,
        )
        .expect("self-signature verifies");

    // Subject: O=HashiCorp, CN=localhost (O first, as Go encodes it).
    let subject = cert.subject();
    let cn: Vec<_> = subject.iter_common_name().map(|a| a.as_str()).collect();
    let org: Vec<_> = subject.iter_organization().map(|a| a.as_str()).collect();
    assert_eq!(cn.len(), 1);
    assert_eq!(cn[0].as_ref().ok(), Some(&"localhost"));
    assert_eq!(org.len(), 1);
    assert_eq!(org[0].as_ref().ok(), Some(&"HashiCorp"));
    assert_eq!(subject.to_string(), "O=HashiCorp, CN=localhost");

    // Extensions.
    let basic = cert
        .basic_constraints()
        .expect("well-formed")
        .expect("basic constraints present");
    assert!(basic.value.ca);
    assert!(basic.critical);
    let eku = cert
        .extended_key_usage()
        .expect("well-formed")
        .expect("EKU present");
    assert!(eku.value.client_auth && eku.value.server_auth);
    assert!(!eku.value.any);
    let ku = cert
        .key_usage()
        .expect("well-formed")
        .expect("key usage present");
    assert!(ku.value.digital_signature());
    assert!(ku.value.key_encipherment());
    assert!(ku.value.key_agreement());
    assert!(ku.value.key_cert_sign());
    assert!(!ku.value.crl_sign() && !ku.value.non_repudiation());
    let san = cert
        .subject_alternative_name()
        .expect("well-formed")
        .expect("SAN present");
    assert_eq!(san.value.general_names, [GeneralName::DNSName("localhost")]);

    // Serial: random, below 2^128 (at most 16 value bytes after DER's sign byte).
    let serial = cert.raw_serial();
    let serial = serial.strip_prefix(&[0]).unwrap_or(serial);
    assert!(serial.len() <= 16, "serial {serial:02x?}");
    let other = identity();
    let (_, other_cert) = X509Certificate::from_der(other.cert_der()).expect("valid X.509");
    assert_ne!(cert.serial, other_cert.serial, "serials are random");

    // Validity: now - 30 s .. now + 262980 h.
    let not_before = cert.validity().not_before.timestamp();
    let not_after = cert.validity().not_after.timestamp();
    assert!(
        (before - 31..=after - 29).contains(&not_before),
        "{not_before} vs [{before}, {after}]"
    );
    let lifetime = not_after - not_before;
    let expected = 262_980 * 3600 + 30;
    assert!((lifetime - expected).abs() <= 1, "lifetime {lifetime}s");
}

#[test]
fn pem_round_trips_and_rejects_garbage() {
    let id = identity();
    let pem = id.cert_pem();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
    assert!(pem.ends_with("\n-----END CERTIFICATE-----\n"));
    assert!(pem.lines().all(|line| line.len() <= 64), "Go wraps at 64");
    assert!(!pem.contains('\r'));
    assert_eq!(
        parse_pem_certificate(&pem).expect("round trip"),
        id.cert_der()
    );
    // CRLF and surrounding text are tolerated, like Go's pem.Decode.
    let crlf = format!("junk before\r\n{}", pem.replace('\n', "\r\n"));
    assert_eq!(parse_pem_certificate(&crlf).expect("crlf"), id.cert_der());

    let err = parse_pem_certificate("").expect_err("empty");
    assert!(
        matches!(err, TlsError::MissingCertificate { .. }),
        "{err:?}"
    );
    let err = parse_pem_certificate("hello world").expect_err("no PEM");
    assert!(
        matches!(err, TlsError::MissingCertificate { .. }),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("failed to "), "{err}");
    assert!(err.to_string().contains("hello world"), "{err}");

    let bad_base64 = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
    let err = parse_pem_certificate(bad_base64).expect_err("bad base64");
    assert!(matches!(err, TlsError::ParsePem { .. }), "{err:?}");
    assert!(std::error::Error::source(&err).is_some());

    let truncated = &pem[..pem.len() / 2];
    let err = parse_pem_certificate(truncated).expect_err("no END line");
    assert!(matches!(err, TlsError::ParsePem { .. }), "{err:?}");

    let not_x509 = "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
    let err = parse_pem_certificate(not_x509).expect_err("not X.509");
    assert!(
        matches!(err, TlsError::InvalidCertificate { .. }),
        "{err:?}"
    );

    let key_only = "-----BEGIN EC PRIVATE KEY-----\naGVsbG8=\n-----END EC PRIVATE KEY-----\n";
    let err = parse_pem_certificate(key_only).expect_err("no cert block");
    assert!(
        matches!(err, TlsError::MissingCertificate { .. }),
        "{err:?}"
    );

    let two = format!("{pem}{}", identity().cert_pem());
    let err = parse_pem_certificate(&two).expect_err("two certs");
    assert!(
        matches!(err, TlsError::MultipleCertificates { count: 2 }),
        "{err:?}"
    );

    let long = "x".repeat(1000);
    let err = parse_pem_certificate(&long).expect_err("garbage");
    assert!(err.to_string().len() < 200, "input is truncated: {err}");
}

#[test]
fn configs_reject_garbage_pins_and_set_h2() {
    let id = identity();
    let err = server_config(&id, b"not a certificate").expect_err("garbage pin");
    assert!(
        matches!(err, TlsError::InvalidCertificate { .. }),
        "{err:?}"
    );
    let err = client_config(&id, b"").expect_err("empty pin");
    assert!(
        matches!(err, TlsError::InvalidCertificate { .. }),
        "{err:?}"
    );

    let server = server_config(&id, id.cert_der()).expect("server config");
    assert_eq!(server.alpn_protocols, [b"h2".to_vec()]);
    let client = client_config(&id, id.cert_der()).expect("client config");
    assert_eq!(client.alpn_protocols, [b"h2".to_vec()]);
    assert_eq!(server_name().to_str(), "localhost");
    assert!(matches!(server_name(), ServerName::DnsName(_)));
}

#[test]
fn identity_debug_and_fingerprint() {
    let id = identity();
    let fp = id.fingerprint();
    assert_eq!(fp.len(), 64);
    assert!(
        fp.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert_eq!(fp, hex::encode(Sha256::digest(id.cert_der())));
    let debug = format!("{id:?}");
    assert!(debug.contains(&fp), "{debug}");
    assert!(
        !debug.to_lowercase().contains("key"),
        "no key in Debug: {debug}"
    );
    let copy = id.clone();
    assert_eq!(copy.cert_der(), id.cert_der());
    assert_ne!(identity().fingerprint(), fp);
}

#[tokio::test]
async fn local_clients_offer_os_random_groups_and_kubernetes_clients_post_quantum_first() {
    let (plugin, host) = (identity(), identity());
    let server = server_config(&plugin, host.cert_der()).expect("server config");
    let pins = PinSet::one(plugin.cert_der()).expect("pin");
    for (client, expected) in [
        (
            client_config(&host, plugin.cert_der()).expect("local client config"),
            rustls::NamedGroup::X25519,
        ),
        (
            client_config_any(&host, &pins).expect("Kubernetes client config"),
            rustls::NamedGroup::X25519MLKEM768,
        ),
    ] {
        let (server_stream, client_stream) = handshake(Arc::clone(&server), client).await;
        let server_stream = server_stream.expect("server side");
        client_stream.expect("client side");
        let group = server_stream
            .get_ref()
            .1
            .negotiated_key_exchange_group()
            .expect("a group was negotiated");
        assert_eq!(group.name(), expected);
    }
}

#[tokio::test]
async fn an_identity_persisted_with_an_aws_lc_key_loads_and_handshakes() {
    // Earlier versions generated the key with rcgen on aws-lc; a Kubernetes host stores it
    // in a Secret to reattach, so such a key must still load.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512).expect("aws-lc key");
    let cert = rcgen::CertificateParams::new(vec![HOST_NAME.to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    let persisted = Identity::from_der(cert.der(), &key.serialize_der()).expect("loads");
    let plugin = identity();
    let server = server_config(&plugin, persisted.cert_der()).expect("server config");
    let client = client_config(&persisted, plugin.cert_der()).expect("client config");
    assert_mutual_tls(
        server,
        client,
        &plugin,
        &persisted,
        ProtocolVersion::TLSv1_3,
    )
    .await;

    // Keys of other curves are refused with the reason.
    let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key");
    let err = Identity::from_der(cert.der(), &p256.serialize_der()).expect_err("not P-521");
    assert!(
        matches!(err, TlsError::InvalidCertificate { .. }),
        "{err:?}"
    );
    let reason = std::error::Error::source(&err).map(ToString::to_string);
    assert!(
        reason.as_deref().is_some_and(|r| r.contains("P-521")),
        "{reason:?}"
    );

    // And a key that does not belong to the certificate.
    let other = identity();
    let err = Identity::from_der(cert.der(), other.private_key_pkcs8_der()).expect_err("mismatch");
    assert!(matches!(err, TlsError::ServerConfig { .. }), "{err:?}");
}

/// kube builds its TLS configs with `ClientConfig::builder()`, which asks rustls for the
/// process-wide default provider; with a second provider feature on in rustls (stop 23 had
/// `ring`), that panicked in every Kubernetes host. The default must stay resolvable.
#[test]
fn rustls_can_still_pick_its_process_default_provider() {
    let config = ClientConfig::builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    assert!(!config.crypto_provider().cipher_suites.is_empty());
    assert!(rustls::crypto::CryptoProvider::get_default().is_some());
}

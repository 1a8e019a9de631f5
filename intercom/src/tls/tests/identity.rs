//! Tests of [`Identity`]: the generated certificate's shape (go-plugin's `generateCert()`),
//! PEM, fingerprint and `Debug`, and identities persisted by earlier versions.

use rustls::ProtocolVersion;
use rustls::pki_types::alg_id;
use sha2::{Digest as _, Sha256};
use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};

use super::{assert_mutual_tls, identity};
use crate::tls::{
    HOST_NAME, Identity, TlsError, client_config, parse_pem_certificate, server_config,
};

#[test]
fn generated_cert_has_go_plugin_shape() {
    let before = time::OffsetDateTime::now_utc().unix_timestamp();
    let id = identity();
    let after = time::OffsetDateTime::now_utc().unix_timestamp();

    let (rest, cert) = X509Certificate::from_der(id.cert_der()).expect("valid X.509");
    assert!(rest.is_empty(), "no trailing bytes");

    assert_p521_sha512_self_signed(&cert);
    assert_go_plugin_subject(&cert);
    assert_go_plugin_extensions(&cert);
    assert_random_serial(&cert);
    assert_go_plugin_validity(&cert, before, after);
}

/// Key: ECDSA on P-521; signature: ECDSA with SHA-512. Self-signed: issuer == subject, and
/// the signature verifies with the cert's own key.
fn assert_p521_sha512_self_signed(cert: &X509Certificate<'_>) {
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
}

/// Subject: O=HashiCorp, CN=localhost (O first, as Go encodes it).
fn assert_go_plugin_subject(cert: &X509Certificate<'_>) {
    let subject = cert.subject();
    let cn: Vec<_> = subject.iter_common_name().map(|a| a.as_str()).collect();
    let org: Vec<_> = subject.iter_organization().map(|a| a.as_str()).collect();
    assert_eq!(cn.len(), 1);
    assert_eq!(cn[0].as_ref().ok(), Some(&"localhost"));
    assert_eq!(org.len(), 1);
    assert_eq!(org[0].as_ref().ok(), Some(&"HashiCorp"));
    assert_eq!(subject.to_string(), "O=HashiCorp, CN=localhost");
}

/// Extensions: a critical CA basic constraint, client and server auth, go-plugin's key
/// usages, and `localhost` as the only SAN.
fn assert_go_plugin_extensions(cert: &X509Certificate<'_>) {
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
}

/// Serial: random, below 2^128 (at most 16 value bytes after DER's sign byte).
fn assert_random_serial(cert: &X509Certificate<'_>) {
    let serial = cert.raw_serial();
    let serial = serial.strip_prefix(&[0]).unwrap_or(serial);
    assert!(serial.len() <= 16, "serial {serial:02x?}");
    let other = identity();
    let (_, other_cert) = X509Certificate::from_der(other.cert_der()).expect("valid X.509");
    assert_ne!(cert.serial, other_cert.serial, "serials are random");
}

/// Validity: now - 30 s .. now + 262980 h, for a certificate generated between `before`
/// and `after` (Unix seconds).
fn assert_go_plugin_validity(cert: &X509Certificate<'_>, before: i64, after: i64) {
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

//! Tests of the handshake line: parsing, printing, validation and versions.
//!
//! One file per concern: `parse.rs`, `errors.rs`, `validate.rs`, `versions.rs`, and the
//! fuzz test in `fuzz.rs`.

mod errors;
mod fuzz;
mod parse;
mod validate;
mod versions;

/// A DER certificate, as a plugin puts in its handshake line.
fn test_cert_der() -> Vec<u8> {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .expect("rcgen generates a self-signed certificate");
    key.cert.der().to_vec()
}

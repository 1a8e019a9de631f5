//! Fuzzes the handshake line: parse, validate, Display round trip; see `intercom::__fuzz::handshake`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = intercom::__fuzz::handshake(data);
});

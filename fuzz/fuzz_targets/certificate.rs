//! Fuzzes the PEM and DER certificate checks; see `intercom::__fuzz::certificate`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = intercom::__fuzz::certificate(data);
});

//! Fuzzes the plugin stderr (hclog JSON / plain text) parser; see `intercom::__fuzz::hclog`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = intercom::__fuzz::hclog(data);
});

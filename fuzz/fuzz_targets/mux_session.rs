//! Fuzzes the yamux session on arbitrary peer bytes; see `intercom::__fuzz::mux_session`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = intercom::__fuzz::mux_session(data);
});

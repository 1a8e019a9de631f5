//! Fuzzes wire decoding of #[derive(intercom::Message)] types; see `intercom::__fuzz::message_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = intercom::__fuzz::message_decode(data);
});

//! Fuzzes Deployment/Service validation from arbitrary JSON; see `intercom::__fuzz::kube_validate`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = intercom::__fuzz::kube_validate(data);
});

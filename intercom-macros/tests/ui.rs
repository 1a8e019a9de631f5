//! Diagnostics of `#[intercom::plugin]` and the derives (trybuild): `ui/pass/*.rs` must
//! compile, each `ui/fail/<area>/*.rs` must fail with exactly its `.stderr`.
//!
//! Regenerate the `.stderr` files with
//! `TRYBUILD=overwrite cargo test -p intercom-macros --test ui`, then read the diff.
//! The expected output is rustc 1.95's (the workspace toolchain).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*/*.rs");
}

#!/usr/bin/env bash
# The house rules, as CI checks them (scripts/test.sh runs this before the tests):
#
# 1. formatting (`cargo fmt --check`);
# 2. clippy on every target with every feature, warnings denied;
# 3. the docs of every crate with warnings denied, and, when a nightly toolchain is
#    installed, each published crate as docs.rs builds it (`--cfg docsrs`, the features
#    of its `[package.metadata.docs.rs]`);
# 4. `cargo package` of the published crates, each verified by building it from its
#    tarball alone (the path dependencies are packaged together, Cargo >= 1.90);
# 5. `cargo check` of the published crates with the MSRV toolchain (the workspace's
#    `rust-version`), installed with rustup when rustup is there.
#
# Packaging uses --allow-dirty so that it also checks uncommitted work; releases are
# published from a clean tree with `cargo publish --workspace`. Every check runs; the
# failures are listed at the end and make the script exit 1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_INCREMENTAL=0

failed=()
step() { printf 'checks: %s\n' "$*" >&2; }
# Runs one check; a failure is reported at the end, after every other check has run.
check() {
    step "$*"
    "$@" || { failed+=("$*"); step "FAILED: $*"; }
}

check cargo fmt --all -- --check
check cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
check env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps --locked

# docs.rs: nightly rustdoc with --cfg docsrs (the doc(cfg) badges) and the features of
# each crate's [package.metadata.docs.rs] (which pick a k8s-openapi version, since the
# libraries select none).
if rustup run nightly rustdoc --version >/dev/null 2>&1; then
    check env RUSTDOCFLAGS="--cfg docsrs -D warnings" cargo +nightly doc --no-deps --locked \
        -p intercom --features kubernetes,k8s-openapi/v1_35
    check env RUSTDOCFLAGS="--cfg docsrs -D warnings" cargo +nightly doc --no-deps --locked \
        -p intercom-envtest --features k8s-openapi/v1_35
    check env RUSTDOCFLAGS="--cfg docsrs -D warnings" cargo +nightly doc --no-deps --locked \
        -p intercom-build -p intercom-macros
else
    step "no nightly toolchain: skipping the docs.rs (--cfg docsrs) build"
fi

# Verifying a tarball unpacks the sibling crates it depends on into Cargo's registry
# sources by name and version, and a later run reuses what is there: a copy of this
# version packaged before (an older tree) would be built instead of the current one.
for stale in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/intercom-{build,macros}-"$(
    sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"; do
    if [[ -d "$stale" ]]; then rm -rf "$stale"; fi
done
# intercom-envtest, like kube, selects no k8s-openapi version, so its tarball is built
# with one chosen here (k8s-openapi refuses to build without); the others need none.
check cargo package --locked --allow-dirty -p intercom-build -p intercom-macros -p intercom
check cargo package --locked --allow-dirty -p intercom-build -p intercom-envtest --features k8s-openapi/v1_35

msrv="$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)"
if command -v rustup >/dev/null 2>&1; then
    check rustup toolchain install "$msrv" --profile minimal
    # greeter's `kubernetes` feature turns on intercom's and selects k8s-openapi's version,
    # so the published crates are checked with all their features.
    check cargo "+$msrv" check --locked -p intercom -p intercom-macros -p intercom-build \
        -p intercom-envtest -p greeter --features greeter/kubernetes
else
    step "no rustup: cannot install Rust $msrv, skipping the MSRV check"
fi

if [ "${#failed[@]}" -gt 0 ]; then
    step "${#failed[@]} check(s) failed:"
    printf 'checks:   %s\n' "${failed[@]}" >&2
    exit 1
fi
step "all checks passed"

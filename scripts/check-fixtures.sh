#!/usr/bin/env bash
# Smoke test of the interop peers against each other (not against intercom):
#   Go kv-host      <-> Go kv-plugin       put/get              x {mux off/on} x {mtls off/on}
#   Go counter-host <-> Go counter-plugin  put x 1 twice, get=2 x {mux off/on} x {mtls off/on}
#   Go reverse-host <-> Go reverse-plugin  add 2 3 = 5          x {mux off/on} x {mtls off/on}
#   Go kv-host      <-> Python kv_plugin.py put/get (no mux, no mtls)
# Needs scripts/build-go-fixtures.sh and scripts/setup-python.sh to have run (SKIP_PYTHON=1
# skips the Python case). Runs in a temp dir; prints one PASS/FAIL line per case and a
# final "N passed, N failed" line; exits 1 if any case failed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/target/go-fixtures"
PY="$ROOT/.deps/python/bin/python"
for b in kv-plugin kv-host counter-plugin counter-host reverse-plugin reverse-host; do
    [ -x "$BIN/$b" ] || { echo "check-fixtures: $BIN/$b missing; run scripts/build-go-fixtures.sh" >&2; exit 1; }
done

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
pass=0 fail=0

# check NAME EXPECTED_STDOUT -- CMD...   (runs in a fresh dir; stderr kept for failures)
check() {
    local name="$1" want="$2"; shift 3
    local dir="$WORK/$(echo "$name" | tr -c 'a-zA-Z0-9\n' '_')"
    mkdir -p "$dir"
    local got rc
    got="$(cd "$dir" && "$@" 2>"$dir/.stderr")"; rc=$?
    if [ $rc -eq 0 ] && [ "$got" == "$want" ]; then
        echo "PASS $name"; pass=$((pass + 1))
    else
        echo "FAIL $name (rc=$rc)"; fail=$((fail + 1))
        echo "  want: $(printf %q "$want")"; echo "  got:  $(printf %q "$got")"
        sed 's/^/  stderr: /' "$dir/.stderr"
    fi
}

kv_case() {  # name, KV_PLUGIN
    local name="$1"; export KV_PLUGIN="$2"
    local d="$WORK/kv-$RANDOM$RANDOM"; mkdir -p "$d"
    check "$name" "$(printf 'world\n\nWritten from %s' "$3")" -- \
        sh -c 'cd "$1" && "$2/kv-host" put hello world >/dev/null && "$2/kv-host" get hello' _ "$d" "$BIN"
}

for mux in 0 1; do
    for mtls in 0 1; do
        export INTERCOM_FIXTURE_MUX=$mux INTERCOM_FIXTURE_MTLS=$mtls
        tag="mux=$mux mtls=$mtls"
        kv_case "kv go<->go $tag" "$BIN/kv-plugin" plugin-go-grpc
        export COUNTER_PLUGIN="$BIN/counter-plugin"
        d="$WORK/counter-$mux$mtls"; mkdir -p "$d"
        check "counter go<->go $tag" 2 -- sh -c \
            'cd "$1" && "$2/counter-host" put x 1 && "$2/counter-host" put x 1 && "$2/counter-host" get x' _ "$d" "$BIN"
        export REVERSE_PLUGIN="$BIN/reverse-plugin"
        check "reverse go<->go $tag" 5 -- "$BIN/reverse-host" add 2 3
    done
done

if [ "${SKIP_PYTHON:-0}" != 1 ]; then
    export INTERCOM_FIXTURE_MUX=0 INTERCOM_FIXTURE_MTLS=0
    kv_case "kv go-host<->python-plugin" "exec $PY $ROOT/tests/fixtures/python/kv_plugin.py" plugin-python
fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]

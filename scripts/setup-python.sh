#!/usr/bin/env bash
# Sets up the Python peer used by the interop tests (tests/fixtures/python/kv_plugin.py).
#
#  1. creates a virtualenv at .deps/python (if missing),
#  2. installs tests/fixtures/python/requirements.txt into it, only when that file changed
#     since the last successful install (sha256 stamp in .deps/python/.requirements.sha256),
#  3. generates kv_pb2.py / kv_pb2_grpc.py from examples/kv/proto/kv.proto into
#     target/python-fixtures/ (where kv_plugin.py looks for them).
#
# Idempotent. Prints the venv's python path on the last line of stdout. Exits non-zero on
# any error. Env: PYTHON (interpreter used to create the venv, default python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.deps/python"
REQS="$ROOT/tests/fixtures/python/requirements.txt"
STAMP="$VENV/.requirements.sha256"
OUT="$ROOT/target/python-fixtures"
PROTO_DIR="$ROOT/examples/kv/proto"
BASE_PYTHON="${PYTHON:-python3}"

log() { echo "setup-python: $*" >&2; }

if ! command -v "$BASE_PYTHON" >/dev/null 2>&1; then
    log "error: '$BASE_PYTHON' not found (set PYTHON=/path/to/python3)"
    exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtualenv at $VENV"
    mkdir -p "$(dirname "$VENV")"
    "$BASE_PYTHON" -m venv "$VENV"
    rm -f "$STAMP"
fi
PY="$VENV/bin/python"

want="$(sha256sum "$REQS" | cut -d' ' -f1)"
have="$(cat "$STAMP" 2>/dev/null || true)"
if [ "$want" != "$have" ]; then
    log "installing $REQS"
    "$PY" -m pip install --disable-pip-version-check -q -r "$REQS"
    echo "$want" > "$STAMP"
else
    log "requirements unchanged; skipping pip install"
fi

mkdir -p "$OUT"
"$PY" -m grpc_tools.protoc -I "$PROTO_DIR" \
    --python_out="$OUT" --grpc_python_out="$OUT" "$PROTO_DIR/kv.proto"
log "generated kv_pb2.py and kv_pb2_grpc.py in $OUT"

echo "$PY"

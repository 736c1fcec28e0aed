#!/usr/bin/env bash
# Brings pointsledger up locally: builds it, creates a ledger in ./data (once), seeds a demo
# program into it, and runs the HTTP server until Ctrl-C.
#
# EVM anchoring (a local anvil chain and the LedgerAnchor contract) is not part of the project
# yet; until it is, this runs the ledger and its API without a chain.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${POINTSLEDGER_DATA:-data/ledger}
ORIGIN=${POINTSLEDGER_ORIGIN:-local.pointsledger.dev}
LISTEN=${POINTSLEDGER_LISTEN:-127.0.0.1:8080}

if ! command -v cargo >/dev/null; then
  echo "cargo is needed: install a Rust toolchain (https://rustup.rs) and run this again" >&2
  exit 1
fi

echo "== building (release)"
cargo build --locked --release
PL=target/release/pointsledger

if [ ! -d "$DATA/db" ]; then
  echo "== creating a ledger in $DATA"
  "$PL" init --data "$DATA" --origin "$ORIGIN"
  echo "== seeding a demo program"
  "$PL" demo --data "$DATA" --consumers 50 --purchases 500 | tee "$DATA/demo-summary.json"
else
  echo "== $DATA already holds a ledger (remove it to start over)"
fi

consumer=$(sed -n 's/.*"example_consumer":"\([0-9a-f]*\)".*/\1/p' "$DATA/demo-summary.json" 2>/dev/null || true)
cat <<MSG

== starting the server on http://$LISTEN (Ctrl-C stops it)
  API:           http://$LISTEN/v1/log   http://$LISTEN/v1/checkpoint   http://$LISTEN/v1/openapi.json
  an account:    http://$LISTEN/v1/accounts/${consumer:-<consumer id>}
  metrics:       http://$LISTEN/metrics
  keys:          $DATA/keys (log and operator, 0600), $DATA/demo/keys (demo merchants and consumers)
  from a shell:  $PL balance --server http://$LISTEN ${consumer:-<consumer id>}
Not yet available: EVM anchoring (local anvil chain, LedgerAnchor contract) and the web explorer.
MSG
exec "$PL" serve --data "$DATA" --listen "$LISTEN"

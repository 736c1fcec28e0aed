#!/usr/bin/env bash
# Brings pointsledger up locally: builds it, creates a ledger in ./data (once), seeds a demo
# program into it and shows how to look around.
#
# The HTTP server and on-chain anchoring are not part of the project yet; until they are, this
# command runs everything in embedded mode (the command line working on ./data).
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${POINTSLEDGER_DATA:-data/ledger}
ORIGIN=${POINTSLEDGER_ORIGIN:-local.pointsledger.dev}

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

echo "== latest checkpoint"
"$PL" checkpoint --data "$DATA"
echo "== verifier key"
"$PL" log-key --data "$DATA"
consumer=$(sed -n 's/.*"example_consumer":"\([0-9a-f]*\)".*/\1/p' "$DATA/demo-summary.json" 2>/dev/null || true)
cat <<MSG

pointsledger is up in embedded mode.
  data directory:  $DATA   (log and operator keys in $DATA/keys, demo keys in $DATA/demo/keys)
  try:             $PL balance --data $DATA ${consumer:-<consumer id>}
                   $PL history --data $DATA ${consumer:-<consumer id>}
                   $PL prove inclusion --data $DATA --index 3 > receipt.tlog-proof
                   $PL verify --log-key "\$($PL log-key --data $DATA)" receipt.tlog-proof
Not yet available: the HTTP server (serve), the explorer and EVM anchoring (local anvil chain
and LedgerAnchor contract); they come with the service and anchoring work described in README.md.
MSG

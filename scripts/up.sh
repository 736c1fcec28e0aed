#!/usr/bin/env bash
# Brings the whole pointsledger stack up locally, and stops it all on Ctrl-C:
#
#   1. installs the pinned chain toolchain when missing (scripts/toolchain.sh: anvil, forge,
#      solc-js from the npm registry, into .tools/) and builds pointsledger (release);
#   2. creates a ledger in data/ledger and seeds a demo program into it (once);
#   3. starts a local anvil chain (its state kept in data/anvil, so anchors survive a restart);
#   4. creates the operator's EVM key (0600), funds it on the local chain and deploys the
#      LedgerAnchor contract (once per chain);
#   5. starts a witness (data/witness, its key made there once) that trusts the log;
#   6. runs the HTTP server with anchoring on, asking the witness to cosign each checkpoint,
#      and prints the URLs, the contract and the keys.
#
# Settings (environment): POINTSLEDGER_DATA (default data/ledger), POINTSLEDGER_ORIGIN,
# POINTSLEDGER_LISTEN (default 127.0.0.1:8080), ANVIL_PORT (default 8545), WITNESS_LISTEN
# (default 127.0.0.1:8090). For a public testnet instead of anvil, see "Anchoring to a public
# testnet" in README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${POINTSLEDGER_DATA:-data/ledger}
ORIGIN=${POINTSLEDGER_ORIGIN:-local.pointsledger.dev}
LISTEN=${POINTSLEDGER_LISTEN:-127.0.0.1:8080}
ANVIL_PORT=${ANVIL_PORT:-8545}
RPC="http://127.0.0.1:$ANVIL_PORT"
CHAIN_DIR="$(dirname "$DATA")/anvil"
WITNESS_DIR="$(dirname "$DATA")/witness"
WITNESS_LISTEN=${WITNESS_LISTEN:-127.0.0.1:8090}
WITNESS_NAME=witness.local.pointsledger.dev/w1
EVM_KEY="$DATA/keys/evm.key"

say() { printf '\n== %s\n' "$*"; }
die() { echo "up: $*" >&2; exit 1; }

command -v cargo >/dev/null || die "cargo is needed: install a Rust toolchain (https://rustup.rs) and run this again"
command -v node >/dev/null || die "node and npm are needed for the chain toolchain (Debian: apt install nodejs npm)"

say "toolchain (anvil, forge, solc-js)"
scripts/toolchain.sh
eval "$(scripts/toolchain.sh --env)"

say "building (release)"
cargo build --locked --release
PL=target/release/pointsledger

if [ -d "$DATA/db" ]; then
  say "$DATA holds a ledger of the earlier layout: migrating it"
  "$PL" migrate --data "$DATA"
fi
if [ ! -d "$DATA/state" ]; then
  say "creating a ledger in $DATA"
  "$PL" init --data "$DATA" --origin "$ORIGIN"
  say "seeding a demo program (merchants, consumers, purchases, a referral, a redemption)"
  "$PL" demo --data "$DATA" --consumers 50 --purchases 500 | tee "$DATA/demo-summary.json"
else
  say "$DATA already holds a ledger (remove it to start over)"
fi

# Everything started from here on is stopped on exit, Ctrl-C included.
ANVIL_PID="" SERVER_PID="" WITNESS_PID=""
stop_all() {
  trap - EXIT INT TERM
  if [ -n "$SERVER_PID" ]; then kill -TERM "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null || true; fi
  if [ -n "$WITNESS_PID" ]; then kill -TERM "$WITNESS_PID" 2>/dev/null; wait "$WITNESS_PID" 2>/dev/null || true; fi
  if [ -n "$ANVIL_PID" ]; then kill -TERM "$ANVIL_PID" 2>/dev/null; wait "$ANVIL_PID" 2>/dev/null || true; fi
  echo "up: stopped"
}
trap stop_all EXIT INT TERM

. scripts/lib/rpc.sh

say "starting anvil on $RPC (state in $CHAIN_DIR)"
rpc eth_chainId '[]' >/dev/null 2>&1 && die "something already answers on $RPC; stop it or set ANVIL_PORT"
mkdir -p "$CHAIN_DIR"
# One block a second, as on a real chain, so that anchors reach their confirmation depth.
"$ANVIL" --port "$ANVIL_PORT" --host 127.0.0.1 --block-time 1 --state "$CHAIN_DIR/state.json" \
  --state-interval 5 >"$CHAIN_DIR/anvil.log" 2>&1 &
ANVIL_PID=$!
for _ in $(seq 1 100); do
  rpc eth_chainId '[]' >/dev/null 2>&1 && break
  kill -0 "$ANVIL_PID" 2>/dev/null || die "anvil stopped: $(tail -5 "$CHAIN_DIR/anvil.log")"
  sleep 0.1
done
rpc eth_chainId '[]' >/dev/null || die "anvil did not answer on $RPC"

if [ ! -f "$EVM_KEY" ]; then
  say "creating the operator's EVM key $EVM_KEY"
  "$PL" keygen --evm --out "$EVM_KEY" >"$DATA/keys/evm.address"
fi
EVM_ADDRESS=$(cat "$DATA/keys/evm.address")
# 100 ETH of the local chain's money for gas (only anvil can do this; a testnet needs a faucet).
rpc anvil_setBalance "[\"$EVM_ADDRESS\", \"0x56BC75E2D63100000\"]" >/dev/null

CONTRACT=""
if [ -f "$CHAIN_DIR/contract" ]; then
  CONTRACT=$(cat "$CHAIN_DIR/contract")
  code=$(rpc eth_getCode "[\"$CONTRACT\", \"latest\"]")
  if [ "$code" = '"0x"' ]; then
    echo "no contract at $CONTRACT any more (the chain state was reset); deploying again"
    CONTRACT=""
  fi
fi
if [ -z "$CONTRACT" ]; then
  say "deploying LedgerAnchor"
  CONTRACT=$("$PL" deploy --rpc-url "$RPC" --evm-key "$EVM_KEY" |
    sed -n 's/.*"contract":"\(0x[0-9a-f]*\)".*/\1/p')
  [ -n "$CONTRACT" ] || die "deploy printed no contract address"
  echo "$CONTRACT" >"$CHAIN_DIR/contract"
fi

say "starting a witness on http://$WITNESS_LISTEN (its key and records in $WITNESS_DIR)"
LOG_KEY=$("$PL" log-key --data "$DATA")
WITNESS_KEY=$("$PL" witness --dir "$WITNESS_DIR" --name "$WITNESS_NAME" --print-key)
"$PL" witness --dir "$WITNESS_DIR" --name "$WITNESS_NAME" --listen "$WITNESS_LISTEN" \
  --log-key "$LOG_KEY" >"$WITNESS_DIR/witness.log" 2>&1 &
WITNESS_PID=$!
for _ in $(seq 1 100); do
  node -e 'fetch(process.argv[1]).then(r => process.exit(r.ok ? 0 : 1)).catch(() => process.exit(1))' \
    "http://$WITNESS_LISTEN/healthz" && break
  kill -0 "$WITNESS_PID" 2>/dev/null || die "the witness stopped: $(tail -5 "$WITNESS_DIR/witness.log")"
  sleep 0.1
done

say "starting the server on http://$LISTEN with anchoring on and the witness asked"
"$PL" serve --data "$DATA" --listen "$LISTEN" --contract "$CONTRACT" --rpc-url "$RPC" \
  --evm-key "$EVM_KEY" --anchor-interval 5s --confirmations 2 \
  --witness "$WITNESS_KEY@http://$WITNESS_LISTEN" &
SERVER_PID=$!
for _ in $(seq 1 100); do
  node -e 'fetch(process.argv[1]).then(r => process.exit(r.ok ? 0 : 1)).catch(() => process.exit(1))' \
    "http://$LISTEN/healthz" && break
  kill -0 "$SERVER_PID" 2>/dev/null || die "the server stopped (see its log above)"
  sleep 0.2
done

consumer=$(sed -n 's/.*"example_consumer":"\([0-9a-f]*\)".*/\1/p' "$DATA/demo-summary.json" 2>/dev/null || true)
cat <<MSG

== pointsledger is up (Ctrl-C stops the server, the witness and the chain)
  explorer:      http://$LISTEN/
  API:           http://$LISTEN/v1/log   http://$LISTEN/v1/checkpoint   http://$LISTEN/v1/openapi.json
  anchors:       http://$LISTEN/v1/anchors
  an account:    http://$LISTEN/v1/accounts/${consumer:-<consumer id>}
  metrics:       http://$LISTEN/metrics
  chain:         anvil at $RPC (chain id 31337), log in $CHAIN_DIR/anvil.log
  contract:      LedgerAnchor at $CONTRACT, operator $EVM_ADDRESS
  witness:       http://$WITNESS_LISTEN, key $WITNESS_KEY (log in $WITNESS_DIR/witness.log)
  verify:        $PL verify --log-key $LOG_KEY --witness-key $WITNESS_KEY RECEIPT
  keys:          $DATA/keys (log, operator and EVM keys, 0600), $DATA/demo/keys (demo merchants and consumers)
  from a shell:  $PL balance --server http://$LISTEN ${consumer:-<consumer id>}
MSG
wait "$SERVER_PID"

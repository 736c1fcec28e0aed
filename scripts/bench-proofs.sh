#!/usr/bin/env bash
# Inclusion proofs over HTTP, the server's resident memory and disk bytes per entry, on a ledger
# of about ENTRIES entries (default 1,000,000) seeded by `pointsledger demo` (purchases, with
# the demo's referrals, redemptions and refunds among them). Prints `NAME VALUE UNIT` lines.
#
#   scripts/bench-proofs.sh                     # 1M purchases: some minutes to seed, 6 GB disk
#   ENTRIES=100000 CONSUMERS=1000 scripts/bench-proofs.sh
#   PL=/path/to/pointsledger scripts/bench-proofs.sh   # another build
#
# After the proofs it loads the server with writes, kills it with SIGKILL mid-load, and times
# the next start until it listens (the log's tail cut back, sled's recovery and the replay of
# what the state store did not hold), then times proofs again from one client right away.
#
# The ledger lives in a scratch directory (WORK, default a new temporary one) that is removed
# at the end unless WORK was given.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ENTRIES=${ENTRIES:-1000000}
CONSUMERS=${CONSUMERS:-1000}
PL=${PL:-"$ROOT/target/release/pointsledger"}
[ -x "$PL" ] || (cd "$ROOT" && cargo build --locked --release >&2)
say() { printf '== %s\n' "$*" >&2; }

KEEP=${WORK:+1}
WORK=${WORK:-$(mktemp -d)}
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && { kill -TERM "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null || true; }
  [ -n "$KEEP" ] || rm -rf "$WORK"
}
trap cleanup EXIT

if [ -d "$WORK/ledger/db" ]; then
  say "migrating the kept ledger to the current layout"
  "$PL" migrate --data "$WORK/ledger" >/dev/null
fi
if [ ! -d "$WORK/ledger/state" ]; then
  say "seeding $ENTRIES entries into $WORK/ledger"
  "$PL" init --data "$WORK/ledger" --origin bench.pointsledger.local >/dev/null
  "$PL" demo --data "$WORK/ledger" --consumers "$CONSUMERS" --purchases "$ENTRIES" >/dev/null
fi
# Starts the server; sets SERVER_PID and URL once it listens.
serve() {
  : >"$WORK/serve.out"
  "$PL" serve --data "$WORK/ledger" --listen 127.0.0.1:0 >"$WORK/serve.out" 2>"$WORK/serve.err" &
  SERVER_PID=$!
  for _ in $(seq 1 6000); do grep -q "listening on" "$WORK/serve.out" 2>/dev/null && break; sleep 0.01; done
  URL=$(sed -n 's/^listening on //p' "$WORK/serve.out")
  [ -n "$URL" ] || { cat "$WORK/serve.err" >&2; exit 1; }
}
say "serving"
serve
# The first checkpoint of a freshly seeded ledger is signed within the checkpoint interval.
for _ in $(seq 1 600); do curl -sf "$URL/v1/checkpoint" >/dev/null && break; sleep 0.1; done
"$PL" bench proofs --server "$URL" --clients 1 --proofs 10000 | sed 's/^http_/http_1client_/'
"$PL" bench proofs --server "$URL" --clients 32 --proofs 50000 | sed 's/^http_/http_32clients_/'
awk '/VmHWM/ {printf "server_rss_peak %.1f MiB\n", $2 / 1024} /VmRSS/ {printf "server_rss_now %.1f MiB\n", $2 / 1024}' \
  "/proc/$SERVER_PID/status"
size=$(curl -s "$URL/v1/log" 2>/dev/null | sed -n 's/.*"size":\([0-9]*\).*/\1/p')
[ -n "$size" ] || size=$(sed -n 's/.*"entries":\([0-9]*\).*/\1/p' "$WORK/ledger/demo-summary.json")
bytes=$(du -sb "$WORK/ledger/log" "$WORK/ledger/state" | awk '{s += $1} END {printf "%.0f\n", s}')
echo "entries $size entries"
echo "disk_per_entry $((bytes / size)) B"

say "writing under load, then SIGKILL"
"$PL" bench http --server "$URL" --operator-key "$WORK/ledger/keys/operator.key" \
  --clients 8 --entries 50000 --batch 64 >/dev/null 2>&1 &
LOAD=$!
sleep 5
kill -KILL "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null || true
wait "$LOAD" 2>/dev/null || true
start=$(date +%s%N)
serve
echo "open_after_sigkill $(( ($(date +%s%N) - start) / 1000000 )) ms"
"$PL" bench proofs --server "$URL" --clients 1 --proofs 2000 | sed 's/^http_/http_1client_after_restart_/'

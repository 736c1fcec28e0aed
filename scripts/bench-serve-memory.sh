#!/usr/bin/env bash
# The server's memory under HTTP write load: a fresh ledger, `pointsledger serve`, then
# `pointsledger bench http` (ENTRIES single submissions, then ENTRIES in batches of 64, from 32
# clients, to 1,000 consumers), and the server's peak and final resident memory, read from
# /proc. Prints the bench's figures and `serve_peak_rss_mib` / `serve_rss_mib` lines.
#
#   scripts/bench-serve-memory.sh                  the release build
#   PL=/path/to/pointsledger scripts/bench-serve-memory.sh   another build (to compare two)
#   ENTRIES=50000 scripts/bench-serve-memory.sh
#   SERVE_ARGS="--account-versions 0" scripts/bench-serve-memory.sh   serve's flags
set -euo pipefail
cd "$(dirname "$0")/.."

PL=${PL:-target/release/pointsledger}
ENTRIES=${ENTRIES:-20000}
PORT=${PORT:-18301}
SERVE_ARGS=${SERVE_ARGS:-}
[ -x "$PL" ] || { echo "bench-serve-memory: no $PL (cargo build --release first, or set PL=)" >&2; exit 1; }

WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill -TERM "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

"$PL" init --data "$WORK/ledger" --origin memory.bench.local >/dev/null
# shellcheck disable=SC2086 # SERVE_ARGS is a list of flags
"$PL" serve --data "$WORK/ledger" --listen "127.0.0.1:$PORT" $SERVE_ARGS >"$WORK/serve.out" 2>"$WORK/serve.log" &
SERVER_PID=$!
for _ in $(seq 1 100); do
  grep -q "listening on" "$WORK/serve.out" 2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "bench-serve-memory: the server stopped" >&2; cat "$WORK/serve.log" >&2; exit 1; }
  sleep 0.1
done

"$PL" bench http --server "http://127.0.0.1:$PORT" --operator-key "$WORK/ledger/keys/operator.key" \
  --entries "$ENTRIES" --clients 32 --batch 64
kib() { awk -v k="$1" '$1 == k":" { print $2 }' "/proc/$SERVER_PID/status"; }
echo "serve_peak_rss_mib $(( $(kib VmHWM) / 1024 )) MiB"
echo "serve_rss_mib $(( $(kib VmRSS) / 1024 )) MiB"

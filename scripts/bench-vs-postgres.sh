#!/usr/bin/env bash
# The same workload on the same machine in the same run: what a plain loyalty schema in
# PostgreSQL does per purchase (check and update the balance row, insert a ledger row,
# synchronous commit) against pointsledger's HTTP ingest, with the same number of clients,
# single entries and batches. Prints a markdown table (docs/PERFORMANCE.md).
#
#   scripts/bench-vs-postgres.sh                 # 32 clients, 20,000 entries, batches of 64
#   CLIENTS=16 ENTRIES=50000 BATCH=32 scripts/bench-vs-postgres.sh
#   PL=/path/to/pointsledger scripts/bench-vs-postgres.sh   # another build
#
# Needs Debian's PostgreSQL server (installed with apt-get when missing, as root) and a release
# build of pointsledger (built when missing). Everything runs under a scratch directory that is
# removed at the end; PostgreSQL listens on a Unix socket there only.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CLIENTS=${CLIENTS:-32}
ENTRIES=${ENTRIES:-20000}
BATCH=${BATCH:-64}
# Each client gets 32 accounts of its own for the batched phase (see batch.sql).
ACCOUNTS=$((CLIENTS * 32 > 1000 ? CLIENTS * 32 : 1000))

say() { printf '== %s\n' "$*" >&2; }

PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$PGBIN" ]; then
  say "installing Debian's postgresql"
  [ "$(id -u)" -eq 0 ] || { echo "PostgreSQL is not installed; run as root to install it" >&2; exit 1; }
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql >&2
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi
PL=${PL:-"$ROOT/target/release/pointsledger"}
[ -x "$PL" ] || (cd "$ROOT" && cargo build --locked --release >&2)

WORK=$(mktemp -d)
PG_STARTED="" SERVER_PID=""
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  [ -n "$SERVER_PID" ] && { kill -TERM "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null || true; }
  [ -n "$PG_STARTED" ] && as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
[ "$(id -u)" -eq 0 ] && chown postgres "$WORK"

# --- PostgreSQL: defaults for durability (fsync on, synchronous_commit on, full_page_writes on).
say "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}'): initdb and start"
as_pg "$PGBIN/initdb" -D "$WORK/pg" -U bench --auth=trust >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg.log" -w \
  -o "-k $WORK -c listen_addresses='' -c max_connections=$((CLIENTS + 10)) -c shared_buffers=256MB -c synchronous_commit=on -c fsync=on" \
  start >/dev/null
PG_STARTED=1
psql() { as_pg "$PGBIN/psql" -h "$WORK" -U bench -d postgres -v ON_ERROR_STOP=1 -qAt "$@"; }
psql <<SQL
CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL DEFAULT 0);
INSERT INTO accounts (id) SELECT generate_series(1, $ACCOUNTS);
CREATE TABLE ledger (
  id bigserial PRIMARY KEY,
  account int NOT NULL REFERENCES accounts,
  order_id text NOT NULL UNIQUE,
  amount bigint NOT NULL,
  delta bigint NOT NULL,
  created timestamptz NOT NULL DEFAULT now()
);
SQL
ENTRY='SELECT balance FROM accounts WHERE id = :c FOR UPDATE;
UPDATE accounts SET balance = balance + :amount / 10 WHERE id = :c;
INSERT INTO ledger (account, order_id, amount, delta) VALUES (:c, gen_random_uuid()::text, :amount, :amount / 10);'
{
  echo '\set c random(1, '"$ACCOUNTS"')'
  echo '\set amount random(1000, 20000)'
  echo 'BEGIN;'
  echo "$ENTRY"
  echo 'END;'
} >"$WORK/single.sql"
{
  echo 'BEGIN;'
  for _ in $(seq 1 "$BATCH"); do
    # Rows of its own per client: 64 row locks taken in random order by 32 transactions at
    # once would deadlock; an application batching purchases would partition them too.
    echo '\set c :client_id * 32 + random(1, 32)'
    echo '\set amount random(1000, 20000)'
    echo "$ENTRY"
  done
  echo 'END;'
} >"$WORK/batch.sql"
chmod a+r "$WORK"/*.sql

pgbench_run() { # script, transactions per client -> "tps p50_ms p99_ms"
  rm -rf "$WORK/log" && mkdir -p "$WORK/log" && { [ "$(id -u)" -ne 0 ] || chown postgres "$WORK/log"; }
  local out
  out=$(as_pg "$PGBIN/pgbench" -h "$WORK" -U bench -n -c "$CLIENTS" -j 2 -t "$2" -f "$1" \
    -l --log-prefix="$WORK/log/tx" postgres 2>&1)
  local tps done
  done=$(sed -n 's/^number of transactions actually processed: \([0-9]*\/[0-9]*\).*/\1/p' <<<"$out")
  if [ -z "$done" ] || [ "${done%/*}" != "${done#*/}" ]; then
    echo "pgbench did not complete every transaction ($done):" >&2
    echo "$out" >&2
    exit 1
  fi
  tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out" | head -1)
  # Per-transaction log: client, tx, latency (us), ...
  local lat
  lat=$(cat "$WORK"/log/tx* | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {
    printf "%.2f %.2f", a[int(NR*0.5)]/1000, a[int(NR*0.99)]/1000}')
  echo "$tps $lat"
}
say "PostgreSQL: $ENTRIES single-entry transactions from $CLIENTS clients"
read -r pg_tps1 pg_p50_1 pg_p99_1 < <(pgbench_run "$WORK/single.sql" $((ENTRIES / CLIENTS)))
say "PostgreSQL: $ENTRIES entries in transactions of $BATCH from $CLIENTS clients"
read -r pg_tps2 pg_p50_2 pg_p99_2 < <(pgbench_run "$WORK/batch.sql" $((ENTRIES / CLIENTS / BATCH)))
[ -n "${pg_tps1:-}" ] && [ -n "${pg_tps2:-}" ] || { echo "a PostgreSQL phase failed" >&2; exit 1; }
pg_rows=$(psql -c "SELECT count(*) FROM ledger")
pg_bytes=$(psql -c "SELECT pg_total_relation_size('ledger') + pg_total_relation_size('accounts')")
PG_USER=$([ "$(id -u)" -eq 0 ] && echo postgres || id -un)
pg_rss_kb=$(for p in $(pgrep -u "$PG_USER" -f "postgres" || true); do awk '/VmHWM/ {print $2}' "/proc/$p/status" 2>/dev/null; done | sort -n | tail -1)

# --- pointsledger: the same clients and entries over HTTP, durable before each answer.
say "pointsledger: serve and bench http"
"$PL" init --data "$WORK/pl" --origin bench.local >/dev/null
"$PL" serve --data "$WORK/pl" --listen 127.0.0.1:0 >"$WORK/serve.out" 2>"$WORK/serve.err" &
SERVER_PID=$!
for _ in $(seq 1 100); do grep -q "listening on" "$WORK/serve.out" 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/^listening on //p' "$WORK/serve.out")
[ -n "$URL" ] || { cat "$WORK/serve.err" >&2; exit 1; }
"$PL" bench http --server "$URL" --operator-key "$WORK/pl/keys/operator.key" \
  --entries "$ENTRIES" --clients "$CLIENTS" --batch "$BATCH" >"$WORK/pl.out" 2>"$WORK/pl.err"
fig() { awk -v n="$1" '$1 == n {print $2}' "$WORK/pl.out"; }
pl_rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$SERVER_PID/status")
kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=""
pl_bytes=$(du -sb "$WORK/pl/log" "$WORK/pl/state" | awk '{s += $1} END {print s}')
pl_total=$((2 * ENTRIES + 1))

node - "$pg_tps1" "$pg_p50_1" "$pg_p99_1" "$pg_tps2" "$pg_p50_2" "$pg_p99_2" "$pg_rows" "$pg_bytes" \
  "${pg_rss_kb:-0}" "$(fig http_single)" "$(fig http_single_p50)" "$(fig http_single_p99)" \
  "$(fig "http_batch$BATCH")" "$(fig "http_batch${BATCH}_p50")" "$(fig "http_batch${BATCH}_p99")" \
  "$pl_rss_kb" "$pl_bytes" "$pl_total" "$BATCH" "$CLIENTS" "$ENTRIES" <<'JS'
const a = process.argv.slice(2);
const [pgT1, pgP50a, pgP99a, pgT2, pgP50b, pgP99b, pgRows, pgBytes, pgRss,
       plT1, plP50a, plP99a, plT2, plP50b, plP99b, plRss, plBytes, plTotal, batch, clients, entries] = a;
const n = (x, d = 0) => Number(x).toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d });
const ratio = (x, y) => (Number(x) / Number(y)).toFixed(2) + "×";
console.log(`${clients} clients, ${n(entries)} entries per phase, batches of ${batch}; PostgreSQL with fsync and synchronous_commit on.`);
console.log("");
console.log("| figure | PostgreSQL (plain loyalty schema) | pointsledger (HTTP) | pointsledger ÷ PostgreSQL |");
console.log("|---|---:|---:|---:|");
console.log(`| ingest, single entries | ${n(pgT1)} entries/s | ${n(plT1)} entries/s | ${ratio(plT1, pgT1)} |`);
console.log(`| latency, single entries, p50 / p99 | ${pgP50a} / ${pgP99a} ms | ${plP50a} / ${plP99a} ms | |`);
console.log(`| ingest, batches of ${batch} | ${n(pgT2 * batch)} entries/s | ${n(plT2)} entries/s | ${ratio(plT2, pgT2 * batch)} |`);
console.log(`| latency per batch, p50 / p99 | ${pgP50b} / ${pgP99b} ms | ${plP50b} / ${plP99b} ms | |`);
console.log(`| resident memory, peak | ${n(pgRss / 1024, 1)} MiB (largest backend) | ${n(plRss / 1024, 1)} MiB | |`);
console.log(`| disk per entry | ${n(pgBytes / pgRows)} B (tables and indexes, no WAL) | ${n(plBytes / plTotal)} B (whole store) | |`);
JS

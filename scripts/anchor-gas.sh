#!/usr/bin/env bash
# Measures the gas of LedgerAnchor.anchor() as whole transactions on a local anvil chain, at
# tree sizes 10, 10^3, 10^6 and 10^9, and prints a markdown table (docs/PERFORMANCE.md). Then,
# from the same run, a second table: gas per anchor and amortized gas per entry at 1, 100 and
# 10,000 entries per anchor (tree sizes 10^6 and 10^9), beside the gas of an ERC-20 mint per
# purchase (test/utils/PointsToken.sol, to a new holder and to an existing one) and the ratio.
# Starts its own anvil on a free port and stops it at the end.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
eval "$("$ROOT/scripts/toolchain.sh" --env)"
cd "$ROOT/contracts"

WORK=$(mktemp -d)
ANVIL_PID=""
cleanup() {
  if [ -n "$ANVIL_PID" ]; then kill "$ANVIL_PID" 2>/dev/null || true; wait "$ANVIL_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
RPC="http://127.0.0.1:$PORT"
"$ANVIL" --port "$PORT" --silent --config-out "$WORK/anvil.json" >"$WORK/anvil.log" 2>&1 &
ANVIL_PID=$!

. "$ROOT/scripts/lib/rpc.sh"
for _ in $(seq 1 100); do
  rpc eth_chainId '[]' >/dev/null 2>&1 && break
  sleep 0.1
done
rpc eth_chainId '[]' >/dev/null || { echo "anvil did not start:" >&2; cat "$WORK/anvil.log" >&2; exit 1; }

ANCHOR_GAS_KEY=$(node -e 'console.log(require(process.argv[1]).private_keys[0])' "$WORK/anvil.json")
export ANCHOR_GAS_KEY
"$FORGE" script script/AnchorGas.s.sol:AnchorGas --rpc-url "$RPC" --broadcast --slow \
  >"$WORK/forge.log" 2>&1 || { cat "$WORK/forge.log" >&2; exit 1; }

CHAIN=$(node -e 'console.log(parseInt(JSON.parse(process.argv[1]), 16))' "$(rpc eth_chainId '[]')")
NODE_INFO=$(rpc anvil_nodeInfo '[]')
node - "broadcast/AnchorGas.s.sol/$CHAIN/run-latest.json" "$NODE_INFO" "$("$ANVIL" --version | head -1)" <<'JS'
const fs = require("fs");
const [file, nodeInfo, anvilVersion] = process.argv.slice(2);
const run = JSON.parse(fs.readFileSync(file, "utf8"));
const info = JSON.parse(nodeInfo);
const receipts = new Map(run.receipts.map((r) => [r.transactionHash, r]));
const previous = new Map(); // contract -> size of its first anchor
const rows = [];
for (const tx of run.transactions) {
  if (tx.function !== "anchor(uint64,bytes32,bytes32[])") continue;
  const [size, , proof] = tx.arguments;
  const hashes = proof === "[]" ? 0 : proof.split(",").length;
  const to = tx.contractAddress.toLowerCase();
  if (!previous.has(to)) { previous.set(to, BigInt(size)); continue; }
  const r = receipts.get(tx.hash);
  if (!r || r.status !== "0x1") throw new Error(`anchor transaction ${tx.hash} failed`);
  const data = tx.transaction.input.slice(2);
  rows.push({ size: BigInt(size), prev: previous.get(to), hashes, gas: parseInt(r.gasUsed, 16), bytes: data.length / 2 });
}
const fmt = (n) => BigInt(n).toLocaleString("en-US");
const bitLength = (x) => x.toString(2).replace(/^0+/, "").length;
const popCount = (x) => x.toString(2).split("").filter((c) => c === "1").length;
// SHA-256 precompile calls the verifier makes for a proof from m to n (MerkleProofs.sol).
function sha256Calls(m, n) {
  const a = m - 1n;
  const inner = BigInt(bitLength(a ^ (n - 1n)));
  const border = popCount(a >> inner);
  let shift = 0n;
  while (((m >> shift) & 1n) === 0n) shift++;
  const mask = a >> shift;
  let calls = 2 * border;
  for (let i = 0n; i < inner - shift; i++) calls += ((mask >> i) & 1n) === 1n ? 2 : 1;
  return calls;
}
console.log(`anvil: ${anvilVersion}, hardfork ${info.hardFork}`);
console.log("");
console.log("| tree size | previous anchored size | case | proof hashes | SHA-256 calls | calldata bytes | gas used (tx) |");
console.log("|---:|---:|---|---:|---:|---:|---:|");
for (const r of rows) {
  const added = r.size - r.prev;
  const what = added === 1n ? "1 entry added" : added === 100n || added === 10000n ? `${fmt(added)} entries added`
    : "costliest proof for this size";
  const big = (x) => x === (1n << 64n) - 1n ? "2^64 - 1" : x === (1n << 63n) - 1n ? "2^63 - 1" : fmt(x);
  console.log(`| ${big(r.size)} | ${big(r.prev)} | ${what} | ${r.hashes} | ${sha256Calls(r.prev, r.size)} | ${r.bytes} | ${fmt(r.gas)} |`);
}

// The per-entry design beside it: one PointsToken mint per purchase. The token's first mint
// (total supply from zero) is left out; then a holder is new the first time it is minted to.
const holders = new Set();
const mints = {};
let firstMint = true;
for (const tx of run.transactions) {
  if (tx.function !== "mint(address,uint256)") continue;
  const r = receipts.get(tx.hash);
  if (!r || r.status !== "0x1") throw new Error(`mint transaction ${tx.hash} failed`);
  const to = tx.arguments[0].toLowerCase();
  const kind = holders.has(to) ? "existing" : "new";
  holders.add(to);
  if (firstMint) { firstMint = false; continue; }
  mints[kind] ??= parseInt(r.gasUsed, 16);
}
if (mints.new === undefined || mints.existing === undefined) throw new Error("mint transactions missing");
const per = (x) => x >= 100 ? fmt(Math.round(x)) : x.toFixed(1);
const ratio = (x) => (x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : fmt(Math.round(x))) + "×";
console.log("");
console.log("| tree size | entries per anchor | gas per anchor (tx) | anchored gas per entry | ERC-20 mint per purchase, new holder | new-holder mint ÷ anchored | ERC-20 mint per purchase, existing holder | existing-holder mint ÷ anchored |");
console.log("|---:|---:|---:|---:|---:|---:|---:|---:|");
for (const r of rows) {
  const added = r.size - r.prev;
  if (r.size !== 1000000n && r.size !== 1000000000n) continue;
  if (added !== 1n && added !== 100n && added !== 10000n) continue;
  const each = r.gas / Number(added);
  console.log(`| ${fmt(r.size)} | ${fmt(added)} | ${fmt(r.gas)} | ${per(each)} | ${fmt(mints.new)} | ${ratio(mints.new / each)} | ${fmt(mints.existing)} | ${ratio(mints.existing / each)} |`);
}
JS

#!/usr/bin/env bash
# Every check of the contracts: installs the pinned toolchain if missing (scripts/toolchain.sh),
# checks formatting, builds, checks that the committed artifact contracts/artifacts/
# LedgerAnchor.json (ABI and bytecode, used by the anchorer) matches the sources, and runs the
# Forge tests. Needs node and npm (and network access the first time, for the npm registry).
#
#   scripts/check-contracts.sh            check everything
#   scripts/check-contracts.sh --update   rewrite the committed artifact after a contract change
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
UPDATE=0
[ "${1:-}" = "--update" ] && UPDATE=1

step() { printf '\n== %s\n' "$*"; }

step "toolchain"
"$ROOT/scripts/toolchain.sh"
eval "$("$ROOT/scripts/toolchain.sh" --env)"
cd "$ROOT/contracts"

if command -v python3 >/dev/null; then
  step "test/Vectors.sol matches tests/vectors/rfc6962"
  python3 "$ROOT/scripts/vectors-to-sol.py" --check
fi

step "forge fmt --check"
"$FORGE" fmt --check

step "forge build"
"$FORGE" build

step "artifacts/LedgerAnchor.json is fresh"
node - "$UPDATE" <<'JS'
const fs = require("fs");
const update = process.argv[2] === "1";
const built = JSON.parse(fs.readFileSync("out/LedgerAnchor.sol/LedgerAnchor.json", "utf8"));
const artifact = {
  contractName: "LedgerAnchor",
  sourceName: "src/LedgerAnchor.sol",
  compiler: built.metadata.compiler.version,
  evmVersion: built.metadata.settings.evmVersion,
  optimizer: built.metadata.settings.optimizer,
  abi: built.abi,
  bytecode: built.bytecode.object,
  deployedBytecode: built.deployedBytecode.object,
  methodIdentifiers: built.methodIdentifiers,
};
const text = JSON.stringify(artifact, null, 2) + "\n";
const path = "artifacts/LedgerAnchor.json";
const committed = fs.existsSync(path) ? fs.readFileSync(path, "utf8") : "";
if (committed === text) {
  console.log(`${path} is up to date`);
} else if (update) {
  fs.mkdirSync("artifacts", { recursive: true });
  fs.writeFileSync(path, text);
  console.log(`wrote contracts/${path}`);
} else {
  const old = committed ? JSON.parse(committed) : {};
  const what = ["abi", "bytecode", "deployedBytecode", "compiler", "evmVersion", "optimizer"]
    .filter((k) => JSON.stringify(old[k]) !== JSON.stringify(artifact[k]));
  console.error(`contracts/${path} is stale (differs in: ${what.join(", ") || "layout"}):`);
  console.error("the contract sources changed since it was written.");
  console.error("Run scripts/check-contracts.sh --update and commit contracts/artifacts/LedgerAnchor.json.");
  process.exit(1);
}
JS

step "forge test"
"$FORGE" test

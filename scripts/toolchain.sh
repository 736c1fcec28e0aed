#!/usr/bin/env bash
# Installs the pinned EVM toolchain (forge, anvil, solc-js) from the npm registry into .tools/
# when it is missing, then prints where the binaries are. Idempotent: with everything present it
# does no network access and returns at once. Needs node and npm.
#
#   scripts/toolchain.sh          install if needed, print the paths
#   scripts/toolchain.sh --env    print `export ...` lines (eval "$(scripts/toolchain.sh --env)")
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TOOLS="$ROOT/.tools"

FOUNDRY_VERSION=1.7.1
SOLC_VERSION=0.8.30

PKGS=(
  "@foundry-rs/forge-linux-amd64@$FOUNDRY_VERSION"
  "@foundry-rs/anvil-linux-amd64@$FOUNDRY_VERSION"
  "solc@$SOLC_VERSION"
)

NM="$TOOLS/node_modules"
FORGE="$NM/@foundry-rs/forge-linux-amd64/bin/forge"
ANVIL="$NM/@foundry-rs/anvil-linux-amd64/bin/anvil"
SOLCJS="$NM/solc/solc.js"
SOLC="$ROOT/scripts/solc"

pkg_version() { # prints the version field of an installed package.json, or nothing
  [ -f "$1/package.json" ] || return 0
  node -e 'try{process.stdout.write(require(process.argv[1]).version)}catch(e){}' "$1/package.json"
}

installed() {
  [ -x "$FORGE" ] && [ -x "$ANVIL" ] && [ -f "$SOLCJS" ] &&
    [ "$(pkg_version "$NM/@foundry-rs/forge-linux-amd64")" = "$FOUNDRY_VERSION" ] &&
    [ "$(pkg_version "$NM/@foundry-rs/anvil-linux-amd64")" = "$FOUNDRY_VERSION" ] &&
    [ "$(pkg_version "$NM/solc")" = "$SOLC_VERSION" ]
}

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) ;;
  *) echo "toolchain.sh: the pinned forge and anvil packages are for Linux x86_64;" \
          "this machine is $(uname -s)-$(uname -m)" >&2; exit 1 ;;
esac

if ! installed; then
  for tool in node npm; do
    command -v "$tool" >/dev/null || { echo "toolchain.sh: $tool is needed" >&2; exit 1; }
  done
  echo "toolchain.sh: installing ${PKGS[*]} into $TOOLS" >&2
  mkdir -p "$TOOLS"
  npm install --prefix "$TOOLS" --no-save --no-audit --no-fund --no-package-lock \
    --loglevel=error "${PKGS[@]}" >&2
  # Some npm versions drop the executable bit of binaries inside packages.
  chmod +x "$FORGE" "$ANVIL" 2>/dev/null || true
  installed || { echo "toolchain.sh: installation incomplete under $TOOLS" >&2; exit 1; }
fi

if [ "${1:-}" = "--env" ]; then
  printf 'export FORGE=%q ANVIL=%q SOLC=%q SOLCJS=%q\n' "$FORGE" "$ANVIL" "$SOLC" "$SOLCJS"
  printf 'export PATH=%q:"$PATH"\n' "$(dirname "$FORGE"):$(dirname "$ANVIL")"
else
  echo "forge  $FORGE"
  echo "anvil  $ANVIL"
  echo "solc   $SOLC (solc-js $SOLC_VERSION, $SOLCJS)"
fi

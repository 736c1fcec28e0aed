#!/usr/bin/env bash
# Installs what the browser tests (tests/browser.rs) need when it is missing, and prints what it
# does: Debian's Chromium at /usr/bin/chromium (apt-get, as root or through sudo) and the pinned
# playwright-core from the npm registry into .tools/browser/. Idempotent: with both present it
# does no network access and returns at once. playwright-core only drives the browser; it
# downloads none of its own (this machine could not fetch one anyway).
#
#   scripts/browser-deps.sh          install if needed, print the paths
#   scripts/browser-deps.sh --env    print `export ...` lines (eval "$(scripts/browser-deps.sh --env)")
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)

PLAYWRIGHT_VERSION=1.65.1
CHROMIUM=/usr/bin/chromium
# A prefix of its own beside the chain toolchain's (scripts/toolchain.sh): npm prunes what a
# prefix's package.json does not list, so one install must never run in the other's prefix.
PREFIX="$ROOT/.tools/browser"
PLAYWRIGHT="$PREFIX/node_modules/playwright-core"

say() { printf 'browser-deps.sh: %s\n' "$*" >&2; }
run() { printf '+ %s\n' "$*" >&2; "$@"; }

pkg_version() { # prints the version field of an installed package.json, or nothing
  [ -f "$1/package.json" ] || return 0
  node -e 'try{process.stdout.write(require(process.argv[1]).version)}catch(e){}' "$1/package.json"
}

if [ ! -x "$CHROMIUM" ]; then
  say "$CHROMIUM is missing: installing Debian's chromium package"
  SUDO=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || {
      say "need root (or sudo) to run apt-get install chromium"
      exit 1
    }
    SUDO=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  run "${SUDO[@]}" apt-get update -q
  run "${SUDO[@]}" apt-get install -y -q --no-install-recommends chromium
  [ -x "$CHROMIUM" ] || { say "apt-get finished but $CHROMIUM is still missing"; exit 1; }
fi

if [ "$(pkg_version "$PLAYWRIGHT")" != "$PLAYWRIGHT_VERSION" ]; then
  for tool in node npm; do
    command -v "$tool" >/dev/null || { say "$tool is needed"; exit 1; }
  done
  say "installing playwright-core@$PLAYWRIGHT_VERSION into $PREFIX"
  mkdir -p "$PREFIX"
  # No browser download: playwright-core never fetches one, and the tests launch /usr/bin/chromium.
  run env PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$PREFIX" --no-save \
    --no-audit --no-fund --no-package-lock --loglevel=error \
    "playwright-core@$PLAYWRIGHT_VERSION" >&2
  [ "$(pkg_version "$PLAYWRIGHT")" = "$PLAYWRIGHT_VERSION" ] ||
    { say "installation incomplete under $PREFIX"; exit 1; }
fi

if [ "${1:-}" = "--env" ]; then
  printf 'export CHROMIUM=%q PLAYWRIGHT_CORE=%q\n' "$CHROMIUM" "$PLAYWRIGHT"
else
  echo "chromium         $CHROMIUM ($("$CHROMIUM" --version 2>/dev/null || echo 'version unknown'))"
  echo "playwright-core  $PLAYWRIGHT ($PLAYWRIGHT_VERSION)"
fi

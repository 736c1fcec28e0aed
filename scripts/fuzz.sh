#!/usr/bin/env bash
# Fuzzes the decoders and verifiers that take untrusted input: DSSE envelopes, payloads,
# checkpoint notes and verifier keys, tlog-proof receipts, and the RFC 6962 proof verifiers
# (the cargo-fuzz targets in fuzz/). Each target runs for SECONDS (default 10) from the seeds in
# fuzz/seeds/ and the corpus it grew before (fuzz/corpus/, ignored). A crash stops the script
# and leaves the input in fuzz/artifacts/TARGET/; replay it with
# `scripts/fuzz.sh --replay TARGET FILE`.
#
#   scripts/fuzz.sh            # 10 s each: the test command's smoke run
#   scripts/fuzz.sh 3600       # the long run: an hour each
#   scripts/fuzz.sh 600 proofs # one target
#
# cargo-fuzz (pinned) is installed into .tools/cargo when missing. The targets build with the
# machine's stable toolchain: libFuzzer's coverage instrumentation needs only stable flags;
# RUSTC_BOOTSTRAP lets cargo-fuzz pass its one unstable flag. No sanitizer: the crate forbids
# unsafe code, so the targets look for panics, hangs and runaway memory.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
root=.tools/cargo
if ! "$root/bin/cargo-fuzz" --version 2>/dev/null | grep -qF "$CARGO_FUZZ_VERSION"; then
    echo "installing cargo-fuzz $CARGO_FUZZ_VERSION into $root"
    cargo install --locked --quiet --version "$CARGO_FUZZ_VERSION" --root "$root" cargo-fuzz
fi
export PATH="$PWD/$root/bin:$PATH" RUSTC_BOOTSTRAP=1
flags=(--sanitizer none --release)

if [[ "${1:-}" == "--replay" ]]; then
    [[ $# -eq 3 ]] || { echo "usage: scripts/fuzz.sh --replay TARGET FILE" >&2; exit 2; }
    exec cargo fuzz run "${flags[@]}" "$2" "$3"
fi

secs="${1:-10}"
[[ "$secs" =~ ^[1-9][0-9]*$ ]] || { echo "SECONDS must be a positive integer, got '$secs'" >&2; exit 2; }
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || mapfile -t targets < <(cargo fuzz list)

echo "building ${#targets[@]} fuzz targets"
cargo fuzz build "${flags[@]}"
for t in "${targets[@]}"; do
    echo "fuzzing $t for ${secs}s"
    mkdir -p "fuzz/corpus/$t" "fuzz/seeds/$t"
    log="fuzz/artifacts/$t.log"
    mkdir -p fuzz/artifacts
    # -max_len: request bodies are bounded by the server (64 KiB), notes by 16 KiB.
    if ! cargo fuzz run "${flags[@]}" "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "fuzz target $t failed; the input is in fuzz/artifacts/$t/, the log in $log" >&2
        exit 1
    fi
    grep -E '^stat::number_of_executed_units' "$log" | sed "s/^/  $t: /" || true
done
echo "fuzzing: ${#targets[@]} targets, ${secs}s each, no failure"

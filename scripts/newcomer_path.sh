#!/usr/bin/env bash
# Times the README's two quick-start commands as a newcomer runs them: on a
# fresh clone with an empty build folder (crates already downloaded, the
# test tools already installed: what this times is the builds and the runs).
#   bash scripts/newcomer_path.sh
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d /tmp/shadowcast-newcomer.XXXXXX)"
trap 'rm -rf "$work"' EXIT
git clone -q "$repo" "$work/shadowcast"
cd "$work/shadowcast"
export CARGO_TARGET_DIR="$work/target"
cargo fetch --locked -q

seconds() { date +%s.%N; }
start=$(seconds)
cargo run --locked -q -- demo > "$work/demo.out" 2> "$work/demo.err"
demo_done=$(seconds)
bash scripts/test.sh > "$work/test.out" 2>&1 || {
    echo "the tests failed:"
    grep -E "panicked|FAILED|^error" -A12 "$work/test.out" | head -80
    exit 1
}
tests_done=$(seconds)

grep -q "hottest keys" "$work/demo.out" || { echo "the demo printed no result"; cat "$work/demo.err"; exit 1; }
awk -v a="$start" -v b="$demo_done" -v c="$tests_done" -v cores="$(nproc)" 'BEGIN {
    printf "machine: %d cores; fresh clone, empty build folder, crates downloaded\n", cores
    printf "cargo run -- demo             %6.1f min (build and the demo, to its output)\n", (b - a) / 60
    printf "bash scripts/test.sh          %6.1f min (build and every test)\n", (c - b) / 60
    printf "both                          %6.1f min\n", (c - a) / 60
}'

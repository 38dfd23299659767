#!/usr/bin/env bash
# The two pure-Rust gradient-boosting crates side by side, as model kinds
# `gbdt` (forust-ml) and `gbdt-perpetual` (perpetual, built only with the
# cargo feature gbdt-peer):
#   1. build time: each crate alone, cold, in release, in a scratch target;
#   2. training time and peak memory: both kinds (and logistic and forest
#      beside them) trained with the defaults on one generated workload;
#   3. accuracy on the real traces: benches/model_traces.sh with both kinds,
#      the learners alone.
#
# usage: benches/gbdt_crates.sh [EVENTS]      (default 2000000 events, oltp profile)
# env: SKIP_TRACES=1 leaves out step 3 (it takes the longest).
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-2000000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "## 1. cold release build of each crate alone (2 jobs)"
mkdir -p "$work/crates/src" && echo 'fn main() {}' >"$work/crates/src/main.rs"
cat >"$work/crates/Cargo.toml" <<'TOML'
[package]
name = "gbdt-crates"
version = "0.0.0"
edition = "2024"
[dependencies]
TOML
grep -E '^(forust-ml|perpetual) =' Cargo.toml | sed 's/, optional = true//' >>"$work/crates/Cargo.toml"
cp Cargo.lock "$work/crates/"
for crate in forust-ml perpetual; do
    rm -rf "$work/target"
    started=$(date +%s.%N)
    CARGO_TARGET_DIR="$work/target" cargo build --quiet --release -j 2 --manifest-path "$work/crates/Cargo.toml" -p "$crate"
    printf '%-10s %6.1f s, %d crates compiled\n' "$crate" "$(echo "$(date +%s.%N) - $started" | bc)" \
        "$(ls "$work/target/release/deps/"*.rlib | wc -l)"
done

echo
echo "## 2. training on $events generated events (oltp, 96 h; 4 cut-offs of 6 h, 200 000 rows, guarded)"
cargo build --release --quiet --features gbdt-peer
bin=${CARGO_TARGET_DIR:-target}/release/shadowcast
"$bin" generate --out "$work/logs" --events "$events" --hours 96 --seed 7 >/dev/null
printf '%-15s %10s %12s %s\n' kind seconds "peak RSS" "capture at 10% of keys, next 6 h (model / best heuristic / oracle)"
for kind in logistic forest gbdt gbdt-perpetual; do
    /usr/bin/time -f '%e %M' -o "$work/$kind.time" "$bin" train --logs "$work/logs" \
        --as-of 2026-11-04T18:00:00Z --horizon 6h --out "$work/models/$kind" --kind "$kind" \
        >/dev/null 2>"$work/$kind.log"
    read -r seconds kilobytes <"$work/$kind.time"
    "$bin" evaluate --logs "$work/logs" --as-of 2026-11-04T18:00:00Z --horizon 6h \
        --model "$work/models/$kind" >"$work/$kind.evaluate" 2>/dev/null
    # Table rows only (the verdict lines below the table start with the model's name too).
    capture=$(awk -v m="$kind-v1" 'NF == 15 && $1 == m { print $9 }' "$work/$kind.evaluate")
    heuristic=$(awk 'NF == 15 && ($1 == "most-frequent" || $1 ~ /^decayed-/) { if ($9 > best) best = $9 } END { print best }' "$work/$kind.evaluate")
    oracle=$(awk 'NF == 15 && $1 == "oracle" { print $9 }' "$work/$kind.evaluate")
    printf '%-15s %10s %9d MiB %s / %s / %s\n' "$kind" "$seconds" $((kilobytes / 1024)) "$capture" "$heuristic" "$oracle"
done

if [ -z "${SKIP_TRACES:-}" ]; then
    echo
    echo "## 3. the real traces (benches/model_traces.sh)"
    FEATURES=gbdt-peer MODELS="gbdt gbdt-perpetual" \
        benches/model_traces.sh
fi

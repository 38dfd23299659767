#!/usr/bin/env bash
# Training wall time and peak memory at scale: `shadowcast train` on
# generated logs (oltp profile, 7 days, seed 1), four rolling cut-offs of
# 6 h ending at day 6, 200 K rows sampled for fitting.
#
# usage: benches/train_cost.sh EVENTS [KIND...]
#   EVENTS  events to generate, e.g. 75000000 (about 10M keys per cut-off)
#   KIND    model kinds to train (default: logistic gbdt)
# env: BENCH_DIR (default /tmp/shadowcast-bench); BASELINE_BIN, another
#   shadowcast binary (an older build) to run beside this one, same logs,
#   same run, alternating.
#
# Prints one table row per binary and kind: keys per cut-off, wall seconds
# and peak resident memory (GNU time's max RSS).
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:?usage: $0 EVENTS [KIND...]}
shift
kinds=("$@")
[ ${#kinds[@]} -eq 0 ] && kinds=(logistic gbdt)
bench_dir=${BENCH_DIR:-/tmp/shadowcast-bench}
logs="$bench_dir/oltp-$events"

cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-target}/release/shadowcast
if [ ! -f "$logs/.complete" ]; then
    rm -rf "$logs"
    "$bin" generate --out "$logs" --events "$events" --hours 168 --seed 1
    touch "$logs/.complete"
fi
binaries=("$bin")
[ -n "${BASELINE_BIN:-}" ] && binaries+=("$BASELINE_BIN")

echo "| binary | kind | keys per cut-off | wall (s) | peak RSS (MiB) |"
echo "| --- | --- | ---: | ---: | ---: |"
for kind in "${kinds[@]}"; do
    for binary in "${binaries[@]}"; do
        out="$bench_dir/train-$kind"
        rm -rf "$out"
        RUST_LOG=info /usr/bin/time -o "$bench_dir/train.time" -f "%e %M" \
            "$binary" train --logs "$logs" --as-of 2026-11-07T00:00:00Z --horizon 6h \
            --kind "$kind" --out "$out" >"$bench_dir/train.log" 2>&1
        keys=$(sed 's/\x1b\[[0-9;]*m//g' "$bench_dir/train.log" | sed -n 's/.*\(key states sorted\|finished features\).* keys=\([0-9]*\).*/\2/p' | sort -n | tail -1)
        read -r wall peak <"$bench_dir/train.time"
        label=$([ "$binary" = "$bin" ] && echo "this build" || echo "baseline")
        awk -v label="$label" -v kind="$kind" -v keys="$keys" -v wall="$wall" -v peak="$peak" \
            'BEGIN { printf "| %s | %s | %.1f M | %.1f | %.0f |\n", label, kind, keys / 1e6, wall, peak / 1024 }'
    done
done

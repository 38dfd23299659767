#!/usr/bin/env bash
# What the model's training target and the churn penalty buy in a replayed
# migration, on the generated profiles with writes: the same forest trained
# to predict every access or only the reads before each key's first write
# (the reads a copy made before cutover serves), and the scheduler with its
# churn penalty (0.5) or ignoring churn (0). Prints, per profile and
# variant, the model strategy's row at a 10% budget: post-cutover reads
# served and bytes re-synced because a copied key was written again.
#
# usage: benches/simulate_targets.sh [EVENTS]   (default 1000000 per profile)
# env: BENCH_DIR (default /tmp/shadowcast-targets)
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-1000000}
dir=${BENCH_DIR:-/tmp/shadowcast-targets}
cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-target}/release/shadowcast
rm -rf "$dir" && mkdir -p "$dir"

echo "| profile | model target | churn penalty | reads served | bytes served | re-synced |"
echo "|---|---|---|---|---|---|"
for profile in oltp write-heavy deletes; do
    "$bin" generate --out "$dir/$profile" --profile "$profile" --events "$events" --hours 96 --seed 3 2>/dev/null
    for variant in "accesses 0.5" "reads-before-write 0.5" "reads-before-write 0"; do
        read -r target penalty <<<"$variant"
        "$bin" simulate --logs "$dir/$profile" --window 6h --after 6h --budgets 0.1 \
            --strategies model --model-target "$target" --churn-penalty "$penalty" \
            >"$dir/$profile-$target-$penalty.txt" 2>/dev/null
        awk -v p="$profile" -v t="$target" -v c="$penalty" \
            '$1 == "model" && $4 == "|" { print "| " p " | " t " | " c " | " $2 " | " $3 " | " $9 " " $10 " |"; exit }' \
            "$dir/$profile-$target-$penalty.txt"
    done
done

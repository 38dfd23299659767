#!/usr/bin/env bash
# Model vs heuristics vs oracle on every generator profile and on imported
# public traces, each judged on a cut-off after the training cut-off.
#
# usage: benches/model_profiles.sh [EVENTS]   (default 2000000 per profile)
# env: BENCH_DIR (default /tmp/shadowcast-profiles), TRACES (default ../shared/data/traces)
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-2000000}
dir=${BENCH_DIR:-/tmp/shadowcast-profiles}
traces=${TRACES:-../shared/data/traces}
cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-target}/release/shadowcast
rm -rf "$dir" && mkdir -p "$dir"

run() { # name logs train_as_of eval_as_of horizon
    local name=$1 logs=$2 train_at=$3 eval_at=$4 horizon=$5
    for kind in logistic tree forest gbdt; do
        "$bin" train --logs "$logs" --as-of "$train_at" --horizon "$horizon" --cutoffs 4 \
            --kind "$kind" --max-rows 100000 --out "$dir/models/$name-$kind" >/dev/null 2>"$dir/$name-$kind.train.log"
    done
    echo "## $name (trained to $train_at, judged on $eval_at + $horizon)"
    "$bin" evaluate --logs "$logs" --as-of "$eval_at" --horizon "$horizon" \
        --model "$dir/models/$name-logistic" --model "$dir/models/$name-tree" --model "$dir/models/$name-forest" \
        --model "$dir/models/$name-gbdt" \
        --out "$dir/$name.parquet" --chart "$dir/$name.png"
    echo
}

for profile in oltp read-heavy write-heavy deletes; do
    "$bin" generate --out "$dir/$profile" --profile "$profile" --events "$events" --hours 96 --seed 3 2>/dev/null
    run "$profile" "$dir/$profile" 2026-11-04T00:00:00Z 2026-11-04T06:00:00Z 6h
done

"$bin" import "$traces/cache2k_orm_night.csv.gz" --out "$dir/cache2k" --map ts=ts_ms --map table=table \
    --ts-format ms --rebase-to 2026-11-01T00:00:00Z 2>/dev/null
run cache2k-orm "$dir/cache2k" 2026-11-01T01:00:00Z 2026-11-01T01:10:00Z 10m

"$bin" import "$traces/cloudphysics_io_first_hour.csv.gz" --out "$dir/cloudphysics" --map ts=ts_ms --map table=table \
    --ts-format ms --rebase-to 2026-11-01T00:00:00Z 2>/dev/null
run cloudphysics "$dir/cloudphysics" 2026-11-01T00:40:00Z 2026-11-01T00:45:00Z 5m

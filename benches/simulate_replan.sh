#!/usr/bin/env bash
# What re-planning while serving buys: the forecasting strategies planned
# once at the window's start, beside the same strategies planned again every
# R from features as of each time (`simulate --replan-every`, the rule
# `serve --replan-every` follows), on every generator profile.
#
# usage: benches/simulate_replan.sh [EVENTS] [R]   (defaults 2000000, 90m)
# env: BENCH_DIR (default /tmp/shadowcast-replan)
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-2000000}
every=${2:-90m}
dir=${BENCH_DIR:-/tmp/shadowcast-replan}
cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-target}/release/shadowcast
rm -rf "$dir" && mkdir -p "$dir"

for profile in oltp read-heavy write-heavy deletes; do
    "$bin" generate --out "$dir/$profile" --profile "$profile" --events "$events" --hours 96 --seed 3 2>/dev/null
    for mode in once "every $every"; do
        echo "## $profile, planned $mode ($events events over 96 h; window 6h, then 6h measured)"
        extra=()
        if [ "$mode" != once ]; then extra=(--replan-every "$every"); fi
        started=$(date +%s.%N)
        "$bin" simulate --logs "$dir/$profile" --window 6h --after 6h --strategies most-frequent,decayed,model,oracle \
            --budget 0.1 --budgets 0.05,0.2 "${extra[@]}" 2>/dev/null
        awk -v started="$started" -v ended="$(date +%s.%N)" 'BEGIN { printf "(simulate took %.1f s)\n", ended - started }'
        echo
    done
done

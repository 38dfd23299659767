#!/usr/bin/env bash
# Replay simulation on every generator profile and on imported public
# traces with sizes (byte budgets need them): every strategy at the same budgets, the model trained on the
# history before the window only.
#
# usage: benches/simulate_profiles.sh [EVENTS]   (default 2000000 per profile)
# env: BENCH_DIR (default /tmp/shadowcast-simulate), TRACES (default ../shared/data/traces)
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-2000000}
dir=${BENCH_DIR:-/tmp/shadowcast-simulate}
traces=${TRACES:-../shared/data/traces}
cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-target}/release/shadowcast
rm -rf "$dir" && mkdir -p "$dir"

for profile in oltp read-heavy write-heavy deletes; do
    "$bin" generate --out "$dir/$profile" --profile "$profile" --events "$events" --hours 96 --seed 3 2>/dev/null
    echo "## $profile ($events events over 96 h; window 6h, then 6h measured)"
    "$bin" simulate --logs "$dir/$profile" --window 6h --after 6h --out "$dir/$profile-report"
    echo
done

# CloudPhysics: the reads come in a burst from 00:25 to 00:35 (the rest is writes).
"$bin" import "$traces/cloudphysics_io_first_hour.csv.gz" --out "$dir/cloudphysics" --map ts=ts_ms --map table=table \
    --ts-format ms --rebase-to 2026-11-01T00:00:00Z 2>/dev/null
echo "## CloudPhysics block I/O (real, imported; window 5m from 00:20, then 10m measured)"
"$bin" simulate --logs "$dir/cloudphysics" --start 2026-11-01T00:20:00Z --window 5m --after 10m --step 5s \
    --out "$dir/cloudphysics-report" 2>/dev/null
echo

# ARC P3: a disk trace whose times are request numbers (1 ms apart).
"$bin" import "$traces/arc_p3.csv.gz" --out "$dir/arc-p3" --map ts=ts_ms --map table=table \
    --ts-format ms --rebase-to 2026-11-01T00:00:00Z 2>/dev/null
echo "## ARC P3 disk trace (real, imported; window 30s, then 60s measured)"
"$bin" simulate --logs "$dir/arc-p3" --window 30s --after 60s --step 1s --out "$dir/arc-p3-report" 2>/dev/null

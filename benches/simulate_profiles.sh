#!/usr/bin/env bash
# Replay simulation on every generator profile and on imported public
# trace with sizes (byte budgets need them): every strategy at the same budgets, the model trained on the
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

"$bin" import "$traces/cloudphysics_io_first_hour.csv.gz" --out "$dir/cloudphysics" --map ts=ts_ms --map table=table \
    --ts-format ms --rebase-to 2026-11-01T00:00:00Z 2>/dev/null
echo "## CloudPhysics block I/O, first hour (real, imported; window 10m, then 10m measured)"
"$bin" simulate --logs "$dir/cloudphysics" --window 10m --after 10m --step 5s --out "$dir/cloudphysics-report"


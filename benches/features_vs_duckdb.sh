#!/usr/bin/env bash
# Feature extraction: shadowcast's native path against DuckDB running
# sql/features.sql on the same Parquet files, in the same run, same threads.
#
# usage: benches/features_vs_duckdb.sh EVENTS [RUNS]
#   EVENTS  events to generate (oltp profile, 7 days, seed 1), e.g. 10000000
#   RUNS    runs per engine, alternating; the median is reported (default 3)
# env: BENCH_DIR (default /tmp/shadowcast-bench), THREADS (default: all cores)
#
# Reports wall time, events/s and peak resident memory (GNU time's max RSS;
# DuckDB's includes the Python interpreter, about 40 MB) and the ratios
# shadowcast / DuckDB. Needs a release build and Python's duckdb package.
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:?usage: $0 EVENTS [RUNS]}
runs=${2:-3}
threads=${THREADS:-$(nproc)}
bench_dir=${BENCH_DIR:-/tmp/shadowcast-bench}
logs="$bench_dir/oltp-$events"
as_of="2026-11-07T23:59:59Z"
as_of_us=1794095999000000

cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-target}/release/shadowcast
python3 -c "import duckdb" 2>/dev/null || python3 -m pip install --quiet "duckdb==2.0.0"

if [ ! -f "$logs/.complete" ]; then
    rm -rf "$logs"
    "$bin" generate --out "$logs" --events "$events" --hours 168 --seed 1
    touch "$logs/.complete"
fi
echo "logs: $logs ($(du -sh "$logs" | cut -f1)), $events events, cut-off $as_of, $threads threads, $(nproc) cores"

measure() { # label, command... -> prints "seconds peak_kb"
    /usr/bin/time -o "$bench_dir/$1.time" -f "%e %M" "${@:2}" >/dev/null 2>&1
    cat "$bench_dir/$1.time"
}

native=()
duck=()
for run in $(seq "$runs"); do
    native+=("$(SHADOWCAST_THREADS=$threads measure native "$bin" features --logs "$logs" --as-of "$as_of" --out "$bench_dir/native.parquet")")
    duck+=("$(measure duckdb python3 sql/run_duckdb.py "$logs" "$as_of_us" 21600000000 "$bench_dir/duckdb.parquet" "$threads")")
    echo "run $run: shadowcast ${native[-1]}   duckdb ${duck[-1]}   (seconds, peak KB)"
done

python3 - "$events" "${native[@]}" -- "${duck[@]}" <<'PY'
import statistics, sys
events = int(sys.argv[1])
rest = sys.argv[2:]
split = rest.index("--")
def parse(items):
    pairs = [tuple(float(x) for x in item.split()) for item in items]
    return statistics.median(p[0] for p in pairs), max(p[1] for p in pairs) / 1024
nw, nm = parse(rest[:split])
dw, dm = parse(rest[split + 1:])
print(f"\n| engine | wall (s, median) | events/s | peak RSS (MiB) |")
print(f"| --- | ---: | ---: | ---: |")
print(f"| shadowcast features | {nw:.2f} | {events / nw / 1e6:.1f} M | {nm:.0f} |")
print(f"| DuckDB sql/features.sql | {dw:.2f} | {events / dw / 1e6:.1f} M | {dm:.0f} |")
print(f"| ratio shadowcast / DuckDB | {nw / dw:.2f}x | | {nm / dm:.2f}x |")
PY

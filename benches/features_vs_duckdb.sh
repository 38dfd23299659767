#!/usr/bin/env bash
# Feature extraction: shadowcast's native path against DuckDB running
# sql/features_duckdb.sql (written for DuckDB: one aggregate pass with
# arg_max and max(ts, 4)) and the portable sql/features.sql on the same
# Parquet files, in the same run, same threads.
#
# usage: benches/features_vs_duckdb.sh EVENTS [RUNS]
#   EVENTS  events to generate (oltp profile, 7 days, seed 1), e.g. 10000000
#   RUNS    runs per engine, alternating; the median is reported (default 3)
# env: BENCH_DIR (default /tmp/shadowcast-bench), THREADS (default: all cores)
#
# Reports wall time, events/s and peak resident memory (GNU time's max RSS;
# DuckDB's includes the Python interpreter, about 40 MB) and the ratios
# shadowcast / DuckDB. DuckDB's wall time is the query's, timed inside the
# Python process (so neither interpreter start-up nor the import counts
# against it); shadowcast's is the whole command's. Needs a release build and
# Python's duckdb package.
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
    /usr/bin/time -o "$bench_dir/$1.time" -f "%e %M" "${@:2}" >"$bench_dir/$1.out" 2>&1
    cat "$bench_dir/$1.time"
}

duckdb_run() { # label, sql file -> prints "in-process-seconds peak_kb"
    local peak
    peak=$(measure "$1" python3 sql/run_duckdb.py --sql "$2" "$logs" "$as_of_us" 21600000000 "$bench_dir/$1.parquet" "$threads" | cut -d' ' -f2)
    echo "$(sed -n 's/.*written in \([0-9.]*\)s/\1/p' "$bench_dir/$1.out") $peak"
}

native=()
idiomatic=()
portable=()
for run in $(seq "$runs"); do
    native+=("$(SHADOWCAST_THREADS=$threads measure native "$bin" features --logs "$logs" --as-of "$as_of" --out "$bench_dir/native.parquet")")
    idiomatic+=("$(duckdb_run duckdb features_duckdb.sql)")
    portable+=("$(duckdb_run duckdb-portable features.sql)")
    echo "run $run: shadowcast ${native[-1]}   duckdb ${idiomatic[-1]}   duckdb portable ${portable[-1]}   (seconds, peak KB)"
done

python3 - "$events" "${native[@]}" -- "${idiomatic[@]}" -- "${portable[@]}" <<'PY'
import statistics, sys
events = int(sys.argv[1])
groups = " ".join(sys.argv[2:]).split(" -- ")
def parse(group):
    items = group.split()
    pairs = list(zip(map(float, items[0::2]), map(float, items[1::2])))
    return statistics.median(p[0] for p in pairs), max(p[1] for p in pairs) / 1024
(nw, nm), (dw, dm), (pw, pm) = (parse(g) for g in groups)
print(f"\n| engine | wall (s, median) | events/s | peak RSS (MiB) |")
print(f"| --- | ---: | ---: | ---: |")
print(f"| shadowcast features | {nw:.2f} | {events / nw / 1e6:.1f} M | {nm:.0f} |")
print(f"| DuckDB sql/features_duckdb.sql | {dw:.2f} | {events / dw / 1e6:.1f} M | {dm:.0f} |")
print(f"| DuckDB sql/features.sql (portable) | {pw:.2f} | {events / pw / 1e6:.1f} M | {pm:.0f} |")
print(f"| **ratio shadowcast / DuckDB (features_duckdb.sql)** | **{nw / dw:.2f}x** | | **{nm / dm:.2f}x** |")
PY

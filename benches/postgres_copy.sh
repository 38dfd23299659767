#!/usr/bin/env bash
# PostgreSQL to PostgreSQL on this machine: the tables executor (`executor
# --layout tables`) against a plain `COPY ... TO STDOUT | COPY ... FROM
# STDIN` of the same table (binary format: the fastest a skilled user
# would write, and the physical limit here), then `verify` over the result,
# then the capture lag (commit to ReportWrites accepted) under a steady
# pgbench write load.
#
# usage: benches/postgres_copy.sh [ROWS] [EXECUTORS] [WRITES_PER_S] [SECONDS]
#   ROWS          rows of the orders table (default 200000, about 190 bytes each)
#   EXECUTORS     executor processes copying in parallel (default 2)
#   WRITES_PER_S  pgbench's rate of single-row updates for the lag (default 500)
#   SECONDS       how long the write load runs (default 20)
# Starts its own throwaway PostgreSQL server (wal_level=logical) and a
# release build of shadowcast. Bytes are the rows' `pg_column_size`.
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-200000}
executors=${2:-2}
rate=${3:-500}
seconds=${4:-20}
cargo build --release --quiet
bin=$(realpath "${CARGO_TARGET_DIR:-target}/release/shadowcast")
. scripts/throwaway_postgres.sh
port=${BENCH_POSTGRES_PORT:-54339}
throwaway_postgres "$port" logical
url="postgres://postgres@127.0.0.1:$port"
work=$(mktemp -d /tmp/shadowcast-pgbench.XXXXXX)
service_pid=""
finish() {
    if [ -n "$service_pid" ]; then kill "$service_pid" 2>/dev/null || true; fi
    stop_throwaway_postgres
    rm -rf "$work"
}
trap finish EXIT
psql() { command "$pg_bin/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }
now() { date +%s.%N; }

table="CREATE TABLE orders (id bigint PRIMARY KEY, customer uuid NOT NULL, total numeric(12,2),
    status text, note jsonb, created timestamptz, body text)"
for db in source copy_pipe tables_executor; do psql "$url/postgres" -c "CREATE DATABASE $db"; done
psql "$url/source" -c "$table" -c "INSERT INTO orders SELECT i, md5((i % 50000)::text)::uuid, i * 0.37,
    (ARRAY['new', 'paid', 'shipped'])[1 + i % 3], jsonb_build_object('n', i, 'gift', i % 2 = 0),
    '2026-01-01'::timestamptz + i * interval '1 second', repeat(md5(i::text), 2)
    FROM generate_series(1, $rows) i" -c "VACUUM ANALYZE orders"
psql "$url/copy_pipe" -c "$table"
bytes=$(psql "$url/source" -At -c "SELECT sum(pg_column_size(o.*)) FROM orders o")
echo "$rows rows, $bytes bytes ($(nproc) cores, PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}'))"

report() { # label, seconds
    awk -v label="$1" -v s="$2" -v rows="$rows" -v bytes="$bytes" -v base="${3:-0}" 'BEGIN {
        line = sprintf("%-34s %7.2f s %10.0f rows/s %7.1f MB/s", label, s, rows / s, bytes / s / 1e6)
        if (base > 0) line = line sprintf("   %.2fx the COPY pipe time", s / base)
        print line }'
}

started=$(now)
psql "$url/source" -c "COPY orders TO STDOUT (FORMAT binary)" | psql "$url/copy_pipe" -c "COPY orders FROM STDIN (FORMAT binary)"
pipe=$(awk -v a="$started" -v b="$(now)" 'BEGIN { print b - a }')
report "COPY TO STDOUT | COPY FROM STDIN" "$pipe"

# The access logs name every row once, as a log shipper would.
psql "$url/source" -c "\copy (SELECT '2026-11-30T10:00:00Z' AS ts, id::text AS key, 'orders' AS table_name,
    'read' AS op, 190 AS size_bytes FROM orders) TO '$work/access.csv' CSV HEADER"
"$bin" import "$work/access.csv" --out "$work/logs" >/dev/null 2>&1
"$bin" serve --logs "$work/logs" --models models --state-dir "$work/state" --listen 127.0.0.1:0 \
    --versions lsn --follow-seconds 0 >"$work/serve.out" 2>"$work/serve.err" &
service_pid=$!
for _ in $(seq 100); do grep -q "listening on" "$work/serve.out" 2>/dev/null && break; sleep 0.2; done
endpoint="http://$(sed -n 's/shadowcast listening on //p' "$work/serve.out")"

started=$(now)
pids=()
for i in $(seq "$executors"); do
    "$bin" executor --endpoint "$endpoint" --source "$url/source" --destination "$url/tables_executor" \
        --layout tables --without-capture --max-keys 1000 --id "bench-$i" --until-ready \
        2>"$work/executor-$i.err" &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
copied=$(awk -v a="$started" -v b="$(now)" 'BEGIN { print b - a }')
report "executor --layout tables (x$executors)" "$copied" "$pipe"

started=$(now)
"$bin" verify --source "$url/source" --destination "$url/tables_executor" --chunk 1000 >"$work/verify.out"
checked=$(awk -v a="$started" -v b="$(now)" 'BEGIN { print b - a }')
report "verify (both sides, 1000-key chunks)" "$checked" "$pipe"
tail -n 1 "$work/verify.out"

# Capture lag: pgbench updates random rows at a fixed rate while the
# capture follows the slot (polling every 100 ms, the default).
"$bin" capture --source "$url/source" --destination "$url/tables_executor" --endpoint "$endpoint" \
    2>"$work/capture.err" &
capture_pid=$!
sleep 2
printf '\\set id random(1, %s)\nUPDATE orders SET total = total + 1 WHERE id = :id;\n' "$rows" >"$work/write.sql"
"$pg_bin/pgbench" -n -f "$work/write.sql" -R "$rate" -T "$seconds" -c 2 "$url/source" >"$work/pgbench.out" 2>&1
sleep 2
kill -TERM "$capture_pid"
wait "$capture_pid" || true
echo "capture under $rate single-row updates/s for $seconds s (pgbench): $(tail -n 1 "$work/capture.err")"

#!/usr/bin/env bash
# What a restart of the service costs a migration under way: the same
# migration (generated logs, a SQLite source, two reference executors) run
# once without a restart and once with the service killed (SIGKILL) when
# half the keys are current and started again two seconds later. Reports
# the copies the executors made against the keys there are (a copy beyond
# one per key is a duplicate), the keys that were leased when it died, and
# the wall time.
#   benches/restart_cost.sh [EVENTS]      (default 400000)
set -euo pipefail
cd "$(dirname "$0")/.."
events="${1:-400000}"
cargo build --release --locked -q
bin="${CARGO_TARGET_DIR:-target}/release/shadowcast"
work="$(mktemp -d /tmp/shadowcast-restart.XXXXXX)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

"$bin" generate --out "$work/logs" --events "$events" --hours 24 --seed 7 > /dev/null
"$bin" seed --logs "$work/logs" --database "sqlite:$work/source.db" > /dev/null
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

metric() { # metric NAME LABELS: one sample from /metrics
    curl -s "http://127.0.0.1:$port/metrics" | awk -v name="shadowcast_$1$2" '$1 == name { print $2 }'
}
serve() {
    "$bin" serve --listen "127.0.0.1:$port" --logs "$work/logs" --state-dir "$work/state" \
        --follow-seconds 0 --lease-seconds 10 >> "$work/serve.out" 2>> "$work/serve.err" &
    serving=$!
    until curl -s "http://127.0.0.1:$port/metrics" > /dev/null; do sleep 0.1; done
}

run() { # run RESTART(yes|no)
    rm -rf "$work/state" "$work/destination.db" "$work"/executor-*.err
    serve
    local started total executors=() leased_at_kill=0
    started=$(date +%s.%N)
    total="$(metric keys '{location="total"}')"
    for i in 1 2; do
        "$bin" executor --endpoint "http://127.0.0.1:$port" --source "sqlite:$work/source.db" \
            --destination "sqlite:$work/destination.db" --max-keys 500 --until-ready \
            --retry-for 60s --id "executor-$i" 2> "$work/executor-$i.err" &
        executors+=($!)
    done
    if [ "$1" = yes ]; then
        while [ "$(metric keys '{location="current"}')" -lt $((total / 2)) ]; do sleep 0.05; done
        leased_at_kill="$(metric keys '{location="leased"}')"
        kill -9 "$serving"
        wait "$serving" 2> /dev/null || true
        sleep 2
        serve
    fi
    for pid in "${executors[@]}"; do wait "$pid"; done
    local ended copies
    ended=$(date +%s.%N)
    copies="$(cat "$work"/executor-*.err | awk '/ leases, / { sum += $3 } END { print sum }')"
    kill "$serving"
    wait "$serving" 2> /dev/null || true
    awk -v restart="$1" -v total="$total" -v copies="$copies" -v leased="$leased_at_kill" \
        -v seconds="$(awk -v a="$started" -v b="$ended" 'BEGIN { print b - a }')" 'BEGIN {
        printf "| %s | %d | %d | %d (%.2f%%) | %s | %.1f s |\n", restart, total, copies,
            copies - total, 100 * (copies - total) / total, restart == "yes" ? leased : "-", seconds
    }'
}

echo "restart cost: $events generated events, 2 executors of 500-key batches, leases of 10 s"
echo
echo "| restart at 50% | keys | copies made | duplicates | keys leased at the kill | wall time |"
echo "|---|---:|---:|---:|---:|---:|"
run no
run yes

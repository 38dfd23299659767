#!/usr/bin/env bash
# What a restart of the service costs a migration under way: the same
# migration (generated logs, a SQLite source, two reference executors) run
# once without a restart and once with the service killed (SIGKILL) when
# half the keys are current, at a moment with leases out, and started again
# two seconds later. Reports
# the copies the executors made against the keys there are (a copy beyond
# one per key is a duplicate), the leases out when it died, and the wall
# time.
# The figures are counts, not speeds: PROFILE=dev (a debug build) gives the
# same kind of answer without a release build.
#   benches/restart_cost.sh [EVENTS]      (default 400000; PROFILE=release)
set -euo pipefail
cd "$(dirname "$0")/.."
events="${1:-400000}"
profile="${PROFILE:-release}"
cargo build --profile "$profile" --locked -q
folder="$profile"
if [ "$profile" = dev ]; then folder=debug; fi
bin="${CARGO_TARGET_DIR:-target}/$folder/shadowcast"
work="$(mktemp -d /tmp/shadowcast-restart.XXXXXX)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

"$bin" generate --out "$work/logs" --events "$events" --hours 24 --seed 7 > /dev/null 2>&1
"$bin" seed --logs "$work/logs" --database "sqlite:$work/source.db" > /dev/null 2>&1
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
    total=$(( $(metric keys '{location="source_only"}') + $(metric keys '{location="current"}') + $(metric keys '{location="stale"}') ))
    for i in 1 2; do
        "$bin" executor --endpoint "http://127.0.0.1:$port" --source "sqlite:$work/source.db" \
            --destination "sqlite:$work/destination.db" --max-keys 500 --until-ready \
            --retry-for 60s --id "executor-$i" 2> "$work/executor-$i.err" &
        executors+=($!)
    done
    if [ "$1" = yes ]; then
        while [ "$(metric keys '{location="current"}')" -lt $((total / 2)) ]; do sleep 0.05; done
        # The worst moment: leases out.
        until [ "$(metric live_leases '')" -gt 0 ]; do sleep 0.01; done
        leased_at_kill="$(metric live_leases '')"
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

echo "restart cost: $events generated events, 2 executors of 500-key batches, leases of 10 s ($profile build)"
echo
echo "| restart at 50% | keys | copies made | duplicates | leases out at the kill | wall time |"
echo "|---|---:|---:|---:|---:|---:|"
run no
run yes

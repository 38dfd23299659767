#!/usr/bin/env bash
# The protocol of ../shared/EVALUATION.md on every real trace: import, train
# on the history up to the cut-off T (the row at 75% of the trace), evaluate
# on (T, last row], at the trace's own time scale and stretched so that the
# whole trace spans 96 hours. Prints one Markdown table: per trace and time
# scale, the best heuristic, each model and the oracle (share of the
# horizon's accesses captured by 10% of the keys, and of its bytes read by
# 10% of the bytes), and the share of the heuristic-to-oracle gap closed.
#
# usage: benches/model_traces.sh [EXTRA.csv[.gz] ...]
# env: BENCH_DIR (default /tmp/shadowcast-traces), TRACES (default ../shared/data/traces),
#      MODELS (default "logistic forest logistic-guarded forest-guarded": a model kind, alone
#      or `-guarded` by a held-out cut-off against the best counter, see src/model/guard.rs),
#      FEATURES (cargo features to build with, e.g. gbdt-peer for kind gbdt-perpetual)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${BENCH_DIR:-/tmp/shadowcast-traces}
traces=${TRACES:-../shared/data/traces}
kinds=${MODELS:-logistic forest logistic-guarded forest-guarded}
cargo build --release --quiet ${FEATURES:+--features "$FEATURES"}
bin=${CARGO_TARGET_DIR:-target}/release/shadowcast
rm -rf "$dir" && mkdir -p "$dir"

# name, rows, T and the last row's time (ms from the first row), and the
# factor that stretches the trace to 96 hours.
protocol_times() {
    python3 - "$1" <<'EOF'
import csv, gzip, sys
path = sys.argv[1]
opener = gzip.open if path.endswith(".gz") else open
with opener(path, "rt") as f:
    ts = [int(float(row[0])) for row in csv.reader(f) if row and row[0] != "ts_ms"]
n = len(ts)
cut = ts[int(n * 0.75) - 1] - ts[0]
end = ts[-1] - ts[0]
stretch = 96 * 3600 * 1000 / end if end > 0 else 0
print(n, cut, end, repr(stretch))
EOF
}

start=2026-11-01T00:00:00Z
start_ms=$(date -u -d "$start" +%s)000
for trace in "$traces"/*.csv.gz "$@"; do
    name=$(basename "$trace"); name=${name%%.*}
    read -r rows cut_ms end_ms stretch <<<"$(protocol_times "$trace")"
    for scale in native 96h; do
        factor=1
        if [ "$scale" = 96h ]; then factor=$stretch; fi
        run="$dir/$name-$scale"
        if [ "$end_ms" -le 0 ] || [ "$cut_ms" -ge "$end_ms" ]; then
            echo "$name $scale: skipped, the trace has no time span after its cut-off" >"$run.skipped"
            continue
        fi
        "$bin" import "$trace" --out "$run/logs" --map ts=ts_ms --map table=table --ts-format ms \
            --rebase-to "$start" --time-scale "$factor" >/dev/null 2>"$run.import.log"
        read -r as_of horizon <<<"$(python3 -c "
import datetime, sys
cut = round($cut_ms * $factor); end = round($end_ms * $factor)
t = datetime.datetime.fromtimestamp($start_ms / 1000 + cut / 1000, datetime.timezone.utc)
print(t.strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3] + 'Z', f'{max(1, end - cut)}ms')")"
        models=()
        for model in $kinds; do
            guard=--no-guard
            if [ "${model%-guarded}" != "$model" ]; then guard=; fi
            "$bin" train --logs "$run/logs" --as-of "$as_of" --horizon "$horizon" --cutoffs 3 \
                --kind "${model%-guarded}" $guard --out "$run/$model" >/dev/null 2>"$run.$model.train.log"
            models+=(--model "$run/$model")
        done
        "$bin" evaluate --logs "$run/logs" --as-of "$as_of" --horizon "$horizon" "${models[@]}" \
            >"$run.evaluate.txt" 2>"$run.evaluate.log"
        echo "$name $rows rows, $scale: T=$as_of, horizon $horizon" >"$run.params"
    done
done

python3 - "$dir" $kinds <<'EOF'
import glob, math, os, statistics, sys
directory, kinds = sys.argv[1], sys.argv[2:]
heuristics = ("random", "most-recent", "most-frequent")
rows, gaps, byte_gaps, margins = [], {k: [] for k in kinds}, {k: [] for k in kinds}, {k: [] for k in kinds}
for path in sorted(glob.glob(f"{directory}/*.evaluate.txt")):
    run = os.path.basename(path)[: -len(".evaluate.txt")]
    keys, nbytes = {}, {}
    for line in open(path):
        parts = line.split()
        if len(parts) == 15 and parts[5] == "|" and parts[0] != "method":
            keys[parts[0]] = float(parts[8])
            nbytes[parts[0]] = float(parts[12]) if parts[12] != "NaN" else math.nan
    def method_of(name):
        for method in keys:
            if method == name or method.startswith(name + "-v"):
                return method
    heuristic = max((m for m in keys if m in heuristics or m.startswith("decayed-")), key=keys.get)
    byte_heuristic = max((m for m in nbytes if m in heuristics or m.startswith("decayed-")), key=lambda m: nbytes[m])
    oracle = keys["oracle"]
    cells = [run, f"{heuristic} {100 * keys[heuristic]:.1f}"]
    for kind in kinds:
        method = method_of(kind)
        value = keys[method]
        gap = (value - keys[heuristic]) / (oracle - keys[heuristic]) if oracle > keys[heuristic] else math.nan
        byte_gap = math.nan
        if not math.isnan(nbytes["oracle"]) and nbytes["oracle"] > nbytes[byte_heuristic]:
            byte_gap = (nbytes[method] - nbytes[byte_heuristic]) / (nbytes["oracle"] - nbytes[byte_heuristic])
            byte_gaps[kind].append(byte_gap)
        gaps[kind].append(gap)
        margins[kind].append(100 * (value - keys[heuristic]))
        cells.append(f"{100 * value:.1f} ({100 * gap:+.0f}%)" + ("" if math.isnan(byte_gap) else f" / bytes {100 * byte_gap:+.0f}%"))
    cells.append(f"{100 * oracle:.1f}")
    rows.append(cells)
print("| trace, time scale | best heuristic (capture at 10% of keys) | " + " | ".join(kinds) + " | oracle |")
print("|---|---|" + "---|" * len(kinds) + "---|")
for cells in rows:
    print("| " + " | ".join(cells) + " |")
print()
print("Model cells: capture % (share of the key-budget gap closed) / share of the byte-budget gap closed.")
for kind in kinds:
    valid = [g for g in gaps[kind] if not math.isnan(g)]
    worst = min(margins[kind]) if margins[kind] else math.nan
    line = f"- {kind}: median gap closed {100 * statistics.median(valid):+.1f}% over {len(valid)} runs"
    if byte_gaps[kind]:
        line += f", by bytes {100 * statistics.median(byte_gaps[kind]):+.1f}% over {len(byte_gaps[kind])}"
    line += f"; worst margin to the best heuristic {worst:+.2f} points"
    print(line)
for skipped in sorted(glob.glob(f"{directory}/*.skipped")):
    print("- " + open(skipped).read().strip())
EOF

#!/usr/bin/env bash
# Where the CPU goes while 8 executors lease and acknowledge in the compact
# form: runs `service_throughput KEYS quick`, records the whole machine
# with perf (300 Hz, DWARF call graphs) through the compact row, and
# splits the samples by role. In the benchmark's process: the executors'
# (clients') tokio work, the service's tokio work (gRPC server and
# handlers), the scheduler's owner, the state writer and the checkpoint;
# then the bare peer's process, and everything else. Samples are taken in
# 100 ms slices; a slice where the scheduler's owner and the state writer
# were sampled at least 3 times counts as the service's window, the others
# as the peer's. Figures are in cores (of the machine's `nproc`); idle is
# what is left.
#   benches/service_cpu.sh [KEYS]     (default 20000000; needs perf, and
#   perf_event_paranoid <= 0 or root)
set -euo pipefail
cd "$(dirname "$0")/.."
keys="${1:-20000000}"
hz=300
bench="$(cargo bench --bench service_throughput --no-run 2>&1 |
    sed -n 's/.*Executable benches\/service_throughput.rs (\(.*\))/\1/p')"
work="$(mktemp -d /tmp/shadowcast-cpu.XXXXXX)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

"$bench" "$keys" quick --bench > "$work/out.txt" 2>&1 &
pid=$!
until grep -q "^ per-key " "$work/out.txt"; do
    kill -0 "$pid" || { cat "$work/out.txt"; exit 1; }
    sleep 0.2
done
# The compact row's peer and service start now: 4 windows of 1 s each, the
# peer's between them, after the copy of the state is opened.
peer=""
until [ -n "$peer" ]; do peer="$(pgrep -P "$pid" || true)"; sleep 0.05; done
perf record -q -a -F "$hz" --call-graph dwarf,8192 -o "$work/perf.data" -- sleep 14 2> /dev/null
wait "$pid"
grep -E "^ *(acks|compact) " "$work/out.txt"
cat > "$work/split.py" <<'EOF'
import collections
import sys

hz, cores = int(sys.argv[1]), int(sys.argv[2])
bench, peer = sys.argv[3], sys.argv[4]
SLICE = 0.1
CLIENT = ("common::executors", "tonic::client", "hyper::client", "h2::client", "proto::h2::client")
# Not `shadowcast::service` alone: the generated message types live under
# it, and the clients decode them too.
SERVER = ("shadowcast::service::executor", "shadowcast::service::owner", "ExecutorApi",
          "tonic::server", "hyper::server", "h2::server", "proto::h2::server")
SERVICE_THREADS = {"scheduler": "scheduler's owner", "state-writer": "state writer", "state-checkpoin": "checkpoint"}


def samples(lines):
    """(process id, thread name, time, stack frames) of each sample."""
    comm, frames = None, []
    for line in lines:
        if not line.strip():
            if comm is not None:
                yield pid, comm, time, frames
            comm, frames = None, []
        elif line[0] not in " \t":
            fields = line.split()
            comm, time = " ".join(fields[:-2]), float(fields[-1].rstrip(":"))
            pid = fields[-2].split("/")[0]
        else:
            frames.append(line.strip())
    if comm is not None:
        yield pid, comm, time, frames


def role(pid, comm, frames):
    if pid == peer:
        return "the bare peer's process"
    if pid != bench:
        return "other processes"
    if comm in SERVICE_THREADS:
        return SERVICE_THREADS[comm]
    if not comm.startswith("tokio"):
        return "other threads"
    stack = " ".join(frames)
    if "LocationMap::open" in stack:
        return "opening the state"
    if any(name in stack for name in CLIENT):
        return "clients' tokio work"
    if any(name in stack for name in SERVER):
        return "service's tokio work"
    if "prost::" in stack:
        return "message coding, side unknown"
    return "tokio, no frame named"


by_slice = collections.defaultdict(collections.Counter)
for pid, comm, time, frames in samples(sys.stdin):
    by_slice[int(time / SLICE)][role(pid, comm, frames)] += 1
# A slice is the service's when its owner and writer were sampled a few
# times (between windows they only wake for the timer's steps).
def serving(counts):
    return counts["scheduler's owner"] + counts["state writer"] >= 3


first = min((s for s, c in by_slice.items() if serving(c)), default=None)
if first is None:
    sys.exit("no service window recorded")
windows = {"service": collections.Counter(), "peer": collections.Counter()}
slices = collections.Counter()
for s in range(first, max(by_slice) + 1):
    counts = by_slice.get(s, collections.Counter())
    if "opening the state" in counts:
        continue
    kind = "service" if serving(counts) else "peer"
    windows[kind].update(counts)
    slices[kind] += 1
roles = ["clients' tokio work", "service's tokio work", "scheduler's owner", "state writer",
         "checkpoint", "message coding, side unknown", "tokio, no frame named", "other threads",
         "the bare peer's process", "other processes"]
print(f"cores busy, mean over 100 ms slices ({slices['service']} in the service's windows, {slices['peer']} in the peer's)")
print(f"{'':30} {'service windows':>16} {'peer windows':>13}")
for name in roles + ["idle"]:
    cells = []
    for kind in ("service", "peer"):
        seconds = slices[kind] * SLICE or 1
        busy = sum(windows[kind].values()) / hz / seconds
        value = cores - busy if name == "idle" else windows[kind][name] / hz / seconds
        cells.append(value)
    print(f"{name:30} {cells[0]:16.2f} {cells[1]:13.2f}")
EOF
perf script -i "$work/perf.data" -F comm,pid,tid,time,ip,sym 2> /dev/null |
    python3 "$work/split.py" "$hz" "$(nproc)" "$pid" "$peer"

#!/usr/bin/env bash
# Rebuilds the shipped model, models/default: the demo's sample logs (the
# oltp profile, 1M events over 72 hours from 2026-11-01, seed 1), a guarded
# logistic model with a 6-hour horizon trained up to 2026-11-03T12:00Z on
# four rolling cut-offs, promoted. Run it when the feature set changes.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-target}/release/shadowcast
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
"$bin" generate --out "$logs" --profile oltp --events 1000000 --hours 72 --start 2026-11-01 --seed 1
rm -rf models/default
"$bin" train --logs "$logs" --as-of 2026-11-03T12:00:00Z --horizon 6h --cutoffs 4 --kind logistic \
    --out models/default --promote

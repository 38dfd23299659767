#!/usr/bin/env bash
# The project's test command: installs what the tests need beyond cargo
# (DuckDB's Python package, for the SQL-equality test), then runs them.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c "import duckdb" 2>/dev/null; then
    echo "installing duckdb (Python) for the SQL-equality test"
    python3 -m pip install --quiet --disable-pip-version-check "duckdb==2.0.0"
fi

if cargo fmt --version >/dev/null 2>&1; then
    cargo fmt --all -- --check
fi
cargo test --locked

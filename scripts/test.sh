#!/usr/bin/env bash
# The project's test command: installs what the tests need beyond cargo
# (the wasm32 target, for building the example policies; DuckDB's Python
# package, for the SQL-equality test; a Java runtime and pyspark, for the
# same SQL on Spark in local mode; fontconfig, FreeType and a sans-serif
# font, for the evaluation chart; PostgreSQL, started as a private throwaway
# server with wal_level=logical for the migration and change-capture tests,
# and one without it for the test that capture refuses it), then runs them.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! pkg-config --exists fontconfig freetype2 2>/dev/null || [ -z "$(fc-list 2>/dev/null)" ]; then
    echo "installing fontconfig, FreeType and DejaVu fonts (Debian) for the evaluation chart"
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        pkg-config libfontconfig1-dev libfreetype-dev fontconfig fonts-dejavu-core >/dev/null
fi

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    echo "adding the wasm32-unknown-unknown target for the example policies"
    rustup target add wasm32-unknown-unknown
fi

if ! python3 -c "import duckdb" 2>/dev/null; then
    echo "installing duckdb (Python) for the SQL-equality test"
    python3 -m pip install --quiet --disable-pip-version-check "duckdb==2.0.0"
fi

sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
if ! command -v java >/dev/null 2>&1; then
    echo "installing a Java runtime (Debian) for the Spark test"
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless >/dev/null
fi
if ! python3 -c "import pyspark" 2>/dev/null; then
    echo "installing pyspark (Python) for the Spark test"
    python3 -m pip install --quiet --disable-pip-version-check "pyspark==4.0.1"
fi

if [ -z "${SHADOWCAST_TEST_POSTGRES:-}" ]; then
    . scripts/throwaway_postgres.sh
    pg_port="${SHADOWCAST_TEST_POSTGRES_PORT:-54329}"
    # The main server decodes its write-ahead log (wal_level=logical) for
    # the change-capture tests; a second one does not, for the test that
    # capture refuses such a source.
    throwaway_postgres "$pg_port" logical
    throwaway_postgres "$((pg_port + 1))" replica
    export SHADOWCAST_TEST_POSTGRES="postgres://postgres@127.0.0.1:$pg_port/postgres"
    export SHADOWCAST_TEST_POSTGRES_WITHOUT_LOGICAL="postgres://postgres@127.0.0.1:$((pg_port + 1))/postgres"
fi

if cargo fmt --version >/dev/null 2>&1; then
    cargo fmt --all -- --check
    cargo fmt --manifest-path policies/examples/Cargo.toml --all -- --check
fi
cargo test --locked --workspace "$@"

#!/usr/bin/env bash
# The project's test command: installs what the tests need beyond cargo
# (the wasm32 target, for building the example policies; DuckDB's Python
# package, for the SQL-equality test; fontconfig, FreeType and a sans-serif
# font, for the evaluation chart), then runs them.
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

if cargo fmt --version >/dev/null 2>&1; then
    cargo fmt --all -- --check
    cargo fmt --manifest-path policies/examples/Cargo.toml --all -- --check
fi
cargo test --locked --workspace

#!/usr/bin/env bash
# Runs every iotchain test: formatting, lints, the Rust suites (unit, property, integration,
# crash/restart), the independent-client tests in Python (pycose + cbor2 from PyPI) and the
# real Ethereum clients in JavaScript (ethers v6, solc, @ethereumjs/trie, ws from npm).
# Installs what the tests need on first use; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n==> %s\n' "$*"; }

step "python test environment (.venv: pycose, cbor2<6, pytest)"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "rust tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
  cargo test --workspace --doc --quiet
else
  cargo test --workspace --no-fail-fast
fi

step "independent client tests (pycose)"
cargo build --quiet --bin iotchain
IOTCHAIN_BIN="$root/target/debug/iotchain" .venv/bin/python -m pytest -q tests/python

step "real Ethereum clients (npm ci: ethers v6, solc, @ethereumjs/trie, ws; node --test)"
(cd tests/eth && npm ci --no-audit --no-fund --loglevel=error)
(cd tests/eth && IOTCHAIN_BIN="$root/target/debug/iotchain" node --test eth.test.js)

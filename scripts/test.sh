#!/usr/bin/env bash
# Runs every iotchain test: formatting, lints, the Rust suites (unit, property, integration,
# crash/restart), the independent-client tests in Python (pycose + cbor2 + paho-mqtt from
# PyPI, a real Mosquitto broker from Debian's `mosquitto` package for the MQTT bridge, and a real
# PostgreSQL from Debian's `postgresql` for `iotchain export postgres`) and
# the real Ethereum clients in JavaScript (ethers v6, solc, @ethereumjs/trie, ws from npm), and
# the explorer in a real browser (Debian's `chromium`, headless, driven by playwright-core).
# Installs what the tests need on first use; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n==> %s\n' "$*"; }

step "mosquitto (the MQTT broker of the bridge's end-to-end tests)"
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq mosquitto mosquitto-clients
fi

step "postgresql (the server of the exporter's end-to-end test; the test starts its own in a temp dir)"
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql
fi

step "node and npm (the Ethereum-client tests run ethers and solc from npm)"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm
fi

step "chromium (the explorer's browser tests drive it headless with playwright-core)"
if [ ! -x /usr/bin/chromium ]; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium
fi

step "python test environment (.venv: pycose, cbor2<6, paho-mqtt, pytest)"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors; clippy.toml bans wall clocks and threads)"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "cargo doc (public items documented, links resolve; warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

step "build (once: libraries, the iotchain binary, the C library, every test binary)"
# One cargo invocation resolves features once, so the steps below reuse this build instead of
# each recompiling half the dependency tree with its own feature set.
cargo build --workspace --all-targets

step "rust tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
  cargo test --workspace --doc --quiet
else
  cargo test --workspace --no-fail-fast
fi

step "C example of the device SDK (static library + cbindgen header, system gcc)"
gcc -std=c11 -Wall -Wextra -Werror -I crates/device-ffi/include examples/c/sign_reading.c \
  target/debug/libiotchain_device_ffi.a -lpthread -ldl -lm -o target/debug/sign_reading
git diff --exit-code -- crates/device-ffi/include/iotchain_device.h \
  || { echo "the committed C header is stale: commit the regenerated one"; exit 1; }

step "npm ci in tests/eth (ethers v6, solc, @ethereumjs/trie, ws: the Ethereum tests and the fault tests' signer)"
(cd tests/eth && npm ci --no-audit --no-fund --loglevel=error)

step "independent client tests (pycose, the C device, several validators, paho-mqtt with Mosquitto)"
IOTCHAIN_BIN="$root/target/debug/iotchain" IOTCHAIN_C_EXAMPLE="$root/target/debug/sign_reading" \
  .venv/bin/python -m pytest -q tests/python

step "real Ethereum clients (ethers v6, solc, @ethereumjs/trie, ws; node --test)"
(cd tests/eth && IOTCHAIN_BIN="$root/target/debug/iotchain" node --test eth.test.js)

step "explorer in a real browser (chromium headless, playwright-core; node --test)"
(cd tests/explorer && npm ci --no-audit --no-fund --loglevel=error \
  && IOTCHAIN_BIN="$root/target/debug/iotchain" node --test --test-timeout=300000 explorer.test.mjs testnet.test.mjs)
echo "screenshots of the explorer's pages: target/explorer-screenshots/"

step "the explorer's proof checker against the spec's vectors and real proofs (node --test)"
node --test crates/rpc/explorer/verify.test.mjs

#!/usr/bin/env bash
# The long forms of the fault tests (the test command runs short forms of each in
# tests/python/test_faults.py). On the 2-core reference machine, with a release binary:
#   crash loop, devnet node, 100 SIGKILLs ........ about 5 minutes
#   crash loop, validator 1 of 4, 100 SIGKILLs ... about 8 minutes
#   hostile load, 120 s .......................... about 3 minutes
#   damaged files (each kind of file) ............ about 1 minute
# Usage: scripts/faults.sh [--kills N] [--seconds S]   (IOTCHAIN_BIN picks the binary;
# default: target/release/iotchain, built if missing). Exits non-zero if anything
# acknowledged was lost, a restart needed a human, or the legitimate device was refused.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
kills=100
seconds=120
while [ $# -gt 0 ]; do
  case "$1" in
    --kills) kills=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "unknown argument $1 (see --help)"; exit 2 ;;
  esac
done
if [ -z "${IOTCHAIN_BIN:-}" ]; then
  cargo build --release -p iotchain-cli
  export IOTCHAIN_BIN="$root/target/release/iotchain"
fi
[ -x .venv/bin/python ] || { python3 -m venv .venv; .venv/bin/python -m pip install -q -r tests/python/requirements.txt; }
(cd tests/eth && [ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error)
status=0
cd tests/python
echo "==> crash loop, devnet node, $kills SIGKILLs"
../../.venv/bin/python crashloop.py --kills "$kills" || status=1
echo "==> crash loop, validator 1 of 4, $kills SIGKILLs"
../../.venv/bin/python crashloop.py --kills "$kills" --validators 4 || status=1
echo "==> hostile load, $seconds s"
../../.venv/bin/python hostile.py --seconds "$seconds" || status=1
echo "==> damaged files"
../../.venv/bin/python -m pytest -q test_faults.py -k damaged || status=1
exit $status

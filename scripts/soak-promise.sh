#!/usr/bin/env bash
# The "a 202 is a promise" scenarios (tests/python/test_promise.py: the next leaders killed,
# every validator killed, stopped and restarted in another order, the acknowledging node
# killed after its 202, readings out of order across gateways) in a loop, beside a CPU burner
# on every core, as an adversary would run them. Each iteration prints what it saw
# (acknowledged, lost, included twice, how long the chain took to resume).
#
#   scripts/soak-promise.sh [ITERATIONS] [--no-burner]
#
# Duration on 2 cores: about 2 minutes per iteration under the burner, 40 minutes for the
# default 20. The test command runs the same scenarios once. Exits non-zero if any iteration
# failed; the logs of a failed run stay in target/soak-promise/.
set -euo pipefail
cd "$(dirname "$0")/.."
iterations=20
burner=1
for arg in "$@"; do
  case "$arg" in
    --no-burner) burner=0 ;;
    -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
    *) iterations=$arg ;;
  esac
done
[ -x .venv/bin/python ] || { echo "run scripts/test.sh once first (it creates .venv)"; exit 1; }
cargo build --quiet --bin iotchain
out=target/soak-promise
mkdir -p "$out"
rm -f "$out"/iteration-*.log
burners=()
cleanup() { for p in "${burners[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
if [ "$burner" = 1 ]; then
  for _ in $(seq "$(nproc)"); do
    (while :; do :; done) &
    burners+=($!)
  done
  echo "CPU burner: ${#burners[@]} busy loops"
fi
failed=0
for i in $(seq "$iterations"); do
  log="$out/iteration-$i.log"
  started=$(date +%s)
  if IOTCHAIN_BIN="$PWD/target/debug/iotchain" .venv/bin/python -m pytest -q -s -p no:cacheprovider \
      --basetemp="$out/tmp-$i" tests/python/test_promise.py >"$log" 2>&1; then
    verdict=passed
    rm -rf "$out/tmp-$i"
  else
    verdict=FAILED
    failed=$((failed + 1))
  fi
  echo "[$i/$iterations] $verdict in $(( $(date +%s) - started )) s"
  grep -oE "(leaders|restarts): acknowledged .*" "$log" | sed 's/^/    /' || true
done
echo "$((iterations - failed)) of $iterations iterations passed"
grep -ohE "(leaders|restarts): acknowledged [0-9]+, lost [0-9]+" "$out"/iteration-*.log |
  awk '{n[$1]++; a[$1] += $3; l[$1] += $5} END {for (k in n) printf "%s %d runs: acknowledged %d, lost %d\n", k, n[k], a[k], l[k]}' || true
[ "$failed" = 0 ]

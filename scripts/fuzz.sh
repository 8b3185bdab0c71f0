#!/usr/bin/env bash
# The fuzzing campaign: runs every `cargo fuzz` target (or those named) for a fixed time each,
# one after the other, on the corpus kept in fuzz/corpus/<target>/, then minimises each corpus
# and prints, per target, the runs executed, the coverage reached, the corpus size and any
# crash. Exits non-zero when a target crashed (the failing input is in fuzz/artifacts/).
# See fuzz/README.md for the campaign, reproducing a crash and turning it into a test.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/fuzz.sh [--minutes N] [--no-cmin] [--reseed] [--sanitizer S] [--list] [TARGET...]

Runs each fuzz target (default: all of `cargo fuzz list`) for N minutes (default 30), one
target at a time and one fuzzer process at a time, on its corpus in fuzz/corpus/<target>/.
An empty corpus is first seeded with the target's fixtures (valid, signed inputs). At the end
every corpus that ran is minimised (`cargo fuzz cmin`) and a summary is printed.

Options:
  --minutes N      minutes per target (default 30; a fraction such as 0.5 is allowed)
  --no-cmin        do not minimise the corpora at the end
  --reseed         add the fixtures' seeds to every corpus, not only to an empty one (after
                   a change of a format or of the fixtures: see fuzz/README.md)
  --sanitizer S    address (default), none, leak, memory or thread (cargo fuzz --sanitizer)
  --list           print the targets and exit
  -h, --help       this help

Needs a nightly toolchain (`rustup toolchain install nightly`) and cargo-fuzz
(`cargo install cargo-fuzz`). Everything is built in fuzz/target. On a shared machine run it
as `nice -n 19 scripts/fuzz.sh ...` (children inherit the niceness).

Exit status: 0 when no target crashed, 1 when one did (see the summary and the artifact
paths), 2 on a usage or build error.
EOF
}

minutes=30
cmin=1
reseed=0
sanitizer=address
list=0
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes)
      [ $# -ge 2 ] || { echo "--minutes needs a value" >&2; exit 2; }
      minutes="$2"
      shift 2
      ;;
    --minutes=*) minutes="${1#--minutes=}"; shift ;;
    --no-cmin) cmin=0; shift ;;
    --reseed) reseed=1; shift ;;
    --sanitizer)
      [ $# -ge 2 ] || { echo "--sanitizer needs a value" >&2; exit 2; }
      sanitizer="$2"
      shift 2
      ;;
    --sanitizer=*) sanitizer="${1#--sanitizer=}"; shift ;;
    --list) list=1; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done

if ! [[ "$minutes" =~ ^[0-9]+([.][0-9]+)?$ ]]; then
  echo "--minutes takes a number of minutes, not $minutes" >&2
  exit 2
fi
seconds=$(awk -v m="$minutes" 'BEGIN { s = int(m * 60 + 0.5); if (s < 1) s = 1; print s }')

cd "$(dirname "$0")/.."
root=$(pwd)
fuzz="$root/fuzz"

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "needs a nightly toolchain: rustup toolchain install nightly" >&2
  exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "needs cargo-fuzz: cargo install cargo-fuzz" >&2
  exit 2
fi

mapfile -t all < <(cd "$fuzz" && cargo +nightly fuzz list)
if [ "$list" = 1 ]; then
  printf '%s\n' "${all[@]}"
  exit 0
fi
if [ ${#targets[@]} -eq 0 ]; then
  targets=("${all[@]}")
fi
for t in "${targets[@]}"; do
  if ! printf '%s\n' "${all[@]}" | grep -qx -- "$t"; then
    echo "no fuzz target $t (targets: ${all[*]})" >&2
    exit 2
  fi
done

stamp=$(date -u +%Y%m%dT%H%M%SZ)
logs="$fuzz/target/campaign/$stamp"
mkdir -p "$logs"

step() { printf '\n==> %s\n' "$*"; }

# Built once, then the binaries run directly: the campaign fuzzes one build of the tree even
# if the sources change meanwhile.
step "build every target (cargo +nightly fuzz build, sanitizer $sanitizer)"
if ! (cd "$fuzz" && cargo +nightly fuzz build --sanitizer "$sanitizer") >"$logs/build.log" 2>&1; then
  tail -n 40 "$logs/build.log" >&2
  echo "build failed (full log: $logs/build.log)" >&2
  exit 2
fi
triple=$(rustc +nightly -vV | sed -n 's/^host: //p')
bin="$fuzz/target/$triple/release"
# As cargo fuzz runs them.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0}"

# count_files DIR; size_kib DIR (the bytes of the files, not the disk blocks they take)
count_files() { find "$1" -type f 2>/dev/null | wc -l | tr -d ' '; }
size_kib() { du -sk --apparent-size "$1" 2>/dev/null | cut -f1; }

declare -A runs execs_per_s cov ft result artifact
crashed=0
for t in "${targets[@]}"; do
  corpus="$fuzz/corpus/$t"
  mkdir -p "$corpus" "$fuzz/artifacts/$t"
  if [ "$reseed" = 1 ] || [ "$(count_files "$corpus")" = 0 ]; then
    step "$t: seed the corpus with the fixtures"
    seeds="$fuzz/target/campaign/seeds-$t"
    rm -rf "$seeds"
    IOTCHAIN_FUZZ_SEEDS="$seeds" "$bin/$t" -runs=0 >"$logs/$t.seed.log" 2>&1 \
      || { cat "$logs/$t.seed.log" >&2; exit 2; }
    # Named by content, as libFuzzer names its inputs: reseeding adds nothing twice.
    for f in "$seeds"/*; do
      cp "$f" "$corpus/$(sha1sum "$f" | cut -c1-40)"
    done
    rm -rf "$seeds"
  fi
  dict=()
  if [ -f "$fuzz/dicts/$t.dict" ]; then
    dict=("-dict=$fuzz/dicts/$t.dict")
  fi
  step "$t: fuzz for ${minutes} min ($(count_files "$corpus") inputs in the corpus)"
  before=$(date +%s)
  status=0
  # One process (no -jobs, no -fork). -timeout: an input that takes 10 s is a finding too.
  (cd "$fuzz" && "$bin/$t" -artifact_prefix="$fuzz/artifacts/$t/" -max_total_time="$seconds" \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "${dict[@]}" "$corpus") \
    >"$logs/$t.log" 2>&1 || status=$?
  elapsed=$(($(date +%s) - before))
  # Executions and speed: the final stats, or the last status line after a crash.
  n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log" | tail -n 1)
  if [ -z "$n" ]; then
    n=$(sed -n 's/^#\([0-9][0-9]*\).*/\1/p' "$logs/$t.log" | tail -n 1)
  fi
  runs[$t]=${n:-0}
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logs/$t.log" | tail -n 1)
  if [ -z "$speed" ] && [ "$elapsed" -gt 0 ]; then
    speed=$((${runs[$t]} / elapsed))
  fi
  execs_per_s[$t]=${speed:-0}
  last=$(grep -E '^#[0-9]+.*cov: ' "$logs/$t.log" | tail -n 1 || true)
  cov[$t]=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft[$t]=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  if [ "$status" = 0 ]; then
    result[$t]=ok
  else
    crashed=1
    a=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$logs/$t.log" | tail -n 1)
    artifact[$t]=${a:-"(see $logs/$t.log)"}
    kind=$(grep -m1 -oE 'ERROR: libFuzzer: [a-z-]+|panicked at [^:]+:[0-9]+' "$logs/$t.log" || true)
    result[$t]="CRASH (exit $status${kind:+: $kind})"
    echo "$t crashed: ${artifact[$t]}" >&2
    grep -m1 -A3 'panicked at' "$logs/$t.log" >&2 || true
  fi
  echo "$t: ${runs[$t]} runs, ${execs_per_s[$t]} exec/s, cov ${cov[$t]:-?}, ft ${ft[$t]:-?}: ${result[$t]}"
done

if [ "$cmin" = 1 ]; then
  for t in "${targets[@]}"; do
    corpus="$fuzz/corpus/$t"
    step "$t: minimise the corpus ($(count_files "$corpus") inputs, $(size_kib "$corpus") KiB)"
    # What `cargo fuzz cmin` does: merge into an empty directory, then swap it in.
    merged="$fuzz/target/campaign/cmin-$t"
    rm -rf "$merged"
    mkdir -p "$merged"
    if (cd "$fuzz" && "$bin/$t" -merge=1 -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$fuzz/artifacts/$t/" "$merged" "$corpus") >"$logs/$t.cmin.log" 2>&1 \
      && [ "$(count_files "$merged")" -gt 0 ]; then
      rm -rf "$corpus"
      mv "$merged" "$corpus"
      echo "$t: $(count_files "$corpus") inputs, $(size_kib "$corpus") KiB"
    else
      rm -rf "$merged"
      echo "$t: cmin failed (see $logs/$t.cmin.log); the corpus is left as it was" >&2
    fi
  done
fi

step "summary (${minutes} min per target; logs in ${logs#"$root"/})"
printf '%-14s %8s %12s %8s %7s %7s %8s %9s  %s\n' \
  target seconds runs exec/s cov ft corpus KiB result
for t in "${targets[@]}"; do
  corpus="$fuzz/corpus/$t"
  printf '%-14s %8s %12s %8s %7s %7s %8s %9s  %s\n' "$t" "$seconds" "${runs[$t]}" \
    "${execs_per_s[$t]}" "${cov[$t]:-?}" "${ft[$t]:-?}" "$(count_files "$corpus")" \
    "$(size_kib "$corpus")" "${result[$t]}"
done
printf 'corpus total: %s files, %s KiB\n' "$(count_files "$fuzz/corpus")" "$(size_kib "$fuzz/corpus")"
if [ "$crashed" = 1 ]; then
  echo
  echo "crashes (reproduce: cd fuzz && cargo +nightly fuzz run <target> <artifact>, see fuzz/README.md):"
  for t in "${targets[@]}"; do
    if [ -n "${artifact[$t]:-}" ]; then
      echo "  $t: ${artifact[$t]}"
    fi
  done
  exit 1
fi

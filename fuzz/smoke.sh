#!/usr/bin/env bash
# Build every fuzz target, then run each for a bounded time (first argument, seconds, default 20)
# starting from its committed seed corpus. Exits non-zero if any target crashes, hangs or fails
# to build, and prints a summary table: executions run and coverage reached (libFuzzer's
# `stat::number_of_executed_units` and the `cov:`/`ft:` of its last status line) per target.
# New corpus entries go to a temporary directory, so fuzz/corpus/ stays as committed.
#
#   fuzz/smoke.sh        # 20 s per target
#   fuzz/smoke.sh 300    # 5 min per target
#
# FUZZ_PROFILE=release (default) builds as `cargo fuzz build` does: optimised, one codegen unit
# per crate, so the fuzzers run fast but a cold build takes about 830 CPU-seconds here (the
# control plane's dependencies included). FUZZ_PROFILE=dev (`cargo fuzz build --dev`, what CI
# uses for its 15-second smoke) builds in about 320 CPU-seconds, with debug assertions and
# overflow checks, and runs each target several times slower.
set -euo pipefail

secs="${1:-20}"
case "$secs" in
  '' | *[!0-9]*) echo "usage: $0 [seconds-per-target]" >&2; exit 2 ;;
esac
cd "$(dirname "${BASH_SOURCE[0]}")"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "cargo-fuzz is not installed: run 'cargo install cargo-fuzz'" >&2
  exit 2
fi
# cargo-fuzz passes nightly-only flags (-Zsanitizer=address); RUSTC_BOOTSTRAP=1 makes a stable
# toolchain accept them, and is harmless on nightly.
export RUSTC_BOOTSTRAP=1

profile="${FUZZ_PROFILE:-release}"
case "$profile" in
  release) build_flags=() ;;
  dev) build_flags=(--dev) ;;
  *) echo "FUZZ_PROFILE must be release or dev, not '$profile'" >&2; exit 2 ;;
esac
targets=$(cargo fuzz list)
echo "== building ($profile): $(tr '\n' ' ' <<<"$targets")"
cargo fuzz build "${build_flags[@]}"
# Run the binaries just built (what `cargo fuzz run` runs, without its rebuild check), so the
# timed phase never compiles.
# cargo fuzz builds into fuzz/target, or into CARGO_TARGET_DIR when that is set.
bindir="${CARGO_TARGET_DIR:-target}/$(rustc -vV | sed -n 's/^host: //p')/$([ "$profile" = dev ] && echo debug || echo release)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
rows=()
for t in $targets; do
  mkdir -p "$work/$t"
  corpora=("$work/$t")
  seeds=0
  if [ -d "corpus/$t" ]; then
    corpora+=("corpus/$t")
    seeds=$(find "corpus/$t" -type f | wc -l)
  fi
  log="$work/$t.log"
  echo "== $t: ${secs}s from $seeds seeds"
  # -timeout: one input running over 10 s counts as a hang (a failure).
  # The outer timeout bounds everything else (the build is done above).
  mkdir -p "artifacts/$t"
  if timeout "$((secs + 60))" "$bindir/$t" "${corpora[@]}" -artifact_prefix="artifacts/$t/" \
      -max_total_time="$secs" -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    # libFuzzer's last status line (DONE, else the last pulse/NEW/REDUCE line) carries the
    # coverage reached: `cov:` edges and `ft:` features; the final stats give the executions.
    last=$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -n 1 || true)
    execs=$(sed -n 's/^stat::number_of_executed_units:[[:space:]]*//p' "$log" | tail -n 1)
    cov=$(sed -n 's/.*[[:space:]]cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.*[[:space:]]ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.*[[:space:]]corp: \([0-9]*\/[0-9A-Za-z]*\).*/\1/p' <<<"$last")
    rate=$(sed -n 's/^stat::average_exec_per_sec:[[:space:]]*//p' "$log" | tail -n 1)
    echo "PASS $t: executions=${execs:-?} cov=${cov:-?} ft=${ft:-?}"
    rows+=("| \`$t\` | ${secs} | ${seeds} | ${execs:-?} | ${rate:-?} | ${cov:-?} | ${ft:-?} | ${corp:-?} | pass |")
  else
    echo "FAIL $t (log tail below; crashing inputs are saved under fuzz/artifacts/$t/)"
    tail -n 60 "$log"
    failed+=("$t")
    rows+=("| \`$t\` | ${secs} | ${seeds} | | | | | | **FAIL** |")
  fi
done

summary=$(
  echo "| target | seconds | seeds | executions | exec/s | cov (edges) | ft (features) | corpus (inputs/size) | result |"
  echo "|---|---:|---:|---:|---:|---:|---:|---|---|"
  printf '%s\n' "${rows[@]}"
)
echo "== summary"
echo "$summary"
# SMOKE_SUMMARY=FILE also writes the table there (as in fuzz/README.md).
if [ -n "${SMOKE_SUMMARY:-}" ]; then echo "$summary" >"$SMOKE_SUMMARY"; fi

if [ "${#failed[@]}" -ne 0 ]; then
  echo "== FAILED: ${failed[*]}"
  exit 1
fi
echo "== all targets passed"

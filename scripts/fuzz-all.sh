#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for a fixed number of executions
# (default 10,000,000 each; FUZZ_RUNS overrides, FUZZ_TARGETS picks targets)
# in release, without a sanitizer (stable toolchain), with the committed
# seeds copied into a scratch corpus so they stay unchanged. Prints one line
# per target: executions done, corpus size, seconds, and the result; exits
# non-zero if any target crashed (the crash is in fuzz/artifacts/<target>/).
# Not part of CI: at a few thousand executions per second some targets take
# hours. Record the table it prints in docs/SECURITY.md.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
runs="${FUZZ_RUNS:-10000000}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
targets="${FUZZ_TARGETS:-$(cargo fuzz list)}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cargo fuzz build -s none --release >/dev/null
failed=0
printf '%-16s %14s %8s %8s  %s\n' target executions corpus seconds result
for target in $targets; do
  mkdir -p "$scratch/$target"
  log="$scratch/$target.log"
  start=$(date +%s)
  if cargo fuzz run -s none --release "$target" "$scratch/$target" "corpus/$target" -- \
      -runs="$runs" -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result="CRASH (see fuzz/artifacts/$target)"
    failed=1
  fi
  secs=$(( $(date +%s) - start ))
  done_runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  corpus=$(ls "$scratch/$target" | wc -l)
  printf '%-16s %14s %8s %8s  %s\n' "$target" "${done_runs:-?}" "$corpus" "$secs" "$result"
done
exit "$failed"

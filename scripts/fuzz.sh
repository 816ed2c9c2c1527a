#!/usr/bin/env bash
# Fuzz Vroeg's untrusted-input parsers with cargo-fuzz (libFuzzer).
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
#   SECONDS per target (default 600); targets default to all:
#   decode_signal (signal decoder, structured and binary), decode_feedback,
#   rule_file (rule-file parser, validator, compiler; routing file loader).
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# Seeds come from fuzz/seeds/<target>; the working corpus and any crash
# artifacts go to fuzz/corpus/ and fuzz/artifacts/ (not committed). Prints
# the executions and the result of each run; exits 1 on a crash.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-600}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(decode_signal decode_feedback rule_file)
status=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  cp -n seeds/"$t"/* "corpus/$t/" 2>/dev/null || true
  log="corpus/$t.log"
  echo "==> $t for ${secs}s"
  if cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -print_final_stats=1 > "$log" 2>&1; then
    result=ok
  else
    result=CRASH; status=1
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  echo "$t: $result, ${execs:-?} executions in ${secs}s (log: fuzz/$log)"
done
exit $status

#!/usr/bin/env bash
# The full kill loops, against a real broker.
#
#   scripts/kill-loop.sh [SIGNALS] [KILLS] [SEED]
#       one `vroeg run` (the partitioned default) on 200k generated
#       signals, SIGKILLed at 20 random points and restarted each time,
#       compared with an uninterrupted reference run (alert ids, alert and
#       dead-letter contents, final state dump).
#   scripts/kill-loop.sh --partitioned [SIGNALS] [KILLS] [SEED]
#       three `vroeg run` instances in
#       one group, 12 household partitions, a partner topic of 3 partitions
#       keyed by partner, 100k signals, 10 SIGKILLs of random instances,
#       against a single-instance reference read with read_committed; then
#       one instance's state directory is deleted and rebuilt from the
#       changelog.
#
# Uses the broker at $VROEG_TEST_BROKERS, or starts one (Java 17, Maven).
# Prints the summary lines: kills survived, events lost, duplicates.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--partitioned" ]; then
  shift
  export VROEG_TEST_PARTITIONED_SIGNALS="${1:-100000}"
  export VROEG_TEST_PARTITIONED_KILLS="${2:-10}"
  [ -n "${3:-}" ] && export VROEG_TEST_PARTITIONED_SEED="$3"
  cargo test --locked --test integration partitioned -- --nocapture 2>&1 \
    | grep -E '^partitioned kill loop:|^restore:|^test |panicked|assert'
  exit "${PIPESTATUS[0]}"
fi
export VROEG_TEST_KILL_LOOP_SIGNALS="${1:-200000}"
export VROEG_TEST_KILL_LOOP_KILLS="${2:-20}"
[ -n "${3:-}" ] && export VROEG_TEST_KILL_LOOP_SEED="$3"
cargo test --release --locked --test integration kill_loop -- --nocapture 2>&1 \
  | grep -E '^kill loop:|^test |panicked|assert'

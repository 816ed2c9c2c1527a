#!/usr/bin/env bash
# The full kill loop: `vroeg run` on 200k generated signals, SIGKILLed at 20
# random points and restarted each time, compared with an uninterrupted
# reference run (alert ids, alert and dead-letter contents, final state dump).
#
# Usage: scripts/kill-loop.sh [SIGNALS] [KILLS] [SEED]
# Uses the broker at $VROEG_TEST_BROKERS, or starts one (Java 17, Maven).
# Prints one summary line: kills survived, events lost, duplicates.
set -euo pipefail
cd "$(dirname "$0")/.."
export VROEG_TEST_KILL_LOOP_SIGNALS="${1:-200000}"
export VROEG_TEST_KILL_LOOP_KILLS="${2:-20}"
[ -n "${3:-}" ] && export VROEG_TEST_KILL_LOOP_SEED="$3"
cargo test --release --locked --test integration kill_loop -- --nocapture 2>&1 \
  | grep -E '^kill loop:|^test |panicked|assert'

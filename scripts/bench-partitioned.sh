#!/usr/bin/env bash
# Reproduces the partitioned-service figures in BENCHMARKS.md, all in one run
# on this machine, against a real Apache Kafka broker:
#   - the same SIGNALS through the single-node model (`--role single`: sled
#     positions and an outbox, durable sled) and through the partitioned
#     service (`--role all`: household topic, changelog, one transaction per
#     batch) with 1 and with 2 instances, end to end: from start until every
#     signal is processed and its case events published;
#   - restore: a fresh state instance rebuilding HOUSEHOLDS households from
#     the changelog, from start until /readyz, against a bare rdkafka read
#     of the same changelog.
#
#   scripts/bench-partitioned.sh [SIGNALS] [HOUSEHOLDS]     (default 200000 1000000)
#   PARTS="restore" scripts/bench-partitioned.sh            only some parts: single one two restore
#   RESTORE_RUNS=3 scripts/bench-partitioned.sh             restores to take the median of (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}
HH=${2:-1000000}
PARTS=${PARTS:-single one two restore}
RESTORE_RUNS=${RESTORE_RUNS:-5}
cargo build --release -q --bin vroeg
cargo build --release -q -p vroeg-kafka --example fill_changelog --example bare_consume
# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh bench-partitioned
echo "broker $BS, work dir $work, $(nproc) cores"
export VROEG_HOUSEHOLD_SECRET=bench-secret

start=$(date -u -d "-130 days" +%F)
$vroeg gen --households $((N * 5)) --months 4 --rate 0.08 --seed 42 --start "$start" --out "$work/all.jsonl"
head -n "$N" "$work/all.jsonl" > "$work/s.jsonl"
rm "$work/all.jsonl"

want single && e2e single single 1 "$work/s.jsonl"
want one && e2e one all 1 "$work/s.jsonl"
want two && e2e two all 2 "$work/s.jsonl"

if want restore; then
  echo "== restore of $HH households from the changelog ($RESTORE_RUNS runs)"
  head -n 100000 "$work/s.jsonl" > "$work/r.jsonl"
  $vroeg replay --rules rules --signals "$work/r.jsonl" --state "$work/sample-state" > /dev/null
  times=()
  for i in $(seq 1 "$RESTORE_RUNS"); do
    # A changelog of its own per run: a restored instance fires overdue
    # timers and so writes to its changelog.
    config "restore$i" "restore$i" 18120
    $vroeg topics create --config "$work/restore$i.toml" --input-partitions 1 > /dev/null
    target/release/examples/fill_changelog "$BS" "restore$i.changelog" 12 "$HH" "$work/sample-state"
    t0=$(date +%s.%N)
    VROEG_LOG=info $vroeg run --role state --config "$work/restore$i.toml" 2> "$work/restore.log" & pid=$!; pids+=("$pid")
    until curl -sf 127.0.0.1:18120/readyz >/dev/null; do kill -0 "$pid" || { tail "$work/restore.log"; exit 1; }; sleep 0.1; done
    t1=$(date +%s.%N)
    rss=$(($(peak_mb "$pid") * 1024))
    records=$({ curl -s 127.0.0.1:18120/metrics || true; } | awk '$1 ~ /^vroeg_changelog_restored_records_total/ {s+=$2} END {print s+0}')
    restored_ms=$(sed 's/\x1b\[[0-9;]*m//g' "$work/restore.log" | grep -o 'elapsed_ms=[0-9]*' | cut -d= -f2 | sort -n | tail -1)
    kill -TERM "$pid"; wait "$pid" || true
    times+=("$restored_ms")
    printf 'restore %d: %d changelog records (%d households) restored in %.1f s (%d records/s); %.1f s from start to ready; peak RSS %d MB\n' \
      "$i" "$records" "$HH" "$(echo "$restored_ms / 1000" | bc -l)" "$(echo "$records * 1000 / $restored_ms" | bc)" "$(echo "$t1 - $t0" | bc)" $((rss / 1024))
    if [ "$i" = 1 ]; then
      $vroeg state stats --state "$work/restore1-state" > "$work/stats.txt"
      head -3 "$work/stats.txt"
    fi
    rm -rf "$work/restore$i-state"
  done
  median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  printf 'restore: median of %d runs %.1f s\n' "$RESTORE_RUNS" "$(echo "$median / 1000" | bc -l)"
  # The limit: the same changelog read by a bare rdkafka consumer, no writes.
  target/release/examples/bare_consume "$BS" restore1.changelog "$records"
fi

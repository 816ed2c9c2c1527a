#!/usr/bin/env bash
# Reproduces the throughput and memory figures of BENCHMARKS.md ("`vroeg
# run` against a real Apache Kafka broker"), all in one run on this machine,
# against a broker of its own, on one signal file:
#   bare     bare rdkafka consume of the signal topic (the limit);
#   sled     bare sled with the engine's write pattern: read and write one
#            household key per signal, without a flush per batch;
#   one      `vroeg run` (the partitioned service, the default), 1 instance,
#            end to end: from start until every signal is accounted for and
#            its case events are committed;
#   alone    `one` without a read model (`api.case_api = false`): the
#            peer's job, with the case API left to `vroeg serve`;
#   two      the same as `one` with 2 instances in one group;
#   peer     the Kafka Streams 4.1 peer (bench/kstreams-peer, built here with
#            Maven; exactly_once_v2, RocksDB), the same job on the same file,
#            with PEER_THREADS stream threads (default 2, one per core);
#   latency  signal-to-case-event p99 at 1,000 signals/s, and the broker
#            alone at the same rate;
#   restore  a fresh state instance rebuilding RESTORE_HOUSEHOLDS households
#            from the changelog, against a bare read of that changelog.
#
#   scripts/bench-kafka.sh [SIGNALS] [HOUSEHOLDS]    (default 1000000 2000000)
#   PARTS="one peer" scripts/bench-kafka.sh          only some parts
#
# The signals: `vroeg gen --households HOUSEHOLDS --months 1 --rate 1`, dated
# in the last 40 days, first SIGNALS lines (2 M households give about 830 k
# distinct households in 1 M signals; 2% are invalid and dead-lettered).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
HH=${2:-2000000}
PARTS=${PARTS:-bare sled one alone two peer latency restore}
PEER_THREADS=${PEER_THREADS:-2}
PEER_HEAP=${PEER_HEAP:-1g}
RESTORE_HOUSEHOLDS=${RESTORE_HOUSEHOLDS:-1000000}
cargo build --release -q --bin vroeg
cargo build --release -q -p vroeg-kafka --examples
cargo build --release -q -p vroeg-store --example sled_bare
if [[ " $PARTS " == *" peer "* ]]; then
  mvn -B -q -f bench/kstreams-peer/pom.xml package
fi
# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh bench
echo "broker $BS, work dir $work, $(nproc) cores, $(awk '/MemTotal/ {print int($2/1048576)}' /proc/meminfo) GiB; commit $(git rev-parse --short HEAD)"
export VROEG_HOUSEHOLD_SECRET=bench-secret

start=$(date -u -d "-40 days" +%F)
$vroeg gen --households "$HH" --months 1 --rate 1 --seed 42 --start "$start" --out "$work/all.jsonl" 2> /dev/null
head -n "$N" "$work/all.jsonl" > "$work/s.jsonl"
rm "$work/all.jsonl"

if want bare; then
  echo "== bare rdkafka consume of the signal topic"
  scripts/kafka.sh create-topics --dir "$broker_dir" --partitions 3 bare.signalen > /dev/null
  $vroeg send --brokers "$BS" --topic bare.signalen --signals "$work/s.jsonl" > /dev/null
  target/release/examples/bare_consume "$BS" bare.signalen "$N"
fi

if want sled; then
  echo "== bare sled: read and write one household key per signal, no flush (256 MiB cache, 400-byte values)"
  target/release/examples/sled_bare "$N" 400 5000 1 256 0
fi

want one && e2e one all 1 "$work/s.jsonl" && one_rate=$e2e_rate
# The peer's job: one instance without a read model (the case API then
# runs in `vroeg serve`, elsewhere).
want alone && CASE_API=false e2e alone all 1 "$work/s.jsonl" && alone_rate=$e2e_rate
want two && e2e two all 2 "$work/s.jsonl" && two_rate=$e2e_rate

if want peer; then
  echo "== Kafka Streams peer, exactly_once_v2, $PEER_THREADS stream threads, -Xmx$PEER_HEAP"
  scripts/kafka.sh create-topics --dir "$broker_dir" --partitions 3 peer.signalen > /dev/null
  scripts/kafka.sh create-topics --dir "$broker_dir" --partitions 12 peer.huishoudens peer.meldingen peer.dlq peer.zaken > /dev/null
  $vroeg send --brokers "$BS" --topic peer.signalen --signals "$work/s.jsonl" > /dev/null
  t0=$(date +%s.%N); b0=$(cpu_s "$broker_pid")
  java -Xmx"$PEER_HEAP" -Djava.io.tmpdir="$work" -jar bench/kstreams-peer/target/kstreams-peer.jar \
    "$BS" peer "$N" "$PEER_THREADS" > "$work/peer.out" 2> "$work/peer.log" & pid=$!; pids+=("$pid")
  until grep -q '^done' "$work/peer.out"; do kill -0 "$pid" || { tail "$work/peer.log"; exit 1; }; sleep 0.2; done
  t1=$(date +%s.%N); b1=$(cpu_s "$broker_pid")
  rss=$(peak_mb "$pid")
  cpu=$(cpu_s "$pid")
  kill -TERM "$pid"; wait "$pid" || true
  peer_rate=$(echo "$N / ($t1 - $t0)" | bc)
  echo "peer: $N signals in $(echo "$t1 - $t0" | bc) s: $peer_rate signals/s; peak RSS $rss MB; $cpu CPU seconds, broker $(echo "$b1 - $b0" | bc)"
  sed 's/^/peer: /' "$work/peer.out"
fi

if [ -n "${one_rate:-}" ] && [ -n "${peer_rate:-}" ]; then
  echo "vroeg / peer: 1 instance $(echo "scale=2; $one_rate / $peer_rate" | bc)x${alone_rate:+, 1 without read model $(echo "scale=2; $alone_rate / $peer_rate" | bc)x}${two_rate:+, 2 instances $(echo "scale=2; $two_rate / $peer_rate" | bc)x}"
fi

if want latency; then
  echo "== latency at 1000 signals/s"
  config lat lat 18093 500 5
  $vroeg topics create --config "$work/lat.toml" --input-partitions 3 > /dev/null
  $vroeg run --config "$work/lat.toml" 2> "$work/lat.log" & pid=$!; pids+=("$pid")
  until curl -sf 127.0.0.1:18093/readyz >/dev/null; do kill -0 "$pid" || { tail "$work/lat.log"; exit 1; }; sleep 0.2; done
  target/release/examples/latency_probe "$BS" lat.signalen lat.meldingen 1000 30000
  # The same load straight through the broker, without vroeg: the baseline.
  target/release/examples/latency_probe "$BS" lat.dlq lat.dlq 1000 30000
  kill -TERM "$pid"; wait "$pid" || true
fi

if want restore; then
  echo "== restore of $RESTORE_HOUSEHOLDS households from the changelog"
  head -n 100000 "$work/s.jsonl" > "$work/r.jsonl"
  $vroeg replay --rules rules --signals "$work/r.jsonl" --state "$work/sample-state" --no-fsync --quiet > /dev/null 2>&1
  config restore restore 18120
  $vroeg topics create --config "$work/restore.toml" --input-partitions 1 > /dev/null
  target/release/examples/fill_changelog "$BS" restore.changelog 12 "$RESTORE_HOUSEHOLDS" "$work/sample-state"
  t0=$(date +%s.%N)
  VROEG_LOG=info $vroeg run --role state --config "$work/restore.toml" 2> "$work/restore.log" & pid=$!; pids+=("$pid")
  until curl -sf 127.0.0.1:18120/readyz >/dev/null; do kill -0 "$pid" || { tail "$work/restore.log"; exit 1; }; sleep 0.1; done
  t1=$(date +%s.%N)
  rss=$(peak_mb "$pid")
  records=$(metric 18120 vroeg_changelog_restored_records_total)
  kill -TERM "$pid"; wait "$pid" || true
  printf 'restore: %d changelog records (%d households) in %.1f s from start to ready; peak RSS %d MB\n' \
    "$records" "$RESTORE_HOUSEHOLDS" "$(echo "$t1 - $t0" | bc)" "$rss"
  # The limit: the same changelog read by a bare rdkafka consumer, no writes.
  target/release/examples/bare_consume "$BS" restore.changelog "$records"
fi

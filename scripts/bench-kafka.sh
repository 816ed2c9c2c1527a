#!/usr/bin/env bash
# Reproduces the `vroeg run` figures in BENCHMARKS.md against a real
# Apache Kafka broker on this machine:
#   - bare rdkafka consume rate of a pre-filled topic (the limit),
#   - end-to-end throughput of `vroeg run` on the same topic, durable sled,
#     from start until every alert is delivered (outbox empty),
#   - peak RSS and households in state,
#   - time from a restart after SIGKILL to the first processed signal,
#   - signal-to-alert latency p50/p99 at 1,000 signals/s.
#
#   scripts/bench-kafka.sh [SIGNALS] [HOUSEHOLDS]     (default 1000000 5000000)
#   PARTS="latency" scripts/bench-kafka.sh            only some parts: bare e2e restart latency
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
HH=${2:-5000000}
PARTS=${PARTS:-bare e2e restart latency}
cargo build --release -q --bin vroeg
cargo build --release -q -p vroeg-kafka --examples
# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh bench
echo "broker $BS, work dir $work"

scripts/kafka.sh create-topics --dir "$broker_dir" --partitions 3 bench.signalen bench.meldingen bench.dlq bench.terugkoppeling bench.partner lat.signalen lat.meldingen lat.dlq lat.terugkoppeling lat.partner
if want bare || want e2e || want restart; then
  start=$(date -u -d "-130 days" +%F)
  $vroeg gen --households "$HH" --months 4 --rate 0.08 --seed 42 --start "$start" --out "$work/all.jsonl"
  head -n "$N" "$work/all.jsonl" > "$work/s.jsonl"
  rm "$work/all.jsonl"
  $vroeg send --brokers "$BS" --topic bench.signalen --signals "$work/s.jsonl"
fi

if want bare; then
echo "== bare consume"
target/release/examples/bare_consume "$BS" bench.signalen "$N"
fi

config() { # name topic-prefix port batch batch_ms
  cat > "$work/$1.toml" <<TOML
[engine]
state_dir = "$work/$1-state"
rules = ["$PWD/rules"]
[kafka]
brokers = "$BS"
group_id = "$1"
signal_topics = ["$2.signalen"]
alerts_topic = "$2.meldingen"
dlq_topic = "$2.dlq"
feedback_topic = "$2.terugkoppeling"
partner_feedback_topic = "$2.partner"
batch_size = $4
batch_time_ms = $5
[api]
listen = "127.0.0.1:$3"
TOML
}
metric() { { curl -s "127.0.0.1:$1/metrics" || true; } | awk -v m="$2" '$1==m {print $2}'; }
export VROEG_HOUSEHOLD_SECRET=bench-secret

if want e2e; then
echo "== vroeg run, end to end"
config e2e bench 18091 5000 100
t0=$(date +%s.%N)
$vroeg run --config "$work/e2e.toml" 2> "$work/e2e.log" & pid=$!; pids+=("$pid")
while :; do
  c=$(metric 18091 vroeg_signals_consumed_messages_total); d=$(metric 18091 vroeg_outbox_depth_messages)
  if [ "${c:-0}" -ge "$N" ] && [ "${d:-1}" = "0" ]; then break; fi
  kill -0 "$pid" || { tail "$work/e2e.log"; exit 1; }
  sleep 0.2
done
t1=$(date +%s.%N)
rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
published=$(metric 18091 vroeg_outbox_published_messages_total)
kill -TERM "$pid"; wait "$pid" || true
echo "end to end: $N signals in $(echo "$t1 - $t0" | bc) s: $(echo "$N / ($t1 - $t0)" | bc) signals/s; $published messages published"
echo "peak RSS: $((rss / 1024)) MB"
$vroeg state stats --state "$work/e2e-state"
fi

if want restart; then
echo "== restart after SIGKILL"
config rs bench 18092 5000 100
$vroeg run --config "$work/rs.toml" 2> "$work/rs1.log" & pid=$!; pids+=("$pid")
until [ "$(metric 18092 vroeg_signals_consumed_messages_total)" -ge $((N / 5)) ] 2>/dev/null; do sleep 0.2; done
kill -9 "$pid"; wait "$pid" 2>/dev/null || true
t0=$(date +%s.%N)
$vroeg run --config "$work/rs.toml" 2> "$work/rs2.log" & pid=$!; pids+=("$pid")
until [ "$(metric 18092 vroeg_signals_consumed_messages_total)" -gt 0 ] 2>/dev/null; do sleep 0.02; done
t1=$(date +%s.%N)
kill -TERM "$pid"; wait "$pid" || true
echo "restart after SIGKILL to first processed signal: $(echo "$t1 - $t0" | bc) s"
fi

if want latency; then
echo "== latency at 1000 signals/s"
config lat lat 18093 500 5
$vroeg run --config "$work/lat.toml" 2> "$work/lat.log" & pid=$!; pids+=("$pid")
until curl -sf 127.0.0.1:18093/readyz >/dev/null; do sleep 0.2; done
target/release/examples/latency_probe "$BS" lat.signalen lat.meldingen 1000 30000
# The same load straight through the broker, without vroeg: the baseline.
target/release/examples/latency_probe "$BS" lat.dlq lat.dlq 1000 30000
echo "batch durations during the latency run (cumulative buckets, seconds):"
curl -s 127.0.0.1:18093/metrics | grep -E '^vroeg_batch_duration_seconds_(bucket|count|sum)' | grep -E 'le="(0.004|0.016|0.064|0.256|\+Inf)"|_count|_sum'
kill -TERM "$pid"; wait "$pid" || true
fi

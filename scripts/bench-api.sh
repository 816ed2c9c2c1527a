#!/usr/bin/env bash
# The case read model and the case API under load, in one run:
#   1. `vroeg run` turns generated signals into cases and writes every case
#      record to the case topic (not timed);
#   2. catch-up: a fresh `vroeg serve` with an empty read model reads the
#      whole case topic: case records/s, beside a bare rdkafka consume of the
#      same topic (the limit) and the read model applying the same records
#      without Kafka (examples/apply_rate, from a state dump);
#   3. list latency: wrk against GET /api/v1/cases (50 per page) with the
#      token of the team that holds every open case, in three orders, beside
#      /healthz (the HTTP floor): p50 and p99;
#   4. the inbox: wrk against the rendered work-queue page (GET /inbox:
#      the counts and the first 50 cases, as HTML) with a signed-in
#      session of the same team, beside the same list as JSON.
#
# Usage: scripts/bench-api.sh [HOUSEHOLDS] [SECONDS]
#   HOUSEHOLDS: generated households (default 200000: over 10 k open
#   cases, all for one team under the default routing);
#   SECONDS: each wrk run (default 20).
# Needs wrk (Debian's package; installed where missing), Java 17 and Maven.
set -euo pipefail
cd "$(dirname "$0")/.."
HH=${1:-200000}
SECS=${2:-20}

if ! command -v wrk >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
fi
cargo build --release --locked -p vroeg-kafka --example bare_consume
cargo build --release --locked -p vroeg-readmodel --example apply_rate
cargo build --release --locked

# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh api
echo "broker $BS, work dir $work"
export VROEG_HOUSEHOLD_SECRET=bench-api

token="vroeg_bench_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
hash=$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)
config() { # name port read-model-dir
  cat > "$work/$1.toml" <<TOML
[engine]
state_dir = "$work/state"
rules = ["rules"]

[kafka]
brokers = "$BS"
group_id = "bench-api"
signal_topics = ["api.signalen"]
alerts_topic = "api.meldingen"
dlq_topic = "api.dlq"
feedback_topic = "api.terugkoppeling"
partner_feedback_topic = "api.partner"
household_topic = "api.huishoudens"
changelog_topic = "api.huishoudens.changelog"
cases_topic = "api.zaken"
batch_size = 5000
batch_time_ms = 100

[api]
listen = "127.0.0.1:$2"
read_model_dir = "$3"

[[api.tokens]]
name = "bench"
sha256 = "$hash"
team = "standaard"
TOML
}
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1==m {print $2}'; }

config run 18191 "$work/leesmodel-run"
$vroeg topics create --config "$work/run.toml" > /dev/null
start=$(date -u -d "-100 days" +%F)
$vroeg gen --households "$HH" --months 3 --seed 11 --start "$start" --out "$work/s.jsonl" 2>/dev/null
N=$(wc -l < "$work/s.jsonl")
echo "== $N signals for $HH households; vroeg run builds the case topic"
$vroeg run --config "$work/run.toml" 2> "$work/run.log" &
pids+=($!)
run_pid=$!
$vroeg send --brokers "$BS" --topic api.signalen --signals "$work/s.jsonl" > /dev/null 2>&1
until [ "$(metric 18191 vroeg_signals_consumed_messages_total)" = "$N" ] 2>/dev/null; do sleep 1; done
# Timers fire on the wall clock: wait until the engine has been quiet.
sleep 5
kill -TERM "$run_pid"; wait "$run_pid" || true

echo "== catch-up: a fresh vroeg serve reads the whole case topic"
config serve 18192 "$work/leesmodel"
VROEG_LOG=info VROEG_LOG_JSON=1 $vroeg serve --config "$work/serve.toml" 2> "$work/serve.log" &
pids+=($!)
until grep -q "read model caught up with the case topic" "$work/serve.log" 2>/dev/null; do sleep 0.2; done
line=$(grep "read model caught up with the case topic" "$work/serve.log" | head -1)
records=$(echo "$line" | python3 -c 'import json,sys; print(json.load(sys.stdin)["fields"]["records"])')
elapsed=$(echo "$line" | python3 -c 'import json,sys; print(json.load(sys.stdin)["fields"]["elapsed_ms"])')
echo "read model: $records case records in ${elapsed} ms: $(( records * 1000 / (elapsed > 0 ? elapsed : 1) )) records/s"
echo "-- bare rdkafka consume of the same topic (the limit)"
target/release/examples/bare_consume "$BS" api.zaken "$records"
echo "-- the read model applying the engine's case records without Kafka"
$vroeg state dump --state "$work/state" > "$work/dump.jsonl"
target/release/examples/apply_rate "$work/dump.jsonl" "$work/leesmodel-apply"
rm -f "$work/dump.jsonl"

base="http://127.0.0.1:18192"
auth="Authorization: Bearer $token"
open=$(curl -s -H "$auth" "$base/api/v1/werkbakken" | python3 -c 'import json,sys; print(sum(w["open"] for w in json.load(sys.stdin)["werkbakken"]))')
echo "== list latency: team standaard, $open open cases; wrk -t2 -c8 -d${SECS}s"
lat() { # label path [auth]
  local out
  if [ -n "${3:-}" ]; then
    out=$(wrk -t2 -c8 -d"${SECS}s" --latency -H "$auth" "$base$2")
  else
    out=$(wrk -t2 -c8 -d"${SECS}s" --latency "$base$2")
  fi
  local p50 p99 rps non2xx
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  rps=$(echo "$out" | awk '$1=="Requests/sec:" {print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  printf '%-52s p50 %8s  p99 %8s  %10s req/s  non-2xx %s\n' "$1" "$p50" "$p99" "$rps" "${non2xx:-0}"
}
lat "GET /healthz (floor)" "/healthz"
lat "GET /api/v1/cases?aantal=50 (priority)" "/api/v1/cases?aantal=50" auth
lat "GET /api/v1/cases?aantal=50&sorteer=deadline" "/api/v1/cases?aantal=50&sorteer=deadline" auth
lat "GET /api/v1/cases?aantal=50&te_laat=true" "/api/v1/cases?aantal=50&te_laat=true" auth
lat "GET /api/v1/werkbakken (counts)" "/api/v1/werkbakken" auth
echo "== the inbox's work-queue page: team standaard, $open open cases, signed in"
jar="$work/cookies"
page=$(curl -s -c "$jar" "$base/inbox/aanmelden")
csrf=$(echo "$page" | sed -n 's/.*name="csrf" value="\([0-9a-f]*\)".*/\1/p' | head -1)
curl -s -b "$jar" -c "$jar" -o /dev/null --data-urlencode "csrf=$csrf" --data-urlencode "token=$token" "$base/inbox/aanmelden"
session=$(awk '$6=="vroeg_sessie" {print $7}' "$jar")
[ -n "$session" ] || { echo "inbox sign-in failed" >&2; exit 1; }
auth="Cookie: vroeg_sessie=$session"
curl -s -H "$auth" "$base/inbox" | grep -q 'id="totaal-open">'"$open"'<' \
  || { echo "the work-queue page does not show $open open cases" >&2; exit 1; }
lat "GET /inbox (work queues + 50 cases, HTML)" "/inbox" auth
lat "GET /inbox?te_laat=ja (overdue only, HTML)" "/inbox?te_laat=ja" auth
echo "peak RSS of vroeg serve: $(awk '/VmHWM/ {print $2 " kB"}' "/proc/${pids[-1]}/status")"

#!/usr/bin/env bash
# Fuzz the case API against its own OpenAPI document with schemathesis, on
# throwaway state: a `vroeg run` with its own topics, fed a generated month
# of signals, queried with a read-only token (which may read every case and
# changes nothing). Every operation in the document is exercised, within a
# time budget; any failure of a check fails the script.
#
# Usage: scripts/api-check.sh [SECONDS [BINARY]]
#   SECONDS: schemathesis's time budget (default 120).
#   BINARY: the vroeg binary (default ./target/release/vroeg, built if missing).
#   Uses the broker in $VROEG_TEST_BROKERS, or starts one (scripts/kafka.sh).
#   API_CHECK_SEED fixes schemathesis's seed (CI does, so that a run is
#   repeatable); without it every run explores new cases.
#   Installs schemathesis from PyPI where it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

budget="${1:-120}"
vroeg="${2:-./target/release/vroeg}"
[ -x "$vroeg" ] || cargo build --release --locked
if ! command -v schemathesis >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check 'schemathesis==4.32.5'
fi

work=$(mktemp -d)
service=""
cleanup() {
  if [ -n "$service" ]; then kill "$service" 2>/dev/null || true; wait "$service" 2>/dev/null || true; fi
  if [ -f "$work/broker/bootstrap" ]; then scripts/kafka.sh stop --dir "$work/broker" >/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
[ -n "${API_CHECK_KEEP:-}" ] && trap - EXIT && echo "work: $work"

brokers="${VROEG_TEST_BROKERS:-}"
# The service reads VROEG_* as configuration overrides: not this one.
unset VROEG_TEST_BROKERS
if [ -z "$brokers" ]; then
  brokers=$(scripts/kafka.sh start --dir "$work/broker" --owner-pid $$ | tail -1)
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
run="apicheck-$$-$(date +%s)"
token="vroeg_api_check_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
hash=$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)
cat > "$work/vroeg.toml" <<EOF
[engine]
state_dir = "$work/state"
rules = ["rules"]
routing = "config/wijkteams.yaml"

[kafka]
brokers = "$brokers"
group_id = "$run"
signal_topics = ["$run.signalen"]
alerts_topic = "$run.signalen.alerts"
dlq_topic = "$run.signalen.dlq"
feedback_topic = "$run.terugkoppeling"
partner_feedback_topic = "$run.partner-terugkoppeling"
household_topic = "$run.huishoudens"
changelog_topic = "$run.huishoudens.changelog"
cases_topic = "$run.zaken"
batch_time_ms = 20

[api]
listen = "127.0.0.1:$port"
read_model_dir = "$work/leesmodel"

[[api.tokens]]
name = "api-check"
sha256 = "$hash"
read_only = true
EOF
export VROEG_HOUSEHOLD_SECRET=api-check

"$vroeg" topics create --config "$work/vroeg.toml" > /dev/null
"$vroeg" gen --households 20000 --months 1 --seed 7 --start "$(date -u -d "-32 days" +%F)" \
  --out "$work/signals.jsonl" 2> /dev/null
"$vroeg" run --config "$work/vroeg.toml" 2> "$work/run.log" &
service=$!
"$vroeg" send --brokers "$brokers" --topic "$run.signalen" --signals "$work/signals.jsonl" > /dev/null 2>&1

base="http://127.0.0.1:$port"
auth="Authorization: Bearer $token"
# Wait until the read model holds cases and has caught up.
ready=""
for _ in $(seq 1 240); do
  if curl -fsS -H "$auth" "$base/api/v1/leesmodel" 2>/dev/null | grep -q '"achterstand":0' \
     && curl -fsS -H "$auth" "$base/api/v1/cases?status=alle&aantal=1" 2>/dev/null | grep -q '"id"'; then
    ready=1
    break
  fi
  sleep 0.5
done
if [ -z "$ready" ]; then
  echo "api-check: the service did not serve cases in time; its log:" >&2
  tail -20 "$work/run.log" >&2
  exit 1
fi
cases=$(curl -fsS -H "$auth" "$base/api/v1/werkbakken" | python3 -c 'import json,sys; print(sum(w["open"] for w in json.load(sys.stdin)["werkbakken"]))')
echo "api-check: service on $base with $cases open cases; schemathesis for ${budget}s"

schemathesis --config-file scripts/schemathesis.toml run "$base/api/v1/openapi.json" \
  --header "$auth" \
  --checks all \
  --max-time "$budget" \
  --workers 2 \
  --request-timeout 10 \
  --suppress-health-check all \
  ${API_CHECK_SEED:+--seed "$API_CHECK_SEED"}

# The read-only token changed nothing: no feedback was published.
if grep -q '"level":"ERROR"\|panicked' "$work/run.log"; then
  echo "api-check: the service logged errors:" >&2
  grep '"level":"ERROR"\|panicked' "$work/run.log" | tail -5 >&2
  exit 1
fi
echo "api-check: ok"

# Sourced by the benchmark scripts after they built what they run:
#   . scripts/bench-common.sh NAME
# Gives them a work directory ($work), a broker of their own started afresh
# under .cache/kafka/NAME ($broker_dir, bootstrap address $BS), the list
# $pids whose processes are killed on exit, and `want PART` (is PART in
# $PARTS?). On exit the broker stops and the work directory goes.

want() { case " $PARTS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
work=$(mktemp -d)
broker_dir="$PWD/.cache/kafka/$1"
vroeg=target/release/vroeg

scripts/kafka.sh stop --dir "$broker_dir" || true
BS=$(scripts/kafka.sh start --dir "$broker_dir" | tail -1)
# The broker's process, whose CPU each run reports too: it shares the cores.
broker_pid=$(pgrep -f "kafka\.Kafka .*$broker_dir" | head -1)
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do kill -9 "$p" 2>/dev/null || true; done
  scripts/kafka.sh stop --dir "$broker_dir"
  rm -rf "$work"
}
trap cleanup EXIT

# The service's configuration `$work/NAME.toml`: `config NAME TOPIC-PREFIX
# PORT [BATCH] [BATCH_MS]` (default 5000 records, 100 ms). The partitioned
# model, the default: household topic and changelog of the prefix. With
# CASE_API=false, no read model (`api.case_api = false`).
config() {
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
household_topic = "$2.huishoudens"
changelog_topic = "$2.changelog"
cases_topic = "$2.zaken"
batch_size = ${4:-5000}
batch_time_ms = ${5:-100}
[retention]
purge_interval_secs = 0
[api]
listen = "127.0.0.1:$3"
case_api = ${CASE_API:-true}
read_model_dir = "$work/$1-leesmodel"
TOML
}
# The sum of a metric's series on the instance at PORT: `metric PORT NAME`,
# over all its label sets, or the one NAME ends in.
metric() { { curl -s "127.0.0.1:$1/metrics" || true; } | awk -v m="$2" '$1==m || index($1, m"{")==1 {s+=$2} END {print s+0}'; }
# Peak RSS of process PID in MB.
peak_mb() { echo $(($(awk '/VmHWM/ {print $2}' "/proc/$1/status") / 1024)); }
# CPU seconds (user and system) process PID has used so far.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }
# CPU seconds the threads named NAME of process PID have used so far.
thread_cpu_s() {
  local t sum=0
  for t in /proc/"$1"/task/*; do
    [ "$(cat "$t/comm" 2>/dev/null)" = "$2" ] && sum=$(echo "$sum + $(cpu_s "$1/task/${t##*/}")" | bc)
  done
  echo "$sum"
}
# Topics for run NAME under its prefix, filled with the signal file: `topics CONFIG PREFIX FILE`.
topics() {
  $vroeg topics create --config "$work/$1.toml" --input-partitions 3 > /dev/null
  $vroeg send --brokers "$BS" --topic "$2.signalen" --signals "$3" > /dev/null
}

# One end-to-end run of `vroeg run`: `e2e NAME ROLE INSTANCES SIGNAL-FILE`,
# from the start of the process(es) until every signal is consumed and
# accounted for (applied, duplicate, outside the window, objected or
# rejected) and every case event is out (outbox empty, or transaction
# committed). Prints one line, with how much later the read models held
# every case record and the CPU used until then (the read models' share
# apart); sets $e2e_rate (signals/s).
e2e() {
  local name=$1 role=$2 n=$3 file=$4 i ports=() rss=0 total
  total=$(wc -l < "$file")
  for i in $(seq 1 "$n"); do
    config "$name-$i" "$name" $((18100 + i))
    sed -i "s/group_id = \"$name-$i\"/group_id = \"$name\"/" "$work/$name-$i.toml"
  done
  topics "$name-1" "$name" "$file"
  local t0 b0; t0=$(date +%s.%N); b0=$(cpu_s "$broker_pid")
  for i in $(seq 1 "$n"); do
    VROEG_KAFKA_INSTANCE_ID="$name-$i" $vroeg run --role "$role" --config "$work/$name-$i.toml" 2> "$work/$name-$i.log" & pids+=("$!")
    ports+=($((18100 + i)))
  done
  local mine=("${pids[@]: -$n}")
  while :; do
    local consumed=0 done=0 depth=0
    for p in "${ports[@]}"; do
      consumed=$((consumed + $(metric "$p" vroeg_signals_consumed_messages_total)))
      done=$((done + $(metric "$p" vroeg_signals_rejected_messages_total) \
        + $(metric "$p" vroeg_signals_applied_messages_total) + $(metric "$p" vroeg_signals_duplicate_messages_total) \
        + $(metric "$p" vroeg_signals_outside_window_messages_total) + $(metric "$p" vroeg_signals_purpose_disabled_messages_total) \
        + $(metric "$p" vroeg_signals_opted_out_messages_total)))
      depth=$((depth + $(metric "$p" vroeg_outbox_depth_messages)))
    done
    if [ "$consumed" -ge "$total" ] && [ "$done" -ge "$total" ] && [ "$depth" = 0 ]; then break; fi
    for p in "${mine[@]}"; do kill -0 "$p" || { tail "$work/$name-"*.log; exit 1; }; done
    sleep 0.2
  done
  local t1 b1; t1=$(date +%s.%N); b1=$(cpu_s "$broker_pid")
  local events=0 txns=0 opened=0 rejected=0
  for p in "${ports[@]}"; do
    rejected=$((rejected + $(metric "$p" vroeg_signals_rejected_messages_total)))
    events=$((events + $(metric "$p" vroeg_case_events_messages_total)))
    opened=$((opened + $(metric "$p" 'vroeg_case_events_messages_total{kind="geopend"}')))
    txns=$((txns + $(metric "$p" 'vroeg_kafka_transactions_total{outcome="committed"}')))
  done
  local cpu=0
  for p in "${mine[@]}"; do
    rss=$(( $(peak_mb "$p") > rss ? $(peak_mb "$p") : rss ))
    cpu=$(echo "$cpu + $(cpu_s "$p")" | bc)
  done
  # The read models (one per instance) follow the case topic: how much
  # later they hold every case record the run wrote (lag 0 twice in a row:
  # it is measured once a second).
  local zeros=0 rm_lag
  [ "${CASE_API:-true}" = false ] && zeros=2
  while [ "$zeros" -lt 2 ]; do
    rm_lag=0
    for p in "${ports[@]}"; do
      [ "$(metric "$p" vroeg_readmodel_lag_messages)" = 0 ] || rm_lag=1
    done
    if [ "$rm_lag" = 0 ]; then zeros=$((zeros + 1)); else zeros=0; fi
    sleep 0.5
  done
  local t2 all_cpu=0 rm_cpu=0; t2=$(date +%s.%N)
  for p in "${mine[@]}"; do
    all_cpu=$(echo "$all_cpu + $(cpu_s "$p")" | bc)
    rm_cpu=$(echo "$rm_cpu + $(thread_cpu_s "$p" vroeg-readmodel)" | bc)
  done
  for p in "${mine[@]}"; do kill -TERM "$p"; done
  for p in "${mine[@]}"; do wait "$p" || true; done
  # sled's files of a million households take gigabytes: gone before the next run.
  rm -rf "$work/$name"-*-state "$work/$name"-*-leesmodel
  e2e_rate=$(echo "$total / ($t1 - $t0)" | bc)
  local rm="read model caught up $(printf %.1f "$(echo "$t2 - $t1" | bc)") s later; $(printf %.1f "$all_cpu") CPU seconds until then, $(printf %.1f "$rm_cpu") of them the read model's"
  [ "${CASE_API:-true}" = false ] && rm="no read model (api.case_api = false)"
  printf '%s: %d signals in %.1f s: %d signals/s; %d dead-lettered; %d case events (%d geopend); %d transactions; peak RSS per instance %d MB; %.1f CPU seconds, broker %.1f; %s\n' \
    "$name ($role x$n)" "$total" "$(echo "$t1 - $t0" | bc)" "$e2e_rate" "$rejected" "$events" "$opened" "$txns" "$rss" "$cpu" "$(echo "$b1 - $b0" | bc)" "$rm"
}

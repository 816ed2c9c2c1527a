#!/usr/bin/env bash
# A real Apache Kafka broker (KRaft, one combined broker+controller) for
# Vroeg's tests and local runs, from the Maven Central jars. No Docker.
#
#   scripts/kafka.sh fetch                    download the broker jars (once; cached in .cache/kafka/lib)
#   scripts/kafka.sh start [--dir DIR] [--owner-pid PID]
#                                             format storage, start on free loopback ports, wait until ready,
#                                             print the bootstrap address; with --owner-pid the broker stops
#                                             when that process exits
#   scripts/kafka.sh stop [--dir DIR]         stop the broker started in DIR (its data stays)
#   scripts/kafka.sh resume [--dir DIR] [--owner-pid PID]
#                                             start the stopped broker in DIR again, with its data and ports
#   scripts/kafka.sh bootstrap [--dir DIR] [--sasl]
#                                             print the bootstrap address (PLAINTEXT, or SASL_PLAINTEXT)
#   scripts/kafka.sh create-topics [--dir DIR] [--partitions N] TOPIC...
#
# Every broker also has a SASL_PLAINTEXT listener with SCRAM-SHA-512 and one
# user, created when the storage is formatted: name "vroeg", password
# "vroeg-test-secret" (a test broker's; never use it elsewhere). Add more with
# --scram-user NAME=PASSWORD (repeatable) at start.
#
# DIR defaults to .cache/kafka/run. Needs Java 17+ and Maven.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cache="$root/.cache/kafka"
lib="$cache/lib"
dir="$cache/run"
owner=""
partitions=3
sasl=""
scram_users=("vroeg=vroeg-test-secret")

die() { echo "kafka.sh: $*" >&2; exit 1; }

fetch() {
  if [ -f "$lib/.complete" ]; then return 0; fi
  command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch the broker jars"
  mkdir -p "$lib"
  mvn -B -q -f "$root/scripts/kafka/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$lib" >&2 || die "failed to fetch the broker jars from Maven Central"
  touch "$lib/.complete"
}

java_ok() {
  command -v java >/dev/null || die "Java 17 or later is needed"
  local v
  v=$(java -version 2>&1 | sed -n '1s/.*version "\([0-9]*\).*/\1/p')
  [ "${v:-0}" -ge 17 ] || die "Java 17 or later is needed (found ${v:-none})"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

bootstrap() { cat "$dir/bootstrap$sasl" 2>/dev/null || die "no broker running in $dir"; }

kafka_java() { java -Xmx512m -cp "$lib/*" -Dlog4j2.configurationFile="$dir/log4j2.properties" "$@"; }

start() {
  fetch
  java_ok
  if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
    bootstrap
    return 0
  fi
  rm -rf "$dir"
  mkdir -p "$dir/data"
  local port cport sport
  port=$(free_port)
  cport=$(free_port)
  while [ "$cport" = "$port" ]; do cport=$(free_port); done
  sport=$(free_port)
  while [ "$sport" = "$port" ] || [ "$sport" = "$cport" ]; do sport=$(free_port); done
  cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport,SASL_PLAINTEXT://127.0.0.1:$sport
advertised.listeners=PLAINTEXT://127.0.0.1:$port,SASL_PLAINTEXT://127.0.0.1:$sport
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
log.dirs=$dir/data
num.partitions=3
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
message.max.bytes=2097152
PROPS
  cat > "$dir/log4j2.properties" <<'PROPS'
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/broker.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = info
logger.state.name = state.change.logger
logger.state.level = warn
PROPS
  local id scram=()
  for u in "${scram_users[@]}"; do
    scram+=(--add-scram "SCRAM-SHA-512=[name=${u%%=*},password=${u#*=}]")
  done
  id=$(java -cp "$lib/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)
  java -cp "$lib/*" -Dlog4j2.configurationFile="$dir/log4j2.properties" -Dkafka.logs.dir="$dir" \
    kafka.tools.StorageTool format -t "$id" -c "$dir/server.properties" "${scram[@]}" >"$dir/format.log" 2>&1 \
    || { cat "$dir/format.log" >&2; die "formatting KRaft storage failed"; }
  echo "127.0.0.1:$port" > "$dir/bootstrap"
  echo "127.0.0.1:$sport" > "$dir/bootstrap-sasl"
  launch
}

# Start the broker configured in $dir and wait until it serves.
launch() {
  local mark
  mark=$(wc -l < "$dir/broker.log" 2>/dev/null || echo 0)
  nohup java -Xmx512m -cp "$lib/*" -Dlog4j2.configurationFile="$dir/log4j2.properties" -Dkafka.logs.dir="$dir" \
    kafka.Kafka "$dir/server.properties" >>"$dir/stdout.log" 2>&1 &
  echo $! > "$dir/pid"
  for _ in $(seq 1 120); do
    if tail -n +"$((mark + 1))" "$dir/broker.log" 2>/dev/null | grep -q "Kafka Server started"; then
      if [ -n "$owner" ]; then
        # Stop the broker when the owning process goes away.
        nohup bash -c "while kill -0 $owner 2>/dev/null; do sleep 1; done; kill \$(cat '$dir/pid') 2>/dev/null" \
          >/dev/null 2>&1 &
      fi
      bootstrap
      return 0
    fi
    if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
      tail -30 "$dir/stdout.log" "$dir/broker.log" >&2 2>/dev/null || true
      die "the broker exited during start-up"
    fi
    sleep 0.5
  done
  die "the broker did not start within 60 s (see $dir/broker.log)"
}

resume() {
  fetch
  java_ok
  [ -f "$dir/server.properties" ] || die "no broker was started in $dir"
  if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
    bootstrap
    return 0
  fi
  launch
}

stop() {
  if [ -f "$dir/pid" ]; then
    local pid
    pid=$(cat "$dir/pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/pid"
  fi
}

create_topics() {
  local bs
  bs=$(sasl="" bootstrap)
  for t in "$@"; do
    java -cp "$lib/*" -Dlog4j2.configurationFile="$dir/log4j2.properties" -Dkafka.logs.dir="$dir" \
      org.apache.kafka.tools.TopicCommand --bootstrap-server "$bs" --create --if-not-exists \
      --topic "$t" --partitions "$partitions" --replication-factor 1 >&2
  done
}

cmd="${1:-}"
[ -n "$cmd" ] || die "usage: kafka.sh fetch|start|stop|resume|bootstrap|create-topics (see the top of this script)"
shift
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir="$2"; shift 2 ;;
    --owner-pid) owner="$2"; shift 2 ;;
    --partitions) partitions="$2"; shift 2 ;;
    --sasl) sasl="-sasl"; shift ;;
    --scram-user) scram_users+=("$2"); shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
case "$cmd" in
  fetch) fetch ;;
  start) start ;;
  resume) resume ;;
  stop) stop ;;
  bootstrap) bootstrap ;;
  create-topics) create_topics "${args[@]}" ;;
  *) die "unknown command $cmd" ;;
esac

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
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do kill -9 "$p" 2>/dev/null || true; done
  scripts/kafka.sh stop --dir "$broker_dir"
  rm -rf "$work"
}
trap cleanup EXIT

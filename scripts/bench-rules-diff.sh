#!/usr/bin/env bash
# `vroeg rules diff` of N generated signals (default 1,000,000) with the
# shipped rules against a copy with the minimum amount at 150, beside two
# separate replays of the same file with the same settings, in one run.
#
# Usage: scripts/bench-rules-diff.sh [SIGNALS]
# Prints the wall times, the peak RSS of each command (the diff three
# times, and their median), and checks that the diff's totals equal the two
# replays' counts of opened cases.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
cargo build --release --locked
vroeg=target/release/vroeg
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export VROEG_HOUSEHOLD_SECRET=bench-rules-diff
now=2027-01-01T00:00:00Z

$vroeg gen --households 1000000 --months 11 --seed 42 --out "$work/all.jsonl" 2>/dev/null
head -n "$N" "$work/all.jsonl" > "$work/s.jsonl"
rm "$work/all.jsonl"
mkdir "$work/kandidaat"
sed 's/minimum_amount_euro: 75$/minimum_amount_euro: 150/' rules/regels.yaml > "$work/kandidaat/regels.yaml"
grep -q 'minimum_amount_euro: 150' "$work/kandidaat/regels.yaml"
echo "== $(wc -l < "$work/s.jsonl") signals ($(du -h "$work/s.jsonl" | cut -f1)); $(nproc) cores"

timed() { # label command...
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" > "$work/$label.out" 2> "$work/$label.err"
  read -r secs kb < "$work/time"
  printf '%-44s %8.1f s   peak RSS %6d MB\n' "$label" "$secs" "$((kb / 1024))"
  echo "$secs" > "$work/$label.secs"
}

# The diff three times (the machine is noisy; the median counts), then
# each replay once (they take minutes).
for run in 1 2 3; do
  timed "rules diff (both rule sets, at once) #$run" \
    $vroeg rules diff --base rules --candidate "$work/kandidaat" --signals "$work/s.jsonl" --now "$now" --json "$work/diff.json"
done
sort -n "$work"/rules\ diff*.secs | sed -n 2p > "$work/diff.median"
echo "rules diff median of 3: $(cat "$work/diff.median") s"
for side in basis kandidaat; do
  rules=rules; [ "$side" = kandidaat ] && rules="$work/kandidaat"
  timed "replay, $side rules" \
    $vroeg replay --rules "$rules" --signals "$work/s.jsonl" --out "$work/$side.alerts.jsonl" \
      --rejects "$work/$side.rejects.jsonl" --no-escalation --no-fsync --batch-size 20000 --quiet --now "$now"
done
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
d = json.load(open(f"{work}/diff.json"))
for i, side in enumerate(["basis", "kandidaat"]):
    replay = sum(1 for l in open(f"{work}/{side}.alerts.jsonl") if '"type":"geopend"' in l)
    diff = sum(m["totaal"][side] for m in d["maanden"])
    assert replay == diff, (side, replay, diff)
    print(f"{side}: {diff} cases opened, equal to its separate replay")
h = d["huishoudens"]
print(f"households: {h['krijgen_zaak']['aantal']} gain a case, {h['verliezen_zaak']['aantal']} lose theirs, {h['andere_prioriteit']['aantal']} change priority")
PY
python3 -c "import sys; d=float(open('$work/diff.median').read()); a=float(open('$work/replay, basis rules.secs').read()); b=float(open('$work/replay, kandidaat rules.secs').read()); print(f'two separate replays: {a+b:.1f} s; rules diff: {d:.1f} s ({(a+b)/d:.2f}x)')"

#!/usr/bin/env bash
# Generate two months of signals, replay them, export February as a DDAS
# delivery and validate it against VNG's DDAS v0.9 JSON Schema with Python's
# jsonschema (Draft 2020-12), independently of Vroeg's own code.
#
# Usage: scripts/ddas-check.sh [SCHEMA]
#   SCHEMA defaults to $DDAS_SCHEMA, then ../shared/ddas/json_schema_Uitwisselmodel.json.
#   The schema is not part of this repository; without it the check is
#   skipped with a message (exit 0).
set -euo pipefail
cd "$(dirname "$0")/.."

schema="${1:-${DDAS_SCHEMA:-../shared/ddas/json_schema_Uitwisselmodel.json}}"
if [ ! -f "$schema" ]; then
  echo "ddas: SKIPPED, the DDAS JSON Schema is not at $schema (pass its path, or set DDAS_SCHEMA)"
  exit 0
fi
if ! python3 -c 'import jsonschema' 2>/dev/null; then
  python3 -m pip install --quiet 'jsonschema>=4.18'
fi

vroeg=./target/release/vroeg
[ -x "$vroeg" ] || cargo build --release --locked
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$vroeg" gen --households 5000 --months 2 --start 2026-01-01 --out "$work/signals.jsonl"
"$vroeg" replay --signals "$work/signals.jsonl" --state "$work/state" \
  --routing config/wijkteams.yaml --household-secret ddas-check \
  --now 2026-03-05T00:00:00Z --quiet > /dev/null
"$vroeg" export ddas --state "$work/state" --gemeentecode 0363 \
  --from 2026-02-01 --to 2026-02-28 --now 2026-03-05T10:00:00Z \
  --contactpersoon "Functioneel beheer,vroegsignalering@example.org" \
  --out "$work/ddas.json"
python3 scripts/validate_ddas.py "$work/ddas.json" "$schema"

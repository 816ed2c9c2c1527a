#!/usr/bin/env python3
"""Validate a DDAS vroegsignalering delivery against VNG's JSON Schema.

Usage: validate_ddas.py DELIVERY.json SCHEMA.json

An independent check of `vroeg export ddas`: Python's `jsonschema`, Draft
2020-12, with format checking (dates). Prints every error with its path and
exits 1 if there is any.
"""
import json
import sys

import jsonschema


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    delivery_path, schema_path = sys.argv[1], sys.argv[2]
    with open(schema_path, encoding="utf-8") as f:
        schema = json.load(f)
    with open(delivery_path, encoding="utf-8") as f:
        delivery = json.load(f)
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    errors = sorted(validator.iter_errors(delivery), key=lambda e: list(e.absolute_path))
    for e in errors:
        path = "/".join(str(p) for p in e.absolute_path) or "(root)"
        print(f"{delivery_path}: {path}: {e.message}", file=sys.stderr)
    levering = delivery.get("leveringen", [{}])[0]
    print(
        f"{delivery_path}: {len(errors)} schema error(s); "
        f"{len(levering.get('vroegsignalen', []))} signals, "
        f"{len(levering.get('vroegsignaalzaken', []))} cases"
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Check a /metrics exposition against the families documented in
docs/operations.md, with Prometheus's own Python parser.

usage: check_metrics.py DOC PROMETHEUS_TEXT [OPENMETRICS_TEXT]

Every family in the doc's metrics table must be declared with the type the
table gives, and every sample must carry only the labels the table names
(plus `le` on histogram buckets). Prints each problem and exits 1 if there
is one; exits 2 if the parser is not installed.
"""
import re
import sys

try:
    from prometheus_client.parser import text_string_to_metric_families as parse_text
    from prometheus_client.openmetrics.parser import (
        text_string_to_metric_families as parse_openmetrics,
    )
except ImportError:
    print("check_metrics: the Python package prometheus_client is not installed "
          "(pip install prometheus_client)", file=sys.stderr)
    sys.exit(2)

ROW = re.compile(r"^\|\s*`(vroeg_[a-z0-9_]+)`\s*\|\s*(counter|gauge|histogram)\s*\|\s*([^|]*)\|")


def documented(doc_path):
    """(name as scraped, type, labels) for each row of the metrics table."""
    rows = []
    with open(doc_path, encoding="utf-8") as doc:
        for line in doc:
            m = ROW.match(line)
            if m:
                labels = set(re.findall(r"`([a-z_]+)`", m.group(3)))
                rows.append((m.group(1), m.group(2), labels))
    return rows


def check(families, rows, fmt):
    problems = []
    by_name = {f.name: f for f in families}
    for name, typ, labels in rows:
        # The parsers name a counter family without its `_total` suffix.
        family_name = name[: -len("_total")] if typ == "counter" else name
        family = by_name.get(family_name)
        if family is None:
            problems.append(f"{fmt}: {name}: not declared")
            continue
        if family.type != typ:
            problems.append(f"{fmt}: {name}: declared as {family.type}, documented as {typ}")
        allowed = labels | ({"le"} if typ == "histogram" else set())
        for sample in family.samples:
            extra = set(sample.labels) - allowed
            if extra:
                problems.append(f"{fmt}: {sample.name}: undocumented labels {sorted(extra)}")
                break
    documented_names = {
        (n[: -len("_total")] if t == "counter" else n) for n, t, _ in rows
    }
    for family in families:
        if family.name.startswith("vroeg_") and family.name not in documented_names:
            problems.append(f"{fmt}: {family.name}: served but not documented")
    return problems


def main():
    if len(sys.argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    rows = documented(sys.argv[1])
    if len(rows) < 10:
        print(f"check_metrics: only {len(rows)} metrics documented in {sys.argv[1]}", file=sys.stderr)
        return 1
    problems = []
    with open(sys.argv[2], encoding="utf-8") as f:
        problems += check(list(parse_text(f.read())), rows, "prometheus text")
    if len(sys.argv) == 4:
        with open(sys.argv[3], encoding="utf-8") as f:
            problems += check(list(parse_openmetrics(f.read())), rows, "openmetrics")
    for p in problems:
        print(p)
    print(f"check_metrics: {len(rows)} documented families, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Standalone JSON Schemas of Kubernetes resources, for kubeconform.

usage: k8s_schemas.py K8S_VERSION OUT_DIR MANIFEST...

kubeconform fetches its schemas from GitHub by default, which CI cannot
reach. The PyPI package kubernetes-validate carries the schemas of the
Kubernetes OpenAPI for each release, with references into a shared
definitions file that kubeconform cannot follow. This writes, for every
kind the manifests use, a standalone (strict) schema named the way
kubeconform looks it up (`{kind}-{group}-{version}.json`), with the
references resolved. A definition that refers back to itself is left open.
"""
import json
import os
import sys

import yaml  # PyYAML, a dependency of kubernetes-validate

try:
    import kubernetes_validate
except ImportError:
    print("k8s_schemas: install kubernetes-validate (pip install kubernetes-validate)", file=sys.stderr)
    sys.exit(2)


def resolve(node, defs, stack):
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and "#/$defs/" in ref:
            name = ref.split("#/$defs/", 1)[1]
            if name in stack:
                return {}
            return resolve(defs[name], defs, stack | {name})
        return {k: resolve(v, defs, stack) for k, v in node.items() if k != "$id"}
    if isinstance(node, list):
        return [resolve(v, defs, stack) for v in node]
    return node


def file_name(api_version, kind):
    # As kubeconform's schemaPath: kind, then the version, then the group's
    # first part.
    parts = api_version.split("/")
    suffix = "-" + parts[-1].lower()
    if len(parts) == 2:
        suffix = "-" + parts[0].split(".")[0].lower() + suffix
    return f"{kind.lower()}{suffix}.json"


def main():
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    version, out = sys.argv[1], sys.argv[2]
    base = os.path.join(os.path.dirname(kubernetes_validate.__file__), "kubernetes-json-schema",
                        f"v{version}-local-strict")
    if not os.path.isdir(base):
        print(f"k8s_schemas: no schemas for Kubernetes {version} in kubernetes-validate", file=sys.stderr)
        return 2
    with open(os.path.join(base, "_definitions.json"), encoding="utf-8") as f:
        defs = json.load(f)["$defs"]
    wanted = set()
    for manifest in sys.argv[3:]:
        with open(manifest, encoding="utf-8") as f:
            for doc in yaml.safe_load_all(f):
                if doc:
                    wanted.add(file_name(doc["apiVersion"], doc["kind"]))
    os.makedirs(out, exist_ok=True)
    for name in sorted(wanted):
        with open(os.path.join(base, name), encoding="utf-8") as f:
            schema = json.load(f)
        with open(os.path.join(out, name), "w", encoding="utf-8") as f:
            json.dump(resolve(schema, defs, frozenset()), f)
        print(f"k8s_schemas: {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

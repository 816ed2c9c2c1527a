#!/usr/bin/env bash
# Check the Helm chart in deploy/helm/vroeg: `helm lint`, then render it in
# its three ways of getting rules and secrets and validate every manifest
# with kubeconform against the Kubernetes schemas (strict: no unknown
# fields), and check the configuration it renders with `vroeg config check`.
#
# Needs helm, kubeconform, Python 3 with kubernetes-validate (the schemas;
# kubeconform's default download from GitHub is not used) and a built
# vroeg (target/release or target/debug). .ci/run installs them.
set -euo pipefail
cd "$(dirname "$0")/.."
chart=deploy/helm/vroeg
k8s_version=${K8S_VERSION:-1.33.0}
vroeg=target/release/vroeg
[ -x "$vroeg" ] || vroeg=target/debug/vroeg
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

helm lint --strict "$chart" --set secrets.householdSecret=lint-only

# A render without the household secret must fail, and say why.
if helm template vroeg "$chart" > /dev/null 2> "$work/err"; then
  echo "helm-check: the chart rendered without a household secret" >&2
  exit 1
fi
if ! grep -q "secrets.householdSecret" "$work/err"; then
  echo "helm-check: a render without a household secret failed, but not for that:" >&2
  cat "$work/err" >&2
  exit 1
fi

helm template vroeg "$chart" --set secrets.householdSecret=ci-only > "$work/secret-from-values.yaml"
helm template vroeg "$chart" --set secrets.householdSecret=ci-only \
  --set-file 'rules.files.regels\.yaml=rules/regels.yaml' \
  --set 'kafka.client.security\.protocol=SASL_SSL' > "$work/rules-from-values.yaml"
helm template vroeg "$chart" --set secrets.existingSecret=vroeg-secrets \
  --set rules.configMap=vroeg-rules --set replicas=3 > "$work/existing.yaml"

python3 tests/tooling/k8s_schemas.py "$k8s_version" "$work/schemas" "$work"/*.yaml
kubeconform -strict -summary -schema-location "$work/schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
  "$work/secret-from-values.yaml" "$work/rules-from-values.yaml" "$work/existing.yaml"

# The configuration and routing the chart renders, with the pod's paths
# mapped onto the repository, pass `vroeg config check`.
python3 - "$work" <<'PY'
import os, sys, yaml
work = sys.argv[1]
for name in ("secret-from-values.yaml", "rules-from-values.yaml"):
    with open(os.path.join(work, name)) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "vroeg")
    out = os.path.join(work, name + ".d")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "wijkteams.yaml"), "w") as f:
        f.write(cm["data"]["wijkteams.yaml"])
    toml = (cm["data"]["vroeg.toml"]
            .replace("/etc/vroeg/config", out)
            .replace("/etc/vroeg/rules", os.path.abspath("rules"))
            .replace("/var/lib/vroeg", os.path.join(out, "var")))
    with open(os.path.join(out, "vroeg.toml"), "w") as f:
        f.write(toml)
PY
for name in secret-from-values rules-from-values; do
  VROEG_HOUSEHOLD_SECRET=ci-only "$vroeg" config check "$work/$name.yaml.d/vroeg.toml"
done
echo "helm-check: ok"

#!/usr/bin/env bash
# Checks every file in deploy/ with the tools that exist for it (opt-in:
# `make check-deploy`; installs promtool from Debian and yamllint,
# kubernetes-validate, check-jsonschema from PyPI when missing):
#   - systemd units: systemd-analyze verify (ExecStart pointed at this
#     checkout's binary);
#   - Prometheus: promtool check config and check rules; every Grafana
#     panel's query through promtool as a recording rule;
#   - Kubernetes: kubernetes-validate --strict against 1.30;
#   - node configs and zone files (examples, compose, the Kubernetes
#     ConfigMap's template): meridian check;
#   - compose.yaml: the Compose Specification's JSON schema
#     (check-jsonschema); its init.sh, run in a copy;
#   - every YAML file: yamllint; the dashboard: JSON.
# The Dockerfile and compose file are not run here: no Docker engine.
set -euo pipefail
cd "$(dirname "$0")/.."
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
command -v promtool >/dev/null || { $sudo apt-get update -qq && $sudo apt-get install -y -qq prometheus >/dev/null; }
command -v yamllint >/dev/null || pip install --quiet yamllint
command -v kubernetes-validate >/dev/null || pip install --quiet kubernetes-validate
command -v check-jsonschema >/dev/null || pip install --quiet check-jsonschema
cargo build --quiet --bin meridian
bin="$PWD/target/debug/meridian"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

echo "== systemd"
for unit in deploy/systemd/meridian.service deploy/systemd/meridian-probe@.service; do
  name=$(basename "$unit"); name=${name/@./@eu-west.}
  sed "s|/usr/local/bin/meridian|$bin|g" "$unit" > "$work/$name"
  systemd-analyze verify "$work/$name"
  echo "$unit: ok"
done

echo "== prometheus"
promtool check rules deploy/prometheus/alerts.yml
promtool check config --syntax-only deploy/prometheus/prometheus.yml
python3 - "$work/panels.yml" <<'PY'
import json, sys
d = json.load(open("deploy/grafana/meridian.json"))
rules = []
for p in d["panels"]:
    for t in p["targets"]:
        expr = t["expr"].replace("$__rate_interval", "5m")
        rules.append({"record": f"panel:{p['id']}:{t['refId']}", "expr": expr})
import yaml
yaml.safe_dump({"groups": [{"name": "grafana panels", "rules": rules}]}, open(sys.argv[1], "w"))
print(f"deploy/grafana/meridian.json: {len(rules)} queries")
PY
promtool check rules "$work/panels.yml" >/dev/null && echo "every panel's query parses"

echo "== kubernetes"
kubernetes-validate --strict -k 1.30.0 deploy/kubernetes/*.yaml

echo "== compose"
check-jsonschema --builtin-schema vendor.compose-spec deploy/compose/compose.yaml

echo "== meridian check"
cp deploy/examples/zones.yaml "$work/zones.yaml"
sed "s|/etc/meridian/zones.yaml|zones.yaml|" deploy/examples/meridian.yaml > "$work/example.yaml"
(cd "$work" && "$bin" check --config example.yaml)
cp deploy/compose/config/zones.yaml "$work/compose-zones.yaml"
for i in 1 2 3; do
  sed "s|/etc/meridian/config/zones.yaml|compose-zones.yaml|" "deploy/compose/config/n$i.yaml" > "$work/n$i.yaml"
  (cd "$work" && "$bin" check --config "n$i.yaml")
done
python3 - "$work" <<'PY'
import sys, yaml
d = yaml.safe_load(open("deploy/kubernetes/configmap.yaml"))["data"]
t = d["node.yaml.template"].replace("NODE_ID", "1").replace("POD_NAME", "meridian-0")
open(f"{sys.argv[1]}/k8s.yaml", "w").write(t.replace("/etc/meridian/config/zones.yaml", "k8s-zones.yaml"))
open(f"{sys.argv[1]}/k8s-zones.yaml", "w").write(d["zones.yaml"])
PY
(cd "$work" && "$bin" check --config k8s.yaml)

echo "== yamllint"
yamllint -d '{extends: relaxed, rules: {line-length: {max: 200}}}' deploy/
python3 -c 'import json; json.load(open("deploy/grafana/meridian.json"))' && echo "deploy/grafana/meridian.json: valid JSON"
# the compose cluster's PKI, made by its script in a copy of the folder
cp -r deploy/compose "$work/compose"
PATH="$(dirname "$bin"):$PATH" "$work/compose/init.sh" >/dev/null 2>&1
for f in ca.pem n1.pem n3.key agent-eu-west.pem operator.pem metrics-tokens prometheus.token; do
  [ -s "$work/compose/pki/$f" ] || { echo "init.sh made no pki/$f" >&2; exit 1; }
done
echo "deploy/compose/init.sh: ran, pki/ complete"
echo "all deploy files checked"

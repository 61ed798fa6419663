#!/usr/bin/env python3
"""Checks docker/ without a Docker engine: files the Dockerfile copies and compose mounts exist,
ports and service names agree across the Dockerfile, docker-compose.yml, prometheus.yml and the
Grafana provisioning, and the dashboard uses the provisioned datasource.

usage: check_docker.py REPO_ROOT      (ctest: docker_files)"""
import json
import pathlib
import re
import shlex
import sys

import yaml

root = pathlib.Path(sys.argv[1])
docker = root / "docker"
problems = []


def check(condition, message):
    if not condition:
        problems.append(message)


# Dockerfile: COPY sources exist in the build context (the repository root, as compose says).
compose = yaml.safe_load((docker / "docker-compose.yml").read_text())
lossguard = compose["services"]["lossguard"]
context = (docker / lossguard["build"]["context"]).resolve()
check(context == root.resolve(), f"compose builds from {context}, not the repository root")
dockerfile_path = context / lossguard["build"]["dockerfile"]
check(dockerfile_path.exists(), f"{dockerfile_path} missing")
dockerfile = dockerfile_path.read_text().replace("\\\n", " ")
for line in dockerfile.splitlines():
    words = shlex.split(line, comments=True) if line.strip() else []
    if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
        for source in words[1:-1]:
            check((context / source).exists(), f"Dockerfile copies {source}, which does not exist")

# The server's port: EXPOSE, --listen in the ENTRYPOINT, compose's mapping, Prometheus' target.
exposed = re.findall(r"^EXPOSE (\d+)", dockerfile, re.M)
listen = re.search(r'"--listen", "[^"]*:(\d+)"', dockerfile)
check(exposed and listen and exposed[-1] == listen.group(1),
      f"EXPOSE {exposed} and --listen {listen and listen.group(1)} disagree")
server_port = listen.group(1) if listen else None
container_ports = [p.split(":")[-1] for p in lossguard.get("ports", [])]
check(server_port in container_ports, f"compose maps {container_ports}, server listens on {server_port}")
check("--token-file" in dockerfile, "listening beyond loopback needs a token file")
secret_files = [s["file"] for s in compose.get("secrets", {}).values()]
check(any("/run/secrets/" + name in dockerfile for name in compose.get("secrets", {})),
      "the ENTRYPOINT's token file is not a compose secret")
gitignore = (root / ".gitignore").read_text() if (root / ".gitignore").exists() else ""
for f in secret_files:
    check(("docker/" + pathlib.Path(f).name) in gitignore, f"secret {f} is not in .gitignore")

prometheus = compose["services"]["prometheus"]
prom_config_path = None
for volume in prometheus["volumes"]:
    host, container = volume.split(":")[:2]
    check((docker / host).exists(), f"prometheus mounts {host}, which does not exist")
    if container.endswith("prometheus.yml"):
        prom_config_path = docker / host
check(prom_config_path is not None, "prometheus.yml is not mounted")
prom_config = yaml.safe_load(prom_config_path.read_text())
mounted = [v.split(":")[1] for v in prometheus["volumes"]]
for rule_file in prom_config.get("rule_files", []):
    check(rule_file in mounted, f"rule file {rule_file} is not mounted into prometheus")
targets = [t for job in prom_config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]]
check(f"lossguard:{server_port}" in targets, f"prometheus scrapes {targets}, not lossguard:{server_port}")
prom_port = re.search(r"--web.listen-address=[^:]*:(\d+)", " ".join(prometheus.get("command", [])))
prom_port = prom_port.group(1) if prom_port else "9090"
check(any(p.split(":")[-1] == prom_port for p in prometheus.get("ports", [])),
      f"prometheus listens on {prom_port}, compose maps {prometheus.get('ports')}")

# Grafana: provisioning and dashboards mounted, datasource URL and uid agree.
grafana = compose["services"]["grafana"]
for volume in grafana["volumes"]:
    check((docker / volume.split(":")[0]).exists(), f"grafana mounts {volume}, missing")
datasources = yaml.safe_load((docker / "grafana/provisioning/datasources/prometheus.yml").read_text())
uids = {d["uid"] for d in datasources["datasources"]}
for d in datasources["datasources"]:
    check(d["url"] == f"http://prometheus:{prom_port}", f"datasource URL {d['url']}")
providers = yaml.safe_load((docker / "grafana/provisioning/dashboards/lossguard.yml").read_text())
dashboards_dir = providers["providers"][0]["options"]["path"]
check(any(v.split(":")[1] == dashboards_dir for v in grafana["volumes"]),
      f"the dashboards provider reads {dashboards_dir}, which is not mounted")
for path in (docker / "grafana/dashboards").glob("*.json"):
    dashboard = json.loads(path.read_text())
    def walk(node):
        if isinstance(node, dict):
            if "datasource" in node and isinstance(node["datasource"], dict):
                check(node["datasource"].get("uid") in uids,
                      f"{path.name}: datasource {node['datasource']} is not provisioned")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(dashboard)
    check(dashboard.get("uid"), f"{path.name} has no uid")

if problems:
    print("\n".join(problems))
    sys.exit(1)
print("docker/: consistent")

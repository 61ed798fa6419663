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

# What the build stage configures: every directory the top-level CMakeLists.txt adds (tests and
# benchmarks are off in the image) is copied; the programs taken from the build are where CMake puts
# them (the build directory mirrors the source directory that declares each one).
copied = {w.rstrip("/") for line in dockerfile.splitlines()
          for w in (shlex.split(line, comments=True)[1:-1] if line.startswith("COPY ") and
                    "--from" not in line else [])}
top = (root / "CMakeLists.txt").read_text()
for directory in re.findall(r"^\s*add_subdirectory\((\w+)\)", top, re.M):
    if directory != "tests":
        check(directory in copied, f"the build stage does not copy {directory}/, which CMake adds")
for program in re.findall(r"COPY --from=build ([^\n]+)", dockerfile):
    for path in program.split()[:-1]:
        parts = pathlib.PurePosixPath(path).parts
        if len(parts) < 3 or parts[1] != "build" or parts[2] in ("web",):
            continue
        declared = (root / parts[2] / "CMakeLists.txt")
        name = parts[-1]
        check(declared.exists() and re.search(r"add_executable\(" + re.escape(name) + r"\s",
                                               declared.read_text()) is not None,
              f"the image takes {path}, but {parts[2]}/CMakeLists.txt does not build {name}")

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

# docker-compose.postgres.yml: servers on one PostgreSQL database behind nginx.
shared = yaml.safe_load((docker / "docker-compose.postgres.yml").read_text())
services = shared["services"]
postgres = services["postgres"]
pg_env = postgres["environment"]
pg_password_secret = pg_env["POSTGRES_PASSWORD_FILE"].removeprefix("/run/secrets/")
check(pg_password_secret in postgres.get("secrets", []), "postgres does not get its password secret")
servers = {name: svc for name, svc in services.items() if name.startswith("lossguard-")}
check(len(servers) >= 2, f"docker-compose.postgres.yml runs {len(servers)} lossguard servers, not 2+")
server_ports = set()
for name, svc in servers.items():
    check((docker / svc["build"]["context"]).resolve() == root.resolve(), f"{name} builds elsewhere")
    check((docker / svc["build"]["context"] / svc["build"]["dockerfile"]).exists(),
          f"{name}: its Dockerfile is missing")
    args = svc["entrypoint"]
    flag = lambda f: args[args.index(f) + 1] if f in args else None
    db = flag("--db") or ""
    m = re.fullmatch(r"postgresql://([^@:/]+)@([^:/]+):(\d+)/(\w+)", db)
    check(m is not None, f"{name}: --db {db!r} is not postgresql://USER@HOST:PORT/DB without a password")
    if m:
        check(m.group(1) == pg_env["POSTGRES_USER"], f"{name}: user {m.group(1)} is not POSTGRES_USER")
        check(m.group(2) == "postgres", f"{name}: --db host {m.group(2)} is not the postgres service")
        check(m.group(3) == "5432", f"{name}: --db port {m.group(3)} is not PostgreSQL's 5432")
        check(m.group(4) == pg_env["POSTGRES_DB"], f"{name}: database {m.group(4)} is not POSTGRES_DB")
    check(flag("--db-password-file") == "/run/secrets/" + pg_password_secret,
          f"{name}: --db-password-file is not postgres's password secret")
    for secret_flag in ("--db-password-file", "--token-file"):
        secret = (flag(secret_flag) or "").removeprefix("/run/secrets/")
        check(secret in svc.get("secrets", []) and secret in shared.get("secrets", {}),
              f"{name}: {secret_flag} {secret} is not a compose secret it gets")
    listen = flag("--listen") or ""
    server_ports.add(listen.rsplit(":", 1)[-1])
    check(listen.startswith("0.0.0.0:"), f"{name}: --listen {listen} is not reachable from nginx")
    check(svc.get("depends_on", {}).get("postgres", {}).get("condition") == "service_healthy",
          f"{name} does not wait for a healthy postgres")
check(len(server_ports) == 1, f"the servers listen on different ports {server_ports}")
server_port_shared = server_ports.pop() if server_ports else None
for f in (s["file"] for s in shared.get("secrets", {}).values()):
    check(("docker/" + pathlib.Path(f).name) in gitignore, f"secret {f} is not in .gitignore")

balancer = services["loadbalancer"]
nginx_conf = None
for volume in balancer["volumes"]:
    host, container = volume.split(":")[:2]
    check((docker / host).exists(), f"loadbalancer mounts {host}, which does not exist")
    nginx_conf = (docker / host).read_text() if (docker / host).exists() else None
upstreams = re.findall(r"^\s*server\s+([\w.-]+):(\d+)\s*;", nginx_conf or "", re.M)
check(sorted(h for h, _ in upstreams) == sorted(servers), f"nginx balances {upstreams}, not {sorted(servers)}")
check(all(p == server_port_shared for _, p in upstreams), "nginx's upstream ports are not the servers'")
nginx_listen = re.search(r"^\s*listen\s+(\d+)\s*;", nginx_conf or "", re.M)
check(nginx_listen and any(p.split(":")[-1] == nginx_listen.group(1) for p in balancer.get("ports", [])),
      "compose does not map nginx's listen port")
check("non_idempotent" in (nginx_conf or ""), "nginx must retry POSTs on the next server")

shared_prometheus = services["prometheus"]
shared_prom_config = None
for volume in shared_prometheus["volumes"]:
    host, container = volume.split(":")[:2]
    check((docker / host).exists(), f"prometheus mounts {host}, which does not exist")
    if container.endswith("prometheus.yml"):
        shared_prom_config = yaml.safe_load((docker / host).read_text())
shared_targets = sorted(t for job in shared_prom_config["scrape_configs"]
                        for c in job["static_configs"] for t in c["targets"])
check(shared_targets == sorted(f"{n}:{server_port_shared}" for n in servers),
      f"prometheus scrapes {shared_targets}, not every server")
shared_mounted = [v.split(":")[1] for v in shared_prometheus["volumes"]]
for rule_file in shared_prom_config.get("rule_files", []):
    check(rule_file in shared_mounted, f"rule file {rule_file} is not mounted into prometheus")

# Alertmanager: both compose files run it with the shipped configuration, and both Prometheus
# configurations send to it.
for compose_name, spec, prom in (("docker-compose.yml", compose, prom_config),
                                 ("docker-compose.postgres.yml", shared, shared_prom_config)):
    manager = spec["services"].get("alertmanager")
    check(manager is not None, f"{compose_name} runs no alertmanager")
    if manager is None:
        continue
    for volume in manager.get("volumes", []):
        check((docker / volume.split(":")[0]).exists(), f"{compose_name}: alertmanager mounts {volume}, missing")
    config_flag = [a for a in manager.get("command", []) if a.startswith("--config.file=")]
    mounted_config = [v.split(":")[1] for v in manager.get("volumes", [])]
    check(config_flag and config_flag[0].split("=", 1)[1] in mounted_config,
          f"{compose_name}: alertmanager's --config.file is not mounted")
    manager_port = "9093"
    check(any(p.split(":")[-1] == manager_port for p in manager.get("ports", [])),
          f"{compose_name}: alertmanager's port {manager_port} is not mapped")
    managers = [t for a in (prom or {}).get("alerting", {}).get("alertmanagers", [])
                for c in a.get("static_configs", []) for t in c.get("targets", [])]
    check(managers == [f"alertmanager:{manager_port}"],
          f"{compose_name}: prometheus sends alerts to {managers}, not alertmanager:{manager_port}")
am_config = yaml.safe_load((docker / "alertmanager/alertmanager.yml").read_text())
check("run" in am_config["route"].get("group_by", []), "alertmanager does not group by run")
receivers = {r["name"] for r in am_config.get("receivers", [])}
check(am_config["route"]["receiver"] in receivers, "alertmanager's default receiver is not defined")

if problems:
    print("\n".join(problems))
    sys.exit(1)
print("docker/: consistent")

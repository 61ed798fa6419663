"""The REST contract (schema/openapi.json, served at /api/v1/openapi.json) against the real server:
every answer the document lists for every route is provoked and checked against it with
schemathesis (status, content type, headers, body schema), and the document's list of answers is
checked to be exactly the list provoked here, so that neither can grow alone. Then a bounded
property-based run of schemathesis over every route: no 5xx, no answer outside the contract."""

import json
import os
import re
import subprocess
import sys

import pytest
import schemathesis

import schemathesis_hooks  # noqa: F401  (registers the NDJSON serializer)
from conftest import Server

WRITE_TOKEN = "contract-write-token-0123456789abcdef"
READ_TOKEN = "contract-read-token-0123456789abcdef"
WRITE = {"Authorization": f"Bearer {WRITE_TOKEN}"}
READ = {"Authorization": f"Bearer {READ_TOKEN}"}
RUN = "contract-run"

# Answers every route may give that this test cannot provoke on a healthy SQLite server, with the
# test that does: 503 storage_unavailable needs the database gone (PostgreSQL stopped under the
# server: SharedDatabase tests in tests/e2e/shared_database_test.cc).
NOT_PROVOKED_HERE = {"503"}


def record(step, **extra):
    base = {"run": RUN, "step": step, "ga_steps": 8, "micro_batch_size": 1, "loss": 16.0,
            "ref_loss": 2.0, "grad_norm": 1.0, "tokens": 100, "lr": 1e-4}
    base.update(extra)
    return base


GUARD = {"action": "warn", "kind": "loss_scale_mismatch", "severity": "critical",
         "source": "server", "first_step": 0, "message": "loss 8x the reference"}


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    binary = os.environ["LOSSGUARD_SERVER_BIN"]
    directory = tmp_path_factory.mktemp("contract")
    (directory / "write").write_text(WRITE_TOKEN)
    (directory / "read").write_text(READ_TOKEN)
    web = directory / "web"
    web.mkdir()
    (web / "index.html").write_text("<!doctype html><title>lossguard</title>")
    (web / "app.js").write_text("console.log('lossguard');")
    guarded = Server(binary, str(directory / "guarded.db"),
                     ["--token-file", str(directory / "write"), "--read-token-file",
                      str(directory / "read"), "--max-body-mb", "1", "--web-root", str(web)])
    bare = Server(binary, str(directory / "bare.db"), ["--web-root", str(directory / "none")])
    guarded.start()
    bare.start()
    yield guarded, bare
    guarded.stop()
    bare.stop()


@pytest.fixture(scope="module")
def schema(servers):
    guarded, _ = servers
    return schemathesis.openapi.from_url(guarded.url + "/api/v1/openapi.json")


def call(schema, server, method, path, status, **case):
    operation = schema[path][method]
    response = operation.Case(**case).call(base_url=server.url)
    assert response.status_code == int(status), (method, path, response.status_code, response.text)
    operation.Case(**case).validate_response(response)
    return response


def test_every_documented_answer_is_the_servers(servers, schema):
    guarded, bare = servers
    provoked = set()

    def check(method, path, status, server=guarded, **case):
        provoked.add((path, method.lower(), status))
        return call(schema, server, method, path, status, **case)

    check("GET", "/healthz", "200")
    check("GET", "/api/v1/openapi.json", "200")
    check("GET", "/api/v1/step-record.schema.json", "200")

    records = [record(s) for s in range(40)] + [record(40, guard=GUARD)]
    records.append(record(41, loss="NaN", grad_norm="Infinity"))
    ingested = check("POST", "/api/v1/steps", "200", headers=WRITE, media_type="application/json",
                     body={"records": records}).json()
    assert ingested["accepted"] == len(records)
    assert ingested["verdicts"][RUN]["open"], "a loss 8x its reference is judged at once"
    ndjson = "\n".join(json.dumps(r) for r in records[:3]) + "\n"
    again = check("POST", "/api/v1/steps", "200", headers=WRITE,
                  media_type="application/x-ndjson", body=ndjson).json()
    assert again["duplicates"] == 3
    check("POST", "/api/v1/steps", "400", headers=WRITE, media_type="application/json",
          body={"records": [{"run": RUN, "step": -1}]})
    check("POST", "/api/v1/steps", "401", media_type="application/json",
          body={"records": [record(99)]})
    big = {"records": [record(1000 + i, note="x" * 1000) for i in range(1500)]}
    check("POST", "/api/v1/steps", "413", headers=WRITE, media_type="application/json", body=big)
    check("POST", "/api/v1/steps", "415", headers=WRITE, media_type="text/plain", body="hello")

    runs = check("GET", "/api/v1/runs", "200", headers=READ, query={"limit": 10}).json()
    assert [r["run"] for r in runs["runs"]] == [RUN]
    check("GET", "/api/v1/runs", "400", headers=READ, query={"limit": 0})
    check("GET", "/api/v1/runs", "401")

    run_path = {"run": RUN}
    run = check("GET", "/api/v1/runs/{run}", "200", headers=READ, path_parameters=run_path).json()
    assert run["run"]["last"]["loss"] == "NaN", "non-finite values are data"
    check("GET", "/api/v1/runs/{run}", "400", headers=READ, path_parameters=run_path,
          query={"unknown": 1})
    check("GET", "/api/v1/runs/{run}", "401", path_parameters=run_path)
    check("GET", "/api/v1/runs/{run}", "404", headers=READ, path_parameters={"run": "absent"})

    raw = check("GET", "/api/v1/runs/{run}/steps", "200", headers=READ, path_parameters=run_path,
                query={"limit": 5}).json()
    assert len(raw["steps"]) == 5 and raw["next"] == {"from": 5, "from_rank": 0}
    summary = check("GET", "/api/v1/runs/{run}/steps", "200", headers=READ,
                    path_parameters=run_path, query={"max_points": 10}).json()
    assert summary["ranks"][0]["loss"]["nan"][-1] == 1, "the NaN step is counted in its bucket"
    check("GET", "/api/v1/runs/{run}/steps", "400", headers=READ, path_parameters=run_path,
          query={"from": 5, "to": 1})
    check("GET", "/api/v1/runs/{run}/steps", "401", path_parameters=run_path)
    check("GET", "/api/v1/runs/{run}/steps", "404", headers=READ,
          path_parameters={"run": "absent"})

    actions = check("GET", "/api/v1/runs/{run}/guard-actions", "200", headers=READ,
                    path_parameters=run_path).json()
    assert [a["step"] for a in actions["actions"]] == [40]
    check("GET", "/api/v1/runs/{run}/guard-actions", "400", headers=READ,
          path_parameters=run_path, query={"limit": -1})
    check("GET", "/api/v1/runs/{run}/guard-actions", "401", path_parameters=run_path)
    check("GET", "/api/v1/runs/{run}/guard-actions", "404", headers=READ,
          path_parameters={"run": "absent"})

    alerts = check("GET", "/api/v1/alerts", "200", headers=READ, query={"run": RUN}).json()
    alert = next(a for a in alerts["alerts"] if a["kind"] == "loss_scale_mismatch")
    named = {int(n) for n in re.findall(r"step (\d+)", alert["message"])}
    assert named <= {alert["first_step"]}, ("the message tells of the first step", alert)
    assert [a["action"] for a in alert["actions"]] == ["warn"]
    check("GET", "/api/v1/alerts", "400", headers=READ, query={"state": "sleeping"})
    check("GET", "/api/v1/alerts", "401")

    acked = check("POST", "/api/v1/alerts/{id}/ack", "200", headers=WRITE,
                  path_parameters={"id": alert["id"]}).json()
    assert acked["alert"]["acked"] is True
    assert acked["alert"]["actions"] == alert["actions"], "the ack answers the whole alert"
    check("POST", "/api/v1/alerts/{id}/ack", "400", headers=WRITE, path_parameters={"id": "x"})
    check("POST", "/api/v1/alerts/{id}/ack", "401", path_parameters={"id": alert["id"]})
    check("POST", "/api/v1/alerts/{id}/ack", "404", headers=WRITE, path_parameters={"id": 999999})

    metrics = check("GET", "/metrics", "200", headers=READ)
    assert f'lossguard_ingest_records_total' in metrics.text, metrics.text[:2000]
    check("GET", "/metrics", "400", headers=READ, query={"x": 1})
    check("GET", "/metrics", "401")

    check("GET", "/", "200")
    check("GET", "/", "404", server=bare)
    asset = check("GET", "/assets/{file}", "200", path_parameters={"file": "app.js"})
    assert asset.text == "console.log('lossguard');"
    check("GET", "/assets/{file}", "400", path_parameters={"file": "app.js\0.html"})
    check("GET", "/assets/{file}", "404", path_parameters={"file": "missing.js"})

    check("DELETE", "/api/v1/runs/{run}", "400", headers=WRITE, path_parameters=run_path,
          query={"cascade": 1})
    check("DELETE", "/api/v1/runs/{run}", "401", path_parameters=run_path)
    deleted = check("DELETE", "/api/v1/runs/{run}", "200", headers=WRITE,
                    path_parameters=run_path).json()
    assert deleted["records"] == len(records)
    check("DELETE", "/api/v1/runs/{run}", "404", headers=WRITE, path_parameters=run_path)

    documented = set()
    for path, methods in schema.raw_schema["paths"].items():
        for method, operation in methods.items():
            for status in operation["responses"]:
                if status not in NOT_PROVOKED_HERE:
                    documented.add((path, method, status))
    assert provoked == documented, (
        f"documented, never provoked: {sorted(documented - provoked)}; "
        f"provoked, not documented: {sorted(provoked - documented)}")


def test_a_property_based_run_over_every_route_finds_nothing_outside_the_contract(servers,
                                                                                   tmp_path):
    guarded, _ = servers
    schemathesis_cli = os.path.join(os.path.dirname(sys.executable), "schemathesis")
    report = tmp_path / "report"
    config = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schemathesis.toml")
    command = [schemathesis_cli, "--config-file", config, "run",
               guarded.url + "/api/v1/openapi.json",
               "--header", f"Authorization: Bearer {WRITE_TOKEN}",
               "--checks", "all", "--mode", "all",
               "--max-examples", os.environ.get("LOSSGUARD_FUZZ_EXAMPLES", "25"),
               "--seed", "7", "--workers", "1", "--request-timeout", "10",
               "--phases", "examples,coverage,fuzzing",
               # Hypothesis' filter_too_much judges how the generator spends its time (negative
               # NDJSON batches are mostly filtered out), not the API: on a loaded machine it
               # failed the run with no request outside the contract. Every check still runs on
               # every generated request.
               "--suppress-health-check", "filter_too_much",
               "--max-time", "150", "--report", "junit", "--report-dir", str(report)]
    env = dict(os.environ, SCHEMATHESIS_HOOKS="schemathesis_hooks",
               PYTHONPATH=os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]

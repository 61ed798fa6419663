"""Fixtures for the Python package's tests: the real lossguard-server binary on a loopback port with
its own SQLite database. ctest sets LOSSGUARD_SERVER_BIN (and PYTHONPATH to the build tree's
package)."""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


class Server:
    """lossguard-server as a child process. start() on port 0 picks a free port; a restart keeps
    the port and the database."""

    def __init__(self, binary: str, db: str):
        self.binary, self.db = binary, db
        self.port = 0
        self.process = None
        self.log_path = db + ".log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        log = open(self.log_path, "a")
        self.process = subprocess.Popen(
            [self.binary, "--listen", f"127.0.0.1:{self.port}", "--db", self.db],
            stdout=subprocess.PIPE, stderr=log, text=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            if "listening on" in line:
                self.port = int(line.rsplit(":", 1)[1])
                return
        self.stop()
        raise RuntimeError(f"lossguard-server did not start; log: {open(self.log_path).read()}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process.stdout.close()
            self.process = None

    def get(self, path: str, **params):
        query = ("?" + urllib.parse.urlencode(params)) if params else ""
        with urllib.request.urlopen(self.url + path + query, timeout=10) as response:
            return json.load(response)

    def steps(self, run: str):
        """Every stored record of `run`, in (step, rank) order."""
        return self.get(f"/api/v1/runs/{run}/steps", limit=100000)["steps"]

    def alerts(self, run: str):
        return self.get("/api/v1/alerts", run=run)["alerts"]


@pytest.fixture
def server(tmp_path):
    binary = os.environ.get("LOSSGUARD_SERVER_BIN")
    if not binary:
        pytest.fail("LOSSGUARD_SERVER_BIN is not set (ctest sets it to the built lossguard-server)")
    s = Server(binary, str(tmp_path / "lossguard.db"))
    s.start()
    yield s
    s.stop()

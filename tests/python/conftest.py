"""Fixtures for the Python package's tests: the real lossguard-server binary on a loopback port with
its own SQLite database. ctest sets LOSSGUARD_SERVER_BIN (and PYTHONPATH to the build tree's
package)."""

import json
import os
import ssl
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

    def __init__(self, binary: str, db: str, extra_args=(), ca_file=None):
        self.binary, self.db = binary, db
        self.extra_args = list(extra_args)
        self.ca_file = ca_file  # set: the server speaks https, verified against this CA
        self.port = 0
        self.process = None
        self.log_path = db + ".log"

    @property
    def url(self) -> str:
        return f"{'https' if self.ca_file else 'http'}://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        log = open(self.log_path, "a")
        self.process = subprocess.Popen(
            [self.binary, "--listen", f"127.0.0.1:{self.port}", "--db", self.db] + self.extra_args,
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
        context = ssl.create_default_context(cafile=self.ca_file) if self.ca_file else None
        with urllib.request.urlopen(self.url + path + query, timeout=10, context=context) as response:
            return json.load(response)

    def steps(self, run: str):
        """Every stored record of `run`, in (step, rank) order."""
        return self.get(f"/api/v1/runs/{run}/steps", limit=100000)["steps"]

    def serious_alerts(self, run: str):
        """(kind, severity) of the run's alerts at warning or critical."""
        return [(a["kind"], a["severity"]) for a in self.alerts(run)
                if a["severity"] in ("warning", "critical")]

    def alerts(self, run: str):
        """The run's alerts; each is also appended to $LOSSGUARD_ALERTS_LOG when it is set (a TSV
        line: run, kind, severity, first step, message), which is how the README's table of what
        the real trainers raised is made."""
        alerts = self.get("/api/v1/alerts", run=run)["alerts"]
        log = os.environ.get("LOSSGUARD_ALERTS_LOG")
        if log:
            with open(log, "a") as f:
                for a in alerts:
                    f.write(f"{run}\t{a['kind']}\t{a['severity']}\t{a['first_step']}\t"
                            f"{a['message']}\n")
        return alerts


@pytest.fixture
def server(tmp_path):
    binary = os.environ.get("LOSSGUARD_SERVER_BIN")
    if not binary:
        pytest.fail("LOSSGUARD_SERVER_BIN is not set (ctest sets it to the built lossguard-server)")
    s = Server(binary, str(tmp_path / "lossguard.db"))
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def tokenizer():
    """hf_tiny's tokenizer, trained once per test module (transformers is imported only by the
    tests that ask for it)."""
    import hf_tiny
    return hf_tiny.make_tokenizer()


def make_test_ca(directory):
    """A throwaway CA and a certificate it signs for 127.0.0.1, made with the openssl command.
    Returns (ca_certificate, server_certificate, server_key) paths."""
    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)
    ca_key, ca_cert = str(directory / "ca.key"), str(directory / "ca.pem")
    key, csr, cert = str(directory / "server.key"), str(directory / "server.csr"), str(directory / "server.pem")
    ext = directory / "server.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", ca_key, "-out", ca_cert, "-days", "1",
            "-subj", "/CN=lossguard-python-test-ca", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign")
    openssl("req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    openssl("x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial",
            "-out", cert, "-days", "1", "-extfile", str(ext))
    return ca_cert, cert, key


@pytest.fixture
def tls_server(tmp_path):
    """lossguard-server over https with a certificate from a throwaway CA (server.ca_file)."""
    binary = os.environ.get("LOSSGUARD_SERVER_BIN")
    if not binary:
        pytest.fail("LOSSGUARD_SERVER_BIN is not set (ctest sets it to the built lossguard-server)")
    pki = tmp_path / "pki"
    pki.mkdir()
    ca_cert, cert, key = make_test_ca(pki)
    s = Server(binary, str(tmp_path / "lossguard.db"),
               extra_args=["--tls-cert-file", cert, "--tls-key-file", key], ca_file=ca_cert)
    s.start()
    yield s
    s.stop()

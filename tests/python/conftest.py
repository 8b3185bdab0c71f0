"""Fixtures: a fresh single-validator devnet (`iotchain dev --no-sim`) per test module.

The node is the real binary (IOTCHAIN_BIN); everything else here is independent code:
pycose and cbor2 build and sign the readings, hashlib computes reading ids, urllib talks HTTP.
"""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

BIN = os.environ.get("IOTCHAIN_BIN", str(Path(__file__).resolve().parents[2] / "target/debug/iotchain"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(*args, check=True):
    """Runs the iotchain CLI; returns the CompletedProcess."""
    p = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError(f"iotchain {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


class Node:
    """A running `iotchain dev --no-sim` process."""

    def __init__(self, data_dir: Path, port: int | None = None, extra_args=()):
        self.data_dir = data_dir
        self.extra_args = list(extra_args)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [BIN, "dev", "--no-sim", "--data-dir", str(self.data_dir),
             "--http-addr", f"127.0.0.1:{self.port}", "--block-interval-ms", "50", *self.extra_args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        # The node prints its API line once it listens: wait for that event, not for time.
        lines = []
        for line in self.proc.stdout:
            lines.append(line)
            if "API:" in line:
                break
        else:
            raise AssertionError("node exited before serving:\n" + "".join(lines))
        # Keep draining output so the node never blocks on a full pipe.
        import threading
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()
        return self

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def genesis(self) -> Path:
        return self.data_dir / "genesis.json"

    @property
    def owner_key(self) -> Path:
        return self.data_dir / "dev-owner.key"

    def request(self, method, path, body=None, content_type=None):
        """Returns (status, parsed JSON body)."""
        req = urllib.request.Request(self.url + path, data=body, method=method)
        if content_type:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=90) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def get(self, path):
        return self.request("GET", path)

    def post_cose(self, message: bytes):
        return self.request("POST", "/v1/readings", message, "application/cose")

    def post_batch(self, body: bytes):
        return self.request("POST", "/v1/readings", body, "application/cbor")

    def wait_final(self, reading_id: str) -> dict:
        status, body = self.get(f"/v1/readings/{reading_id}?wait_ms=20000")
        assert status == 200, body
        assert body["status"] == "final", body
        return body


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    n = Node(tmp_path_factory.mktemp("devnet")).start()
    yield n
    n.stop()

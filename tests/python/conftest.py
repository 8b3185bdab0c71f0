"""Fixtures: a fresh single-validator devnet (`iotchain dev --no-sim`) per test module.

The node is the real binary (IOTCHAIN_BIN); everything else here is independent code:
pycose and cbor2 build and sign the readings, hashlib computes reading ids, urllib talks HTTP.
"""

import json
import os
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

BIN = os.environ.get("IOTCHAIN_BIN", str(Path(__file__).resolve().parents[2] / "target/debug/iotchain"))


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out to outgoing connections and `bind(0)`."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(offsets) -> int:
    """A base port such that base+k is free for every k in `offsets`.

    Taken below the kernel's ephemeral range: a port from `bind(0)` can be handed to an
    outgoing connection before a node (re)binds it, which made tests fail now and then."""
    import random

    top = _ephemeral_low() - max(offsets) - 1
    for _ in range(100):
        base = random.randrange(10000, top)
        socks = []
        try:
            for k in offsets:
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", base + k))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no free port range")


def free_port() -> int:
    return free_ports([0])


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
        # Everything the node prints, kept beside its data directory (appended across
        # restarts) and shown when an assertion about the node fails.
        self.log_path = Path(str(data_dir) + ".log")

    def start(self):
        self.proc = subprocess.Popen(
            [BIN, "dev", "--no-sim", "--data-dir", str(self.data_dir),
             "--http-addr", f"127.0.0.1:{self.port}", "--block-interval-ms", "50", *self.extra_args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn,iotchain=debug")},
        )
        log = open(self.log_path, "a")
        log.write(f"--- start (pid {self.proc.pid})\n")
        # The node prints its API line once it listens: wait for that event, not for time.
        lines = []
        for line in self.proc.stdout:
            lines.append(line)
            log.write(line)
            if "API:" in line:
                break
        else:
            log.close()
            raise AssertionError("node exited before serving:\n" + "".join(lines))
        log.flush()

        # Keep draining output so the node never blocks on a full pipe.
        def drain(out, log):
            with log:
                for line in out:
                    log.write(line)
                    log.flush()

        import threading
        threading.Thread(target=drain, args=(self.proc.stdout, log), daemon=True).start()
        return self

    def log_tail(self, lines: int = 60) -> str:
        """The last lines the node printed (for failure messages)."""
        try:
            return "".join(self.log_path.read_text().splitlines(keepends=True)[-lines:])
        except OSError:
            return ""

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self):
        """Ctrl-C, as an operator would: the node must exit cleanly and promptly."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                code = self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"node did not stop within 30 s of SIGINT\n{self.log_tail()}")
            assert code == 0, f"node exited with {code} on SIGINT\n{self.log_tail()}"

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
        assert body["status"] == "final", f"{body}\nnode log (tail):\n{self.log_tail()}"
        return body


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    n = Node(tmp_path_factory.mktemp("devnet")).start()
    yield n
    n.stop()

"""Hostile load on one devnet node, while a legitimate device sends a reading every 100 ms
from 127.0.0.1 and its latency is measured:

- expensive JSON-RPC: batches of 100 `eth_estimateGas` on init code that loops for ever,
  two at once, again and again (from 127.0.0.2);
- idle connections: as many as the attacker can open, held (10,000 by default, 127.0.0.3);
- slowloris: connections that send a header byte every few seconds (127.0.0.4);
- a flood of forged readings (valid CBOR, bad signatures) from one source (127.0.0.5);
- oversized log filters over JSON-RPC (`eth_getLogs` with 100,000 addresses, 127.0.0.6).

    python hostile.py --seconds 120      # the long form (scripts/faults.sh)

Prints the legitimate device's p50/p99/max latency and what the attacks got; exits non-zero
if a legitimate reading was refused or is not final. `test_faults.py` runs a short form.
"""

import argparse
import json
import resource
import socket
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import Node  # noqa: E402
from cose_device import Device, cbor_array  # noqa: E402
from helpers import new_device  # noqa: E402


def connect(src: str, port: int, timeout=5) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s


def http(src: str, port: int, method: str, path: str, body: bytes, ctype: str, timeout=30):
    """One request on a fresh connection from `src`: (status, body bytes)."""
    s = connect(src, port, timeout)
    try:
        head = (f"{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-type: {ctype}\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode()
        s.sendall(head + body)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        status = int(out.split(b" ", 2)[1]) if out.startswith(b"HTTP/") else 0
        return status, out.split(b"\r\n\r\n", 1)[-1]
    finally:
        s.close()


class Attack(threading.Thread):
    def __init__(self, name, body):
        super().__init__(daemon=True)
        self.name_ = name
        self.body = body
        self.stop = threading.Event()
        self.counts = {}

    def count(self, what):
        self.counts[what] = self.counts.get(what, 0) + 1

    def run(self):
        try:
            self.body(self)
        except Exception as e:  # an attack that breaks stops; the figures say so
            self.count(f"attack stopped: {type(e).__name__}: {e}")


def expensive_rpc(port):
    batch = json.dumps([{"jsonrpc": "2.0", "id": i, "method": "eth_estimateGas",
                         "params": [{"data": "0x5b600056"}]} for i in range(100)]).encode()

    def body(a: Attack):
        while not a.stop.is_set():
            try:
                status, _ = http("127.0.0.2", port, "POST", "/", batch, "application/json", timeout=60)
                a.count(f"batch answered {status}")
            except OSError as e:
                a.count(f"batch failed: {type(e).__name__}")
    return body


def idle_connections(port, n):
    def body(a: Attack):
        held = []
        for _ in range(n):
            if a.stop.is_set():
                break
            try:
                held.append(connect("127.0.0.3", port, timeout=2))
                a.count("opened")
            except OSError as e:
                a.count(f"refused at connect: {type(e).__name__}")
        a.stop.wait()
        for s in held:
            s.close()
    return body


def slowloris(port, n):
    def body(a: Attack):
        conns = []
        for _ in range(n):
            try:
                s = connect("127.0.0.4", port, timeout=2)
                s.sendall(b"POST /v1/readings HTTP/1.1\r\n")
                conns.append(s)
            except OSError:
                a.count("refused at connect")
        while not a.stop.wait(3):
            alive = []
            for s in conns:
                try:
                    s.sendall(b"x")
                    alive.append(s)
                except OSError:
                    a.count("cut off by the node")
                    s.close()
            conns = alive
        for s in conns:
            s.close()
    return body


def forged_flood(port, device: Device):
    def body(a: Attack):
        while not a.stop.is_set():
            batch = []
            for _ in range(200):
                m = bytearray(device.sign())
                m[-1] ^= 1
                batch.append(bytes(m))
            try:
                status, answer = http("127.0.0.5", port, "POST", "/v1/readings", cbor_array(batch),
                                      "application/cbor")
                codes = {r.get("error", {}).get("code") for r in json.loads(answer).get("results", [])}
                a.count(f"{status} {sorted(c for c in codes if c)}")
            except (OSError, ValueError) as e:
                a.count(f"failed: {type(e).__name__}")
    return body


def oversized_filters(port):
    addresses = [f"0x{i:040x}" for i in range(100_000)]
    req = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_getLogs",
                      "params": [{"fromBlock": "0x0", "toBlock": "latest", "address": addresses}]}).encode()

    def body(a: Attack):
        while not a.stop.is_set():
            try:
                status, answer = http("127.0.0.6", port, "POST", "/", req, "application/json")
                msg = json.loads(answer).get("error", {}).get("message", "answered")
                a.count(f"{status} {msg[:60]}")
            except (OSError, ValueError) as e:
                a.count(f"failed: {type(e).__name__}")
            a.stop.wait(0.2)
    return body


def run(root: Path, seconds: float, idle: int = 10_000, say=print) -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    idle = min(idle, hard - 512)
    node = Node(root / "data").start()
    try:
        legit, forger = new_device(node), new_device(node)
        attacks = [Attack("expensive eth_estimateGas batches", expensive_rpc(node.port)),
                   Attack(f"{idle} idle connections", idle_connections(node.port, idle)),
                   Attack("slowloris (500 connections)", slowloris(node.port, 500)),
                   Attack("forged-reading flood", forged_flood(node.port, forger)),
                   Attack("eth_getLogs with 100,000 addresses", oversized_filters(node.port))]
        for a in attacks:
            a.start()
        latencies, refused, ids = [], [], []
        end = time.time() + seconds
        while time.time() < end:
            m = legit.sign()
            t0 = time.perf_counter()
            try:
                status, body = node.post_cose(m)
            except (OSError, urllib.error.URLError) as e:
                status, body = None, str(e)
            latencies.append(time.perf_counter() - t0)
            if status == 202:
                ids.append(body["id"])
            else:
                refused.append((status, body))
                legit.seq -= 1  # the same seq again next time
            time.sleep(0.1)  # the device's own rate: one reading every 100 ms
        for a in attacks:
            a.stop.set()
        for a in attacks:
            a.join(timeout=60)
        not_final = [rid for rid in ids if node.wait_final(rid)["status"] != "final"]
        status, health = node.get("/v1/health")
        latencies.sort()
        out = {
            "legit_sent": len(latencies),
            "legit_refused": refused,
            "legit_not_final": not_final,
            "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
            "max_ms": 1000 * latencies[-1],
            "healthy_after": status == 200,
            "attacks": {a.name_: a.counts for a in attacks},
        }
        node.stop()
        return out
    finally:
        if node.proc and node.proc.poll() is None:
            node.kill()


def main():
    import tempfile
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=120, help="how long the attacks last (default 120)")
    p.add_argument("--idle", type=int, default=10_000, help="idle connections to hold (default 10,000)")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        out = run(Path(d), a.seconds, a.idle)
    print(f"hostile load for {a.seconds:.0f} s: legitimate device sent {out['legit_sent']}, "
          f"refused {len(out['legit_refused'])}, not final {len(out['legit_not_final'])}; latency "
          f"p50 {out['p50_ms']:.0f} ms, p99 {out['p99_ms']:.0f} ms, max {out['max_ms']:.0f} ms; "
          f"healthy after: {out['healthy_after']}")
    for name, counts in out["attacks"].items():
        print(f"  {name}: {json.dumps(counts)}")
    if out["legit_refused"] or out["legit_not_final"] or not out["healthy_after"]:
        sys.exit(1)


if __name__ == "__main__":
    main()

"""What a 202 promises, tried as an operator of a four-organisation testnet would: four
validators and a follower as real processes on loopback, devices streaming to gateways spread
over all five, and validators SIGKILLed (the next leaders, all of them), stopped with SIGINT
and restarted in another order while the devices keep sending.

Each scenario returns what it saw (acknowledged readings, those never final, how long the
chain took to resume); `test_promise.py` asserts on it, and `python promise.py` runs the
scenarios in a loop (optionally beside a CPU burner) and prints the counts, for the soak
(`scripts/soak-promise.sh`) and for measuring an older binary (IOTCHAIN_BIN).

Devices behave as the docs advise (docs/api.md, "Gateways and failover"): a device sends to
its gateway and, when the gateway does not answer or answers 5xx, sends the very same bytes
to the next node; a reading acknowledged by two nodes is still final once.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import BIN, Node, cli, free_ports  # noqa: E402
from cose_device import Device, cbor_array, reading_id  # noqa: E402
from helpers import register  # noqa: E402

# How long a resumed chain may take to finalize again once a quorum is back (leader timeouts
# of the views missed while it was down, a fetch of a block some validator lacks).
RESUME_LIMIT_S = 30


class NetNode(Node):
    """One `iotchain node --config` process of a testnet (validator or follower)."""

    __test__ = False

    def __init__(self, testnet_dir: Path, name: str, port: int):
        super().__init__(testnet_dir / name / "data", port)
        self.dir = testnet_dir
        self.name = name
        self.config = testnet_dir / name / "node.toml"
        self.log_path = testnet_dir / name / "test.log"

    def start(self):
        log = open(self.log_path, "a")
        log.write(f"--- start {time.strftime('%H:%M:%S')}\n")
        log.flush()
        self.proc = subprocess.Popen(
            [BIN, "node", "--config", str(self.config)], stdout=subprocess.PIPE, stderr=log, text=True,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn,iotchain=info")})
        for line in self.proc.stdout:
            if "serving" in line:
                break
        else:
            raise AssertionError(f"{self.name} exited before serving; see {self.log_path}")
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()
        return self

    @property
    def genesis(self) -> Path:
        return self.dir / "genesis.json"

    @property
    def owner_key(self) -> Path:
        return self.dir / "owner.key"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def height(self) -> int:
        return self.get("/v1/status")[1]["height"]

    def wait_height(self, height: int, timeout: float = 60) -> float:
        """Waits (on the node's own long poll) until the chain reaches `height`; returns when."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.height() >= height:
                return time.time()
            self.get(f"/v1/sync/{height}?wait_ms=1000&max=1")
        raise AssertionError(f"{self.name} did not reach height {height} (at {self.height()})\n"
                             f"{self.log_tail()}")

    def status_of(self, rid: str, wait_ms: int = 0) -> dict:
        status, body = self.get(f"/v1/readings/{rid}?wait_ms={wait_ms}")
        if status == 404:
            return {"status": "unknown"}
        assert status == 200, body
        return body


class Testnet:
    """`iotchain testnet --validators 4 --followers 1` in a temporary directory."""

    __test__ = False

    def __init__(self, root: Path, block_interval_ms: int = 100):
        self.root = root
        base = free_ports([i for i in range(5)] + [100 + i for i in range(5)])
        cli("testnet", "--validators", "4", "--followers", "1", "--dir", str(root),
            "--base-port", str(base), "--block-interval-ms", str(block_interval_ms))
        self.validators = [NetNode(root, f"validator-{i}", base + i) for i in range(4)]
        self.follower = NetNode(root, "follower-0", base + 4)
        self.keys = [json.loads((root / v.name / "validator.key").read_text())["public_key"]
                     for v in self.validators]

    @property
    def nodes(self):
        return self.validators + [self.follower]

    @property
    def owner_key(self) -> Path:
        return self.root / "owner.key"

    @property
    def genesis(self) -> Path:
        return self.root / "genesis.json"

    def start(self):
        for n in self.nodes:
            n.start()
        return self

    def any_live_validator(self) -> NetNode:
        return next(v for v in self.validators if v.alive())

    def register(self, device: Device) -> Device:
        # helpers.register takes a node with .url and .owner_key.
        via = self.any_live_validator()

        class Via:
            url = via.url
            owner_key = self.owner_key
        register(Via, device)
        # Known on every running node before the device sends anywhere.
        height = via.height()
        for n in self.nodes:
            if n.alive():
                n.wait_height(height)
        return device

    def leaders_after(self, view: int, count: int) -> list[int]:
        """The validators that lead the `count` views after `view`, from the proposers and
        views of recent blocks (simplex's round robin over the sorted validator keys)."""
        v = self.any_live_validator()
        top = v.height()
        order = sorted(self.keys)
        offsets = set()
        for h in range(max(1, top - 8), top + 1):
            block = v.get(f"/v1/blocks/{h}")[1]
            proposer = block["header"]["proposer"] if "header" in block else block["proposer"]
            offsets.add((order.index(proposer) - block["certificate"]["view"]) % len(order))
        assert len(offsets) == 1, f"leaders do not follow one rotation: {offsets}"
        offset = offsets.pop()
        return [self.keys.index(order[(w + offset) % len(order)]) for w in range(view + 1, view + 1 + count)]

    def stop(self) -> list[str]:
        failures = []
        for n in self.nodes:
            n.signal(signal.SIGINT)
        for n in self.nodes:
            if n.proc is None:
                continue
            try:
                code = n.proc.wait(timeout=30)
                if code != 0:
                    failures.append(f"{n.name} exited {code} on SIGINT")
            except subprocess.TimeoutExpired:
                n.proc.kill()
                failures.append(f"{n.name} did not stop within 30 s of SIGINT")
        return failures


def post(url: str, body: bytes, timeout: float = 10):
    req = urllib.request.Request(url + "/v1/readings", data=body, method="POST")
    req.add_header("Content-Type", "application/cbor")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


@dataclass
class Ack:
    device: int
    seq: int
    node: str


@dataclass
class Fleet:
    """Devices streaming batches to their gateways, failing over to the next node."""

    net: Testnet
    devices: list
    gateways: list  # index into net.nodes per device
    batch: int = 5
    interval_s: float = 0.4
    acked: dict = field(default_factory=dict)  # id -> Ack
    signed: dict = field(default_factory=dict)  # id -> device index
    failovers: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    cond: threading.Condition = None
    stop_flag: threading.Event = field(default_factory=threading.Event)
    threads: list = field(default_factory=list)
    spare: Device = None

    def __post_init__(self):
        self.cond = threading.Condition(self.lock)

    def start(self):
        for i in range(len(self.devices)):
            t = threading.Thread(target=self._run, args=(i,), daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def _run(self, i):
        device = self.devices[i]
        nodes = self.net.nodes
        g = self.gateways[i]
        while not self.stop_flag.is_set():
            messages = [device.sign() for _ in range(self.batch)]
            with self.lock:
                for m in messages:
                    self.signed[reading_id(m)] = i
            body = cbor_array(messages)
            attempt = 0
            # The same bytes until some node acknowledges them (or the fleet stops).
            while not self.stop_flag.is_set():
                node = nodes[(g + attempt) % len(nodes)]
                try:
                    status, answer = post(node.url, body)
                except (OSError, urllib.error.URLError):
                    status, answer = None, None
                if status == 202:
                    with self.cond:
                        for r, m in zip(answer["results"], messages):
                            if "id" in r:
                                self.acked.setdefault(r["id"], Ack(i, 0, node.name))
                        self.cond.notify_all()
                    break
                attempt += 1
                with self.lock:
                    self.failovers += 1
                if attempt % len(nodes) == 0:
                    self.stop_flag.wait(0.5)  # every node refused: back off before the next round
            self.stop_flag.wait(self.interval_s)

    def count(self) -> int:
        with self.lock:
            return len(self.acked)

    def wait_more(self, n: int, timeout: float = 120, where=None):
        """Waits until `n` more readings are acknowledged (by `where`, a node name, if given)."""
        def counted():
            return sum(1 for a in self.acked.values() if where is None or a.node == where)
        with self.cond:
            target = counted() + n
            if not self.cond.wait_for(lambda: counted() >= target, timeout=timeout):
                raise AssertionError(f"the devices got no {n} more acknowledgements in {timeout} s")

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(timeout=30)


@dataclass
class Outcome:
    """What a scenario saw."""

    scenario: str
    acknowledged: int = 0
    lost: list = field(default_factory=list)  # acknowledged, never final, with the node's answer
    unknown_on_acknowledger: int = 0  # the node that said 202 answered 404
    twice: list = field(default_factory=list)  # devices whose chain count exceeds their final readings
    replays_final: int = 0  # conflicting same-seq readings final (must be one per pair)
    replays_refused: int = 0  # the losers, refused with a reason (at submission or by a block)
    resume_s: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.scenario}: acknowledged {self.acknowledged}, lost {len(self.lost)} "
                f"(404 on the acknowledging node: {self.unknown_on_acknowledger}), "
                f"included twice {len(self.twice)}, replay pairs final/refused "
                f"{self.replays_final}/{self.replays_refused}, resume "
                f"{', '.join(f'{s:.1f}s' for s in self.resume_s) or '-'}")


def make_fleet(net: Testnet, devices_n: int = 16) -> Fleet:
    """16 devices (8 Ed25519, 8 P-256) spread over the five gateways (four validators and the
    follower), ~200 readings/s together; and a spare device for the replay pair."""
    devices = [net.register(Device("ed25519" if i % 2 == 0 else "p256")) for i in range(devices_n)]
    fleet = Fleet(net, devices, [i % len(net.nodes) for i in range(devices_n)])
    fleet.spare = net.register(Device("ed25519"))
    return fleet


def resume(net: Testnet, before: int, outcome: Outcome, since: float):
    """Waits until the chain finalizes past `before` on a live validator; notes how long it
    took from `since` (when a quorum was back)."""
    v = net.any_live_validator()
    try:
        at = v.wait_height(before + 1, timeout=RESUME_LIMIT_S * 3)
        outcome.resume_s.append(at - since)
    except AssertionError as e:
        outcome.resume_s.append(float("inf"))
        outcome.notes.append(str(e).splitlines()[0])


def conflicting_pair(device: Device, a: NetNode, b: NetNode) -> list:
    """`device` signs two different readings with one seq and sends them to two nodes at
    once: one may be final, the other must end refused (at submission, or by the final block
    that took the first)."""
    first, second = device.sign(seq=7, data=1.0), device.sign(seq=7, data=2.0)
    answers = []
    lock = threading.Lock()

    def send(node, m):
        r = post(node.url, cbor_array([m]))
        with lock:
            answers.append((node, m, r))
    threads = [threading.Thread(target=send, args=x) for x in ((a, first), (b, second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def settle(net: Testnet, fleet: Fleet, outcome: Outcome, pairs=(), timeout: float = 180):
    """With every node up: waits until each acknowledged reading is final on the node that
    acknowledged it (or until none has become final for a while), then counts what was lost,
    refused or included twice."""
    by_name = {n.name: n for n in net.nodes}
    outcome.acknowledged = len(fleet.acked)
    pending = dict(fleet.acked)
    resolved = {}
    deadline = time.time() + timeout
    last_progress = time.time()
    while pending and time.time() < deadline and time.time() - last_progress < 45:
        for rid, ack in list(pending.items()):
            s = by_name[ack.node].status_of(rid)
            if s["status"] in ("final", "refused"):
                resolved[rid] = s
                pending.pop(rid)
                last_progress = time.time()
        if pending:
            rid, ack = next(iter(pending.items()))
            by_name[ack.node].status_of(rid, wait_ms=2000)
    for rid, ack in pending.items():
        s = by_name[ack.node].status_of(rid)
        outcome.lost.append((rid, ack.node, s["status"]))
        if s["status"] == "unknown":
            outcome.unknown_on_acknowledger += 1
    for rid, s in resolved.items():
        if s["status"] == "refused":
            outcome.lost.append((rid, fleet.acked[rid].node, f"refused: {s['error']['code']}"))
    # Exactly once: every node holds the same chain, and each device's reading count is the
    # number of its distinct readings that are final.
    top = min(n.height() for n in net.nodes)
    hashes = {n.name: n.get(f"/v1/blocks/{top}")[1]["hash"] for n in net.nodes}
    if len(set(hashes.values())) != 1:
        outcome.notes.append(f"nodes disagree at height {top}: {hashes}")
    v = net.validators[0]
    final_by_device = {}
    for rid, i in fleet.signed.items():
        if rid in resolved:
            final = resolved[rid]["status"] == "final"
        elif rid in pending:
            final = False
        else:
            final = v.status_of(rid)["status"] == "final"  # sent, never acknowledged
        final_by_device[i] = final_by_device.get(i, 0) + final
    for i, d in enumerate(fleet.devices):
        info = v.get(f"/v1/devices/{d.address}")[1]
        if info["reading_count"] != final_by_device.get(i, 0):
            outcome.twice.append((d.address, info["reading_count"], final_by_device.get(i, 0)))
    for answers in pairs:
        final = refused = 0
        for node, m, (status, body) in answers:
            rid = reading_id(m)
            if status == 202:
                s = node.status_of(rid, wait_ms=20000)
                final += s["status"] == "final"
                refused += s["status"] == "refused" and s["error"]["code"] == "replayed_seq"
            elif (body or {}).get("error", {}).get("code") == "replayed_seq":
                refused += 1
        outcome.replays_final += final
        outcome.replays_refused += refused


def run(name: str, root: Path, body) -> Outcome:
    """Starts a testnet and a fleet, runs `body(net, fleet, outcome, pairs)`, restarts any
    node left down, settles and stops everything."""
    out = Outcome(name)
    net = Testnet(root).start()
    fleet = None
    pairs = []
    try:
        fleet = make_fleet(net).start()
        fleet.wait_more(150)
        try:
            body(net, fleet, out, pairs)
            fleet.wait_more(100)
        except AssertionError as e:
            # The chain stopped (what an older binary does): count what it lost.
            out.notes.append(f"stuck: {str(e).splitlines()[0]}")
        fleet.stop()
        for n in net.nodes:
            if not n.alive():
                n.start()
        settle(net, fleet, out, pairs)
    finally:
        if fleet:
            fleet.stop()
        out.notes.extend(net.stop())
    return out


def restart_all(net: Testnet, out: Outcome, order=(0, 1, 2, 3)):
    """Starts the stopped validators in `order`; from the third (a quorum of four), the chain
    must resume."""
    before = max(n.height() for n in net.nodes if n.alive())
    started = 0
    for i in order:
        net.validators[i].start()
        started += 1
        if started == 3:
            quorum_at = time.time()
    resume(net, before, out, quorum_at)


def leaders(net: Testnet, fleet: Fleet, out: Outcome, pairs: list):
    """Kill the leaders of the next two views (no quorum), restart one, then the other;
    then kill all four validators for a few seconds while the follower takes readings."""
    view = net.validators[0].get("/v1/status")[1]["consensus"]["view"]
    l1, l2 = net.leaders_after(view, 2)
    for i in (l1, l2):
        net.validators[i].kill()
    survivors = [v for v in net.validators if v.alive()]
    # Without a quorum, the two survivors each acknowledge one of two readings with one seq.
    pairs.append(conflicting_pair(fleet.spare, survivors[0], survivors[1]))
    fleet.wait_more(300)
    before = survivors[0].height()
    net.validators[l1].start()
    resume(net, before, out, time.time())
    fleet.wait_more(200)
    net.validators[l2].start()
    fleet.wait_more(200)
    for v in net.validators:
        v.kill()
    fleet.wait_more(60, where=net.follower.name)
    restart_all(net, out)


def restarts(net: Testnet, fleet: Fleet, out: Outcome, pairs: list):
    """Stop all four validators with SIGINT under traffic and start them again; then SIGKILL
    all four at once and restart; then SIGKILL all four and restart them one by one in
    another order."""
    for v in net.validators:
        v.signal(signal.SIGINT)
    for v in net.validators:
        code = v.proc.wait(timeout=30)
        if code != 0:
            out.notes.append(f"{v.name} exited {code} on SIGINT")
    fleet.wait_more(40, where=net.follower.name)
    restart_all(net, out)
    fleet.wait_more(200)
    for v in net.validators:
        v.signal(signal.SIGKILL)
    for v in net.validators:
        v.proc.wait(timeout=30)
    fleet.wait_more(40, where=net.follower.name)
    restart_all(net, out)
    fleet.wait_more(200)
    for v in net.validators:
        v.kill()
    fleet.wait_more(40, where=net.follower.name)
    restart_all(net, out, order=(2, 0, 3, 1))


SCENARIOS = {
    "leaders": lambda root: run("leaders", root, leaders),
    "restarts": lambda root: run("restarts", root, restarts),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=1)
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), help="default: all")
    parser.add_argument("--dir", type=Path, default=None, help="where the testnets go (default: a temporary directory)")
    args = parser.parse_args()
    import tempfile
    names = args.scenario or sorted(SCENARIOS)
    totals = {}
    for it in range(args.iterations):
        for name in names:
            root = Path(tempfile.mkdtemp(prefix=f"promise-{name}-", dir=args.dir))
            started = time.time()
            o = SCENARIOS[name](root)
            print(f"[{it + 1}/{args.iterations}] {o.summary()} ({time.time() - started:.0f} s, {root})", flush=True)
            for note in o.notes:
                print(f"    note: {note}", flush=True)
            t = totals.setdefault(name, [0, 0, 0])
            t[0] += o.acknowledged
            t[1] += len(o.lost)
            t[2] += len(o.twice)
    for name, (acked, lost, twice) in totals.items():
        print(f"total {name}: acknowledged {acked}, lost {lost}, included twice {twice}")


if __name__ == "__main__":
    main()

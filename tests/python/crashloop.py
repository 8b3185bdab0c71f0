"""Crash loop: SIGKILL a node at random moments, again and again, while devices stream signed
readings and an Ethereum account sends transactions (signed by ethers: on a single node, calls
of a contract that writes storage), and restart it at once. Afterwards every reading
acknowledged with 202 and every transaction whose hash JSON-RPC returned must be final, every
acknowledged storage write in place, and no restart may have needed a human (each restart checks
the state rebuilt from the store against the head's state root).

    python crashloop.py --kills 100                  # one devnet node (about 6 minutes)
    python crashloop.py --kills 100 --validators 4   # validator 1 of a 4-validator testnet

`test_faults.py` runs a short form of both; `scripts/faults.sh` runs the long ones.
"""

import argparse
import json
import random
import subprocess
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
from promise import post  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def rpc(url, method, params, timeout=10):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    req = urllib.request.Request(url, data=body, method="POST")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def signed_transfers(owner_key: Path, chain_id: int, count: int, storage=False) -> list[str]:
    """`count` transfers with nonces 0.., signed by ethers (tests/eth); with `storage`, a
    contract deployed at nonce 0 and calls storing n at its slot n."""
    eth = ROOT / "tests" / "eth"
    if not (eth / "node_modules" / "ethers").is_dir():
        raise RuntimeError(f"ethers is not installed: run `npm ci` in {eth} (scripts/test.sh does)")
    out = subprocess.run(["node", "sign-transfers.mjs", str(owner_key), str(chain_id), str(count),
                          *(["storage"] if storage else [])],
                         cwd=eth, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"sign-transfers.mjs failed ({out.returncode}): {out.stderr.strip()}")
    return out.stdout.split()


class Load:
    """Devices streaming batches and one account sending transfers, each retrying the very
    same bytes on the next URL until some node acknowledges them."""

    def __init__(self, urls, devices, txs):
        self.urls = urls  # callables: the URLs to try, in order
        self.devices = devices
        self.txs = txs
        self.readings = []
        self.hashes = []
        self.nonces = []  # the nonce (index in `txs`) of each acknowledged hash
        self.lock = threading.Lock()
        self.stop_flag = threading.Event()
        self.threads = []

    def start(self):
        for d in self.devices:
            self.threads.append(threading.Thread(target=self._readings, args=(d,), daemon=True))
        self.threads.append(threading.Thread(target=self._transfers, daemon=True))
        for t in self.threads:
            t.start()
        return self

    def _readings(self, device: Device):
        while not self.stop_flag.is_set():
            batch = [device.sign() for _ in range(10)]
            body = cbor_array(batch)
            attempt = 0
            while not self.stop_flag.is_set():
                url = self.urls()[attempt % len(self.urls())]
                try:
                    status, answer = post(url, body)
                except (OSError, urllib.error.URLError):
                    status, answer = None, None
                if status == 202:
                    with self.lock:
                        self.readings += [r["id"] for r in answer["results"] if "id" in r]
                    break
                attempt += 1
                self.stop_flag.wait(0.05)
            self.stop_flag.wait(0.05)

    def _transfers(self):
        for nonce, raw in enumerate(self.txs):
            attempt = 0
            while not self.stop_flag.is_set():
                url = self.urls()[attempt % len(self.urls())]
                try:
                    answer = rpc(url, "eth_sendRawTransaction", [raw])
                except (OSError, urllib.error.URLError, json.JSONDecodeError):
                    answer = None
                if answer and "result" in answer:
                    with self.lock:
                        self.hashes.append(answer["result"])
                        self.nonces.append(nonce)
                    break
                message = ((answer or {}).get("error") or {}).get("message", "")
                if "already known" in message or "nonce too low" in message:
                    break  # taken before the crash, its answer lost: not counted as acknowledged
                attempt += 1
                self.stop_flag.wait(0.05)
            if self.stop_flag.is_set():
                return
            self.stop_flag.wait(0.1)

    def counts(self):
        with self.lock:
            return len(self.readings), len(self.hashes)

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(timeout=60)


def check(url, load: Load, timeout=120) -> dict:
    """How many acknowledged readings and transactions are not final."""
    deadline = time.time() + timeout
    lost_readings, lost_txs = [], []
    for rid in load.readings:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/v1/readings/{rid}?wait_ms=5000",
                                            timeout=30) as r:
                    status = json.loads(r.read())["status"]
            except urllib.error.HTTPError as e:
                # Acknowledged by another node and not final yet: unknown here for now.
                status = f"http {e.code}"
                if e.code == 404:
                    time.sleep(0.2)  # the long poll only waits for a known id
            if status == "final" or time.time() > deadline:
                break
        if status != "final":
            lost_readings.append((rid, status))
    for h in load.hashes:
        while True:
            receipt = rpc(url, "eth_getTransactionReceipt", [h]).get("result")
            if receipt or time.time() > deadline:
                break
            time.sleep(0.2)  # polling a receipt: no event to wait for over JSON-RPC/HTTP
        if not receipt:
            lost_txs.append(h)
    return {"readings_lost": lost_readings, "txs_lost": lost_txs}


def writer_address(owner_key: Path) -> str:
    """The contract the sender's nonce 0 creates: keccak256(rlp([sender, 0]))[12:]."""
    import rlp
    from Crypto.Hash import keccak
    sender = bytes.fromhex(json.loads(owner_key.read_text())["address"][2:])
    return "0x" + keccak.new(digest_bits=256, data=rlp.encode([sender, 0])).digest()[12:].hex()


def storage_wrong(url, contract: str, load: Load) -> list:
    """The acknowledged calls whose slot does not hold their value (all final by now)."""
    wrong = []
    for n in load.nonces:
        if n == 0:
            continue
        got = rpc(url, "eth_getStorageAt", [contract, hex(n), "latest"]).get("result")
        if got is None or int(got, 16) != n:
            wrong.append((n, got))
    return wrong


def restarted(start, k, say) -> int:
    """Starts the killed node again (up to three tries); how many tries failed (each a
    restart that would have needed a human)."""
    for attempt in range(3):
        try:
            start()
            return attempt
        except AssertionError as e:
            say(f"restart {k} attempt {attempt} failed: {e}")
    raise AssertionError(f"the node did not come back after kill {k}")


def single(root: Path, kills: int, seed: int, say=print) -> dict:
    rng = random.Random(seed)
    node = Node(root / "data").start()
    devices = [new_device(node, "ed25519" if i % 2 == 0 else "p256") for i in range(4)]
    chain_id = json.loads((root / "data" / "genesis.json").read_text())["chain_id"]
    # Contract calls writing storage: a SIGKILL mid-commit must leave a state whose root is the
    # committed header's (the restart checks it and refuses to serve otherwise).
    txs = signed_transfers(node.owner_key, chain_id, 40 * kills + 100, storage=True)
    load = Load(lambda: [node.url], devices, txs).start()
    human = 0
    for k in range(kills):
        time.sleep(rng.uniform(0.2, 1.5))  # a random moment: the fault schedule, not a wait
        node.kill()
        fresh = Node(root / "data", port=node.port)
        human += restarted(fresh.start, k, say)
        node = fresh
        if (k + 1) % 10 == 0:
            r, t = load.counts()
            say(f"kill {k + 1}/{kills}: acknowledged {r} readings, {t} transactions")
    load.stop()
    out = check(node.url, load)
    out["storage_wrong"] = storage_wrong(node.url, writer_address(node.owner_key), load)
    node.stop()
    return {"kills": kills, "readings": len(load.readings), "txs": len(load.hashes),
            "needed_a_human": human, **out}


def one_of_four(root: Path, kills: int, seed: int, victim: int = 1, say=print) -> dict:
    from promise import Testnet
    rng = random.Random(seed)
    net = Testnet(root / "net").start()
    devices = [net.register(Device("ed25519" if i % 2 == 0 else "p256")) for i in range(4)]
    chain_id = json.loads(net.genesis.read_text())["chain_id"]
    txs = signed_transfers(net.owner_key, chain_id, 40 * kills + 100)
    target = net.validators[victim]
    # The victim is every device's gateway; the others are where they fail over to.
    order = [target] + [v for v in net.validators if v is not target]
    load = Load(lambda: [n.url for n in order], devices, txs).start()
    human = 0
    for k in range(kills):
        time.sleep(rng.uniform(0.3, 2.0))  # a random moment: the fault schedule, not a wait
        target.signal(9)
        target.proc.wait(timeout=30)
        human += restarted(target.start, k, say)
        if (k + 1) % 10 == 0:
            r, t = load.counts()
            say(f"kill {k + 1}/{kills}: acknowledged {r} readings, {t} transactions")
    load.stop()
    out = check(target.url, load)
    failures = net.stop()
    return {"kills": kills, "readings": len(load.readings), "txs": len(load.hashes),
            "needed_a_human": human, "stop_failures": failures, **out}


def main():
    import tempfile
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=100, help="SIGKILLs (default 100)")
    p.add_argument("--validators", type=int, choices=(1, 4), default=1,
                   help="1: a devnet node; 4: validator 1 of a 4-validator testnet")
    p.add_argument("--seed", type=int, default=1, help="seed of the kill moments")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        started = time.time()
        run = single if a.validators == 1 else one_of_four
        out = run(Path(d), a.kills, a.seed)
        took = time.time() - started
    print(f"crash loop ({'devnet node' if a.validators == 1 else 'validator 1 of 4'}): "
          f"{out['kills']} SIGKILLs in {took:.0f} s; acknowledged {out['readings']} readings and "
          f"{out['txs']} transactions; lost {len(out['readings_lost'])} readings and "
          f"{len(out['txs_lost'])} transactions; storage writes missing: "
          f"{len(out.get('storage_wrong', []))}; restarts that needed a human: {out['needed_a_human']}")
    if out["readings_lost"] or out["txs_lost"] or out.get("storage_wrong") or out["needed_a_human"]:
        sys.exit(1)


if __name__ == "__main__":
    main()

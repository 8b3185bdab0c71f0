"""Faults a node must survive without losing what it acknowledged: its disk fills up, and its
files are damaged. The long forms (a crash loop of 100+ SIGKILLs, hostile load) are
scripts/faults.sh; these are the short forms the test command runs."""

import os
import subprocess
import urllib.error

import pytest

from conftest import Node
from cose_device import cbor_array
from helpers import new_device


def mount_tmpfs(path, size):
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")


def stream_until_refused(node, devices, limit=200_000):
    """Sends batches until the node refuses them or goes away; the acknowledged ids and the
    refusal codes seen."""
    acked, codes = [], set()
    while len(acked) < limit:
        for d in devices:
            batch = [d.sign(data=os.urandom(200)) for _ in range(50)]
            try:
                status, body = node.post_batch(cbor_array(batch))
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                return acked, codes
            if status == 202:
                for r in body["results"]:
                    if "id" in r:
                        acked.append(r["id"])
                    else:
                        codes.add(r["error"]["code"])
            else:
                codes.add((body or {}).get("error", {}).get("code"))
                # The device's later seqs would open gaps: stop at the first refusal.
                return acked, codes
    return acked, codes


def test_a_full_disk_refuses_writes_loses_nothing_and_resumes_once_space_is_freed(tmp_path):
    mnt = tmp_path / "small"
    mount_tmpfs(mnt, "12m")
    node = None
    try:
        node = Node(mnt).start()
        devices = [new_device(node) for _ in range(2)]
        acked, codes = stream_until_refused(node, devices)
        assert acked, "nothing was acknowledged before the disk filled"
        # Whatever it refused said why (never a 202 it cannot keep); then the node stopped by
        # itself, exit code 70, so that a supervisor restarts it.
        assert codes <= {"storage_unavailable", "item_log_failed", "store_failed",
                         "consensus_stopped", "task_stopped", "overloaded"}, codes
        code = node.proc.wait(timeout=120)
        assert code == 70, f"a node that cannot store exited {code}\n{node.log_tail()}"
        assert "No space left on device" in node.log_tail(200), node.log_tail()

        # Space is freed: the node starts again and every acknowledged reading is final.
        subprocess.run(["mount", "-o", "remount,size=512m", str(mnt)], check=True)
        node = Node(mnt, port=node.port).start()
        for rid in acked[::97] + acked[-1:]:
            node.wait_final(rid)
        status, body = node.get(f"/v1/readings/{acked[-1]}")
        assert body["status"] == "final", body
        for rid in acked:
            status, body = node.get(f"/v1/readings/{rid}")
            assert status == 200 and body["status"] == "final", (rid, body)
        # And it takes new readings.
        d = devices[0]
        _, info = node.get(f"/v1/devices/{d.address}")
        d.seq = info["pending_last_seq"] + 1
        status, body = node.post_cose(d.sign())
        assert status == 202, body
        node.wait_final(body["id"])
        status, health = node.get("/v1/health")
        assert status == 200 and health["ready"] is True, health
        node.stop()
        node = None
    finally:
        if node is not None and node.proc.poll() is None:
            node.kill()
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def start_or_refusal(data_dir, port):
    """Starts a node on `data_dir`: (Node, None) if it serves, or (None, what it printed) if it
    exits first."""
    n = Node(data_dir, port=port)
    try:
        return n.start(), None
    except AssertionError as e:
        if n.proc is not None:
            n.proc.wait(timeout=60)
            assert n.proc.returncode != 0, "a node that refused its data exited 0"
        return None, str(e)


def flip(path, at):
    b = bytearray(path.read_bytes())
    b[at] ^= 0x5A
    path.write_bytes(bytes(b))


DAMAGE = {
    # name: (file chooser, how to damage, what must happen: "recover" or "refuse")
    "item log, torn tail": (lambda d: sorted((d / "log").glob("*.log"))[-1],
                            lambda p: os.truncate(p, p.stat().st_size - 5), "recover"),
    "item log, flipped byte in the middle": (lambda d: sorted((d / "log").glob("*.log"))[-1],
                                             lambda p: flip(p, p.stat().st_size // 2), "refuse"),
    "chain store, truncated": (lambda d: d / "chain.redb",
                               lambda p: os.truncate(p, p.stat().st_size // 2), "refuse"),
    "chain store, a flipped byte in every page": (
        lambda d: d / "chain.redb",
        lambda p: [flip(p, at) for at in range(4096, p.stat().st_size, 4096)], "refuse"),
    "consensus journal, truncated": (
        lambda d: max((d / "consensus" / "simplex").iterdir(), key=lambda f: f.name),
        lambda p: os.truncate(p, p.stat().st_size // 2), "either"),
    "genesis, changed": (lambda d: d / "genesis.json",
                         lambda p: p.write_text(p.read_text().replace('"chain_id": ', '"chain_id": 1')),
                         "refuse"),
    "validator key, damaged": (lambda d: d / "validator.key",
                               lambda p: p.write_bytes(p.read_bytes()[:10]), "refuse"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_file_is_named_and_never_serves_a_state_it_cannot_trust(tmp_path, case):
    import shutil
    pristine = tmp_path / "pristine"
    node = Node(pristine).start()
    d = new_device(node)
    ids = []
    for _ in range(6):
        status, body = node.post_batch(cbor_array([d.sign() for _ in range(50)]))
        assert status == 202, body
        ids += [r["id"] for r in body["results"]]
    node.wait_final(ids[-1])
    status, head = node.get("/v1/status")
    node.stop()

    choose, damage, expected = DAMAGE[case]
    data = tmp_path / "damaged"
    shutil.copytree(pristine, data)
    target = choose(data)
    damage(target)
    node, refusal = start_or_refusal(data, node.port)
    if node is None:
        assert expected in ("refuse", "either"), f"{case}: refused to start\n{refusal}"
        # The message names the damaged file.
        assert target.name in refusal, f"{case}: the refusal does not name {target.name}\n{refusal}"
        return
    try:
        assert expected in ("recover", "either"), f"{case}: started on a damaged file\n{node.log_tail()}"
        # What it serves is what was final: every reading, with its proof, and the chain goes on.
        for rid in ids:
            status, body = node.get(f"/v1/readings/{rid}")
            assert status == 200 and body["status"] == "final", (case, rid, body)
        status, proof = node.get(f"/v1/readings/{ids[0]}/proof")
        assert status == 200, (case, proof)
        status, now = node.get("/v1/status")
        assert now["height"] >= head["height"], (case, now, head)
        d.seq = 300
        status, body = node.post_cose(d.sign())
        assert status == 202, (case, body)
        node.wait_final(body["id"])
    finally:
        node.stop()


def test_crash_loop_short_single_node(tmp_path):
    """The short form of `crashloop.py --kills 100`: SIGKILLs at random moments under
    readings and contract calls writing storage; nothing acknowledged is lost, every write is in
    the state, no restart needs a human (each checks the rebuilt state against the head)."""
    from crashloop import single
    out = single(tmp_path, kills=6, seed=7)
    assert out["readings"] > 0 and out["txs"] > 1, out
    assert out["readings_lost"] == [] and out["txs_lost"] == [], out
    assert out["storage_wrong"] == [], out
    assert out["needed_a_human"] == 0, out


def test_crash_loop_short_one_validator_of_four(tmp_path):
    from crashloop import one_of_four
    out = one_of_four(tmp_path, kills=4, seed=7)
    assert out["readings"] > 0 and out["txs"] > 0, out
    assert out["readings_lost"] == [] and out["txs_lost"] == [], out
    assert out["needed_a_human"] == 0 and out["stop_failures"] == [], out


def test_hostile_load_short(tmp_path):
    """The short form of `hostile.py --seconds 120`: the legitimate device is never refused
    and all its readings are final, whatever the five attacks do; the figures are printed
    (latency is a benchmark's business, not an assertion's)."""
    from hostile import run
    out = run(tmp_path, seconds=8, idle=1000)
    print(f"legitimate p50 {out['p50_ms']:.0f} ms, p99 {out['p99_ms']:.0f} ms; {out['attacks']}")
    assert out["legit_sent"] > 0
    assert out["legit_refused"] == [], out["legit_refused"][:5]
    assert out["legit_not_final"] == []
    assert out["healthy_after"]
    # The attacks met their bounds: no forged reading taken, no oversized filter served.
    flood = out["attacks"]["forged-reading flood"]
    assert flood and all("bad_signature" in k for k in flood), flood
    logs = out["attacks"]["eth_getLogs with 100,000 addresses"]
    assert logs and all("at most 1000 addresses" in k for k in logs), logs

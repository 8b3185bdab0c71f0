"""Crash safety: SIGKILL the node while readings stream in; after a restart every reading that
was acknowledged with a 2xx is there (pending or final) and becomes final."""

import threading

from conftest import Node
from cose_device import cbor_array
from helpers import new_device


def test_sigkill_during_a_stream_loses_no_acknowledged_reading(tmp_path):
    node = Node(tmp_path / "data").start()
    devices = [new_device(node, "ed25519" if i % 2 == 0 else "p256") for i in range(4)]
    acknowledged = []
    lock = threading.Lock()
    enough = threading.Event()
    stop = threading.Event()

    def stream(device):
        while not stop.is_set():
            batch = [device.sign() for _ in range(20)]
            try:
                status, body = node.post_batch(cbor_array(batch))
            except Exception:
                return  # the node died mid-request: nothing was acknowledged
            if status != 202:
                return
            with lock:
                acknowledged.extend(r["id"] for r in body["results"] if "id" in r)
                if len(acknowledged) >= 2000:
                    enough.set()

    threads = [threading.Thread(target=stream, args=(d,)) for d in devices]
    for t in threads:
        t.start()
    assert enough.wait(timeout=120), "the stream did not get going"
    node.kill()  # SIGKILL while requests are in flight
    stop.set()
    for t in threads:
        t.join(timeout=60)
    with lock:
        acked = list(acknowledged)
    assert len(acked) >= 2000

    node = Node(tmp_path / "data", port=node.port).start()
    try:
        for rid in acked:
            status, body = node.get(f"/v1/readings/{rid}")
            assert status == 200, (rid, body)
            assert body["status"] in ("pending", "final")
        # And they all become final, each exactly once (ids are unique, seqs strictly increase).
        node.wait_final(acked[-1])
        for rid in acked:
            assert node.wait_final(rid)["status"] == "final"
        assert len(set(acked)) == len(acked)
        # The chain continues from where it stopped, and the devices resume after their last seq.
        for d in devices:
            _, info = node.get(f"/v1/devices/{d.address}")
            d.seq = info["pending_last_seq"] + 1
            status, body = node.post_cose(d.sign())
            assert status == 202, body
    finally:
        node.stop()

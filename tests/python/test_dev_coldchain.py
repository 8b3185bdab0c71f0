"""`iotchain dev` deploys the cold-chain example and its simulated thermometers drive it: the
first shipment's escrow pays the carrier, the second (5 °C threshold) refunds the shipper.
Both outcomes are read back over JSON-RPC, not only from the printed lines."""

import json
import queue
import signal
import subprocess
import threading
import urllib.request

from conftest import BIN, free_port


def rpc(url, method, params):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    req = urllib.request.Request(url + "/", data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        reply = json.loads(r.read())
    assert "error" not in reply, reply
    return reply["result"]


def test_dev_deploys_the_cold_chain_and_the_thermometers_decide_both_shipments(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [BIN, "dev", "--data-dir", str(tmp_path / "dev"), "--http-addr", f"127.0.0.1:{port}",
         "--devices", "2", "--rate", "10", "--block-interval-ms", "50"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(l) for l in proc.stdout], daemon=True).start()
    seen = []
    escrows = {}
    try:
        # Wait for the printed events (each line is an event; no sleeping).
        while not any("paid the carrier" in l for l in seen) or not any("refunded the shipper" in l for l in seen):
            try:
                line = lines.get(timeout=90)
            except queue.Empty:
                raise AssertionError("no cold-chain outcome within 90 s:\n" + "".join(seen[-30:]))
            seen.append(line)
            if line.startswith("cold chain:") and "holds" in line:
                name = line.split(":")[1].strip().split(" ")[1]
                escrows[name] = line.split("escrow ")[1].split(" ")[0]
        assert set(escrows) == {"1", "2"}, seen
        # state(): 1 Released, 2 Refunded; the escrows hold nothing any more.
        selector = "0xc19d93fb"  # keccak256("state()")[:4]
        state = lambda a: int(rpc(url, "eth_call", [{"to": a, "data": selector}, "latest"]), 16)
        assert state(escrows["1"]) == 1
        assert state(escrows["2"]) == 2
        for a in escrows.values():
            assert int(rpc(url, "eth_getBalance", [a, "latest"]), 16) == 0
        carrier = next(l for l in seen if "shipment 1" in l and "holds" in l).split("carrier ")[1].split(";")[0]
        assert int(rpc(url, "eth_getBalance", [carrier, "latest"]), 16) == 10**18
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)

"""Figures of reading data back over HTTP, on a devnet node (release binary):

    .venv/bin/python tests/python/bench_queries.py [--minutes 525600]

One device sends a year of minute readings (525,600 by default; about two minutes on 2 cores,
most of it signing with pycose), then this measures, each many times: a page of 1,000 readings
at a random place in the stream (p50/p99), a day's range by device time, and the year's chart
in minute buckets (525,600) and hour buckets. IOTCHAIN_BIN picks the binary (default
target/release/iotchain)."""

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import urllib.request
import subprocess
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
os.environ.setdefault("IOTCHAIN_BIN", str(ROOT / "target" / "release" / "iotchain"))
sys.path.insert(0, str(Path(__file__).parent))

from conftest import Node  # noqa: E402
from cose_device import Device, cbor_array  # noqa: E402
from helpers import register  # noqa: E402

BASE = 1_700_000_000_000 // 86_400_000 * 86_400_000


def sign_chunk(args):
    """COSE_Sign1 readings seq start..start+count of one device, one a minute from BASE."""
    import cbor2
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    secret, address, aad, stream, start, count = args
    sk = Ed25519PrivateKey.from_private_bytes(secret)
    protected = cbor2.dumps({1: -8, 4: bytes.fromhex(address[2:])})
    out = []
    for s in range(start, start + count):
        payload = cbor2.dumps({"seq": s, "ts": BASE + s * 60_000, "stream": stream,
                               "data": round(20 + (s % 600) / 100, 2)})
        sig = sk.sign(cbor2.dumps(["Signature1", protected, aad, payload]))
        out.append(cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, sig])))
    return out


def subscribe(port, counts, i, ready, stop):
    """One SSE consumer of every final reading (`GET /v1/feed`): counts reading events."""
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", "/v1/feed", headers={"Accept": "text/event-stream"})
    resp = conn.getresponse()
    assert resp.status == 200
    ready.release()
    while not stop.is_set():
        line = resp.fp.readline()
        if not line:
            break
        if line.startswith(b"event: reading"):
            counts[i] += 1
    conn.close()


def load(url, batches, rate, stop):
    """Posts pre-signed batches at `rate` readings/s until told to stop (the ingest load)."""
    import urllib.request as u
    sent, t0 = 0, time.perf_counter()
    for body, n in batches:
        if stop.is_set():
            break
        req = u.Request(url + "/v1/readings", data=body, method="POST")
        req.add_header("Content-Type", "application/cbor")
        with u.urlopen(req, timeout=60) as r:
            r.read()
        sent += n
        ahead = sent / rate - (time.perf_counter() - t0)
        if ahead > 0:
            stop.wait(ahead)
    return sent, time.perf_counter() - t0


def get(url):
    """Seconds until the whole answer has arrived (not counting parsing it here), and the answer."""
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as r:
        body = r.read()
    return time.perf_counter() - t, json.loads(body)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=int, default=525_600)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--ingest-rate", type=int, default=0, help="readings/s other devices send while measuring")
    ap.add_argument("--subscribers", type=int, default=10, help="feed consumers during the load")
    ap.add_argument("--load-seconds", type=int, default=60, help="readings of load to pre-sign, in seconds of --ingest-rate")
    a = ap.parse_args()
    node = Node(Path(tempfile.mkdtemp()) / "dev").start()
    try:
        d = register(node, Device("ed25519"))
        t = time.perf_counter()
        chunks = [(d.key.d, d.address, d.aad, "temp", s, min(5000, a.minutes - s))
                  for s in range(0, a.minutes, 5000)]
        last = None
        with ProcessPoolExecutor() as pool:
            for part in pool.map(sign_chunk, chunks):
                for i in range(0, len(part), 1000):
                    status, body = node.post_batch(cbor_array(part[i:i + 1000]))
                    assert status == 202, body
                    last = body["results"][-1]["id"]
        node.wait_final(last)
        print(f"signed, ingested and final: {a.minutes:,} readings in {time.perf_counter() - t:.1f} s "
              f"({a.minutes / (time.perf_counter() - t):,.0f} readings/s)", flush=True)
        stop, loader = threading.Event(), None
        if a.ingest_rate:
            # Pre-signed: the load's own signing does not compete with the node while measuring.
            per = 5000
            devices = [register(node, Device("ed25519")) for _ in range(20)]
            need = int(a.ingest_rate * a.load_seconds)
            jobs = [(x.key.d, x.address, x.aad, "load", s, per)
                    for s in range(0, need // len(devices) + per, per) for x in devices]
            with ProcessPoolExecutor() as pool:
                msgs = [m for part in pool.map(sign_chunk, jobs) for m in part]
            batches = [(cbor_array(msgs[i:i + 500]), len(msgs[i:i + 500])) for i in range(0, len(msgs), 500)]
            # Feed consumers, connected before the load starts: each should see every reading.
            counts, ready, feed_stop = [0] * a.subscribers, threading.Semaphore(0), threading.Event()
            subs = [threading.Thread(target=subscribe, args=(node.port, counts, i, ready, feed_stop), daemon=True)
                    for i in range(a.subscribers)]
            for t_ in subs:
                t_.start()
            for _ in subs:
                ready.acquire()
            ex = ThreadPoolExecutor(1)
            loader = ex.submit(load, node.url, batches, a.ingest_rate, stop)
            print(f"ingesting {a.ingest_rate:,} readings/s from {len(devices)} other devices while measuring, "
                  f"{a.subscribers} feed consumers reading every final reading", flush=True)
        base = f"{node.url}/v1/devices/{d.address}"

        def figures(name, urls):
            times = sorted(get(u)[0] * 1000 for u in urls)
            p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
            print(f"{name}: p50 {statistics.median(times):.1f} ms, p99 {p99:.1f} ms ({len(times)} requests)", flush=True)

        rnd = random.Random(7)
        figures("page of 1,000 readings at a random seq",
                [f"{base}/readings?stream=temp&limit=1000&from_seq={rnd.randrange(a.minutes - 1000)}"
                 for _ in range(a.samples)])
        figures("a day by device time (1,440 readings, limit 1,000)",
                [f"{base}/readings?stream=temp&limit=1000&from_ts={BASE + rnd.randrange(300) * 86_400_000}"
                 f"&to_ts={BASE + 301 * 86_400_000}" for _ in range(a.samples)])
        for bucket in ("1m", "1h", "1d"):
            # The last year of the stream (all of it with the default --minutes).
            year = f"{base}/streams/temp/series?bucket={bucket}&from_ts={BASE + max(0, a.minutes - 525_600) * 60_000}"
            took, body = get(year)
            took2, _ = get(year)
            print(f"the year's chart in {bucket} buckets: {len(body['buckets']):,} buckets in "
                  f"{min(took, took2) * 1000:.0f} ms ({len(json.dumps(body)) / 1e6:.1f} MB of JSON)", flush=True)
        # A proven answer: the last 1,000 readings by seq, with their complete-range proof.
        proven = f"{base}/readings?stream=temp&proof=true&limit=10000&from_seq={a.minutes - 1000}"
        times, answer = [], None
        for _ in range(20):
            took, answer = get(proven)
            times.append(took * 1000)
        times.sort()
        rp = answer["range_proof"]
        print(f"proven answer of 1,000 readings: p50 {statistics.median(times):.1f} ms, max {times[-1]:.1f} ms "
              f"({statistics.median(times) * 1000 / 1000:.0f} µs/reading; {len(rp['leaves'])} leaves, "
              f"{len(rp['mmr_proof'])} proof hashes, {len(rp['state_proof'])} trie nodes, "
              f"{len(json.dumps(answer)) / 1e6:.2f} MB)", flush=True)
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(answer, f)
        t = time.perf_counter()
        p = subprocess.run([os.environ["IOTCHAIN_BIN"], "verify", f.name, "--genesis", str(node.genesis)],
                           capture_output=True, text=True)
        took = time.perf_counter() - t
        assert p.returncode == 0, p.stderr
        print(f"iotchain verify of it: {took * 1000:.0f} ms including process start "
              f"({took * 1e6 / 1000:.0f} µs/reading)", flush=True)
        if loader:
            stop.set()
            sent, secs = loader.result()
            print(f"the load sent {sent:,} readings in {secs:.1f} s ({sent / secs:,.0f} readings/s)", flush=True)
            # Every consumer gets every reading of the load: wait for the last to be final, then
            # for the consumers to drain (they are behind by at most their buffer).
            t = time.perf_counter()
            while min(counts) < sent and time.perf_counter() - t < 30:
                feed_stop.wait(0.2)
            print(f"feed: {a.subscribers} consumers received {min(counts):,} to {max(counts):,} reading events "
                  f"of the {sent:,} sent ({min(counts) / secs:,.0f}/s each at the least; "
                  f"{time.perf_counter() - t:.1f} s to drain after the load)", flush=True)
            feed_stop.set()
    finally:
        node.stop()


if __name__ == "__main__":
    main()

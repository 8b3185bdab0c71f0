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
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
os.environ.setdefault("IOTCHAIN_BIN", str(ROOT / "target" / "release" / "iotchain"))
sys.path.insert(0, str(Path(__file__).parent))

from conftest import Node  # noqa: E402
from cose_device import Device, cbor_array  # noqa: E402
from helpers import register  # noqa: E402

BASE = 1_700_000_000_000 // 86_400_000 * 86_400_000


def sign_chunk(args):
    key_bytes, x, address, aad, start, count = args
    from pycose.keys import OKPKey
    from pycose.keys.curves import Ed25519
    d = Device("ed25519")
    d.key = OKPKey(crv=Ed25519, d=key_bytes, x=x)
    d.address, d.aad = address, aad
    return [d.sign(seq=s, ts=BASE + s * 60_000, stream="temp", data=round(20 + (s % 600) / 100, 2))
            for s in range(start, start + count)]


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
    a = ap.parse_args()
    node = Node(Path(tempfile.mkdtemp()) / "dev").start()
    try:
        d = register(node, Device("ed25519"))
        t = time.perf_counter()
        chunks = [(d.key.d, d.key.x, d.address, d.aad, s, min(5000, a.minutes - s)) for s in range(0, a.minutes, 5000)]
        with ProcessPoolExecutor() as pool:
            signed = [m for part in pool.map(sign_chunk, chunks) for m in part]
        print(f"signed {len(signed)} readings in {time.perf_counter() - t:.1f} s", flush=True)
        t = time.perf_counter()
        last = None
        for i in range(0, len(signed), 1000):
            status, body = node.post_batch(cbor_array(signed[i:i + 1000]))
            assert status == 202, body
            last = body["results"][-1]["id"]
        node.wait_final(last)
        print(f"ingested and final in {time.perf_counter() - t:.1f} s "
              f"({len(signed) / (time.perf_counter() - t):,.0f} readings/s)", flush=True)
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
            took, body = get(f"{base}/streams/temp/series?bucket={bucket}")
            took2, _ = get(f"{base}/streams/temp/series?bucket={bucket}")
            print(f"the year's chart in {bucket} buckets: {len(body['buckets']):,} buckets in "
                  f"{min(took, took2) * 1000:.0f} ms ({len(json.dumps(body)) / 1e6:.1f} MB of JSON)", flush=True)
    finally:
        node.stop()


if __name__ == "__main__":
    main()

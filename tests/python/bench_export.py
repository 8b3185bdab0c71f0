"""Figures of `iotchain export postgres` following a devnet under load:

    .venv/bin/python tests/python/bench_export.py [--ingest-rate 20000] [--seconds 20]

Starts a PostgreSQL (pg_server.py) and a devnet, pre-signs `rate × seconds` readings from 20
devices (cryptography's Ed25519, in processes), starts the exporter following the node, then
posts the readings at `--ingest-rate` for `--seconds` (about a minute in all at the defaults,
most of it signing). Every second it samples the chain's head and final readings and the
export's cursor and rows, and prints the exporter's readings/s and its lag behind the chain
(blocks, and seconds of block time). Then it measures catch-up: a second exporter on an empty
database exports the whole chain as fast as it can. IOTCHAIN_BIN picks the binary (default
target/release/iotchain; the figures of a debug build are lower)."""

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
os.environ.setdefault("IOTCHAIN_BIN", str(ROOT / "target" / "release" / "iotchain"))
sys.path.insert(0, str(Path(__file__).parent))

import psycopg  # noqa: E402

from bench_queries import load, sign_chunk  # noqa: E402
from conftest import BIN, Node  # noqa: E402
from cose_device import Device, cbor_array  # noqa: E402
from helpers import register  # noqa: E402
from pg_server import PgServer  # noqa: E402


def sample(node, db):
    with psycopg.connect(db, autocommit=True) as c:
        exists = c.execute("SELECT to_regclass('export_cursor') IS NOT NULL").fetchone()[0]
        row = c.execute("SELECT c.height, b.time_ms FROM export_cursor c JOIN blocks b ON b.height = c.height"
                        ).fetchone() if exists else None
        readings = c.execute("SELECT coalesce(sum(reading_count), 0) FROM blocks").fetchone()[0] if exists else 0
    _, status = node.get("/v1/status")
    return status["height"], status["head_time_ms"], (row[0] if row else 0), (row[1] if row else 0), int(readings)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ingest-rate", type=int, default=20_000, help="readings/s posted to the node")
    ap.add_argument("--seconds", type=int, default=20, help="seconds of load")
    ap.add_argument("--batch-blocks", type=int, default=256)
    a = ap.parse_args()
    pg = PgServer(durable=True).start()
    node = Node(Path(tempfile.mkdtemp()) / "dev").start()
    exporter = None
    try:
        devices = [register(node, Device("ed25519")) for _ in range(20)]
        need = a.ingest_rate * a.seconds
        per = need // len(devices) + 1
        jobs = [(d.key.d, d.address, d.aad, "load", s, min(5000, per - s))
                for d in devices for s in range(0, per, 5000)]
        t = time.perf_counter()
        with ProcessPoolExecutor() as pool:
            msgs = [m for part in pool.map(sign_chunk, jobs) for m in part]
        # Interleave the devices' readings so each batch holds all of them, in seq order each.
        by_dev = [msgs[i * per:(i + 1) * per] for i in range(len(devices))]
        msgs = [m for group in zip(*by_dev) for m in group]
        batches = [(cbor_array(msgs[i:i + 500]), len(msgs[i:i + 500])) for i in range(0, len(msgs), 500)]
        print(f"signed {len(msgs):,} readings in {time.perf_counter() - t:.1f} s", flush=True)

        db = pg.create_db("follow")
        exporter = subprocess.Popen([BIN, "export", "postgres", "--node", node.url, "--db", db,
                                     "--batch-blocks", str(a.batch_blocks)],
                                    stderr=subprocess.PIPE, text=True)
        lines = []
        threading.Thread(target=lambda: lines.extend(exporter.stderr), daemon=True).start()
        stop = threading.Event()
        loader = ThreadPoolExecutor(1).submit(load, node.url, batches, a.ingest_rate, stop)
        samples, prev = [], sample(node, db)
        t0 = time.perf_counter()
        while not loader.done():
            time.sleep(1)
            cur = sample(node, db)
            head, head_ms, h, h_ms, readings = cur
            dt = time.perf_counter() - t0
            samples.append(((readings - prev[4]), head - h, max(0, head_ms - h_ms) / 1000))
            print(f"{dt:5.1f} s: chain head {head}, exported {h}: {readings - prev[4]:,} readings/s exported, "
                  f"lag {head - h} blocks / {max(0, head_ms - h_ms) / 1000:.2f} s", flush=True)
            prev = cur
        sent, secs = loader.result()
        print(f"the load posted {sent:,} readings in {secs:.1f} s ({sent / secs:,.0f} readings/s)", flush=True)
        t = time.perf_counter()
        while True:
            head, _, h, _, readings = sample(node, db)
            if h >= head and readings >= sent:
                break
            time.sleep(0.2)
        print(f"caught up {time.perf_counter() - t:.1f} s after the load ended ({readings:,} readings)", flush=True)
        rates = [s[0] for s in samples[1:-1]] or [0]
        print(f"while loaded: exported {sum(rates) / len(rates):,.0f} readings/s on average; lag max "
              f"{max(s[1] for s in samples)} blocks / {max(s[2] for s in samples):.2f} s, median "
              f"{sorted(s[2] for s in samples)[len(samples) // 2]:.2f} s", flush=True)
        exporter.terminate()
        exporter.wait(timeout=30)

        db2 = pg.create_db("catchup")
        t = time.perf_counter()
        p = subprocess.run([BIN, "export", "postgres", "--node", node.url, "--db", db2, "--once",
                            "--batch-blocks", str(a.batch_blocks)], capture_output=True, text=True)
        took = time.perf_counter() - t
        assert p.returncode == 0, p.stderr
        with psycopg.connect(db2, autocommit=True) as c:
            n = c.execute("SELECT count(*) FROM readings").fetchone()[0]
            size = c.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()[0]
        print(f"catch-up from empty: {n:,} readings in {took:.1f} s ({n / took:,.0f} readings/s); database {size}",
              flush=True)
    finally:
        if exporter and exporter.poll() is None:
            exporter.kill()
        node.stop()
        pg.stop()


if __name__ == "__main__":
    main()

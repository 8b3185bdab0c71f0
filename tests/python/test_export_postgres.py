"""`iotchain export postgres` against a real PostgreSQL (initdb + pg_ctl in a temporary
directory, pg_server.py) and a real devnet: rows match the node's API, a SIGKILL at any
moment loses and doubles nothing, docs/analytics.md's SQL gives the answers the readings
imply, and bad input is refused with a clear message.

psycopg queries the database; pycose/cbor2 sign the readings (cose_device.py).
"""

import os
import random
import re
import signal
import subprocess
import threading
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import pytest

from conftest import BIN, Node, free_port
from helpers import new_device, post_readings
from pg_server import PgServer

DOC = Path(__file__).resolve().parents[2] / "docs/analytics.md"


@pytest.fixture(scope="module")
def pg():
    s = PgServer().start()
    yield s
    s.stop()


def export(node, db, *args, timeout=60, check=True):
    p = subprocess.run([BIN, "export", "postgres", "--node", node.url, "--db", db, *args],
                       capture_output=True, text=True, timeout=timeout)
    if check:
        assert p.returncode == 0, f"export failed ({p.returncode}):\n{p.stderr}"
    return p


def connect(url):
    return psycopg.connect(url, options="-c TimeZone=UTC", autocommit=True)


def sql_blocks() -> dict:
    """The ```sql blocks of docs/analytics.md, by their `-- name:` line."""
    out = {}
    for block in re.findall(r"```sql\n(.*?)```", DOC.read_text(), re.S):
        m = re.match(r"-- name: (\w+)\n", block)
        assert m, f"an sql block without `-- name:`:\n{block}"
        out[m.group(1)] = block
    return out


def node_readings(node, address):
    out, cursor = [], None
    while True:
        q = f"/v1/devices/{address}/readings?limit=1000" + (f"&cursor={cursor}" if cursor else "")
        status, body = node.get(q)
        assert status == 200, body
        out += body["readings"]
        cursor = body["next_cursor"]
        if not cursor:
            return out


NOW_MS = int(time.time() * 1000)
MIN = 60_000


@pytest.fixture(scope="module")
def exported(node, pg):
    """Three devices' readings (numbers over three hours, one device silent for 30 minutes,
    one sending maps), exported with --until-height at the head."""
    a, b, c = new_device(node), new_device(node, alg="p256"), new_device(node)
    start = NOW_MS - 180 * MIN
    plan = {
        # device A: numbers every 10 minutes up to 30 minutes ago, some above 30
        a: [(start + k * 10 * MIN, 20.0 + k) for k in range(16)],
        # device B: integers every 10 minutes up to a minute ago
        b: [(start + k * 10 * MIN, k * 2) for k in range(18)] + [(NOW_MS - MIN, 31)],
        # device C: maps
        c: [(start + k * 15 * MIN, {"temp_c": 4.0 + k / 4, "door": "open" if k % 2 else "shut"})
            for k in range(12)],
    }
    messages, sent = [], defaultdict(list)
    for d, rows in plan.items():
        for ts, data in rows:
            messages.append(d.sign(ts=ts, data=data, stream="env" if d is c else "temperature"))
            sent[d.address].append((ts, data))
    ids = post_readings(node, messages, batch=40)
    node.wait_final(ids[-1])
    for rid in ids:
        node.wait_final(rid)
    head = node.get("/v1/status")[1]["height"]
    db = pg.create_db("first")
    p = export(node, db, "--until-height", str(head), "--batch-blocks", "7")
    assert f"done at height {head}" in p.stderr, p.stderr
    return {"db": db, "head": head, "devices": (a, b, c), "sent": sent, "ids": ids}


def test_rows_match_the_node(node, exported):
    db, head = exported["db"], exported["head"]
    with connect(db) as conn:
        assert conn.execute("SELECT height FROM export_cursor").fetchone()[0] == head
        assert conn.execute("SELECT count(*), min(height), max(height) FROM blocks").fetchone() == (head, 1, head)
        for h in (1, head // 2, head):
            status, blk = node.get(f"/v1/blocks/{h}")
            assert status == 200
            row = conn.execute("SELECT hash, parent_hash, time_ms, reading_count, transaction_count, "
                               "extract(epoch from time) * 1000 FROM blocks WHERE height = %s", (h,)).fetchone()
            hd = blk["header"]
            assert "0x" + row[0].hex() == blk["hash"]
            assert "0x" + row[1].hex() == hd["parent_hash"]
            assert (row[2], row[3], row[4]) == (hd["timestamp_ms"], hd["reading_count"], hd["transaction_count"])
            assert int(row[5]) == hd["timestamp_ms"]
        total = 0
        for d in exported["devices"]:
            api = node_readings(node, d.address)
            total += len(api)
            rows = conn.execute(
                "SELECT id, seq, ts_ms, stream, height, idx, extract(epoch from block_time) * 1000, data, value, "
                "extract(epoch from ts) * 1000 FROM readings WHERE device = %s ORDER BY height, idx",
                (bytes.fromhex(d.address[2:]),)).fetchall()
            assert len(rows) == len(api) == len(exported["sent"][d.address])
            for r, x in zip(rows, api):
                assert "0x" + r[0].hex() == x["id"]
                assert (r[1], r[2], r[3], r[4], r[5]) == (x["seq"], x["ts"], x["stream"], x["height"], x["index"])
                assert int(r[6]) == x["block_time_ms"] and int(r[9]) == x["ts"]
                assert r[7] == x["data"]
                # value: the data when it is a number, else NULL
                assert r[8] == (float(x["data"]) if isinstance(x["data"], (int, float)) else None)
        assert conn.execute("SELECT count(*), count(DISTINCT id) FROM readings").fetchone() == (total, total)
        # The three registrations, and the devices' records.
        for d in exported["devices"]:
            addr = bytes.fromhex(d.address[2:])
            kinds = [k for (k,) in conn.execute("SELECT kind FROM owner_transactions WHERE device = %s", (addr,))]
            assert kinds == ["register"]
            status, info = node.get(f"/v1/devices/{d.address}")
            row = conn.execute("SELECT owner, alg, public_key, status, model, registered_at, labels "
                               "FROM devices WHERE address = %s", (addr,)).fetchone()
            assert row is not None
            assert ("0x" + row[0].hex(), row[1], "0x" + row[2].hex(), row[3], row[4], row[5]) == (
                info["owner"].lower(), info["alg"], info["public_key"], info["status"], info["model"],
                info["registered_at"])
            assert row[6] == {}


def test_a_second_run_writes_nothing_and_from_height_is_checked(node, exported):
    db, head = exported["db"], exported["head"]
    p = export(node, db, "--until-height", str(head))
    assert "resuming at height" in p.stderr and f"done at height {head}" in p.stderr
    p = export(node, db, "--from-height", "3", "--once", check=False)
    assert p.returncode != 0
    assert f"already holds blocks up to height {head}" in p.stderr, p.stderr
    with connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM blocks").fetchone()[0] == head


def test_docs_sql_answers_what_the_readings_imply(exported):
    queries = sql_blocks()
    assert {"hourly_averages", "hourly_field_averages", "breaches", "silent_devices"} <= set(queries)
    a, b, c = exported["devices"]
    sent = exported["sent"]
    now = time.time() * 1000

    def hour(ms):
        return datetime.fromtimestamp(ms / 1000, timezone.utc).replace(minute=0, second=0, microsecond=0)

    def averages(device, pick):
        groups = defaultdict(list)
        for ts, data in sent[device.address]:
            v = pick(data)
            if v is not None and ts > now - 24 * 3600_000:
                groups[hour(ts)].append(v)
        return {h: sum(vs) / len(vs) for h, vs in groups.items()}

    number = lambda d: float(d) if isinstance(d, (int, float)) else None  # noqa: E731
    ours = {d.address[2:]: d for d in (a, b, c)}
    with connect(exported["db"]) as conn:
        got = defaultdict(dict)
        for device, h, avg, n in conn.execute(queries["hourly_averages"]):
            got[device][h] = avg
        assert set(got) & set(ours) == {a.address[2:], b.address[2:]}
        for d in (a, b):
            want = averages(d, number)
            assert got[d.address[2:]].keys() == want.keys()
            for h, v in want.items():
                assert got[d.address[2:]][h] == pytest.approx(v)

        got = defaultdict(dict)
        for device, h, avg in conn.execute(queries["hourly_field_averages"]):
            got[device][h] = avg
        want = averages(c, lambda d: d.get("temp_c") if isinstance(d, dict) else None)
        assert got[c.address[2:]] == pytest.approx(want)

        breaches = [(dev, ts, v) for dev, _stream, ts, v in conn.execute(queries["breaches"]) if dev in ours]
        want = sorted(((d.address[2:], ts, float(v)) for d in (a, b) for ts, v in sent[d.address]
                       if v > 30 and ts > now - 24 * 3600_000), key=lambda x: (-x[1], x[0]))
        assert [(dev, int(ts.timestamp() * 1000), v) for dev, ts, v in breaches] == want
        assert len(want) >= 3

        silent = {dev for dev, _model, _last in conn.execute(queries["silent_devices"]) if dev in ours}
        # A stopped 30 minutes ago; B sent a minute ago; C's last map was 15 minutes after 2h45 ago.
        assert silent == {a.address[2:], c.address[2:]}


def test_sigkill_mid_stream_loses_nothing_and_doubles_nothing(node, pg):
    db = pg.create_db("killed")
    devices = [new_device(node) for _ in range(3)]
    sent_ids, stop = [], threading.Event()

    def flow():
        k = 0
        while not stop.is_set():
            msgs = [d.sign(data=float(k + i) if i % 2 else {"v": k + i}) for i, d in enumerate(devices)
                    for _ in range(20)]
            sent_ids.extend(post_readings(node, msgs, batch=60))
            k += 1
            time.sleep(0.02)

    writer = threading.Thread(target=flow, daemon=True)
    writer.start()
    try:
        cmd = [BIN, "export", "postgres", "--node", node.url, "--db", db, "--batch-blocks", "3",
               "--progress-ms", "0"]
        for round in range(4):
            with connect(db) as conn:
                def cursor():
                    r = conn.execute("SELECT to_regclass('export_cursor') IS NOT NULL").fetchone()[0] and \
                        conn.execute("SELECT height FROM export_cursor").fetchone()
                    return r[0] if r else 0
                before = cursor()
                proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
                # Kill it once it has committed a few batches past where it started, while the
                # readings keep coming (so it is mid-stream: fetching, copying or committing).
                deadline = time.time() + 30
                while cursor() < before + 5 and time.time() < deadline:
                    time.sleep(0.01)
                time.sleep(random.uniform(0, 0.2))
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)
                after = cursor()
                assert after > before, proc.stderr.read()
                # What is there is whole blocks up to the cursor and nothing past it.
                assert conn.execute("SELECT max(height) FROM blocks").fetchone()[0] == after
                assert conn.execute("SELECT count(*) FROM readings WHERE height > %s", (after,)).fetchone()[0] == 0
                n = conn.execute("SELECT sum(reading_count) FROM blocks").fetchone()[0]
                assert conn.execute("SELECT count(*) FROM readings").fetchone()[0] == n
    finally:
        stop.set()
        writer.join(timeout=30)
    for rid in sent_ids[-5:]:
        node.wait_final(rid)
    head = node.get("/v1/status")[1]["height"]
    with connect(db) as conn:
        partial = conn.execute("SELECT count(*) FROM readings").fetchone()[0]
    assert 0 < partial < len(sent_ids)
    export(node, db, "--until-height", str(head))
    with connect(db) as conn:
        count, distinct = conn.execute("SELECT count(*), count(DISTINCT id) FROM readings").fetchone()
        ours = {bytes.fromhex(i[2:]) for i in sent_ids}
        got = {r for (r,) in conn.execute("SELECT id FROM readings WHERE device = ANY(%s)",
                                          ([bytes.fromhex(d.address[2:]) for d in devices],))}
        assert got == ours
        node_total = sum(node.get(f"/v1/devices/{d.address}")[1]["reading_count"] for d in devices)
        assert len(got) == node_total == len(sent_ids)
        assert count == distinct
        assert conn.execute("SELECT sum(reading_count) FROM blocks").fetchone()[0] == count
        heights = [h for (h,) in conn.execute("SELECT height FROM blocks ORDER BY height")]
        assert heights == list(range(1, head + 1))


def test_bad_input_is_refused_clearly(node, pg, tmp_path):
    # A --db that is not a connection string: refused at once.
    p = export(node, "postgres://u@127.0.0.1:notaport/db", "--once", check=False, timeout=20)
    assert p.returncode == 2 and "bad --db" in p.stderr, p.stderr
    # A database that does not exist: the server's own message, no retry.
    p = export(node, pg.url("nope"), "--once", check=False, timeout=20)
    assert p.returncode == 2 and 'database "nope" does not exist' in p.stderr, p.stderr
    # A database server that is not there: retried, then given up on with --max-retries.
    closed = f"postgres://postgres@127.0.0.1:{free_port()}/x"
    p = export(node, closed, "--once", "--max-retries", "1", check=False, timeout=30)
    assert p.returncode == 2 and "database unreachable" in p.stderr and "retrying in" in p.stderr, p.stderr
    # A node that is down: the same.
    down = subprocess.run([BIN, "export", "postgres", "--node", f"http://127.0.0.1:{free_port()}",
                           "--db", pg.url(), "--once", "--max-retries", "1"],
                          capture_output=True, text=True, timeout=30)
    assert down.returncode == 2, down.stderr
    assert "unreachable" in down.stderr and "retrying in" in down.stderr, down.stderr


def test_a_database_of_another_chain_is_refused(pg, exported, tmp_path):
    other = Node(tmp_path / "other-chain").start()
    try:
        p = subprocess.run([BIN, "export", "postgres", "--node", other.url, "--db", exported["db"], "--once"],
                           capture_output=True, text=True, timeout=30)
    finally:
        other.stop()
    assert p.returncode == 2, p.stderr
    assert "another chain" in p.stderr, p.stderr
    with connect(exported["db"]) as conn:
        assert conn.execute("SELECT height FROM export_cursor").fetchone()[0] == exported["head"]


def test_help_explains(pg):
    p = subprocess.run([BIN, "export", "postgres", "--help"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0
    for words in ("Exactly once", "--until-height", "--from-height", "Ctrl-C", "docs/analytics.md"):
        assert words in p.stdout.replace("\n", " ") or words in p.stdout, words
    assert os.path.exists(DOC)


def rpc(url, method, params):
    import json
    import urllib.request
    req = urllib.request.Request(url, data=json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                                                       "params": params}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        reply = json.loads(r.read())
    assert "error" not in reply, reply
    return reply["result"]


def test_contract_lane_transactions_hooks_and_logs(pg, tmp_path):
    """`iotchain dev` with its simulated thermometers deploys the cold-chain contracts (Ethereum
    transactions) whose reading hooks emit events: all of it lands in the tables."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([BIN, "dev", "--data-dir", str(tmp_path / "dev"), "--http-addr", f"127.0.0.1:{port}",
                             "--devices", "2", "--rate", "10", "--block-interval-ms", "50"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in proc.stdout:
            if "paid the carrier" in line or "refunded the shipper" in line:
                break
        db = pg.create_db("contracts")
        p = subprocess.run([BIN, "export", "postgres", "--node", url, "--db", db, "--once"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        with connect(db) as conn:
            head = conn.execute("SELECT height FROM export_cursor").fetchone()[0]
            txs = conn.execute("SELECT hash, \"from\", status, gas_used, value::text FROM eth_transactions").fetchall()
            assert txs
            for h, sender, status, gas_used, value in txs:
                r = rpc(url, "eth_getTransactionReceipt", ["0x" + h.hex()])
                assert (status, gas_used) == (r["status"] == "0x1", int(r["gasUsed"], 16))
                assert "0x" + sender.hex() == r["from"].lower()
                tx = rpc(url, "eth_getTransactionByHash", ["0x" + h.hex()])
                assert int(value) == int(tx["value"], 16)
            kinds = dict(conn.execute("SELECT kind, count(*) FROM receipts GROUP BY kind").fetchall())
            assert kinds["eth"] == len(txs) and kinds["hook"] > 0, kinds
            logs = rpc(url, "eth_getLogs", [{"fromBlock": "0x1", "toBlock": hex(head)}])
            got = conn.execute("SELECT tx_hash, log_index, address, topics, data FROM logs "
                               "ORDER BY height, log_index").fetchall()
            assert [("0x" + t.hex(), li, "0x" + a.hex(), ["0x" + x.hex() for x in tp], "0x" + d.hex())
                    for t, li, a, tp, d in got] == [
                (x["transactionHash"], int(x["logIndex"], 16), x["address"].lower(), x["topics"], x["data"])
                for x in logs]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)

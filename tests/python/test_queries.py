"""Device data read back: `GET /v1/devices/{address}/streams` and `/readings` with every
range kind, both orders, all page sizes and cursors, against readings that arrived out of
order (a gap filled late, a device clock that went back), checked against what each reading's
own status says, across a restart of the node."""

import json

from conftest import Node
from helpers import new_device
from helpers import post_readings as post


def pages(node, path, limit, **q):
    """Every page of a query: the readings in order, and the number of pages."""
    out, cursor, n = [], None, 0
    while True:
        params = dict(q, limit=limit, **({"cursor": cursor} if cursor else {}))
        query = "&".join(f"{k}={v}" for k, v in params.items())
        status, body = node.get(f"{path}?{query}")
        assert status == 200, (query, body)
        assert len(body["readings"]) <= limit
        out += body["readings"]
        n += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return out, n


def test_range_queries_page_every_range_kind_in_order_exactly_once(tmp_path):
    node = Node(tmp_path / "dev").start()
    try:
        a, b = new_device(node), new_device(node)
        base = 1_700_000_000_000
        msgs, truth = [], {}
        # temp: seq 0..399 except 300..309, which come last (a gap filled late); ts rising
        # except seq 200..204, whose clock went back an hour. door: every 4th seq.
        order = [s for s in range(400) if not 300 <= s < 310] + list(range(300, 310))
        for s in order:
            stream = "door" if s % 4 == 3 else "temp"
            ts = base + s * 1000 - (3_600_000 if 200 <= s < 205 else 0)
            data = {"open": s % 2 == 0} if stream == "door" else 20 + s / 100
            msgs.append(a.sign(seq=s, ts=ts, stream=stream, data=data))
            truth[s] = (stream, ts, data)
        ids = post(node, msgs[:250]) + post(node, msgs[250:])
        post(node, [b.sign() for _ in range(50)])  # another device's readings, never returned
        node.wait_final(ids[-1])
        where = {}
        for rid in ids:
            _, st = node.get(f"/v1/readings/{rid}")
            where[rid] = (st["height"], st["index"])
        seq_of = {rid: s for rid, s in zip(ids, order)}

        def check(path_q, want_ids, limits=(1, 7, 100, 1000)):
            for limit in limits:
                for desc in (False, True):
                    got, _ = pages(node, f"/v1/devices/{a.address}/readings", limit,
                                   **dict(path_q, order="desc" if desc else "asc"))
                    want = sorted(want_ids, key=where.get, reverse=desc)
                    assert [r["id"] for r in got] == want, (path_q, limit, desc)
                    for r in got:
                        stream, ts, data = truth[r["seq"]]
                        assert (r["stream"], r["ts"], r["data"]) == (stream, ts, data), r
                        assert (r["height"], r["index"]) == where[r["id"]]

        temp = [rid for rid in ids if truth[seq_of[rid]][0] == "temp"]
        door = [rid for rid in ids if truth[seq_of[rid]][0] == "door"]
        check({"stream": "temp"}, temp)
        check({"stream": "door"}, door)
        check({}, ids, limits=(13, 1000))  # every stream, merged in commit order
        # seq ranges find the late ones too; ts ranges the readings whose clock went back.
        check({"stream": "temp", "from_seq": 295, "to_seq": 305},
              [r for r in temp if 295 <= seq_of[r] <= 305], limits=(2, 100))
        lo, hi = base + 199_000, base + 201_500
        check({"stream": "temp", "from_ts": lo, "to_ts": hi},
              [r for r in temp if lo <= truth[seq_of[r]][1] <= hi], limits=(1, 100))
        check({"from_seq": 390, "to_seq": 1000}, [r for r in ids if seq_of[r] >= 390], limits=(3,))
        # Block time: the blocks of a middle stretch.
        _, blk = node.get(f"/v1/blocks/{where[ids[150]][0]}")
        t0 = blk["header"]["timestamp_ms"]
        _, blk = node.get(f"/v1/blocks/{where[ids[300]][0]}")
        t1 = blk["header"]["timestamp_ms"]
        times = {}
        for rid in ids:
            h = where[rid][0]
            if h not in times:
                times[h] = node.get(f"/v1/blocks/{h}")[1]["header"]["timestamp_ms"]
        check({"stream": "temp", "from_time": t0, "to_time": t1},
              [r for r in temp if t0 <= times[where[r][0]] <= t1], limits=(9, 1000))
        check({"stream": "temp", "from_seq": 5000}, [])
        check({"stream": "nothing"}, [])

        # Streams with their figures and latest value.
        status, body = node.get(f"/v1/devices/{a.address}/streams")
        assert status == 200, body
        s = {x["stream"]: x for x in body["streams"]}
        assert (s["temp"]["count"], s["door"]["count"]) == (len(temp), len(door))
        assert (s["temp"]["first_seq"], s["temp"]["last_seq"]) == (0, 398)
        assert s["temp"]["latest"]["seq"] == 398 and s["temp"]["latest"]["data"] == truth[398][2]
        assert s["door"]["latest"]["seq"] == 399
        assert s["temp"]["first_ts"] == base + 200_000 - 3_600_000

        # The raw message is there on request; it hashes to the id.
        status, body = node.get(f"/v1/devices/{a.address}/readings?stream=temp&limit=1&raw=true")
        assert body["readings"][0]["message"].startswith("0xd2")

        # Bad input: a clear 400 with a code.
        status, first = node.get(f"/v1/devices/{a.address}/readings?stream=temp&limit=5")
        cursor = first["next_cursor"]
        tampered = cursor[:-6] + ("0" if cursor[-6] != "0" else "1") + cursor[-5:]
        for q, code in [
            (f"stream=temp&cursor={tampered}", "bad_cursor"),
            (f"stream=door&cursor={cursor}", "bad_cursor"),
            (f"stream=temp&order=desc&cursor={cursor}", "bad_cursor"),
            (f"cursor={cursor}", "bad_cursor"),
            ("stream=temp&cursor=c1zz", "bad_cursor"),
            ("limit=0", "bad_limit"),
            ("limit=1001", "bad_limit"),
            ("order=up", "bad_order"),
            ("from_seq=5&to_seq=4", "bad_range"),
        ]:
            status, body = node.get(f"/v1/devices/{a.address}/readings?{q}")
            assert status == 400 and body["error"]["code"] == code, (q, status, body)
        status, body = node.get("/v1/devices/0x12/readings")
        assert status == 400, body

        # After a restart the index is the same.
        node.stop()
        node.start()
        got, n = pages(node, f"/v1/devices/{a.address}/readings", 1000, stream="temp")
        assert [r["id"] for r in got] == sorted(temp, key=where.get) and n == 1
        status, again = node.get(f"/v1/devices/{a.address}/readings?stream=temp&limit=5&cursor={cursor}")
        assert status == 200 and again["readings"][0]["id"] == sorted(temp, key=where.get)[5]
    finally:
        node.stop()


def test_series_buckets_agree_with_the_readings(tmp_path):
    node = Node(tmp_path / "dev").start()
    try:
        d = new_device(node)
        base = 1_700_000_000_000  # a whole minute
        truth = []
        msgs = []
        for s in range(600):
            ts = base + s * 17_000 - (600_000 if s % 50 == 7 else 0)  # some clocks behind
            v = round(20 + (s % 37) / 4 - (s % 11), 2)
            msgs.append(d.sign(seq=s, ts=ts, stream="temp", data=v))
            msgs.append(d.sign(seq=10_000 + s, ts=ts, stream="env", data={"t": v * 10, "h": [s, v]}))
            truth.append((ts, v))
        ids = post(node, msgs)
        node.wait_final(ids[-1])

        def want(bucket_ms, lo, hi, scale=1.0):
            out = {}
            for ts, v in truth:
                start = ts // bucket_ms * bucket_ms
                if start + bucket_ms <= lo // bucket_ms * bucket_ms or start > hi:
                    continue
                b = out.setdefault(start, [])
                b.append((ts, v * scale))
            return [
                {"start_ms": k, "count": len(b), "min": min(x for _, x in b), "max": max(x for _, x in b),
                 "mean": sum(x for _, x in b) / len(b), "first": min(b, key=lambda p: p[0])[1],
                 "last": max(b, key=lambda p: p[0])[1]}
                for k, b in sorted(out.items())
            ]

        def close(got, exp):
            assert len(got) == len(exp), (len(got), len(exp))
            for g, e in zip(got, exp):
                assert g["start_ms"] == e["start_ms"] and g["count"] == e["count"], (g, e)
                for k in ("min", "max", "mean", "first", "last"):
                    assert abs(g[k] - e[k]) < 1e-6, (k, g, e)

        for bucket, ms in [("1m", 60_000), ("5m", 300_000), ("1h", 3_600_000)]:
            for lo, hi in [(0, 2**63), (base + 1_000_000, base + 5_000_000)]:
                status, body = node.get(f"/v1/devices/{d.address}/streams/temp/series?bucket={bucket}&from_ts={lo}&to_ts={hi}")
                assert status == 200, body
                close(body["buckets"], want(ms, lo, hi))
        # A numeric field of map data, by path.
        status, body = node.get(f"/v1/devices/{d.address}/streams/env/series?bucket=5m&path=t")
        assert status == 200, body
        close(body["buckets"], want(300_000, 0, 2**63, scale=10))
        status, body = node.get(f"/v1/devices/{d.address}/streams/env/series?bucket=5m&path=h.1")
        close(body["buckets"], want(300_000, 0, 2**63))
        # Without a path, map data has no number: no buckets; an unknown stream neither.
        assert node.get(f"/v1/devices/{d.address}/streams/env/series?bucket=1h")[1]["buckets"] == []
        assert node.get(f"/v1/devices/{d.address}/streams/none/series")[1]["buckets"] == []
        for q, code in [("bucket=1y", "bad_bucket"), ("bucket=0m", "bad_bucket"), ("bucket=m", "bad_bucket"),
                        ("from_ts=5&to_ts=4", "bad_range")]:
            status, body = node.get(f"/v1/devices/{d.address}/streams/temp/series?{q}")
            assert status == 400 and body["error"]["code"] == code, (q, body)
    finally:
        node.stop()


def test_the_cli_reads_a_devices_readings_back_page_after_page(tmp_path):
    from conftest import cli
    node = Node(tmp_path / "dev").start()
    try:
        d = new_device(node)
        ids = post(node, [d.sign(seq=s, stream="temp", data=s) for s in range(2500)])
        node.wait_final(ids[-1])
        out = cli("readings", d.address, "--node", node.url, "--stream", "temp")
        lines = [json.loads(line) for line in out.stdout.splitlines()]
        assert [r["seq"] for r in lines] == list(range(2500)), "every page followed, in order"
        assert "2500 readings" in out.stderr
        out = cli("readings", d.address, "--node", node.url, "--desc", "--limit", "3", "--from-seq", "10", "--to-seq", "20")
        assert [json.loads(line)["data"] for line in out.stdout.splitlines()] == [20, 19, 18]
        bad = cli("readings", "0x12", "--node", node.url, check=False)
        assert bad.returncode == 2 and "bad_address" in bad.stderr, bad.stderr
    finally:
        node.stop()

"""`GET /v1/feed` (Server-Sent Events), read by a plain SSE client written here from the
WHATWG rules: a consumer killed mid-stream and a node SIGKILLed mid-stream both resume from
the last event id, and the consumer ends with every final reading of its device exactly
once, in chain order; a consumer that stops reading is cut off while the node goes on."""

import http.client
import json
import socket
import time

from conftest import Node
from cose_device import cbor_array
from helpers import new_device, post_readings


class Sse:
    """One SSE connection: yields (event, id, data) as they arrive."""

    def __init__(self, node, path, last_id=None, timeout=30):
        self.conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=timeout)
        headers = {"Accept": "text/event-stream"}
        if last_id:
            headers["Last-Event-ID"] = last_id
        self.conn.request("GET", path, headers=headers)
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200, (self.resp.status, self.resp.read())
        assert self.resp.getheader("content-type").startswith("text/event-stream")

    def events(self):
        event, eid, data = "message", None, []
        while True:
            line = self.resp.fp.readline()
            if not line:
                return
            line = line.decode().rstrip("\r\n")
            if line == "":
                if data:
                    yield event, eid, "\n".join(data)
                event, data = "message", []
                continue
            if line.startswith(":"):
                continue  # a keep-alive comment
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                event = value
            elif field == "id":
                eid = value
            elif field == "data":
                data.append(value)

    def close(self):
        self.conn.close()


def send(node, d, count, data=21.5):
    return post_readings(node, [d.sign(data=data) for _ in range(count)], batch=50)


def test_the_feed_resumes_after_a_killed_consumer_and_a_killed_node_with_nothing_lost_or_repeated(tmp_path):
    node = Node(tmp_path / "dev").start()
    try:
        d = new_device(node)
        other = new_device(node)  # its readings are filtered out
        sent = send(node, d, 300)
        send(node, other, 100)
        got, last = [], None
        # Consumer 1 reads 120 events, then dies (its connection is cut without a goodbye).
        c = Sse(node, f"/v1/feed?device={d.address}&blocks=false&from_height=1")
        for event, eid, data in c.events():
            assert event == "reading", event
            got.append(json.loads(data)["id"])
            last = eid
            if len(got) == 120:
                break
        c.close()
        # More readings while nobody listens; then the node is SIGKILLed and restarted.
        sent += send(node, d, 200)
        node.wait_final(sent[-1])
        node.kill()
        node.start()
        sent += send(node, d, 100)
        node.wait_final(sent[-1])
        # Consumer 2 resumes from the last id it had (Last-Event-ID, as EventSource sends it).
        c = Sse(node, f"/v1/feed?device={d.address}&blocks=false", last_id=last)
        for event, eid, data in c.events():
            r = json.loads(data)
            assert r["device"] == d.address and r["stream"] == "temperature", r
            got.append(r["id"])
            last = eid
            if len(got) == len(sent):
                break
        c.close()
        assert len(got) == len(set(got)), "an event came twice"
        assert sorted(got) == sorted(sent), "an event was lost"
        # In chain order: the ids of the final readings by (height, index).
        place = {}
        for rid in sent:
            _, s = node.get(f"/v1/readings/{rid}")
            place[rid] = (s["height"], s["index"])
        assert got == sorted(got, key=place.get), "events out of chain order"
        # ?from= resumes like Last-Event-ID; a block event follows its block's readings.
        c = Sse(node, f"/v1/feed?device={d.address}&from={last}")
        h = int(last.split("-")[0])
        event, eid, data = next(c.events())
        assert (event, eid) == ("block", f"{h}-b"), (event, eid)
        assert json.loads(data)["height"] == h
        c.close()
        # Bad cursors and filters: a clear 400.
        for q in ["from=12", "from=a-b", "device=0x12", "owner=nope"]:
            status, body = node.get(f"/v1/feed?{q}")
            assert status == 400 and body["error"]["code"] in ("bad_cursor", "bad_address"), (q, body)
    finally:
        node.stop()


def test_a_consumer_that_stops_reading_is_cut_off_and_the_node_goes_on(tmp_path):
    node = Node(tmp_path / "dev").start()
    try:
        d = new_device(node)
        # 2,000 readings of 8 KB: some 32 MB of events, more than any socket buffer holds.
        ids = send(node, d, 2000, data=bytes(8000))
        node.wait_final(ids[-1])
        # A raw socket with a tiny receive buffer asks for the whole history, then never reads.
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", node.port))
        s.sendall(b"GET /v1/feed?from_height=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            # The node keeps taking readings at once meanwhile.
            more = send(node, d, 500)
            node.wait_final(more[-1])
            # The cut-off is logged: wait for that line (the node's log is written as it runs).
            deadline = time.monotonic() + 60
            while "stalled; cut off" not in node.log_path.read_text():
                assert time.monotonic() < deadline, f"the stalled consumer was never cut off\n{node.log_tail()}"
                time.sleep(0.2)
            status, body = node.post_batch(cbor_array([d.sign() for _ in range(10)]))
            assert status == 202, body
        finally:
            s.close()
    finally:
        node.stop()

"""The MQTT bridge end to end: a real Mosquitto broker, the real node bridged to it
(`iotchain dev --no-sim --mqtt ...`), and paho-mqtt as the independent device-side client.

Readings are signed by pycose (cose_device.py), ids computed with hashlib; every wait is on an
event (an ack message, a broker log line, an HTTP long poll), never on time.
"""

import urllib.request

import pytest
from pycose.keys import OKPKey
from pycose.keys.curves import Ed25519

from conftest import Node
from cose_device import cbor_array, reading_id
from helpers import new_device
from mqtt_broker import AckClient, Broker

NODE_CLIENT_ID = "iotchain-test-node"


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("mosquitto")).start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def node(tmp_path_factory, broker):
    mark = broker.mark()
    n = Node(tmp_path_factory.mktemp("devnet-mqtt"),
             extra_args=["--mqtt", broker.url, "--mqtt-client-id", NODE_CLIENT_ID]).start()
    # The bridge is ready once the broker has its subscription.
    broker.wait_line(NODE_CLIENT_ID, "iotchain/+/readings", after=mark)
    yield n
    n.stop()


@pytest.fixture(scope="module")
def device_client(broker, node):
    c = AckClient(broker, "test-device-gateway").start()
    yield c
    c.close()


def topic(device) -> str:
    return f"iotchain/{device.address}/readings"


def test_readings_are_acked_and_become_final(node, device_client):
    d = new_device(node)
    singles = [d.sign() for _ in range(3)]
    batch = [d.sign() for _ in range(5)]
    for m in singles:
        device_client.publish(topic(d), m)
    device_client.publish(topic(d), cbor_array(batch))
    ids = [reading_id(m) for m in singles + batch]
    for rid in ids:
        r = device_client.result_for(rid, "accepted")
        assert "duplicate" not in r
    # The batch is answered by one ack listing its readings in order.
    batch_ack = device_client.message_ack(lambda a: a["accepted"] == 5)
    assert [r["id"] for r in batch_ack["results"]] == [reading_id(m) for m in batch]
    assert [r["index"] for r in batch_ack["results"]] == list(range(5))
    assert batch_ack["rejected"] == 0
    # A second ack says final, and the HTTP API agrees.
    for rid in ids:
        f = device_client.result_for(rid, "final")
        http = node.wait_final(rid)
        assert (f["height"], f["block_index"]) == (http["height"], http["index"])
    # Acks went to the device's own ack topic.
    assert {t for t, _ in device_client.acks} == {f"iotchain/{d.address}/acks"}


def test_bad_messages_get_rejected_acks_and_the_node_stays_up(node, device_client):
    d = new_device(node)
    ack_topic = f"iotchain/{d.address}/acks"

    def ack_after(payload):
        before = len(device_client.acks)
        device_client.publish(topic(d), payload)
        device_client.wait(lambda: any(t == ack_topic and a.get("status") != "final"
                                       for t, a in device_client.acks[before:]), "an ack")
        return next(a for t, a in device_client.acks[before:] if t == ack_topic and a.get("status") != "final")

    # Malformed: not CBOR at all, a truncated reading, an empty batch.
    for payload, code in [(b"\xff\x00 garbage", "malformed_cbor"),
                          (d.sign(seq=100)[:-10], "malformed_cbor"),
                          (b"\x80", "empty_batch")]:
        a = ack_after(payload)
        assert (a["accepted"], a["rejected"]) == (0, 1), a
        assert a["results"][0]["status"] == "rejected"
        assert a["results"][0]["error"]["code"] == code, a
        assert a["results"][0]["error"]["message"]

    # Forged: signed by another key.
    forged = d.sign(seq=0, key=OKPKey.generate_key(crv=Ed25519))
    a = ack_after(forged)
    assert a["results"][0]["error"]["code"] == "bad_signature"
    assert a["results"][0]["id"] == reading_id(forged)

    # Replayed seq: a different reading with a seq already taken.
    good = d.sign(seq=5)
    assert ack_after(good)["results"][0]["status"] == "accepted"
    replay = d.sign(seq=5, data=99.0)
    a = ack_after(replay)
    assert a["results"][0]["error"]["code"] == "replayed_seq"

    # The identical message again (what a redelivery looks like): accepted, stored once.
    a = ack_after(good)
    assert a["results"][0] == {"status": "accepted", "index": 0, "id": reading_id(good), "duplicate": True}

    # A batch mixing good and bad readings answers each one.
    mixed = [d.sign(seq=6), d.sign(seq=6, data=1.0), d.sign(seq=7)]
    a = ack_after(cbor_array(mixed))
    assert [r["status"] for r in a["results"]] == ["accepted", "rejected", "accepted"]
    assert a["results"][1]["error"]["code"] == "replayed_seq"

    # The node is still up and took exactly the good readings.
    node.wait_final(reading_id(mixed[2]))
    status, info = node.get(f"/v1/devices/{d.address}")
    assert status == 200 and info["reading_count"] == 3, info
    text = urllib.request.urlopen(node.url + "/metrics", timeout=30).read().decode()
    assert "\niotchain_mqtt_connected 1\n" in text
    counters = dict(line.split() for line in text.splitlines() if line.startswith("iotchain_mqtt_"))
    assert int(counters["iotchain_mqtt_readings_rejected_total"]) >= 6, counters
    assert int(counters["iotchain_mqtt_readings_duplicate_total"]) >= 1, counters


def test_broker_restart_loses_nothing_and_duplicates_nothing(node, broker, device_client):
    d = new_device(node)
    first = [d.sign() for _ in range(60)]
    second = [d.sign() for _ in range(60)]
    # Mid-stream: single readings and small batches, then the broker goes away before the
    # node has necessarily taken them all.
    for i in range(0, 40):
        device_client.publish(topic(d), first[i])
    device_client.publish(topic(d), cbor_array(first[40:50]))
    device_client.publish(topic(d), cbor_array(first[50:60]))
    mark = broker.mark()
    broker.stop()
    broker.start()
    # Both the node and the test's client come back on their own (persistent sessions).
    broker.wait_line("as " + NODE_CLIENT_ID, after=mark, timeout=60)
    device_client.wait(lambda: device_client.connections >= 2, "the test client's reconnection", timeout=60)
    for i in range(0, 60, 6):
        device_client.publish(topic(d), cbor_array(second[i:i + 6]))

    ids = [reading_id(m) for m in first + second]
    for rid in ids:
        # The accepted ack first: a reading still queued in the broker is unknown to HTTP.
        device_client.result_for(rid, "accepted", timeout=60)
        assert node.wait_final(rid)["status"] == "final"
        device_client.result_for(rid, "final", timeout=60)
    # Exactly once in the chain: the device's count and last seq match what was sent.
    status, info = node.get(f"/v1/devices/{d.address}")
    assert status == 200, info
    assert info["reading_count"] == 120, info
    assert info["last_seq"] == 119, info
    assert info["gap_count"] == 0, info
    # No reading was rejected; redelivered ones are marked as duplicates, never refused.
    mine = set(ids)
    assert not [r for r in device_client.results("rejected") if r.get("id") in mine]


def test_out_of_order_through_a_broker_restart_all_final_once_and_the_replay_refused(
        node, broker, device_client):
    """A device's readings in reverse, then shuffled, with the broker restarted in the middle
    and a real replay (another reading with a seq already taken) mixed in: every reading is
    final once, and the replay is refused."""
    import random
    d = new_device(node)
    messages = [d.sign(seq=s) for s in range(40)]
    order = list(reversed(messages[:20])) + random.Random(3).sample(messages[20:], 20)
    for m in order[:15]:
        device_client.publish(topic(d), m)
    mark = broker.mark()
    broker.stop()
    broker.start()
    broker.wait_line("as " + NODE_CLIENT_ID, after=mark, timeout=60)
    device_client.wait(lambda: device_client.connections >= 2, "the test client's reconnection", timeout=60)
    for m in order[15:30]:
        device_client.publish(topic(d), m)
    device_client.result_for(reading_id(messages[10]), "accepted", timeout=60)
    replay = d.sign(seq=10, data=-5.0)
    device_client.publish(topic(d), replay)
    for m in order[30:]:
        device_client.publish(topic(d), m)
    for m in messages:
        device_client.result_for(reading_id(m), "accepted", timeout=60)
        assert node.wait_final(reading_id(m))["status"] == "final"
        device_client.result_for(reading_id(m), "final", timeout=60)
    refusal = device_client.result_for(reading_id(replay), "rejected", timeout=60)
    assert refusal["error"]["code"] == "replayed_seq", refusal
    status, info = node.get(f"/v1/devices/{d.address}")
    assert status == 200, info
    assert (info["reading_count"], info["last_seq"], info["gaps"], info["missing_count"]) == (40, 39, [], 0), info


def test_mqtt5_bridge(tmp_path):
    """The same bridge speaking MQTT 5 to its broker; the device side sends 3.1.1."""
    b = Broker(tmp_path / "mosquitto").start()
    mark = b.mark()
    n = Node(tmp_path / "devnet", extra_args=["--mqtt", b.url, "--mqtt-protocol", "v5",
                                              "--mqtt-client-id", "iotchain-test-node-v5"]).start()
    c = None
    try:
        b.wait_line("as iotchain-test-node-v5", "p5", after=mark)
        b.wait_line("iotchain-test-node-v5", "iotchain/+/readings", after=mark)
        c = AckClient(b, "test-device-v5").start()
        d = new_device(n)
        batch = [d.sign() for _ in range(4)]
        c.publish(topic(d), cbor_array(batch))
        c.publish(topic(d), d.sign(seq=1, data=0.5))
        for m in batch:
            c.result_for(reading_id(m), "final")
        a = c.message_ack(lambda a: a["rejected"] == 1)
        assert a["results"][0]["error"]["code"] == "replayed_seq"
    finally:
        if c:
            c.close()
        n.stop()
        b.stop()


def test_node_killed_mid_stream_loses_nothing(tmp_path):
    """SIGKILL the node while messages are in flight: what it had not PUBACKed, the broker
    delivers again after the restart; every reading ends up final exactly once."""
    b = Broker(tmp_path / "mosquitto").start()
    mark = b.mark()
    n = Node(tmp_path / "devnet", extra_args=["--mqtt", b.url, "--mqtt-client-id", "iotchain-test-kill"]).start()
    c = None
    try:
        b.wait_line("iotchain-test-kill", "iotchain/+/readings", after=mark)
        c = AckClient(b, "test-device-kill").start()
        d = new_device(n)
        messages = [d.sign() for _ in range(200)]
        for i in range(0, 100, 5):
            c.publish(topic(d), cbor_array(messages[i:i + 5]))
        n.kill()
        # Published while the node is down: the broker queues them in the node's session.
        for i in range(100, 200, 5):
            c.publish(topic(d), cbor_array(messages[i:i + 5]))
        mark = b.mark()
        n.start()
        b.wait_line("as iotchain-test-kill", after=mark)
        for m in messages:
            c.result_for(reading_id(m), "accepted", timeout=60)
            assert n.wait_final(reading_id(m))["status"] == "final"
        status, info = n.get(f"/v1/devices/{d.address}")
        assert status == 200, info
        assert (info["reading_count"], info["last_seq"], info["gap_count"]) == (200, 199, 0), info
        assert not [r for r in c.results("rejected") if r.get("id") in {reading_id(m) for m in messages}]
    finally:
        if c:
            c.close()
        n.stop()
        b.stop()

"""A 202 is a promise, on four validators and a follower as real processes on loopback.

- Devices stream to gateways spread over all five nodes while the leaders of the next two
  views are SIGKILLed (no quorum) and restarted one by one, then all four validators are
  killed while the follower takes readings: every acknowledged reading is final exactly once
  on every node, and of two readings with one seq acknowledged by two nodes, one is final and
  the other refused with its reason (never 404 on the node that acknowledged it).
- All four validators stopped with SIGINT under traffic, killed at once, and restarted one by
  one in another order: each time the chain resumes within seconds of a quorum being back.
- The acknowledging node SIGKILLed right after its 202, with its peers down or up, still
  holds and delivers the reading after its restart.
- A device's readings delivered in reverse, shuffled and with a real replay mixed in, each
  to another node: all final once, the replay refused.
- Two MQTT gateways (each validator bridged to its own Mosquitto) both acknowledge one of two
  readings with one seq while there is no quorum: one gets its final ack, the other a refused
  ack with the reason, and HTTP says the same.

The scenarios live in promise.py, which also runs them in a loop (scripts/soak-promise.sh).
"""

import random

from cose_device import Device, cbor_array, reading_id
from mqtt_broker import AckClient, Broker
from promise import RESUME_LIMIT_S, SCENARIOS, Testnet, post


def check(outcome):
    print(outcome.summary())
    assert not outcome.notes, outcome.notes
    assert outcome.acknowledged > 1000, outcome.summary()
    assert not outcome.lost, f"acknowledged readings never final: {outcome.lost[:10]}"
    assert not outcome.twice, f"devices with readings included twice: {outcome.twice}"
    assert all(s <= RESUME_LIMIT_S for s in outcome.resume_s), outcome.resume_s


def test_killing_the_next_leaders_then_every_validator_loses_no_acknowledged_reading(tmp_path):
    outcome = SCENARIOS["leaders"](tmp_path)
    check(outcome)
    # The replay pair: one reading final, the other refused with replayed_seq.
    assert (outcome.replays_final, outcome.replays_refused) == (1, 1), outcome.summary()
    assert len(outcome.resume_s) == 2


def test_the_chain_resumes_after_stopping_killing_and_reordering_every_validator(tmp_path):
    outcome = SCENARIOS["restarts"](tmp_path)
    check(outcome)
    assert len(outcome.resume_s) == 3


def test_the_acknowledging_node_killed_right_after_its_202_still_delivers(tmp_path):
    net = Testnet(tmp_path).start()
    try:
        d = net.register(Device("p256"))
        v0, follower = net.validators[0], net.follower
        # Its peers down: three validators are gone; the fourth and then the follower each
        # acknowledge a batch and are SIGKILLed at once.
        for v in net.validators[1:]:
            v.kill()
        held = {}
        for node in (v0, follower):
            batch = [d.sign() for _ in range(5)]
            status, body = post(node.url, cbor_array(batch))
            assert status == 202, body
            node.kill()
            held[node.name] = [reading_id(m) for m in batch]
        # Back alone, each still holds what it acknowledged (pending, never 404).
        for node in (v0, follower):
            node.start()
            for rid in held[node.name]:
                assert node.status_of(rid)["status"] == "pending", node.status_of(rid)
        for v in net.validators[1:]:
            v.start()
        # With its peers up: the follower acknowledges and is killed at once.
        batch = [d.sign() for _ in range(5)]
        status, body = post(follower.url, cbor_array(batch))
        assert status == 202, body
        follower.kill()
        follower.start()
        held["follower-0"] += [reading_id(m) for m in batch]
        for node in (v0, follower):
            for rid in held[node.name]:
                assert node.status_of(rid)["status"] != "unknown"
                final = node.status_of(rid, wait_ms=30000)
                assert final["status"] == "final", final
                for other in net.nodes:
                    other.wait_height(final["height"])
                    assert other.status_of(rid)["height"] == final["height"], other.name
        info = v0.get(f"/v1/devices/{d.address}")[1]
        assert (info["reading_count"], info["last_seq"], info["gaps"]) == (15, 14, []), info
    finally:
        failures = net.stop()
    assert not failures, failures


def test_out_of_order_across_gateways_all_final_once_and_the_replay_refused(tmp_path):
    net = Testnet(tmp_path).start()
    try:
        nodes = net.nodes
        reverse, shuffled, replayed = (net.register(Device(a)) for a in ("ed25519", "p256", "ed25519"))
        plans = {
            reverse.address: list(reversed([reverse.sign(seq=s) for s in range(24)])),
            shuffled.address: random.Random(7).sample([shuffled.sign(seq=s) for s in range(24)], 24),
            replayed.address: [replayed.sign(seq=s) for s in range(24)],
        }
        acked = {}
        for i in range(24):
            for k, (address, messages) in enumerate(plans.items()):
                node = nodes[(i + k) % len(nodes)]  # each reading to the next gateway
                status, body = post(node.url, cbor_array([messages[i]]))
                assert status == 202, (node.name, body)
                acked[body["results"][0]["id"]] = node
            if i == 12:
                # A real replay: another reading with seq 5, sent to a node that has not seen
                # the device's seq 5 itself.
                replay = replayed.sign(seq=5, data=-1.0)
                replay_node = nodes[(5 + 3) % len(nodes)]
                replay_status, replay_body = post(replay_node.url, cbor_array([replay]))
        last = 0
        for rid, node in acked.items():
            s = node.status_of(rid, wait_ms=30000)
            assert s["status"] == "final", (rid, node.name, s)
            last = max(last, s["height"])
        # The replay is refused: at submission, or (acknowledged by a node that had not seen
        # seq 5) by the final block that took the original.
        if replay_status == 202:
            assert replay_body["results"][0]["id"] == reading_id(replay)
            s = replay_node.status_of(reading_id(replay), wait_ms=30000)
            assert (s["status"], s["error"]["code"]) == ("refused", "replayed_seq"), s
        else:
            assert (replay_status, replay_body["error"]["code"]) == (409, "replayed_seq"), replay_body
        for n in nodes:
            assert n.status_of(reading_id(replay))["status"] in ("unknown", "refused")
        # Exactly once, in every node's chain: 24 readings per device, no gap left open.
        for n in nodes:
            n.wait_height(last)
        assert len({n.get(f"/v1/blocks/{last}")[1]["hash"] for n in nodes}) == 1
        for address in plans:
            for n in nodes:
                info = n.get(f"/v1/devices/{address}")[1]
                assert (info["reading_count"], info["last_seq"], info["gaps"], info["missing_count"]) == \
                    (24, 23, [], 0), (n.name, info)
    finally:
        failures = net.stop()
    assert not failures, failures


def test_two_mqtt_gateways_one_seq_one_final_ack_and_one_refused_ack(tmp_path):
    net = Testnet(tmp_path / "net")
    brokers = [Broker(tmp_path / f"mosquitto-{i}").start() for i in range(2)]
    clients = []
    try:
        for i, b in enumerate(brokers):
            config = net.validators[i].config
            # The two gateways do not relay to each other (only to validators 2 and 3), so
            # each acknowledges its own reading whatever the timing.
            other = net.validators[1 - i].url
            text = config.read_text().replace(f'"{other}", ', "").replace(f', "{other}"', "")
            config.write_text(text + f'\n[mqtt]\nurl = "{b.url}"\nclient_id = "iotchain-gateway-{i}"\n')
        marks = [b.mark() for b in brokers]
        net.start()
        for i, b in enumerate(brokers):
            b.wait_line(f"iotchain-gateway-{i}", "iotchain/+/readings", after=marks[i])
        clients = [AckClient(b, f"device-side-{i}").start() for i, b in enumerate(brokers)]
        d = net.register(Device("ed25519"))
        # No quorum: each gateway acknowledges its own reading of seq 3.
        for v in net.validators[2:]:
            v.kill()
        first, second = d.sign(seq=3, data=1.0), d.sign(seq=3, data=2.0)
        topic = f"iotchain/{d.address}/readings"
        for c, m in zip(clients, (first, second)):
            c.publish(topic, m)
            c.result_for(reading_id(m), "accepted", timeout=60)
        for v in net.validators[2:]:
            v.start()
        outcomes = {}
        for c, m in zip(clients, (first, second)):
            rid = reading_id(m)
            c.wait(lambda: any(r.get("id") == rid and r["status"] in ("final", "refused")
                               for r in c.results()), f"the final or refused ack of {rid}", timeout=60)
            outcomes[rid] = next(r for r in c.results() if r.get("id") == rid and r["status"] in ("final", "refused"))
        assert sorted(r["status"] for r in outcomes.values()) == ["final", "refused"], outcomes
        loser = next(r for r in outcomes.values() if r["status"] == "refused")
        assert loser["error"]["code"] == "replayed_seq", loser
        # The acknowledging node's HTTP API says the same, never 404.
        for i, m in enumerate((first, second)):
            s = net.validators[i].status_of(reading_id(m))
            assert s["status"] == outcomes[reading_id(m)]["status"], s
    finally:
        for c in clients:
            c.close()
        failures = net.stop()
        for b in brokers:
            b.stop()
    assert not failures, failures

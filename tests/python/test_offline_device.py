"""Offline devices: a device that lost its uplink buffers its readings and sends them later,
in order, as one batch. They are accepted with their original device time (`ts`), and the
delay (arrival time minus `ts`) is visible per reading, pending and final."""

import time

from cose_device import cbor_array
from helpers import new_device

HOUR_MS = 3_600_000


def test_buffered_readings_keep_their_time_and_show_their_delay(node):
    device = new_device(node, "p256")
    # Three hours offline, one reading every 10 minutes, signed when they were taken.
    taken = int(time.time() * 1000) - 3 * HOUR_MS
    buffered = [(taken + i * 600_000, device.sign(ts=taken + i * 600_000)) for i in range(18)]
    sent_at = int(time.time() * 1000)
    status, body = node.post_batch(cbor_array([m for _, m in buffered]))
    assert status == 202, body
    ids = [r["id"] for r in body["results"]]
    assert len(ids) == len(buffered)
    last = node.wait_final(ids[-1])
    assert last["ts"] == buffered[-1][0]
    for (ts, _), rid in zip(buffered, ids):
        r = node.wait_final(rid)
        assert r["ts"] == ts, r
        assert r["delay_ms"] == r["arrival_ms"] - ts, r
        assert r["arrival_ms"] >= sent_at - 1000, r
        # The oldest waited about three hours, the newest a little over 10 minutes.
        assert r["delay_ms"] >= sent_at - ts - 1000, r
    # And a live reading right after shows a small delay.
    status, body = node.post_cose(device.sign())
    assert status == 202, body
    live = node.wait_final(body["id"])
    assert abs(live["delay_ms"]) < 60_000, live

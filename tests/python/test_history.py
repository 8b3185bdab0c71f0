"""State history over HTTP: `GET /v1/devices/{address}?block=N` answers with the device as it
was at block N while the node keeps that block's state (`--history-blocks`), with 410
`state_not_kept` past the window, 404 above the head or before the device was registered, and
400 for a block that is not a number; the history survives a restart."""

from conftest import Node
from helpers import new_device

WINDOW = 10


def device_at(node, address, height):
    return node.get(f"/v1/devices/{address}?block={height}")


def test_a_device_at_older_blocks_within_the_window_and_after_a_restart(tmp_path):
    node = Node(tmp_path / "data", extra_args=["--history-blocks", str(WINDOW)]).start()
    try:
        d = new_device(node)
        # One reading per block: each block's height and the count after it.
        after = []
        for _ in range(WINDOW + 4):
            status, body = node.post_cose(d.sign())
            assert status == 202, body
            final = node.wait_final(body["id"])
            after.append((final["height"], len(after) + 1))
        for restart in range(2):
            # The window is counted from the head, which an idle block may move meanwhile:
            # a block is surely inside if it is inside at the later head, surely out if it is
            # out at the earlier one.
            head = node.get("/v1/status")[1]["height"]
            assert head >= after[-1][0]
            seen = set()
            for height, count in after:
                status, body = device_at(node, d.address, height)
                later = node.get("/v1/status")[1]["height"]
                if height + WINDOW >= later:
                    assert status == 200, (height, body)
                    assert body["reading_count"] == count, (height, body)
                    assert body["pending_last_seq"] == count - 1
                elif height + WINDOW < head:
                    assert status == 410, (height, body)
                    assert body["error"]["code"] == "state_not_kept", body
                    message = body["error"]["message"]
                    assert f"block {height} is no longer kept" in message and "--archive" in message, body
                seen.add(status)
            assert seen == {200, 410}, seen
            status, body = device_at(node, d.address, head + 1000)
            assert status == 404 and "not final yet" in body["error"]["message"], body
            status, body = device_at(node, d.address, "tomorrow")
            assert status == 400 and body["error"]["code"] == "bad_query", body
            if restart == 0:
                node.stop()
                node.start()
    finally:
        node.stop()


def test_a_device_before_its_registration_is_not_found(tmp_path):
    node = Node(tmp_path / "data").start()
    try:
        d = new_device(node)
        _, now = node.get(f"/v1/devices/{d.address}")
        registered = now["registered_at"]
        status, body = device_at(node, d.address, registered - 1)
        assert status == 404 and f"not registered at block {registered - 1}" in body["error"]["message"], body
        status, body = device_at(node, d.address, registered)
        assert status == 200 and body["reading_count"] == 0 and body["registered_at"] == registered, body
    finally:
        node.stop()

"""Every rejection class of POST /v1/readings (and /v1/transactions), end to end over HTTP:
each gets a 4xx and a JSON error naming what was wrong; the node keeps working."""

import http.client
import json

import cbor2
from pycose.keys import OKPKey
from pycose.keys.curves import Ed25519

from conftest import cli
from cose_device import Device, canonical_message, cbor_array, reading_id
from helpers import new_device, register


def error_code(status_body):
    status, body = status_body
    assert 400 <= status < 500, (status, body)
    assert set(body["error"]) == {"code", "message"} and body["error"]["message"], body
    return status, body["error"]["code"]


def test_unknown_device(node):
    d = Device("ed25519")
    d.address = "0x" + "42" * 20
    assert error_code(node.post_cose(d.sign())) == (404, "unknown_device")


def test_bad_signature(node):
    d = new_device(node)
    other = OKPKey.generate_key(crv=Ed25519)
    assert error_code(node.post_cose(d.sign(key=other))) == (403, "bad_signature")


def test_a_reading_signed_for_another_chain_is_refused(node):
    """Readings name their chain (COSE external_aad = the genesis hash, docs/formats.md): the
    same key's reading signed for another chain, or for none, does not verify here."""
    d = new_device(node)
    assert len(d.aad) == 32
    _, status = node.get("/v1/status")
    assert "0x" + d.aad.hex() == status["reading_aad"] == status["genesis_hash"]
    for aad in (b"", bytes(32), d.aad[:-1] + bytes([d.aad[-1] ^ 1])):
        assert error_code(node.post_cose(d.sign(seq=0, aad=aad))) == (403, "bad_signature")
    assert node.post_cose(d.sign(seq=0))[0] == 202


def test_replayed_seq(node):
    d = new_device(node)
    m = d.sign(seq=7)
    assert node.post_cose(m)[0] == 202
    # The very same bytes again (a resend after a lost answer): acknowledged again, held once.
    status, body = node.post_cose(m)
    assert (status, body["id"], body.get("duplicate")) == (202, reading_id(m), True), body
    # Another reading with a seq already taken is a replay.
    assert error_code(node.post_cose(d.sign(seq=7, data=1.0))) == (409, "replayed_seq")
    # A seq below the highest that was never accepted fills its gap; once only.
    late = d.sign(seq=3)
    assert node.post_cose(late)[0] == 202
    assert error_code(node.post_cose(d.sign(seq=3, data=1.0))) == (409, "replayed_seq")
    assert node.post_cose(d.sign(seq=8))[0] == 202
    node.wait_final(reading_id(late))
    status, body = node.post_cose(late)
    assert (status, body["status"], body.get("duplicate")) == (202, "final", True), body


def test_a_relays_re_encoding_does_not_take_the_devices_reading(node):
    """A relay that strips the optional tag 18 (or adds unprotected headers, or sends the twin
    ES256 signature) and submits first gets the reading under the device's own id; the device's
    copy is then a duplicate, not a replay."""
    for alg in ("ed25519", "p256"):
        d = new_device(node, alg)
        m = d.sign(seq=1)
        assert m[0] == 0xD2, "pycose tags its messages"
        item = cbor2.loads(m).value
        stripped = cbor2.dumps(item)
        status, first = node.post_cose(stripped)
        assert (status, first["id"]) == (202, reading_id(m)), first
        status, body = node.post_cose(m)
        assert (status, body["id"], body.get("duplicate")) == (202, reading_id(m), True), body
        relayed = cbor2.dumps(cbor2.CBORTag(18, [item[0], {"relay": "gw-7"}, item[2], item[3]]))
        status, body = node.post_cose(relayed)
        assert (status, body["id"], body.get("duplicate")) == (202, reading_id(m), True), body
        # The node keeps and proves the canonical message, whose hash is the id.
        node.wait_final(reading_id(m))
        status, proof = node.get(f"/v1/readings/{reading_id(m)}/proof")
        assert status == 200, proof
        assert bytes.fromhex(proof["message"][2:]) == canonical_message(m)


def test_a_gap_closed_to_make_room_refuses_its_seqs(node):
    d = new_device(node)
    # Seq 0, then every other seq: each skips one, opening a gap; 65 gaps, one more than a
    # device record remembers, so the oldest (seq 1) is closed.
    messages = [d.sign(seq=s) for s in range(0, 2 * 65 + 1, 2)]
    status, body = node.post_batch(cbor_array(messages))
    assert status == 202 and body["accepted"] == len(messages), body
    node.wait_final(reading_id(messages[-1]))
    _, info = node.get(f"/v1/devices/{d.address}")
    assert len(info["gaps"]) == 64 and info["gaps"][0] == {"from": 3, "to": 3}, info["gaps"][:2]
    assert info["gaps_closed_through"] == 1, info
    status, code = error_code(node.post_cose(d.sign(seq=1)))
    assert (status, code) == (409, "gap_closed")
    # The other gaps are still open.
    assert node.post_cose(d.sign(seq=3))[0] == 202


def test_revoked_device(node):
    d = new_device(node)
    assert node.post_cose(d.sign())[0] == 202
    cli("device", "revoke", "--node", node.url, "--owner-key", str(node.owner_key), "--device", d.address)
    assert error_code(node.post_cose(d.sign())) == (403, "revoked_device")
    _, info = node.get(f"/v1/devices/{d.address}")
    assert info["status"] == "revoked"


def test_rotated_away_key(node):
    d = new_device(node)
    old_key = d.key
    new = Device("ed25519")
    cli("device", "rotate", "--node", node.url, "--owner-key", str(node.owner_key), "--device", d.address,
        "--device-pubkey", new.pubkey_hex, "--alg", "ed25519")
    assert error_code(node.post_cose(d.sign(key=old_key))) == (403, "rotated_key")
    d.key = new.key
    status, body = node.post_cose(d.sign())
    assert status == 202, body
    _, info = node.get(f"/v1/devices/{d.address}")
    assert info["key_version"] == 1 and info["public_key"] == "0x" + new.pubkey_hex


def test_wrong_algorithm_for_the_device(node):
    d = new_device(node, "ed25519")
    p = Device("p256")
    p.address = d.address  # an ES256 message claiming an Ed25519 device
    assert error_code(node.post_cose(p.sign())) == (403, "wrong_alg")


def test_malformed_cbor_and_cose(node):
    status, code = error_code(node.post_cose(b"\xff\x00\x01"))
    assert status == 400 and code == "malformed_cbor"
    status, code = error_code(node.post_cose(cbor2.dumps([b"", {}, b"x"])))
    assert status == 400 and code == "malformed_cose"
    d = new_device(node)
    good = d.sign()
    for cut in (1, len(good) // 2, len(good) - 1):
        status, _ = error_code(node.post_cose(good[:cut]))
        assert status == 400
    status, code = error_code(node.post_cose(good + b"\x00"))
    assert code == "trailing_bytes"


def test_unsupported_alg_and_bad_kid(node):
    d = new_device(node)
    payload = cbor2.dumps({"seq": 1, "ts": 1, "data": 1})
    es384 = cbor2.dumps(cbor2.CBORTag(18, [cbor2.dumps({1: -35, 4: bytes.fromhex(d.address[2:])}), {}, payload, b"\x00" * 64]))
    assert error_code(node.post_cose(es384))[1] == "unsupported_alg"
    short_kid = cbor2.dumps(cbor2.CBORTag(18, [cbor2.dumps({1: -8, 4: b"\x01" * 19}), {}, payload, b"\x00" * 64]))
    assert error_code(node.post_cose(short_kid))[1] == "bad_kid"


def test_malformed_payload(node):
    d = new_device(node)
    assert error_code(node.post_cose(d.sign(extra={"temperature": 5})))[1] == "unknown_field"
    msg = d.sign(seq=-1)
    assert error_code(node.post_cose(msg))[0] == 400


def test_oversized_reading_and_body(node):
    d = new_device(node)
    _, status = node.get("/v1/status")
    limit = status["max_reading_bytes"]
    big = d.sign(data=b"\x00" * (limit + 1))
    assert error_code(node.post_cose(big)) == (413, "reading_too_large")
    # A body over the node's limit is refused from its Content-Length, before it is read.
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=30)
    conn.putrequest("POST", "/v1/readings")
    conn.putheader("Content-Type", "application/cbor")
    conn.putheader("Content-Length", str(status["max_body_bytes"] + 1))
    conn.endheaders()
    resp = conn.getresponse()
    body = json.loads(resp.read())
    assert resp.status == 413 and body["error"]["code"] == "body_too_large", body
    conn.close()


def test_wrong_content_type(node):
    assert error_code(node.request("POST", "/v1/readings", b"{}", "application/json")) == (415, "unsupported_media_type")


def test_batch_reports_each_message(node):
    d = new_device(node)
    first = d.sign()
    assert node.post_cose(first)[0] == 202
    good = d.sign()
    replay = d.sign(seq=0, data=3.0)
    status, body = node.post_batch(cbor_array([first, replay, good, b"\xa0"]))
    assert status == 202, body
    assert body["accepted"] == 2 and body["rejected"] == 2
    r = body["results"]
    # The same bytes again are held already: a duplicate, not a refusal.
    assert r[0] == {"id": reading_id(first), "status": "pending", "duplicate": True} or \
        r[0] == {"id": reading_id(first), "status": "final", "duplicate": True}, r[0]
    assert r[1]["error"]["code"] == "replayed_seq" and r[1]["status"] == 409
    assert r[2]["id"] == reading_id(good) and "duplicate" not in r[2]
    assert r[3]["status"] == 400
    status, body = node.post_batch(cbor_array([replay]))
    assert status == 409 and body["error"]["code"] == "replayed_seq"
    assert error_code(node.post_batch(b"\xa1\x01\x02"))[0] == 400  # not an array
    assert error_code(node.post_batch(b"\x80"))[0] == 400  # empty batch


def test_transaction_rejections(node, tmp_path):
    assert error_code(node.request("POST", "/v1/transactions", b"not json", "application/json"))[1] == "bad_json"
    assert error_code(node.request("POST", "/v1/transactions", json.dumps({"raw": "0xc0"}).encode(), "application/json"))[1] == "invalid_transaction"
    stranger = tmp_path / "stranger.key"
    cli("keys", "new", "--alg", "secp256k1", "--out", str(stranger))
    d = Device("ed25519")
    p = cli("device", "register", "--node", node.url, "--owner-key", str(stranger), "--device-pubkey", d.pubkey_hex,
            "--alg", "ed25519", check=False)
    assert p.returncode != 0 and "not authorised" in p.stderr
    # Registering the same key twice is a conflict.
    register(node, d)
    p = cli("device", "register", "--node", node.url, "--owner-key", str(node.owner_key), "--device-pubkey",
            d.pubkey_hex, "--alg", "ed25519", check=False)
    assert p.returncode != 0 and "device_exists" in p.stderr


def test_node_unharmed_afterwards(node):
    d = new_device(node)
    status, body = node.post_cose(d.sign())
    assert status == 202
    node.wait_final(body["id"])
    status, s = node.get("/v1/status")
    assert status == 200 and s["height"] >= 1

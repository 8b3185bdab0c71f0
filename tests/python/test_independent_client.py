"""An independent client (pycose + cbor2) signs readings that the node accepts, finalizes and
proves; `iotchain verify` checks the proofs and names the part that was tampered with."""

import copy
import hashlib
import json

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conftest import cli
from cose_device import canonical_message, cbor_array, reading_id
from helpers import finalize_message, new_device


def fetch_proof(node, rid, path):
    cli("proof", rid, "--node", node.url, "--out", str(path))
    return json.loads(path.read_text())


def verify(node, proof_path):
    return cli("verify", str(proof_path), "--genesis", str(node.genesis), check=False)


@pytest.mark.parametrize("alg", ["ed25519", "p256"])
def test_pycose_readings_become_final_and_their_proofs_verify(node, tmp_path, alg):
    device = new_device(node, alg)
    message = device.sign(data={"temp_c": 3.5})
    status, body = node.post_cose(message)
    assert status == 202, body
    # The id is the RFC 6962 leaf hash of the canonical form of what we sent, computed here
    # independently (docs/formats.md, "Reading id").
    assert body["id"] == reading_id(message)
    final = node.wait_final(body["id"])
    assert final["height"] >= 1

    proof = fetch_proof(node, body["id"], tmp_path / "proof.json")
    # The node proves the canonical message: ours as sent, or with the low s when pycose's
    # ES256 signature had the high one. Either way it hashes to the id.
    assert proof["message"] == "0x" + canonical_message(message).hex()
    assert "0x" + hashlib.sha256(b"\x00" + canonical_message(message)).hexdigest() == body["id"]
    p = verify(node, tmp_path / "proof.json")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("OK"), p.stdout
    assert device.address in p.stdout

    _, info = node.get(f"/v1/devices/{device.address}")
    assert info["last_seq"] == 0 and info["reading_count"] == 1 and info["alg"] == ("EdDSA" if alg == "ed25519" else "ES256")


def test_batch_and_gaps(node):
    device = new_device(node)
    messages = [device.sign(seq=s) for s in (0, 1, 5)]
    status, body = node.post_batch(cbor_array(messages))
    assert status == 202, body
    assert body["accepted"] == 3
    ids = [r["id"] for r in body["results"]]
    assert ids == [reading_id(m) for m in messages]
    finals = [node.wait_final(i) for i in ids]
    assert [f["index"] for f in finals if f["height"] == finals[0]["height"]] == sorted(
        f["index"] for f in finals if f["height"] == finals[0]["height"])
    _, info = node.get(f"/v1/devices/{device.address}")
    assert info["last_seq"] == 5
    assert info["gap_count"] == 1 and info["missing_count"] == 3
    assert info["gaps"] == [{"from": 2, "to": 4}]
    # A late reading fills its gap (from any node, in any order); the head stays at seq 5.
    late = device.sign(seq=3)
    status, body = node.post_batch(cbor_array([late]))
    assert status == 202, body
    node.wait_final(reading_id(late))
    _, info = node.get(f"/v1/devices/{device.address}")
    assert info["last_seq"] == 5 and info["reading_count"] == 4 and info["missing_count"] == 2
    assert info["gaps"] == [{"from": 2, "to": 2}, {"from": 4, "to": 4}]
    # The same reading again is held already (final): a duplicate; another one with seq 3
    # is a replay.
    status, body = node.post_batch(cbor_array([late]))
    assert status == 202 and body["results"][0] == {
        "id": reading_id(late), "status": "final", "duplicate": True}, body
    status, body = node.post_batch(cbor_array([device.sign(seq=3, data=0.0)]))
    assert status == 409 and body["results"][0]["error"]["code"] == "replayed_seq", body


@pytest.fixture(scope="module")
def proof_in_a_batch(node, tmp_path_factory):
    """A proof of the 2nd of 3 readings finalized together (so the audit path is not empty)."""
    device = new_device(node)
    messages = [device.sign() for _ in range(3)]
    status, body = node.post_batch(cbor_array(messages))
    assert status == 202, body
    rid = body["results"][1]["id"]
    node.wait_final(rid)
    path = tmp_path_factory.mktemp("proof") / "proof.json"
    proof = fetch_proof(node, rid, path)
    assert proof["audit_path"], "a reading in a block of several has a non-empty audit path"
    return proof


def tampered(tmp_path, proof, change):
    p = copy.deepcopy(proof)
    change(p)
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(p))
    return path


def flip_hex(h: str, at: int = -1) -> str:
    b = bytearray(bytes.fromhex(h[2:]))
    b[at] ^= 0x01
    return "0x" + b.hex()


def test_untampered_proof_verifies(node, tmp_path, proof_in_a_batch):
    assert verify(node, tampered(tmp_path, proof_in_a_batch, lambda p: None)).returncode == 0


def test_changed_payload_is_caught(node, tmp_path, proof_in_a_batch):
    def change(p):
        msg = bytes.fromhex(p["message"][2:])
        tag = cbor2.loads(msg)
        payload = cbor2.loads(tag.value[2])
        payload["data"] = 99.9  # the device said 21.5
        tag.value[2] = cbor2.dumps(payload)
        new = cbor2.dumps(tag)
        p["message"] = "0x" + new.hex()
        p["reading_id"] = "0x" + hashlib.sha256(b"\x00" + new).hexdigest()
    r = verify(node, tampered(tmp_path, proof_in_a_batch, change))
    assert r.returncode == 1 and "device signature" in r.stderr, r.stderr
    # Without re-computing the id, the id check names itself.
    r = verify(node, tampered(tmp_path, proof_in_a_batch, lambda p: p.update(message=flip_hex(p["message"], -70))))
    assert r.returncode == 1 and ("reading id" in r.stderr or "message" in r.stderr), r.stderr


def test_changed_merkle_path_is_caught(node, tmp_path, proof_in_a_batch):
    r = verify(node, tampered(tmp_path, proof_in_a_batch, lambda p: p["audit_path"].__setitem__(0, flip_hex(p["audit_path"][0]))))
    assert r.returncode == 1 and "merkle audit path" in r.stderr, r.stderr
    r = verify(node, tampered(tmp_path, proof_in_a_batch, lambda p: p.update(index=p["index"] ^ 1)))
    assert r.returncode == 1 and "merkle audit path" in r.stderr, r.stderr


def test_changed_header_is_caught(node, tmp_path, proof_in_a_batch):
    r = verify(node, tampered(tmp_path, proof_in_a_batch, lambda p: p["header"].update(state_root=flip_hex(p["header"]["state_root"]))))
    assert r.returncode == 1 and "header" in r.stderr, r.stderr
    r = verify(node, tampered(tmp_path, proof_in_a_batch, lambda p: p["header"].update(timestamp_ms=p["header"]["timestamp_ms"] + 1)))
    assert r.returncode == 1 and "header" in r.stderr, r.stderr


def test_certificate_from_a_wrong_key_is_caught(node, tmp_path, proof_in_a_batch):
    rogue = Ed25519PrivateKey.generate()
    cert = proof_in_a_batch["certificate"]
    signed = finalize_message(cert)
    pub = rogue.public_key().public_bytes_raw()

    def forge(p):
        p["certificate"]["signatures"] = [{"validator": "0x" + pub.hex(), "signature": "0x" + rogue.sign(signed).hex()}]
    r = verify(node, tampered(tmp_path, proof_in_a_batch, forge))
    assert r.returncode == 1 and "finality certificate" in r.stderr, r.stderr

    def steal_identity(p):
        # The real validator's key with the rogue key's signature.
        p["certificate"]["signatures"][0]["signature"] = "0x" + rogue.sign(signed).hex()
    r = verify(node, tampered(tmp_path, proof_in_a_batch, steal_identity))
    assert r.returncode == 1 and "finality certificate" in r.stderr, r.stderr

    r = verify(node, tampered(tmp_path, proof_in_a_batch, lambda p: p["certificate"].update(signatures=[])))
    assert r.returncode == 1 and "finality certificate" in r.stderr, r.stderr


def test_unknown_reading_has_no_proof(node):
    status, body = node.get("/v1/readings/0x" + "00" * 32 + "/proof")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body = node.get("/v1/readings/0x1234/proof")
    assert status == 400 and body["error"]["code"] == "bad_id"


def test_p256_key_registered_in_compressed_form(node):
    from cose_device import Device
    from helpers import reading_aad
    device = Device("p256")
    uncompressed = bytes.fromhex(device.pubkey_hex)
    compressed = bytes([2 + (uncompressed[64] & 1)]) + uncompressed[1:33]
    full = device.pubkey_hex
    out = cli("device", "register", "--node", node.url, "--owner-key", str(node.owner_key),
              "--device-pubkey", compressed.hex(), "--alg", "p256")
    device.address = json.loads(out.stdout)["device"]
    device.aad = reading_aad(node.url)
    # The address derives from x‖y whichever SEC1 form was given.
    _, info = node.get(f"/v1/devices/{device.address}")
    assert info["public_key"] == "0x" + full
    status, body = node.post_cose(device.sign())
    assert status == 202, body
    node.wait_final(body["id"])

"""docs/vectors.json reproduced with independent libraries: pycose + cbor2 (COSE/CBOR),
hashlib (RFC 6962), cryptography (Ed25519), rlp + pycryptodome (RLP, keccak256)."""

import hashlib
import json
from pathlib import Path

import cbor2
import rlp
from Crypto.Hash import keccak
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pycose.algorithms import EdDSA
from pycose.headers import KID, Algorithm
from pycose.keys import EC2Key, OKPKey
from pycose.keys.curves import P256, Ed25519
from pycose.messages import Sign1Message

from cose_device import canonical_message
from helpers import finalize_message

V = json.loads((Path(__file__).resolve().parents[2] / "docs" / "vectors.json").read_text())


def b(h: str) -> bytes:
    return bytes.fromhex(h[2:] if h.startswith("0x") else h)


def keccak256(data: bytes) -> bytes:
    return keccak.new(digest_bits=256, data=data).digest()


def leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def mth(leaves):
    """RFC 6962 §2.1, written from the RFC."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


def test_ed25519_reading_is_reproduced_byte_for_byte_by_pycose():
    v = V["reading_ed25519"]
    pub = b(v["public_key"])
    assert "0x" + keccak256(pub)[-20:].hex() == v["device"]
    key = OKPKey(crv=Ed25519, d=b(v["secret_key"]), x=pub)
    payload = cbor2.dumps({"seq": v["seq"], "ts": v["ts"], "stream": v["stream"], "data": cbor2.loads(b(v["data_cbor"]))})
    assert payload == b(v["payload"])
    # The reading names its chain: its genesis hash is the COSE external_aad (RFC 9052 §4.3).
    aad = b(v["external_aad"])
    assert len(aad) == 32
    msg = Sign1Message(phdr={Algorithm: EdDSA, KID: b(v["device"])}, payload=payload, external_aad=aad)
    msg.key = key
    encoded = msg.encode()
    assert encoded == b(v["message"])
    assert "0x" + leaf(encoded).hex() == v["reading_id"]
    decoded = Sign1Message.decode(b(v["message"]))
    decoded.key = OKPKey(crv=Ed25519, x=pub)
    decoded.external_aad = aad
    assert decoded.verify_signature()
    # Under another chain's genesis hash (or none) the same bytes do not verify.
    for other in (b"", bytes(32), aad[:-1] + bytes([aad[-1] ^ 1])):
        decoded.external_aad = other
        assert not decoded.verify_signature()
    assert cbor2.dumps(["Signature1", b(v["protected"]), aad, b(v["payload"])]) == b(v["sig_structure"])


def test_a_reading_of_a_chain_whose_readings_do_not_name_it_signs_an_empty_aad():
    v = V["reading_ed25519_unbound"]
    assert v["external_aad"] == "0x"
    pub = b(v["public_key"])
    key = OKPKey(crv=Ed25519, d=b(v["secret_key"]), x=pub)
    msg = Sign1Message(phdr={Algorithm: EdDSA, KID: b(v["device"])}, payload=b(v["payload"]))
    msg.key = key
    assert msg.encode() == b(v["message"])
    assert cbor2.dumps(["Signature1", b(v["protected"]), b"", b(v["payload"])]) == b(v["sig_structure"])
    assert v["message"] != V["reading_ed25519"]["message"]


def test_es256_reading_verifies_with_pycose():
    v = V["reading_es256"]
    pub = b(v["public_key"])
    assert pub[0] == 4 and "0x" + keccak256(pub[1:])[-20:].hex() == v["device"]
    decoded = Sign1Message.decode(b(v["message"]))
    decoded.key = EC2Key(crv=P256, x=pub[1:33], y=pub[33:])
    decoded.external_aad = b(v["external_aad"])
    assert decoded.verify_signature()
    assert decoded.phdr[KID] == b(v["device"])
    assert cbor2.loads(decoded.payload)["seq"] == v["seq"]
    assert "0x" + leaf(b(v["message"])).hex() == v["reading_id"]
    # Sig_structure is the one RFC 9052 defines.
    assert cbor2.dumps(["Signature1", b(v["protected"]), b(v["external_aad"]), b(v["payload"])]) == b(v["sig_structure"])


def test_every_encoding_of_a_reading_has_one_id():
    """docs/formats.md "Reading id": a tagged and an untagged message of one reading (and other
    re-encodings a relay could make) have the same id, reproduced with pycose and cbor2."""
    e = V["reading_encodings"]
    ed = V["reading_ed25519"]
    canonical = b(e["canonical"])
    assert canonical == b(ed["message"]) and canonical[0] == 0xD2
    assert "0x" + leaf(canonical).hex() == e["reading_id"] == ed["reading_id"]
    key = OKPKey(crv=Ed25519, x=b(ed["public_key"]))
    for m in map(b, e["same_reading"]):
        assert m != canonical
        item = cbor2.loads(m)
        # pycose decodes tagged messages: tag what came untagged, as the rule does.
        tagged = cbor2.dumps(item if isinstance(item, cbor2.CBORTag) else cbor2.CBORTag(18, item))
        decoded = Sign1Message.decode(tagged)
        decoded.key = key
        decoded.external_aad = b(ed["external_aad"])
        assert decoded.verify_signature(), m.hex()
        assert canonical_message(m) == canonical
        assert "0x" + leaf(canonical_message(m)).hex() == e["reading_id"]
    # The ES256 twin (r, n - s) verifies as well, and has the id of the low-s message.
    es = V["reading_es256"]
    high = b(e["es256_high_s"])
    assert int.from_bytes(cbor2.loads(high).value[3][32:], "big") > P256_HALF
    pub = b(es["public_key"])
    decoded = Sign1Message.decode(high)
    decoded.key = EC2Key(crv=P256, x=pub[1:33], y=pub[33:])
    decoded.external_aad = b(es["external_aad"])
    assert decoded.verify_signature()
    assert canonical_message(high) == b(es["message"])
    assert "0x" + leaf(canonical_message(high)).hex() == e["es256_reading_id"] == es["reading_id"]


P256_HALF = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551 // 2


def test_merkle_root_and_audit_path():
    m = V["merkle"]
    leaves = [b(x) for x in m["leaves"]]
    assert "0x" + mth(leaves).hex() == m["root"]
    # Walk the audit path of leaf 2 in a tree of 5 (RFC 9162 §2.1.3.2).
    fn, sn, r = 2, len(leaves) - 1, leaves[2]
    for p in map(b, m["audit_path_of_leaf_2"]):
        if fn & 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    assert sn == 0 and "0x" + r.hex() == m["root"]


def test_header_rlp_and_hash():
    h = V["header"]
    f = h["fields"]
    encoded = rlp.encode([
        f["chain_id"], f["height"], b(f["parent_hash"]), f["timestamp_ms"], b(f["proposer"]),
        b(f["readings_root"]), f["reading_count"], b(f["transactions_root"]), f["transaction_count"],
        b(f["state_root"]),
    ])
    assert encoded == b(h["rlp"])
    assert "0x" + keccak256(encoded).hex() == h["hash"]


def test_certificate_signature():
    c = V["certificate"]
    sk = Ed25519PrivateKey.from_private_bytes(b(c["validator_secret_key"]))
    cert = c["certificate"]
    signed = finalize_message(cert)
    assert signed == b(c["signing_bytes"])
    assert cert["header_hash"] == V["header"]["hash"]
    sig = cert["signatures"][0]
    assert sk.public_key().public_bytes_raw() == b(sig["validator"])
    sk.public_key().verify(b(sig["signature"]), signed)


def test_transaction_rlp_and_hash():
    t = V["transaction"]
    raw = b(t["rlp"])
    assert "0x" + keccak256(raw).hex() == t["hash"]
    owner, nonce, op, signature = rlp.decode(raw)
    assert owner == b(t["owner"]) and int.from_bytes(nonce, "big") == t["nonce"] and len(signature) == 65
    kind, device, alg, public_key, model, firmware_hash, labels = op
    assert kind == b"\x01" and alg == b"\x08" and public_key == b(V["reading_ed25519"]["public_key"])
    assert model == b"tsensor-1" and labels == [[b"site", b"dock 4"]]
    domain = b"iotchain/device-op/v1" + (1337).to_bytes(8, "big")
    assert "0x" + keccak256(domain + rlp.encode([owner, nonce, op])).hex() == t["signing_hash"]


def test_stream_accumulator_leaves_peaks_root_and_range_proof():
    """The accumulator of docs/formats.md "Complete-range proofs", written from the text."""
    a = V["stream_accumulator"]
    hashes = []
    for l in a["leaves"]:
        enc = b(l["id"]) + b"".join(
            l[k].to_bytes(8, "big") for k in ("seq", "ts", "height", "block_time_ms", "max_seq", "max_ts"))
        assert enc == b(l["encoded"])
        hashes.append(leaf(enc))
        assert "0x" + hashes[-1].hex() == l["hash"]

    def node(x, y):
        return hashlib.sha256(b"\x01" + x + y).digest()

    def subtree(level, index):
        if level == 0:
            return hashes[index]
        return node(subtree(level - 1, 2 * index), subtree(level - 1, 2 * index + 1))

    n = len(hashes)
    layout, offset = [], 0
    for h in reversed(range(64)):
        if n >> h & 1:
            layout.append((h, offset))
            offset += 1 << h
    peaks = [subtree(h, at >> h) for h, at in layout]
    assert ["0x" + p.hex() for p in peaks] == a["peaks"]
    root = hashlib.sha256(b"\x02" + n.to_bytes(8, "big") + b"".join(peaks)).digest()
    assert "0x" + root.hex() == a["root"]

    # Verify the range proof of leaves 3..=6 by the depth-first walk, from the leaves alone.
    proof = [b(x) for x in a["range_3_to_6_proof"]]
    first, last = 3, 6
    shown = iter(hashes[first:last + 1])

    def walk(level, index):
        lo, hi = index << level, ((index + 1) << level) - 1
        if hi < first or lo > last:
            return proof.pop(0)
        if level == 0:
            return next(shown)
        return node(walk(level - 1, 2 * index), walk(level - 1, 2 * index + 1))

    walked = [walk(h, at >> h) for h, at in layout]
    assert proof == [] and walked == peaks
    # The running maxima: seq 4 came after 7, so its leaf carries max_seq 7.
    late = next(l for l in a["leaves"] if l["seq"] == 4)
    assert late["max_seq"] == 7

    key = keccak256(b"\x03" + b(a["device"]) + a["stream"].encode())
    assert "0x" + key.hex() == a["trie_key"]
    assert rlp.encode([n, root]) == b(a["trie_value"])

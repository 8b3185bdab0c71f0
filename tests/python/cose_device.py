"""An independent device implementation: pycose COSE_Sign1 over a cbor2 payload."""

import hashlib
import time

import cbor2
from pycose.algorithms import EdDSA, Es256
from pycose.headers import KID, Algorithm
from pycose.keys import EC2Key, OKPKey
from pycose.keys.curves import P256, Ed25519
from pycose.messages import Sign1Message


class Device:
    def __init__(self, alg: str):
        self.alg = alg
        if alg == "ed25519":
            self.key = OKPKey.generate_key(crv=Ed25519)
            self.cose_alg = EdDSA
        else:
            self.key = EC2Key.generate_key(crv=P256)
            self.cose_alg = Es256
        self.address = None  # set from the registration's output
        self.seq = 0
        # COSE external_aad: the chain's genesis hash (`reading_aad` in /v1/status), set at
        # registration; empty on a chain whose readings do not name it.
        self.aad = b""

    @property
    def pubkey_hex(self) -> str:
        if self.alg == "ed25519":
            return self.key.x.hex()
        return (b"\x04" + self.key.x + self.key.y).hex()

    def sign(self, seq=None, data=21.5, stream="temperature", ts=None, extra=None, key=None,
             aad=None) -> bytes:
        if seq is None:
            seq = self.seq
            self.seq += 1
        payload = {"seq": seq, "ts": ts if ts is not None else int(time.time() * 1000), "data": data}
        if stream is not None:
            payload["stream"] = stream
        if extra:
            payload.update(extra)
        msg = Sign1Message(
            phdr={Algorithm: self.cose_alg, KID: bytes.fromhex(self.address[2:])},
            payload=cbor2.dumps(payload),
            external_aad=self.aad if aad is None else aad,
        )
        msg.key = key or self.key
        return msg.encode()


# The order of the P-256 group: an ES256 signature (r, s) and (r, n - s) both verify.
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def canonical_message(message: bytes) -> bytes:
    """The canonical form of a COSE_Sign1 reading (docs/formats.md, "Reading id"), written
    from the rule with cbor2: tag 18, shortest heads, the protected header and payload bytes
    as they are, an empty unprotected map, and an ES256 signature with the low s."""
    item = cbor2.loads(message)
    if isinstance(item, cbor2.CBORTag):
        assert item.tag == 18, item.tag
        item = item.value
    protected, _unprotected, payload, signature = item
    if cbor2.loads(protected).get(1) == -7:
        s = int.from_bytes(signature[32:], "big")
        if P256_N // 2 < s < P256_N:
            signature = signature[:32] + (P256_N - s).to_bytes(32, "big")
    return cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, signature]))


def reading_id(message: bytes) -> str:
    """RFC 6962 leaf hash of the canonical message, computed independently."""
    return "0x" + hashlib.sha256(b"\x00" + canonical_message(message)).hexdigest()


def cbor_array(messages) -> bytes:
    """A CBOR array of already-encoded items (the application/cbor batch body)."""
    n = len(messages)
    if n < 24:
        head = bytes([0x80 | n])
    elif n < 256:
        head = bytes([0x98, n])
    else:
        head = bytes([0x99]) + n.to_bytes(2, "big")
    return head + b"".join(messages)

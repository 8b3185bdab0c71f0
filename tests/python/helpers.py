"""Shared steps of the end-to-end tests."""

import json
import urllib.request

from conftest import cli
from cose_device import Device, cbor_array


def register(node, device: Device, model="pycose-sensor"):
    """Registers a pycose device through the CLI, with only its public key."""
    out = cli("device", "register", "--node", node.url, "--owner-key", str(node.owner_key),
              "--device-pubkey", device.pubkey_hex, "--alg", device.alg, "--model", model,
              "--firmware-hash", "0x" + "ab" * 32)
    device.address = json.loads(out.stdout)["device"]
    device.aad = reading_aad(node.url)
    return device


def reading_aad(url: str) -> bytes:
    """What the node's chain has readings sign as COSE external_aad (its genesis hash)."""
    with urllib.request.urlopen(url + "/v1/status", timeout=10) as r:
        return bytes.fromhex(json.loads(r.read())["reading_aad"][2:])


def new_device(node, alg="ed25519") -> Device:
    return register(node, Device(alg))


def varint(n: int) -> bytes:
    """Unsigned LEB128, as Commonware's codec writes integers."""
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def finalize_message(cert: dict) -> bytes:
    """The bytes each validator signs in a finality certificate: simplex's finalize vote."""
    ns = b"iotchain/simplex/v1_FINALIZE"
    return (varint(len(ns)) + ns + varint(cert["epoch"]) + varint(cert["view"])
            + varint(cert["parent_view"]) + bytes.fromhex(cert["header_hash"][2:]))


def post_readings(node, messages, batch=100):
    """Posts signed readings in batches (each must be acknowledged); their ids, in order."""
    ids = []
    for i in range(0, len(messages), batch):
        status, body = node.post_batch(cbor_array(messages[i:i + batch]))
        assert status == 202, body
        ids += [r["id"] for r in body["results"]]
    return ids

"""Shared steps of the end-to-end tests."""

import json

from conftest import cli
from cose_device import Device


def register(node, device: Device, model="pycose-sensor"):
    """Registers a pycose device through the CLI, with only its public key."""
    out = cli("device", "register", "--node", node.url, "--owner-key", str(node.owner_key),
              "--device-pubkey", device.pubkey_hex, "--alg", device.alg, "--model", model,
              "--firmware-hash", "0x" + "ab" * 32)
    device.address = json.loads(out.stdout)["device"]
    return device


def new_device(node, alg="ed25519") -> Device:
    return register(node, Device(alg))

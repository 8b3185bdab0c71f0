"""The device SDK from C: readings signed by the example C program (built against the static
library and the cbindgen header) are accepted by a running node, become final, and their
proofs verify offline."""

import os
import subprocess

import pytest

from conftest import cli
from cose_device import cbor_array

C_EXAMPLE = os.environ.get("IOTCHAIN_C_EXAMPLE")

pytestmark = pytest.mark.skipif(not C_EXAMPLE, reason="IOTCHAIN_C_EXAMPLE not built (scripts/test.sh builds it)")


def c_device(*args) -> list[str]:
    p = subprocess.run([C_EXAMPLE, *args], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout.split()


@pytest.mark.parametrize("alg", ["ed25519", "p256"])
def test_c_signed_readings_become_final_and_prove(node, tmp_path, alg):
    secret = os.urandom(32).hex()
    address, pubkey = c_device("info", alg, secret)
    out = cli("device", "register", "--node", node.url, "--owner-key", str(node.owner_key),
              "--device-pubkey", pubkey, "--alg", alg, "--model", "c-sdk",
              "--firmware-hash", "0x" + "cd" * 32)
    assert address in out.stdout.lower()
    # The chain's genesis hash, signed as COSE external_aad (iotchain_device_set_chain).
    _, status = node.get("/v1/status")
    chain = status["reading_aad"][2:]
    assert chain == status["genesis_hash"][2:] and len(chain) == 64
    unbound = bytes.fromhex(c_device("sign", alg, secret, "0", "1700000000000", "temp", "1")[0])
    s, body = node.post_cose(unbound)
    assert (s, body["error"]["code"]) == (403, "bad_signature"), body
    messages = [bytes.fromhex(h) for h in c_device("sign", alg, secret, "0", "1700000000000", "temp", "5", chain)]
    assert len(messages) == 5
    status, body = node.post_batch(cbor_array(messages))
    assert status == 202 and body["accepted"] == 5, body
    last = body["results"][-1]["id"]
    node.wait_final(last)
    proof = tmp_path / "p.json"
    cli("proof", last, "--node", node.url, "--out", str(proof))
    cli("verify", str(proof), "--genesis", str(node.genesis))
    # The device resumes after a reboot from its persisted seq; replaying seq 0 is refused.
    again = [bytes.fromhex(h) for h in c_device("sign", alg, secret, "5", "1700000001000", "temp", "1", chain)]
    status, body = node.post_cose(again[0])
    assert status == 202, body
    replay = [bytes.fromhex(h) for h in c_device("sign", alg, secret, "0", "1700000002000", "temp", "1", chain)]
    status, body = node.post_cose(replay[0])
    assert status == 409, body

"""Onboarding a fleet: `iotchain device import` registers thousands of devices per owner
transaction from a CSV or JSON file; a bad key is named by its line before anything is sent, and
the node refuses a batch naming the device's index; manufacturer certificates are accepted only
from a manufacturer the owner (or genesis) authorised."""

import csv
import json
import random

import rlp

from conftest import Node, cli
from cose_device import Device
from helpers import reading_aad


def write_csv(path, devices, model="meter-7", certificates=None):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["public_key", "alg", "model", "labels", "certificate"])
        for i, d in enumerate(devices):
            cert = certificates[i] if certificates else ""
            w.writerow(["0x" + d.pubkey_hex, d.alg, model, f"site=dock {i % 7};batch=42", cert])


def dry_run_addresses(path, owner_key):
    """The device addresses a file lists, as the CLI derives them (without sending)."""
    out = cli("device", "import", str(path), "--owner-key", str(owner_key), "--dry-run")
    return [line.split("\t")[1] for line in out.stdout.splitlines()]


def import_devices(node, path, *extra, check=True):
    return cli("device", "import", str(path), "--node", node.url, "--owner-key",
               str(node.owner_key), *extra, check=check)


def test_ten_thousand_devices_imported_in_two_transactions_and_resumable(tmp_path):
    node = Node(tmp_path / "data").start()
    try:
        devices = [Device("ed25519" if i % 10 else "p256") for i in range(10_000)]
        path = tmp_path / "fleet.csv"
        write_csv(path, devices)
        addresses = dry_run_addresses(path, node.owner_key)
        assert len(addresses) == 10_000
        p = import_devices(node, path, "--batch", "5000")
        summary = json.loads(p.stdout)
        assert summary["registered"] == 10_000 and summary["transactions"] == 2, summary
        assert "10000 devices" in p.stderr and "accepted 10000 of 10000" in p.stderr, p.stderr

        _, owner = node.get(f"/v1/owners/{json.loads(open(node.owner_key).read())['address']}")
        assert owner["device_count"] == 10_000
        # Listed a page at a time, each device once, in address order.
        listed, after, pages = [], None, 0
        while True:
            status, page = node.get(f"/v1/devices?owner={owner['address']}&limit=1000"
                                    + (f"&after={after}" if after else ""))
            assert status == 200 and len(page["devices"]) <= 1000, page
            listed += [d["address"] for d in page["devices"]]
            pages += 1
            after = page["next"]
            if after is None:
                break
        assert pages == 10 and listed == sorted(addresses) == sorted(set(listed)), pages
        _, page = node.get("/v1/devices")
        assert len(page["devices"]) == 100 and page["next"] == page["devices"][-1]["address"]
        for bad, code in [("limit=0", "bad_query"), ("limit=1001", "bad_query"),
                          ("limit=x", "bad_query"), ("after=0x12", "bad_address")]:
            status, body = node.get(f"/v1/devices?{bad}")
            assert status == 400 and body["error"]["code"] == code, (bad, body)
        listed_by_cli = cli("device", "list", "--node", node.url).stdout.splitlines()
        assert len(listed_by_cli) == 10_000
        for i in random.sample(range(10_000), 20):
            status, d = node.get(f"/v1/devices/{addresses[i]}")
            assert status == 200, d
            assert d["model"] == "meter-7" and d["manufacturer"] is None
            assert {"key": "site", "value": f"dock {i % 7}"} in d["labels"]
            assert d["public_key"] == "0x" + devices[i].pubkey_hex
        # Both transactions are final, each holding 5,000 registrations.
        _, tx = node.get(f"/v1/transactions/{summary['last_transaction']}")
        assert tx["status"] == "final", tx
        _, items = node.get(f"/v1/blocks/{tx['height']}/items")
        [ours] = [t for t in items["transactions"] if t["hash"] == summary["last_transaction"]]
        assert ours["op"]["type"] == "register_many" and len(ours["op"]["devices"]) == 5000

        # An imported device sends a reading that becomes final.
        d = devices[1234]
        d.address, d.aad = addresses[1234], reading_aad(node.url)
        status, body = node.post_cose(d.sign())
        assert status == 202, body
        assert node.wait_final(body["id"])["status"] == "final"

        # Run again (after a failure, say): every batch is found registered and skipped.
        again = json.loads(import_devices(node, path).stdout or "{}")
        assert again == {}, again
        p = import_devices(node, path)
        assert "10000 devices were registered already" in p.stderr, p.stderr
        _, owner = node.get(f"/v1/owners/{owner['address']}")
        assert owner["device_count"] == 10_000 and owner["nonce"] == 2
    finally:
        node.stop()


def test_a_bad_key_is_named_by_its_line_and_by_its_index(tmp_path):
    node = Node(tmp_path / "data").start()
    try:
        devices = [Device("ed25519") for _ in range(10_000)]
        path = tmp_path / "fleet.csv"
        write_csv(path, devices)
        rows = list(csv.reader(open(path)))
        # Device 4711 (line 4713 after the header) gets the Ed25519 identity: a weak key.
        rows[4712][0] = "0x01" + "00" * 31
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows(rows)
        p = import_devices(node, path, check=False)
        assert p.returncode != 0
        assert "line 4713" in p.stderr and "weak" in p.stderr, p.stderr
        # Nothing was sent.
        _, owner = node.get(f"/v1/owners/{json.loads(open(node.owner_key).read())['address']}")
        assert owner["nonce"] == 0 and owner["device_count"] == 0

        # The same batch signed by hand, straight to the node: refused naming index 4711.
        def entry(key_hex):
            return [8, bytes.fromhex(key_hex), b"meter-7", b"", [], b""]
        keys = [d.pubkey_hex for d in devices]
        keys[4711] = "01" + "00" * 31
        op = [4, b"\0" * 20, 0, b"", b"", b"", [], [entry(k) for k in keys]]
        owner_address = bytes.fromhex(owner["address"][2:])
        raw = rlp.encode([owner_address, 0, op, b"\x01" * 65])
        status, body = node.request("POST", "/v1/transactions", json.dumps({"raw": "0x" + raw.hex()}).encode(),
                                    "application/json")
        assert status == 400, body
        assert "device 4711" in body["error"]["message"], body

        # JSON input: a bad row is named by its index, an unknown field is refused.
        bad = tmp_path / "fleet.json"
        bad.write_text(json.dumps([{"public_key": "0x" + devices[0].pubkey_hex, "alg": "ed25519"},
                                   {"public_key": "0x1234", "alg": "ed25519"}]))
        p = import_devices(node, bad, check=False)
        assert p.returncode != 0 and "device 1" in p.stderr, p.stderr
        bad.write_text(json.dumps([{"public_key": "0x" + devices[0].pubkey_hex, "alg": "ed25519", "colour": 1}]))
        p = import_devices(node, bad, check=False)
        assert p.returncode != 0 and "colour" in p.stderr, p.stderr
    finally:
        node.stop()


def test_certified_devices_need_an_authorised_manufacturer(tmp_path):
    node = Node(tmp_path / "data").start()
    try:
        factory, rogue = tmp_path / "factory.key", tmp_path / "rogue.key"
        cli("keys", "new", "--alg", "secp256k1", "--out", str(factory))
        cli("keys", "new", "--alg", "secp256k1", "--out", str(rogue))
        factory_address = json.loads(factory.read_text())["address"]
        devices = [Device("p256" if i % 2 else "ed25519") for i in range(300)]
        keys = tmp_path / "run-42.json"
        keys.write_text(json.dumps([{"public_key": "0x" + d.pubkey_hex, "alg": d.alg, "model": "meter-7",
                                     "labels": {"run": "42"}} for d in devices]))
        certified = tmp_path / "run-42-certified.json"
        p = cli("device", "certify", str(keys), "--manufacturer-key", str(factory), "--out", str(certified))
        assert f"certified 300 devices as manufacturer {factory_address}" in p.stderr, p.stderr

        # Not authorised yet: the batch is refused by its first device, nothing registered.
        p = import_devices(node, certified, check=False)
        assert p.returncode != 0
        assert "unknown_manufacturer" in p.stderr and "device 0 of the batch" in p.stderr, p.stderr

        out = cli("device", "manufacturer", factory_address, "--node", node.url,
                  "--owner-key", str(node.owner_key))
        assert json.loads(out.stdout)["authorised"] is True
        _, owner = node.get(f"/v1/owners/{json.loads(node.owner_key.read_text())['address']}")
        assert owner["manufacturers"] == [factory_address.lower()] or \
            [m.lower() for m in owner["manufacturers"]] == [factory_address.lower()], owner

        # A forged certificate in the middle of a run (signed by another key) refuses the
        # batch naming that device.
        forged = json.loads(certified.read_text())
        rogue_run = tmp_path / "rogue.json"
        rogue_run.write_text(json.dumps(forged[100:101]))
        cli("device", "certify", str(rogue_run), "--manufacturer-key", str(rogue), "--out", str(rogue_run))
        forged[100] = json.loads(rogue_run.read_text())[0]
        tampered = tmp_path / "tampered.json"
        tampered.write_text(json.dumps(forged))
        p = import_devices(node, tampered, check=False)
        assert p.returncode != 0
        assert "unknown_manufacturer" in p.stderr and "device 100 of the batch" in p.stderr, p.stderr
        # One byte of a certificate changed: it recovers another address (refused by the node)
        # or none (refused by the CLI); either way the device is named. Every byte of r, s.
        for at in range(0, 64, 7):
            changed = json.loads(certified.read_text())
            sig = bytearray.fromhex(changed[150]["certificate"][2:])
            sig[at] ^= 1
            changed[150]["certificate"] = "0x" + sig.hex()
            tampered.write_text(json.dumps(changed))
            p = import_devices(node, tampered, check=False)
            assert p.returncode != 0
            assert ("unknown_manufacturer" in p.stderr and "device 150 of the batch" in p.stderr) or \
                ("device 150: certificate: does not recover a manufacturer" in p.stderr), p.stderr

        # The factory's certificates, now authorised: accepted, each record names it.
        summary = json.loads(import_devices(node, certified).stdout)
        assert summary["registered"] == 300
        addresses = dry_run_addresses(certified, node.owner_key)
        for i in (0, 1, 150, 299):
            _, d = node.get(f"/v1/devices/{addresses[i]}")
            assert d["manufacturer"].lower() == factory_address.lower(), d
            assert {"key": "run", "value": "42"} in d["labels"]
    finally:
        node.stop()

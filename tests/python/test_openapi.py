"""The REST API against its own OpenAPI document (`GET /v1/openapi.json`), with schemathesis.

A devnet node gets a device, readings on two streams and owner transactions; then
schemathesis generates requests for every documented operation (valid ones, and invalid ones:
wrong types, values outside the documented ranges, missing parameters) and checks each
answer: no 5xx (`not_a_server_error`), a status the document lists for the operation
(`status_code_conformance`), with its content type (`content_type_conformance`) and a body that
matches its schema (`response_schema_conformance`). Half of the path and query values it
draws are the real device, streams, readings, transactions and heights (schemathesis
dictionaries), so the answers with data are checked too, not only the 404s of random ids.

The feed (`GET /v1/feed`, Server-Sent Events) never ends while the node runs: schemathesis
reads at most 3 of its events, or stops after 2 s without one (a filter that takes nothing,
a start far ahead), and checks the events it read against the documented event schema. The
`wait_ms` of the status and sync routes (the node holds the answer until the item is final)
is kept at 100 ms by `openapi_hooks.py`, so the run is bounded in time.

Examples per operation are bounded (`MAX_EXAMPLES`), and the seed is fixed, so a run takes
well under a minute on two cores and a failure reproduces (both can be changed for a longer
campaign, below).
"""

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from xml.etree import ElementTree

import pytest

from conftest import cli
from cose_device import Device, cbor_array
from helpers import post_readings, reading_aad

HERE = Path(__file__).resolve().parent
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
# A longer campaign: OPENAPI_MAX_EXAMPLES=500 OPENAPI_SEED=<any> (a few minutes per 100).
MAX_EXAMPLES = int(os.environ.get("OPENAPI_MAX_EXAMPLES", "50"))
SEED = int(os.environ.get("OPENAPI_SEED", "20260"))


@pytest.fixture(scope="module")
def data(node):
    """A device with readings on two streams (numbers and maps), and what identifies them."""
    device = Device("ed25519")
    out = json.loads(cli("device", "register", "--node", node.url, "--owner-key", str(node.owner_key),
                         "--device-pubkey", device.pubkey_hex, "--alg", device.alg, "--model", "openapi",
                         "--firmware-hash", "0x" + "ab" * 32).stdout)
    device.address, device.aad = out["device"], reading_aad(node.url)
    temps = [device.sign(seq=s, stream="temperature", data=20 + s / 10, ts=1_700_000_000_000 + s * 60_000)
             for s in range(40)]
    doors = [device.sign(seq=40 + s, stream="door", data={"open": s % 2 == 0, "env": [{"t": s}]},
                         ts=1_700_000_000_000 + s * 90_000) for s in range(10)]
    ids = post_readings(node, temps + doors, batch=25)
    final = node.wait_final(ids[-1])
    _, page = node.get(f"/v1/devices/{device.address}/readings?stream=temperature&limit=5")
    return {
        "device": device,
        "registration": out["transaction"],
        "ids": ids,
        "height": final["height"],
        "cursor": page["next_cursor"],
        "owner": json.loads(Path(node.owner_key).read_text())["address"],
    }


def schemathesis_config(data, path: Path) -> Path:
    """The run's configuration: the real values to draw from, and the feed's limits."""
    d = data["device"]

    def toml_list(values):
        return "[" + ", ".join(json.dumps(v) for v in values) + "]"

    dictionaries = {
        "addresses": [d.address, data["owner"], "0x" + "00" * 20],
        "streams": ["temperature", "door", "none"],
        "ids": [data["ids"][0], data["ids"][-1], "0x" + "00" * 32],
        "hashes": [data["registration"], "0x" + "11" * 32],
        "heights": [1, data["height"], data["height"] + 1000],
        "cursors": [data["cursor"]],
        "paths": ["open", "env.0.t", "nothing"],
    }
    bindings = {
        "path.address": "addresses", "path.stream": "streams", "path.id": "ids",
        "path.hash": "hashes", "path.height": "heights", "query.stream": "streams",
        "query.owner": "addresses", "query.device": "addresses", "query.cursor": "cursors",
        "query.path": "paths", "query.from_height": "heights",
    }
    # One worker: with two, CPython 3.11's `ast.parse` (which hypothesis calls to describe its
    # filters) fails now and then across threads (`SystemError: AST constructor recursion
    # depth mismatch`), an error of the tool, not of the node.
    lines = ["color = false", f"seed = {SEED}", "workers = 1", "request-timeout = 20", ""]
    for name, values in dictionaries.items():
        lines += [f"[dictionaries.{name}]", f"values = {toml_list(values)}", ""]
    lines.append("[parameters]")
    for key, name in bindings.items():
        lines.append(f'"{key}" = {{ dictionary = "{name}", probability = 0.5 }}')
    lines += [
        "",
        "[[operations]]",
        'include-path = "/v1/feed"',
        "request-timeout = 2",
        "max-stream-events = 3",
        "generation.max-examples = 8",
        "",
    ]
    path.write_text("\n".join(lines))
    return path


def test_every_operation_conforms_to_the_document(node, data, tmp_path):
    with urllib.request.urlopen(node.url + "/v1/openapi.json", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("application/json")
        doc = json.loads(r.read())
    assert doc["openapi"].startswith("3.1.")
    assert doc["info"]["title"] == "iotchain"

    config = schemathesis_config(data, tmp_path / "schemathesis.toml")
    cmd = [
        str(SCHEMATHESIS), "--config-file", str(config), "run", node.url + "/v1/openapi.json",
        "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                    "response_schema_conformance",
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", str(MAX_EXAMPLES),
        "--suppress-health-check", "filter_too_much,too_slow",
        "--report", "junit", "--report-junit-path", str(tmp_path / "junit.xml"),
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "openapi_hooks",
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"schemathesis found failures:\n{out[-20000:]}\nnode log:\n{node.log_tail()}"
    # Every documented operation ran (none was skipped for want of a way to generate its
    # input), and passed; but the document itself, which schemathesis does not test against
    # itself (it is checked above).
    report = ElementTree.parse(tmp_path / "junit.xml").getroot()
    tested = {case.get("name"): case for case in report.iter("testcase")}
    for path, item in doc["paths"].items():
        for method in item:
            if path == "/v1/openapi.json":
                continue
            name = f"{method.upper()} {path}"
            assert name in tested, f"{name} was not tested: {sorted(tested)}\n{out[-5000:]}"
            assert tested[name].find("skipped") is None, f"{name} was skipped\n{out[-5000:]}"


def test_real_submissions_conform_to_the_document(node, data):
    """The 202s and refusals of real readings, which random bytes never reach."""
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    import openapi_hooks  # noqa: F401  (sends the COSE and CBOR bodies as they are)

    checks = [not_a_server_error, status_code_conformance, content_type_conformance,
              response_schema_conformance]
    schema = schemathesis.openapi.from_url(node.url + "/v1/openapi.json")
    post = schema["/v1/readings"]["POST"]
    device = data["device"]
    one = device.sign(seq=1000, stream="temperature", data=1.5)
    cases = [
        (one, "application/cose", 202),
        (one, "application/cose", 202),  # the same bytes again: a duplicate, acknowledged
        (device.sign(seq=1000, stream="temperature", data=2.5), "application/cose", 409),
        (cbor_array([device.sign(seq=1001 + i) for i in range(3)]), "application/cbor", 202),
        (cbor_array([device.sign(seq=1000, data=3.5)]), "application/cbor", 409),
        (b"\xa0", "application/cose", 400),
        (b"\x01", "application/cbor", 400),
    ]
    for body, media_type, want in cases:
        case = post.Case(body=body, media_type=media_type)
        response = case.call()
        assert response.status_code == want, (media_type, response.text)
        case.validate_response(response, checks=checks)
    # Another media type: 415, in the error shape.
    case = post.Case(body=b"\x01", media_type="application/cose")
    response = case.call(headers={"Content-Type": "text/plain"})
    assert response.status_code == 415, response.text
    case.validate_response(response, checks=checks)

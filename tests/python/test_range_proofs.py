"""Complete-range proofs: `GET /v1/devices/{address}/readings?…&proof=true` answers a whole range
with a proof that `iotchain verify` checks offline. Honest answers of every range kind verify
and hold exactly what the paged query returns; an answer with one reading dropped, added,
moved or changed, a boundary cut, or a forged certificate, state proof or count, is refused
naming the part that fails. The accumulators survive a SIGKILL of the node."""

import copy
import json

import pytest

from conftest import Node, cli
from helpers import new_device
from helpers import post_readings as post

BASE = 1_700_000_000_000


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """A node with a device whose `temp` stream has a gap filled late (seq 300..309 come
    last) and a clock that went back (seq 200..204), a `door` stream, and another device."""
    node = Node(tmp_path_factory.mktemp("proofs") / "dev").start()
    a, b = new_device(node), new_device(node)
    order = [s for s in range(400) if not 300 <= s < 310] + list(range(300, 310))
    msgs = []
    for s in order:
        stream = "door" if s % 4 == 3 else "temp"
        ts = BASE + s * 1000 - (3_600_000 if 200 <= s < 205 else 0)
        msgs.append(a.sign(seq=s, ts=ts, stream=stream, data=20 + s / 100))
    # In chunks, each final before the next: the readings span blocks of distinct times.
    ids = []
    for i in range(0, len(msgs), 40):
        ids += post(node, msgs[i:i + 40])
        node.wait_final(ids[-1])
    post(node, [b.sign(stream="temp") for _ in range(30)])
    yield node, a, ids
    node.stop()


def paged(node, device, **q):
    """The readings of a query, every page followed (the unproven answer)."""
    out, cursor = [], None
    while True:
        params = dict(q, limit=1000, **({"cursor": cursor} if cursor else {}))
        status, body = node.get(f"/v1/devices/{device}/readings?" + "&".join(f"{k}={v}" for k, v in params.items()))
        assert status == 200, body
        out += body["readings"]
        cursor = body["next_cursor"]
        if cursor is None:
            return out


def proven(node, device, **q):
    query = "&".join(f"{k}={v}" for k, v in dict(q, proof="true", limit=10000).items())
    status, body = node.get(f"/v1/devices/{device}/readings?{query}")
    assert status == 200, body
    return body


def verify(node, tmp_path, answer, genesis=None):
    path = tmp_path / "answer.json"
    path.write_text(json.dumps(answer))
    return cli("verify", str(path), "--genesis", str(genesis or node.genesis), check=False)


def block_time(node, reading_id):
    _, st = node.get(f"/v1/readings/{reading_id}")
    _, blk = node.get(f"/v1/blocks/{st['height']}")
    return blk["header"]["timestamp_ms"]


QUERIES = [
    {},
    {"from_seq": 295, "to_seq": 305},      # takes late readings (the gap filled at the end)
    {"from_seq": 0, "to_seq": 0},
    {"from_seq": 5000, "to_seq": 6000},    # after every reading: empty
    {"from_ts": BASE + 199_000, "to_ts": BASE + 201_500},  # around the clock that went back
    {"from_ts": 0, "to_ts": BASE - 10_000_000},  # before every reading: empty
]


def test_honest_answers_of_every_range_kind_verify_and_equal_the_query(chain, tmp_path):
    node, a, ids = chain
    t_lo, t_hi = block_time(node, ids[100]), block_time(node, ids[200])
    queries = QUERIES + [{"from_time": t_lo, "to_time": t_hi}, {"from_time": 0, "to_time": 1}]
    for q in queries:
        for order in ("asc", "desc"):
            want = paged(node, a.address, stream="temp", order=order, **q)
            answer = proven(node, a.address, stream="temp", order=order, **q)
            assert [r["id"] for r in answer["readings"]] == [r["id"] for r in want], (q, order)
            assert answer["next_cursor"] is None
            assert all(r["message"].startswith("0x") for r in answer["readings"])
            p = verify(node, tmp_path, answer)
            assert p.returncode == 0, (q, order, p.stderr)
            assert f"exactly the {len(want)} readings" in p.stdout, p.stdout
    # A seq range shows the auditor which seqs exist: the door stream has every 4th.
    answer = proven(node, a.address, stream="door", from_seq=0, to_seq=20)
    p = verify(node, tmp_path, answer)
    assert p.returncode == 0, p.stderr
    assert "seqs present: 3, 7, 11, 15, 19" in p.stdout, p.stdout


def refused(node, tmp_path, answer, part):
    p = verify(node, tmp_path, answer)
    assert p.returncode == 1, (part, p.stdout)
    assert p.stderr.startswith("INVALID"), p.stderr
    assert part in p.stderr, (part, p.stderr)


def test_a_dropped_added_moved_or_changed_reading_is_refused_naming_the_part(chain, tmp_path):
    node, a, ids = chain
    honest = proven(node, a.address, stream="temp", from_seq=295, to_seq=305)
    n = len(honest["readings"])
    assert n >= 8

    dropped = copy.deepcopy(honest)
    del dropped["readings"][3]
    refused(node, tmp_path, dropped, "is in the range and not in the answer")

    added = copy.deepcopy(honest)
    added["readings"].append(copy.deepcopy(added["readings"][0]))
    refused(node, tmp_path, added, "completeness")

    other = proven(node, a.address, stream="temp", from_seq=10, to_seq=10)["readings"][0]
    foreign = copy.deepcopy(honest)
    foreign["readings"].insert(2, other)
    refused(node, tmp_path, foreign, "is not a reading of the range")

    moved = copy.deepcopy(honest)
    r = moved["readings"]
    r[1], r[2] = r[2], r[1]
    refused(node, tmp_path, moved, "the answer's order is not the stream's")

    changed = copy.deepcopy(honest)
    m = bytearray.fromhex(changed["readings"][4]["message"][2:])
    m[-1] ^= 1  # the signature's last byte: still a well-formed reading, another id
    changed["readings"][4]["message"] = "0x" + m.hex()
    refused(node, tmp_path, changed, "the message (its id)")

    # A reading and its leaf both left out: the accumulator no longer adds up.
    rp = honest["range_proof"]
    taken = [i for i, leaf in enumerate(rp["leaves"]) if 295 <= int(leaf[2 + 64:2 + 80], 16) <= 305]
    cut = copy.deepcopy(honest)
    del cut["range_proof"]["leaves"][taken[2]]
    del cut["readings"][2]
    refused(node, tmp_path, cut, "accumulator")

    leaf = copy.deepcopy(honest)
    h = leaf["range_proof"]["leaves"][taken[0]]
    leaf["range_proof"]["leaves"][taken[0]] = h[:-1] + ("0" if h[-1] != "0" else "1")
    refused(node, tmp_path, leaf, "accumulator")


def test_cut_boundaries_and_forged_parts_are_refused(chain, tmp_path):
    node, a, ids = chain
    t_lo, t_hi = block_time(node, ids[100]), block_time(node, ids[200])
    honest = proven(node, a.address, stream="temp", from_time=t_lo, to_time=t_hi)
    assert verify(node, tmp_path, honest).returncode == 0
    rp = honest["range_proof"]
    assert rp["first"] > 0 and rp["first"] + len(rp["leaves"]) < rp["count"], "a window inside"

    # Claiming a wider range than the boundary leaves show: readings outside may be left out.
    wider = copy.deepcopy(honest)
    wider["range_proof"]["range"]["from"] = t_lo - 3_600_000
    refused(node, tmp_path, wider, "boundary")
    wider = copy.deepcopy(honest)
    wider["range_proof"]["range"]["to"] = t_hi + 3_600_000
    refused(node, tmp_path, wider, "boundary")
    # The same for a seq range: its start leaf proves nothing about lower seqs.
    seq = proven(node, a.address, stream="temp", from_seq=100, to_seq=120)
    seq["range_proof"]["range"]["from"] = 50
    refused(node, tmp_path, seq, "boundary")
    # Leaves cut off the window's end (and the proof kept): the accumulator does not add up.
    short = copy.deepcopy(honest)
    del short["range_proof"]["leaves"][-1]
    refused(node, tmp_path, short, "accumulator")

    forged = copy.deepcopy(honest)
    sig = forged["range_proof"]["certificate"]["signatures"][0]
    sig["signature"] = sig["signature"][:-2] + ("00" if sig["signature"][-2:] != "00" else "01")
    refused(node, tmp_path, forged, "finality certificate")

    state = copy.deepcopy(honest)
    node0 = state["range_proof"]["state_proof"][0]
    state["range_proof"]["state_proof"][0] = node0[:-2] + ("00" if node0[-2:] != "00" else "01")
    refused(node, tmp_path, state, "state proof")

    count = copy.deepcopy(honest)
    count["range_proof"]["count"] += 1
    refused(node, tmp_path, count, "accumulator")

    other_stream = copy.deepcopy(honest)
    other_stream["range_proof"]["stream"] = "door"  # the trie path is another stream's
    refused(node, tmp_path, other_stream, "state proof")


def test_proof_requests_that_cannot_be_answered_whole_get_clear_errors(chain):
    node, a, _ = chain
    base = f"/v1/devices/{a.address}/readings?proof=true"
    for q, code in [
        ("", "bad_query"),  # no stream
        ("&stream=temp&from_seq=1&to_seq=5&from_ts=0&to_ts=9", "bad_range"),
        ("&stream=temp&cursor=c1" + "00" * 20, "bad_cursor"),
        ("&stream=temp&limit=10001", "bad_limit"),
        ("&stream=temp&limit=10", "bad_limit"),  # the range holds more than 10
    ]:
        status, body = node.get(base + q)
        assert status == 400 and body["error"]["code"] == code, (q, status, body)
        assert body["error"]["message"], body
    # A stream the device never sent: proven empty.
    status, body = node.get(base + "&stream=nothing")
    assert status == 200 and body["readings"] == [], body
    assert body["range_proof"]["count"] == 0


def test_accumulators_survive_a_sigkill_and_keep_proving(tmp_path):
    node = Node(tmp_path / "dev").start()
    try:
        d = new_device(node)
        ids = post(node, [d.sign(seq=s, ts=BASE + s, stream="temp") for s in range(300)])
        node.wait_final(ids[-1])
        before = proven(node, d.address, stream="temp")
        node.kill()
        node.start()
        ids = post(node, [d.sign(seq=s, ts=BASE + s, stream="temp") for s in range(300, 350)])
        node.wait_final(ids[-1])
        after = proven(node, d.address, stream="temp")
        assert [r["id"] for r in after["readings"][:300]] == [r["id"] for r in before["readings"]]
        assert len(after["readings"]) == 350
        for answer in (before, after):
            p = verify(node, tmp_path, answer)
            assert p.returncode == 0, p.stderr
    finally:
        node.stop()

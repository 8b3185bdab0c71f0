// Tests of verify.js: `node --test crates/rpc/explorer/verify.test.mjs` (Node 20, no install).
//
// Known keccak-256 values; docs/vectors.json (the golden vectors of crates/block/tests/vectors.rs,
// also reproduced by tests/python/test_vectors.py); and real proofs from a devnet, written by
// fixtures/make.py, checked whole and after each tampering, which must fail naming its part.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  bytesToHex, certificateSigningBytes, decodeReading, deviceAddress, headerHash, hexToBytes,
  keccak256, quorum, readingId, rlpEncode, sha256, sigStructure, verifyInclusion, verifyMmrRange,
  verifyMpt, verifyRangeProof, verifyReadingProof,
} from "./verify.js";

const here = new URL(".", import.meta.url);
const json = (path) => JSON.parse(readFileSync(new URL(path, here), "utf8"));
const V = json("../../../docs/vectors.json");
const fixture = (name) => json(`fixtures/${name}`);
const clone = (x) => structuredClone(x);
const enc = new TextEncoder();
const hex = (b) => bytesToHex(b);
const cat = (...parts) => Uint8Array.from(parts.flatMap((p) => [...p]));

/** The first failing part of a report (and that it is reported as failing, with later parts not ok). */
function failedPart(report) {
  assert.equal(report.ok, false, JSON.stringify(report.checks));
  const first = report.checks.find((c) => !c.ok);
  assert.equal(report.failed, first.part);
  return first.part;
}

function flipHex(h, byteIndex) {
  const b = hexToBytes(h);
  b[byteIndex] ^= 0x01;
  return hex(b);
}

// ---------------------------------------------------------------- keccak-256

test("keccak256 matches known vectors, across the 136-byte rate", () => {
  assert.equal(hex(keccak256(new Uint8Array())), "0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470");
  assert.equal(hex(keccak256(enc.encode("abc"))), "0x4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45");
  // bytes i % 256 (values from pycryptodome's Keccak, padding 0x01)
  const ramp = (n) => Uint8Array.from({ length: n }, (_, i) => i % 256);
  assert.equal(hex(keccak256(ramp(135))), "0xcbdfd9dee5faad3818d6b06f95a219fd290b0e1706f6a82e5a595b9ce9faca62");
  assert.equal(hex(keccak256(ramp(136))), "0x7ce759f1ab7f9ce437719970c26b0a66ff11fe3e38e17df89cf5d29c7d7f807e");
  assert.equal(hex(keccak256(ramp(200))), "0xbfb0aa97863e797943cf7c33bb7e880bb4543f3d2703c0923c6901c2af57b890");
  // the owner transaction vector: its hash is keccak256 of its RLP
  assert.equal(hex(keccak256(hexToBytes(V.transaction.rlp))), V.transaction.hash);
});

test("hex helpers round-trip and refuse bad input", () => {
  assert.equal(hex(hexToBytes("0x00ff10")), "0x00ff10");
  assert.equal(hexToBytes("0x").length, 0);
  assert.throws(() => hexToBytes("0x123"));
  assert.throws(() => hexToBytes("0xzz"));
});

// ---------------------------------------------------------------- docs/vectors.json

test("header RLP and hash match the vector", () => {
  const f = V.header.fields;
  const rlp = rlpEncode([f.chain_id, f.height, hexToBytes(f.parent_hash), f.timestamp_ms, hexToBytes(f.proposer),
    hexToBytes(f.readings_root), f.reading_count, hexToBytes(f.transactions_root), f.transaction_count, hexToBytes(f.state_root)]);
  assert.equal(hex(rlp), V.header.rlp);
  assert.equal(headerHash(f), V.header.hash);
  assert.equal(V.certificate.certificate.header_hash, V.header.hash);
});

test("certificate signing bytes match the vector; quorum is n - floor((n-1)/3)", () => {
  assert.equal(hex(certificateSigningBytes(V.certificate.certificate)), V.certificate.signing_bytes);
  assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 10].map(quorum), [1, 2, 3, 3, 4, 5, 5, 7]);
});

test("reading vectors: decoding, Sig_structure, ids of every encoding, device address", async () => {
  for (const name of ["reading_ed25519", "reading_es256", "reading_ed25519_unbound"]) {
    const v = V[name];
    const r = decodeReading(hexToBytes(v.message));
    assert.equal(r.alg, v.alg);
    assert.equal(hex(r.device), v.device);
    assert.equal(r.seq, BigInt(v.seq));
    assert.equal(r.ts, BigInt(v.ts));
    assert.equal(r.stream, v.stream);
    assert.equal(hex(r.protected), v.protected);
    assert.equal(hex(r.payload), v.payload);
    assert.equal(hex(r.signature), v.signature);
    assert.equal(hex(sigStructure(r.protected, hexToBytes(v.external_aad), r.payload)), v.sig_structure);
    assert.equal(hex(await readingId(r)), v.reading_id);
    assert.equal(hex(deviceAddress(v.alg, hexToBytes(v.public_key))), v.device);
  }
  const e = V.reading_encodings;
  for (const m of [e.canonical, ...e.same_reading]) {
    assert.equal(hex(await readingId(decodeReading(hexToBytes(m)))), e.reading_id);
  }
  assert.equal(hex(await readingId(decodeReading(hexToBytes(e.es256_high_s)))), e.es256_reading_id);
  assert.throws(() => decodeReading(hexToBytes(V.reading_ed25519.message + "00")), /trailing/);
});

test("merkle vector: the audit path of leaf 2 leads to the root", async () => {
  const m = V.merkle, b = (h) => hexToBytes(h);
  await verifyInclusion(b(m.leaves[2]), 2n, 5n, m.audit_path_of_leaf_2.map(b), b(m.root));
  await assert.rejects(verifyInclusion(b(m.leaves[2]), 3n, 5n, m.audit_path_of_leaf_2.map(b), b(m.root)));
  await assert.rejects(verifyInclusion(b(m.leaves[2]), 2n, 5n, m.audit_path_of_leaf_2.slice(1).map(b), b(m.root)));
});

test("stream accumulator vector: leaves, root, range proof 3..6, trie key and value", async () => {
  const a = V.stream_accumulator, b = (h) => hexToBytes(h);
  const u = (x) => { const o = new Uint8Array(8); new DataView(o.buffer).setBigUint64(0, BigInt(x)); return o; };
  const hashes = [];
  for (const l of a.leaves) {
    const enc80 = cat(b(l.id), u(l.seq), u(l.ts), u(l.height), u(l.block_time_ms), u(l.max_seq), u(l.max_ts));
    assert.equal(hex(enc80), l.encoded);
    const h = await sha256(cat([0], enc80));
    assert.equal(hex(h), l.hash);
    hashes.push(h);
  }
  const root = b(a.root), proof = a.range_3_to_6_proof.map(b);
  await verifyMmrRange(11n, 3n, 6n, hashes.slice(3, 7), proof, root);
  await verifyMmrRange(11n, 0n, 10n, hashes, [], root);
  await assert.rejects(verifyMmrRange(11n, 3n, 6n, [hashes[3], hashes[5], hashes[4], hashes[6]], proof, root));
  await assert.rejects(verifyMmrRange(11n, 3n, 6n, hashes.slice(3, 7), proof.slice(1), root));
  await assert.rejects(verifyMmrRange(12n, 3n, 6n, hashes.slice(3, 7), proof, root));
  assert.equal(hex(await sha256(cat([2], u(11), ...a.peaks.map(b)))), a.root);
  assert.equal(hex(keccak256(cat([3], b(a.device), enc.encode(a.stream)))), a.trie_key);
  assert.equal(hex(rlpEncode([11, root])), a.trie_value);
});

// A proof bundle made from the vectors alone: reading_ed25519 is leaf 0 of the vector block.
async function vectorBundle() {
  const m = V.merkle, b = (h) => hexToBytes(h);
  const node = async (l, r) => sha256(cat([1], l, r));
  const path = [m.leaves[1], hex(await node(b(m.leaves[2]), b(m.leaves[3]))), m.leaves[4]];
  const bundle = {
    version: 1, reading_id: V.reading_ed25519.reading_id, message: V.reading_ed25519.message,
    index: 0, audit_path: path, device_key: { alg: "EdDSA", public_key: V.reading_ed25519.public_key },
    header: V.header.fields, certificate: V.certificate.certificate,
  };
  const genesis = { genesis_hash: V.reading_ed25519.external_aad, chain_id: V.header.fields.chain_id,
    validators: V.certificate.certificate.signatures.map((s) => s.validator) };
  return { bundle, genesis };
}

/** WebCrypto Ed25519 key from a 32-byte seed (PKCS#8 wrapping of RFC 8410). */
async function seedKey(seedHex) {
  const pkcs8 = cat(hexToBytes("0x302e020100300506032b657004220420"), hexToBytes(seedHex));
  return crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, true, ["sign"]);
}

async function newValidator() {
  const kp = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
  return { key: kp.privateKey, public: hex(new Uint8Array(await crypto.subtle.exportKey("raw", kp.publicKey))) };
}

async function sign(cert, key, validator) {
  const sig = new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, key, certificateSigningBytes(cert)));
  return { validator, signature: hex(sig) };
}

test("a bundle built from the vectors verifies, bound to its chain", async () => {
  const { bundle, genesis } = await vectorBundle();
  const ok = await verifyReadingProof(bundle, genesis);
  assert.equal(ok.ok, true, JSON.stringify(ok.checks));
  assert.deepEqual(ok.checks.map((c) => c.part),
    ["message", "reading id", "device signature", "merkle audit path", "header", "finality certificate"]);
  // the unbound reading of the same device verifies on a chain whose reading_aad is empty only
  const unbound = { ...bundle, message: V.reading_ed25519_unbound.message, reading_id: V.reading_ed25519_unbound.reading_id };
  assert.equal(failedPart(await verifyReadingProof(unbound, genesis)), "device signature");
  const r = await verifyReadingProof(unbound, { ...genesis, reading_aad: "0x" });
  assert.equal(r.checks[2].ok, true); // its id is not in the vector block: the audit path fails after
  assert.equal(r.failed, "merkle audit path");
});

test("finality through descendants, and quorum over several validators", async () => {
  const { bundle, genesis } = await vectorBundle();
  const vkey = await seedKey(V.certificate.validator_secret_key);
  const [validator] = genesis.validators;
  const child = { ...V.header.fields, height: V.header.fields.height + 1, parent_hash: V.header.hash, reading_count: 0,
    readings_root: V.header.fields.transactions_root, timestamp_ms: V.header.fields.timestamp_ms + 500 };
  const cert = { height: child.height, header_hash: headerHash(child), epoch: 0, view: 11, parent_view: 9, signatures: [] };
  cert.signatures.push(await sign(cert, vkey, validator));
  const through = { ...bundle, descendants: [child], certificate: cert };
  const ok = await verifyReadingProof(through, genesis);
  assert.equal(ok.ok, true, JSON.stringify(ok.checks));
  assert.match(ok.checks[4].detail, /through 1 descendant/);
  // a descendant that does not extend the header, or no descendants for a descendant's certificate
  assert.equal(failedPart(await verifyReadingProof({ ...through, descendants: [{ ...child, parent_hash: "0x" + "00".repeat(32) }] }, genesis)), "header");
  assert.equal(failedPart(await verifyReadingProof({ ...through, descendants: [] }, genesis)), "header");
  // a certified descendant that is not the header's child (parent hash, height)
  for (const bad of [{ ...child, parent_hash: "0x" + "00".repeat(32) }, { ...child, height: child.height + 1 }]) {
    const c = { ...cert, height: bad.height, header_hash: headerHash(bad), signatures: [] };
    c.signatures.push(await sign(c, vkey, validator));
    const rep = await verifyReadingProof({ ...bundle, descendants: [bad], certificate: c }, genesis);
    assert.equal(failedPart(rep), "header");
    assert.match(rep.checks[4].detail, /does not extend/);
  }
  assert.equal(failedPart(await verifyReadingProof({ ...through, descendants: [{ ...child, chain_id: 1 }] }, genesis)), "header");
  // four validators: quorum 3
  const others = [await newValidator(), await newValidator(), await newValidator()];
  const four = { ...genesis, validators: [validator, ...others.map((o) => o.public)] };
  const c4 = { ...V.certificate.certificate, signatures: [V.certificate.certificate.signatures[0]] };
  for (const o of others.slice(0, 2)) c4.signatures.push(await sign(c4, o.key, o.public));
  assert.equal((await verifyReadingProof({ ...bundle, certificate: c4 }, four)).ok, true);
  const two = { ...c4, signatures: c4.signatures.slice(0, 2) };
  const below = await verifyReadingProof({ ...bundle, certificate: two }, four);
  assert.equal(failedPart(below), "finality certificate");
  assert.match(below.checks[5].detail, /2 valid signatures, 3 of 4/);
  const twice = { ...c4, signatures: [...c4.signatures.slice(0, 2), c4.signatures[0]] };
  assert.equal(failedPart(await verifyReadingProof({ ...bundle, certificate: twice }, four)), "finality certificate");
});

// ---------------------------------------------------------------- real proofs (fixtures/make.py)

const genesis = fixture("genesis.json");
const proofs = { EdDSA: fixture("reading_proof.json"), ES256: fixture("reading_proof_es256.json") };
const range = fixture("range_proof.json");

for (const [alg, proof] of Object.entries(proofs)) {
  test(`real ${alg} proof bundle verifies, and each tampering names its part`, async () => {
    const ok = await verifyReadingProof(proof, genesis);
    assert.equal(ok.ok, true, JSON.stringify(ok.checks));
    assert.equal(ok.checks.length, 6);
    assert.equal(ok.reading.header_hash, proof.certificate.header_hash);
    const tampered = async (change) => { const p = clone(proof); change(p); return verifyReadingProof(p, genesis); };

    // the message: its structure (array head) and a byte of the payload's data
    const msg = hexToBytes(proof.message);
    const r = decodeReading(msg);
    const payloadAt = msg.length - 66 - r.payload.length; // payload, then 0x5840 and the signature
    for (const at of [1, payloadAt + r.payload.length - 1]) {
      const rep = await tampered((p) => { p.message = flipHex(p.message, at); });
      assert.ok(["message", "reading id"].includes(failedPart(rep)), `byte ${at}: ${rep.failed}`);
      assert.ok(rep.checks.slice(2).every((c) => !c.ok && c.detail.startsWith("not checked")));
    }
    assert.equal(failedPart(await tampered((p) => { p.reading_id = flipHex(p.reading_id, 0); })), "reading id");
    // the audit path, its index
    assert.ok(proof.audit_path.length > 0);
    for (let i = 0; i < proof.audit_path.length; i++) {
      assert.equal(failedPart(await tampered((p) => { p.audit_path[i] = flipHex(p.audit_path[i], 31); })), "merkle audit path");
    }
    assert.equal(failedPart(await tampered((p) => { p.index += 1; })), "merkle audit path");
    assert.equal(failedPart(await tampered((p) => { p.audit_path.pop(); })), "merkle audit path");
    // a header field the audit path does not cover: the certificate is then for another header
    for (const field of ["state_root", "parent_hash", "proposer", "transactions_root"]) {
      assert.equal(failedPart(await tampered((p) => { p.header[field] = flipHex(p.header[field], 5); })), "header", field);
    }
    assert.equal(failedPart(await tampered((p) => { p.header.timestamp_ms += 1; })), "header");
    assert.equal(failedPart(await verifyReadingProof(proof, { ...genesis, chain_id: genesis.chain_id + 1 })), "header");
    // the certificate: below quorum, a non-validator's signature, a bad signature, the wrong view
    const needed = quorum(genesis.validators.length);
    assert.equal(failedPart(await tampered((p) => { p.certificate.signatures = p.certificate.signatures.slice(0, needed - 1); })), "finality certificate");
    const stranger = await newValidator();
    const forged = await sign(proof.certificate, stranger.key, stranger.public);
    const rep = await tampered((p) => { p.certificate.signatures[0] = forged; });
    assert.equal(failedPart(rep), "finality certificate");
    assert.match(rep.checks[5].detail, /not a validator/);
    assert.equal(failedPart(await tampered((p) => { p.certificate.signatures[0].validator = stranger.public; })), "finality certificate");
    assert.equal(failedPart(await tampered((p) => { p.certificate.signatures[0].signature = flipHex(p.certificate.signatures[0].signature, 10); })), "finality certificate");
    assert.equal(failedPart(await tampered((p) => { p.certificate.view += 1; })), "finality certificate");
    assert.equal(failedPart(await verifyReadingProof(proof, { ...genesis, validators: [stranger.public] })), "finality certificate");
    // the device key: another key, another algorithm; another chain's genesis hash
    const other = alg === "EdDSA"
      ? V.reading_ed25519.public_key
      : V.reading_es256.public_key;
    assert.equal(failedPart(await tampered((p) => { p.device_key.public_key = other; })), "device signature");
    assert.equal(failedPart(await tampered((p) => { p.device_key.alg = alg === "EdDSA" ? "ES256" : "EdDSA"; })), "device signature");
    assert.equal(failedPart(await verifyReadingProof(proof, { ...genesis, genesis_hash: flipHex(genesis.genesis_hash, 0) })), "device signature");
    // garbage never throws
    for (const junk of [null, {}, { ...proof, message: "0xzz" }, { ...proof, header: null }, { ...proof, certificate: { signatures: 3 } }]) {
      assert.equal((await verifyReadingProof(junk, genesis)).ok, false);
    }
  });
}

/** The MMR proof of leaves newFirst..=newLast, recomputed from a valid window proof (its hashes and leaves). */
async function reprove(count, first, leafHashes, proof, newFirst, newLast) {
  const last = first + BigInt(leafHashes.length) - 1n, known = new Map();
  let used = 0;
  const peaks = [];
  for (let h = 63n, off = 0n; h >= 0n; h--) if ((count >> h) & 1n) { peaks.push([h, off]); off += 1n << h; }
  const outside = (lv, ix, a, b) => ((ix + 1n) << lv) - 1n < a || ix << lv > b;
  const mark = (lv, ix) => {
    if (outside(lv, ix, first, last)) known.set(`${lv}:${ix}`, proof[used++]);
    else if (lv > 0n) { mark(lv - 1n, 2n * ix); mark(lv - 1n, 2n * ix + 1n); }
  };
  for (const [h, at] of peaks) mark(h, at >> h);
  const hash = async (lv, ix) => known.get(`${lv}:${ix}`) ?? (lv === 0n ? leafHashes[Number(ix - first)]
    : sha256(cat([1], await hash(lv - 1n, 2n * ix), await hash(lv - 1n, 2n * ix + 1n))));
  const out = [];
  const walk = async (lv, ix) => {
    if (outside(lv, ix, newFirst, newLast)) out.push(await hash(lv, ix));
    else if (lv > 0n) { await walk(lv - 1n, 2n * ix); await walk(lv - 1n, 2n * ix + 1n); }
  };
  for (const [h, at] of peaks) await walk(h, at >> h);
  return out;
}

test("real range answer verifies, and each tampering names its part", async () => {
  const ok = await verifyRangeProof(range, genesis);
  assert.equal(ok.ok, true, JSON.stringify(ok.checks));
  assert.deepEqual(ok.checks.map((c) => c.part), ["header", "finality certificate", "state proof", "accumulator", "completeness", "readings"]);
  assert.equal(ok.count, range.readings.length);
  assert.equal(ok.stream_count, range.range_proof.count);
  const tampered = async (change) => { const a = clone(range); change(a, a.range_proof); return verifyRangeProof(a, genesis); };

  // newest first is the same answer
  assert.equal((await tampered((a, p) => { a.readings.reverse(); p.order = "desc"; })).ok, true);
  // a reading removed, at each place: left out (range.rs: Missing, a completeness failure)
  for (let i = 0; i < range.readings.length; i++) {
    const rep = await tampered((a) => { a.readings.splice(i, 1); });
    assert.equal(failedPart(rep), "completeness", `removed ${i}`);
    assert.match(rep.checks[4].detail, /not in the answer/);
    assert.ok(!rep.checks[5].ok && rep.checks[5].detail.startsWith("not checked"));
  }
  // a byte of a reading's data changed (the old signature kept, the JSON id dropped): its id
  // is no longer its leaf's, though seq and ts still match
  const m2 = hexToBytes(range.readings[2].message), r2 = decodeReading(m2);
  const dataEnd = m2.findIndex((_, i) => i > 0 && hex(m2.subarray(i, i + 7)) === "0x6673747265616d"); // "stream" key
  const dataAt = dataEnd - 1; // the last byte of the float of `data`, just before the "stream" key
  assert.ok(dataAt > 0 && m2[dataAt - 8] === 0xfb, "the data is a CBOR double before the stream key");
  assert.equal(decodeReading(hexToBytes(flipHex(range.readings[2].message, dataAt))).seq, r2.seq);
  const changed = await tampered((a) => { a.readings[2].message = flipHex(a.readings[2].message, dataAt); delete a.readings[2].id; });
  assert.equal(failedPart(changed), "readings");
  assert.match(changed.checks[5].detail, /reading 2 .*its id/);
  // a reading of the stream outside the range added; two swapped; one replaced
  const outsider = proofs.EdDSA.message; // seq 0 of the same device and stream: before the range
  assert.equal(decodeReading(hexToBytes(outsider)).seq < BigInt(range.range_proof.range.from), true);
  assert.equal(failedPart(await tampered((a) => { a.readings.push({ message: outsider }); })), "completeness");
  assert.equal(failedPart(await tampered((a) => { [a.readings[0], a.readings[1]] = [a.readings[1], a.readings[0]]; })), "readings");
  assert.equal(failedPart(await tampered((a) => { a.readings[2].message = outsider; delete a.readings[2].id; })), "readings");
  assert.equal(failedPart(await tampered((a) => { a.readings[1].seq += 1; })), "readings");
  // a leaf, a proof hash, the count, the window position: the accumulator
  for (let i = 0; i < range.range_proof.leaves.length; i += 3) {
    assert.equal(failedPart(await tampered((a, p) => { p.leaves[i] = flipHex(p.leaves[i], 40); })), "accumulator", `leaf ${i}`);
  }
  assert.equal(failedPart(await tampered((a, p) => { p.leaves.pop(); })), "accumulator");
  assert.equal(failedPart(await tampered((a, p) => { p.mmr_proof[0] = flipHex(p.mmr_proof[0], 0); })), "accumulator");
  assert.equal(failedPart(await tampered((a, p) => { p.count += 1; })), "accumulator");
  assert.equal(failedPart(await tampered((a, p) => { p.first += 1; })), "accumulator");
  // a window cut short with a consistent MMR proof: the boundary no longer shows nothing is left out
  const p0 = range.range_proof, b = (h) => hexToBytes(h);
  const hashes = await Promise.all(p0.leaves.map((l) => sha256(cat([0], b(l)))));
  const first = BigInt(p0.first), count = BigInt(p0.count);
  const cut = await reprove(count, first, hashes, p0.mmr_proof.map(b), first + 1n, count - 1n);
  const rep = await tampered((a, p) => { p.leaves.shift(); p.first += 1; p.mmr_proof = cut.map(hex); });
  assert.equal(failedPart(rep), "completeness");
  assert.match(rep.checks[4].detail, /boundary/);
  assert.equal(rep.checks[3].ok, true); // the accumulator itself checks
  // a trie node: the state proof
  for (let i = 0; i < p0.state_proof.length; i++) {
    assert.equal(failedPart(await tampered((a, p) => { p.state_proof[i] = flipHex(p.state_proof[i], 7); })), "state proof", `node ${i}`);
  }
  assert.equal(failedPart(await tampered((a, p) => { p.state_proof.pop(); })), "state proof");
  assert.equal(failedPart(await tampered((a, p) => { p.stream = "other"; })), "state proof");
  // header and certificate
  assert.equal(failedPart(await tampered((a, p) => { p.header.state_root = flipHex(p.header.state_root, 0); })), "header");
  assert.equal(failedPart(await tampered((a, p) => { p.certificate.signatures = []; })), "finality certificate");
  // garbage never throws
  for (const junk of [null, {}, { readings: [] }, { ...range, readings: [{ id: 5 }] }]) {
    assert.equal((await verifyRangeProof(junk, genesis)).ok, false);
  }
});

test("verifyMpt follows branch, extension and leaf nodes with embedded children", () => {
  // A hand-built trie: an even extension (hex prefix 0x00) of nibbles 1, 2 -> a branch whose
  // slot 3 is the hash of an odd leaf (prefix 0x3_) holding nibble 4 and bytes 2..31 of the key.
  const key = new Uint8Array(32); key[0] = 0x12; key[1] = 0x34;
  const leafPath = cat([0x34], key.subarray(2));
  const leafNode = rlpEncode([leafPath, Uint8Array.of(0x2a)]);
  const branch = Array.from({ length: 17 }, () => new Uint8Array());
  branch[3] = keccak256(leafNode);
  const branchNode = rlpEncode(branch);
  const ext = rlpEncode([Uint8Array.of(0x00, 0x12), keccak256(branchNode)]);
  const root = keccak256(ext);
  assert.equal(hex(verifyMpt(root, key, [ext, branchNode, leafNode])), "0x2a");
  const other = key.slice(); other[1] = 0x44; // branch slot 4 is empty: absent
  assert.equal(verifyMpt(root, other, [ext, branchNode]), null);
  assert.throws(() => verifyMpt(root, other, [ext, branchNode, leafNode]), /after the key/);
  assert.throws(() => verifyMpt(root, key, [ext, branchNode]), /ends before/);
  // an embedded (inline, < 32 bytes) child: a short leaf under a branch at depth 63
  const deep = new Uint8Array(32).fill(0x11);
  const tiny = [Uint8Array.of(0x20), Uint8Array.of(0x07)]; // even leaf with empty remaining path
  const br = Array.from({ length: 17 }, () => new Uint8Array());
  br[1] = tiny; // embedded list, not a hash
  const brNode = rlpEncode(br);
  const ext2 = rlpEncode([cat([0x11], deep.subarray(0, 31)), keccak256(brNode)]); // odd extension: 63 nibbles
  assert.equal(hex(verifyMpt(keccak256(ext2), deep, [ext2, brNode])), "0x07");
});

test("cbor.js maps reading data to JSON as the node does", async () => {
  const { cborToJson } = await import("./cbor.js");
  const cases = [
    ["f94d60", 21.5], ["fa40490fdb", Math.fround(3.14159274)], ["fb3ff8000000000000", 1.5],
    ["f97e00", { $float: "NaN" }], ["f97c00", { $float: "Infinity" }], ["f9fc00", { $float: "-Infinity" }],
    ["17", 23], ["3903e7", -1000], ["1b0020000000000000", { $bigint: "9007199254740992" }],
    ["c249010000000000000000", { $bigint: "18446744073709551616" }], ["c34100", { $bigint: "-1" }],
    ["6568656c6c6f", "hello"], ["43010203", { $bytes: "0x010203" }], ["f5", true], ["f6", null], ["f7", null],
    ["a26174056176f4", { t: 5, v: false }], ["a10102", { $map: [[1, 2]] }], ["a16224780a", { $map: [["$x", 10]] }],
    ["8301820203a0", [1, [2, 3], {}]], ["c11a5f5e1000", { $tag: 1, value: 1600000000 }],
  ];
  for (const [hex, want] of cases) assert.deepEqual(cborToJson(hexToBytes(`0x${hex}`)), want, hex);
  for (const bad of ["", "18", "a1", "6161ff", "0101"]) assert.throws(() => cborToJson(hexToBytes(`0x${bad}`)), Error, bad);
});

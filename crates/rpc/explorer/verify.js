// verify.js: checks iotchain proofs in the browser (and in Node 20), with no dependency.
//
// What the explorer page imports to check, on the reader's own machine, what a node served:
//   verifyReadingProof(bundle, genesis)  GET /v1/readings/{id}/proof
//   verifyRangeProof(answer, genesis)    GET /v1/devices/{a}/readings?stream=S&…&proof=true
// `genesis` is {genesis_hash, chain_id, validators, reading_aad?}: the fields of the same name
// of GET /v1/status (take them from a node you trust, or from the chain's genesis file).
//
// It follows docs/formats.md, sections "Readings: COSE_Sign1", "Reading id", "Readings name
// their chain", "Merkle trees (RFC 6962, SHA-256)", "Block header (RLP, keccak256)", "State
// root", "Finality certificate", "Proof bundle" and "Complete-range proofs", and mirrors the
// Rust light client (crates/light/src: lib.rs verify_proof, range.rs verify_range_proof,
// mpt.rs verify_mpt; crates/merkle/src: verify_inclusion, mmr.rs verify_range). Part names
// are those `iotchain verify` prints. Only WebCrypto is used (SHA-256, Ed25519, ECDSA P-256);
// keccak-256, RLP, the trie walk and the little CBOR needed are written out here.
//
// Ed25519: WebCrypto verifies with the cofactorless RFC 8032 equation, the node and the light
// client with the cofactored ZIP-215 one ([8][s]B = [8]R + [8][k]A). Every signature an
// RFC 8032 signer makes passes both; only a signature crafted with a small-order component
// in R (which a device could make, hurting only itself) passes the node and fails here. Some
// WebCrypto implementations also refuse small-order public keys, as the light client does.
// (Chromium ships Ed25519 in WebCrypto from version 137; Node 20 has it.)
//
// Reports never throw: {ok, checks: [{part, ok, detail}], failed}. Parts are checked in
// order and the first failure stops the check: the parts after it are reported as
// {ok: false, detail: "not checked: <part> failed"}; `failed` names the first failing part.

const subtle = globalThis.crypto?.subtle;
const enc = new TextEncoder();
const U64_MAX = (1n << 64n) - 1n;

// ---------------------------------------------------------------- hex and bytes

/** "0x…" (or bare) hex to bytes; throws on odd length or a non-hex digit. */
export function hexToBytes(hex) {
  if (typeof hex !== "string") throw new Error("not a hex string");
  const h = hex.startsWith("0x") || hex.startsWith("0X") ? hex.slice(2) : hex;
  if (h.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(h)) throw new Error(`not hex: ${hex.slice(0, 20)}`);
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(h.substr(2 * i, 2), 16);
  return out;
}

/** Bytes to lowercase "0x…" hex. */
export function bytesToHex(bytes) {
  let s = "0x";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

function equal(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Hex of exactly `n` bytes (throws otherwise, naming `what`). */
function fixed(hex, n, what) {
  let b;
  try { b = hexToBytes(hex); } catch { throw new Error(`${what} is not 0x-hex`); }
  if (b.length !== n) throw new Error(`${what} is ${b.length} bytes, not ${n}`);
  return b;
}

/** A u64 from a JSON number, bigint or decimal string (throws otherwise). */
function u64(v, what) {
  let x;
  if (typeof v === "bigint") x = v;
  else if (typeof v === "number" && Number.isSafeInteger(v)) x = BigInt(v);
  else if (typeof v === "string" && /^[0-9]+$/.test(v)) x = BigInt(v);
  else throw new Error(`${what} is not an unsigned integer`);
  if (x < 0n || x > U64_MAX) throw new Error(`${what} is out of the u64 range`);
  return x;
}

/** A bigint as a JSON-safe number (a decimal string above 2^53). */
const num = (x) => (x <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(x) : x.toString());

function u64be(x) {
  const out = new Uint8Array(8);
  for (let i = 7; i >= 0; i--) { out[i] = Number(x & 0xffn); x >>= 8n; }
  return out;
}

function beToBig(bytes) {
  let x = 0n;
  for (const b of bytes) x = (x << 8n) | BigInt(b);
  return x;
}

// ---------------------------------------------------------------- hashes

/** SHA-256 (WebCrypto), async. */
export async function sha256(bytes) {
  return new Uint8Array(await subtle.digest("SHA-256", bytes));
}

// Keccak-f[1600] on 25 lanes held as (lo, hi) 32-bit pairs: lane i is s[2i], s[2i+1].
const ROT = [0, 1, 62, 28, 27, 36, 44, 6, 55, 20, 3, 10, 43, 25, 39, 41, 45, 15, 21, 8, 18, 2, 61, 56, 14];
const RC = (() => {
  // Round constants from the LFSR of the Keccak reference (x^8 + x^6 + x^5 + x^4 + 1).
  const out = new Uint32Array(48);
  let r = 1;
  for (let round = 0; round < 24; round++) {
    for (let j = 0; j < 7; j++) {
      if (r & 1) {
        const bit = (1 << j) - 1; // bit position 2^j - 1
        if (bit < 32) out[2 * round] |= 1 << bit;
        else out[2 * round + 1] |= 1 << (bit - 32);
      }
      r = r & 0x80 ? ((r << 1) ^ 0x71) & 0xff : (r << 1) & 0xff;
    }
  }
  return out;
})();

function keccakF(s) {
  const c = new Uint32Array(10), b = new Uint32Array(50);
  for (let round = 0; round < 24; round++) {
    // theta
    for (let x = 0; x < 5; x++) {
      c[2 * x] = s[2 * x] ^ s[2 * x + 10] ^ s[2 * x + 20] ^ s[2 * x + 30] ^ s[2 * x + 40];
      c[2 * x + 1] = s[2 * x + 1] ^ s[2 * x + 11] ^ s[2 * x + 21] ^ s[2 * x + 31] ^ s[2 * x + 41];
    }
    for (let x = 0; x < 5; x++) {
      const p = (x + 4) % 5, n = (x + 1) % 5;
      const lo = c[2 * p] ^ ((c[2 * n] << 1) | (c[2 * n + 1] >>> 31));
      const hi = c[2 * p + 1] ^ ((c[2 * n + 1] << 1) | (c[2 * n] >>> 31));
      for (let y = 0; y < 25; y += 5) { s[2 * (x + y)] ^= lo; s[2 * (x + y) + 1] ^= hi; }
    }
    // rho and pi: B[y, 2x + 3y] = rot(A[x, y])
    for (let x = 0; x < 5; x++) {
      for (let y = 0; y < 5; y++) {
        const i = x + 5 * y, r = ROT[i], j = y + 5 * ((2 * x + 3 * y) % 5);
        let lo = s[2 * i], hi = s[2 * i + 1];
        if (r >= 32) { const t = lo; lo = hi; hi = t; }
        const k = r % 32;
        if (k) { const l2 = (lo << k) | (hi >>> (32 - k)); hi = (hi << k) | (lo >>> (32 - k)); lo = l2; }
        b[2 * j] = lo; b[2 * j + 1] = hi;
      }
    }
    // chi
    for (let y = 0; y < 25; y += 5) {
      for (let x = 0; x < 5; x++) {
        const i = x + y, i1 = ((x + 1) % 5) + y, i2 = ((x + 2) % 5) + y;
        s[2 * i] = b[2 * i] ^ (~b[2 * i1] & b[2 * i2]);
        s[2 * i + 1] = b[2 * i + 1] ^ (~b[2 * i1 + 1] & b[2 * i2 + 1]);
      }
    }
    // iota
    s[0] ^= RC[2 * round]; s[1] ^= RC[2 * round + 1];
  }
}

/** keccak-256 as Ethereum uses it (original Keccak padding 0x01, not SHA3's 0x06). */
export function keccak256(bytes) {
  const rate = 136, s = new Uint32Array(50);
  const padded = new Uint8Array(Math.floor(bytes.length / rate) * rate + rate);
  padded.set(bytes);
  padded[bytes.length] ^= 0x01;
  padded[padded.length - 1] ^= 0x80;
  for (let off = 0; off < padded.length; off += rate) {
    for (let i = 0; i < rate; i++) s[i >> 2] ^= padded[off + i] << (8 * (i & 3));
    keccakF(s);
  }
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) out[i] = (s[i >> 2] >>> (8 * (i & 3))) & 0xff;
  return out;
}

// ---------------------------------------------------------------- RLP

/** RLP of a Uint8Array (string), an array (list) or a non-negative integer (number/bigint). */
export function rlpEncode(item) {
  if (Array.isArray(item)) {
    const payload = concat(...item.map(rlpEncode));
    return concat(rlpHead(0xc0, payload.length), payload);
  }
  if (typeof item === "number" || typeof item === "bigint") {
    let x = BigInt(item);
    if (x < 0n) throw new Error("RLP integers are unsigned");
    const bytes = [];
    while (x > 0n) { bytes.unshift(Number(x & 0xffn)); x >>= 8n; }
    item = Uint8Array.from(bytes);
  }
  if (!(item instanceof Uint8Array)) throw new Error("RLP encodes bytes, integers and lists");
  if (item.length === 1 && item[0] < 0x80) return item;
  return concat(rlpHead(0x80, item.length), item);
}

function rlpHead(base, len) {
  if (len < 56) return Uint8Array.of(base + len);
  const l = [];
  for (let x = len; x > 0; x = Math.floor(x / 256)) l.unshift(x % 256);
  return Uint8Array.of(base + 55 + l.length, ...l);
}

/** One RLP item at `at`: {list, payload, end}; null when malformed (as mpt.rs rlp_item). */
function rlpItem(b, at = 0) {
  if (at >= b.length) return null;
  const first = b[at];
  if (first < 0x80) return { list: false, payload: b.subarray(at, at + 1), end: at + 1 };
  let list, header, len;
  if (first <= 0xb7) [list, header, len] = [false, 1, first - 0x80];
  else if (first <= 0xbf || (first >= 0xf8)) {
    list = first >= 0xf8;
    const n = first - (list ? 0xf7 : 0xb7);
    const lb = b.subarray(at + 1, at + 1 + n);
    if (lb.length !== n || lb[0] === 0) return null;
    header = 1 + n; len = 0;
    for (const x of lb) len = len * 256 + x;
  } else [list, header, len] = [true, 1, first - 0xc0];
  const end = at + header + len;
  if (end > b.length) return null;
  return { list, payload: b.subarray(at + header, end), end };
}

/** The items of a list payload: [{list, payload}…]; null when malformed. */
function rlpList(payload) {
  const out = [];
  for (let at = 0; at < payload.length;) {
    const it = rlpItem(payload, at);
    if (!it) return null;
    out.push(it);
    at = it.end;
  }
  return out;
}

// ---------------------------------------------------------------- headers and certificates

const HEADER_FIELDS = [
  ["chain_id", "uint"], ["height", "uint"], ["parent_hash", 32], ["timestamp_ms", "uint"],
  ["proposer", 32], ["readings_root", 32], ["reading_count", "uint"],
  ["transactions_root", 32], ["transaction_count", "uint"], ["state_root", 32],
];

/** A header's JSON parsed: u64 fields as bigint, hashes as bytes (throws when malformed). */
function parseHeader(h, what = "header") {
  if (!h || typeof h !== "object") throw new Error(`${what} is missing`);
  const out = {};
  for (const [name, type] of HEADER_FIELDS) {
    out[name] = type === "uint" ? u64(h[name], `${what}.${name}`) : fixed(h[name], 32, `${what}.${name}`);
  }
  return out;
}

/** keccak256 of the header's RLP (docs/formats.md "Block header"), as 0x-hex. */
export function headerHash(header) {
  return bytesToHex(headerHashBytes(parseHeader(header)));
}

function headerHashBytes(p) {
  return keccak256(rlpEncode(HEADER_FIELDS.map(([name]) => p[name])));
}

const FINALIZE_NS = enc.encode("iotchain/simplex/v1_FINALIZE");

function varint(x) {
  const out = [];
  for (;;) {
    const b = Number(x & 0x7fn);
    x >>= 7n;
    if (x === 0n) { out.push(b); return Uint8Array.from(out); }
    out.push(b | 0x80);
  }
}

/** The bytes each validator signs to finalize: simplex's finalize message. */
export function certificateSigningBytes(cert) {
  return concat(varint(BigInt(FINALIZE_NS.length)), FINALIZE_NS,
    varint(u64(cert.epoch ?? 0, "certificate.epoch")), varint(u64(cert.view ?? 0, "certificate.view")),
    varint(u64(cert.parent_view ?? 0, "certificate.parent_view")),
    fixed(cert.header_hash, 32, "certificate.header_hash"));
}

/** Signatures needed among n validators: n − ⌊(n−1)/3⌋ (at least one). */
export function quorum(n) {
  return Math.max(1, n - Math.floor(Math.max(0, n - 1) / 3));
}

async function ed25519Verify(key, message, signature) {
  try {
    const k = await subtle.importKey("raw", key, { name: "Ed25519" }, false, ["verify"]);
    return await subtle.verify({ name: "Ed25519" }, k, signature, message);
  } catch {
    return false; // a key that is no curve point, or a refused small-order key
  }
}

async function p256Verify(key, message, signature) {
  try {
    const k = await subtle.importKey("raw", key, { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]);
    // WebCrypto takes the raw r‖s (IEEE P1363) form, as COSE does; it accepts a high s.
    return await subtle.verify({ name: "ECDSA", hash: "SHA-256" }, k, signature, message);
  } catch {
    return false;
  }
}

function parseGenesis(g) {
  if (!g || typeof g !== "object") throw new Error("genesis is missing");
  const genesisHash = fixed(g.genesis_hash, 32, "genesis.genesis_hash");
  const chainId = u64(g.chain_id, "genesis.chain_id");
  if (!Array.isArray(g.validators)) throw new Error("genesis.validators is not a list");
  const validators = g.validators.map((v, i) =>
    bytesToHex(fixed(typeof v === "string" ? v : v?.public_key, 32, `genesis.validators[${i}]`)));
  // A chain whose genesis predates bound readings signs an empty external_aad: /v1/status
  // says so as `reading_aad` ("0x"); without it the genesis hash is taken.
  const aad = g.reading_aad === undefined || g.reading_aad === null ? genesisHash : hexToBytes(g.reading_aad);
  return { genesisHash, chainId, validators, aad };
}

/** `header` then `descendants`, each the child of the one before: the last's hash and height. */
function follow(chainId, header, descendants) {
  const chain = [parseHeader(header), ...(descendants ?? []).map((d, i) => parseHeader(d, `descendants[${i}]`))];
  for (const h of chain) {
    if (h.chain_id !== chainId) throw new Error(`chain id ${h.chain_id} is not the genesis chain id ${chainId}`);
  }
  let hash = headerHashBytes(chain[0]), height = chain[0].height;
  for (const h of chain.slice(1)) {
    if (!equal(h.parent_hash, hash) || h.height !== height + 1n) {
      throw new Error(`header at height ${h.height} does not extend the header at height ${height}`);
    }
    hash = headerHashBytes(h); height = h.height;
  }
  return { hash, height, header: chain[0], via: chain.length - 1 };
}

function certifies(cert, tip) {
  if (!cert || typeof cert !== "object") throw new Error("the certificate is missing");
  const certified = fixed(cert.header_hash, 32, "certificate.header_hash");
  const height = u64(cert.height, "certificate.height");
  if (!equal(certified, tip.hash) || height !== tip.height) {
    throw new Error(`the certified header hashes to ${bytesToHex(tip.hash)} at height ${tip.height}, ` +
      `the certificate is for ${bytesToHex(certified)} at height ${height}`);
  }
  const via = tip.via ? ` through ${tip.via} descendant header${tip.via > 1 ? "s" : ""}` : "";
  return `header ${bytesToHex(tip.hash)} at height ${tip.height} of chain ${tip.header.chain_id} is the certified one${via}`;
}

/** As lib.rs verify_certificate: every signer a distinct genesis validator, every signature valid, a quorum. */
async function checkCertificate(cert, validators) {
  const message = certificateSigningBytes(cert);
  const sigs = cert.signatures;
  if (!Array.isArray(sigs)) throw new Error("the certificate has no signature list");
  const seen = new Set();
  for (const [i, s] of sigs.entries()) {
    const key = fixed(s?.validator, 32, `signature ${i}'s validator`);
    const sig = fixed(s?.signature, 64, `signature ${i}`);
    const hex = bytesToHex(key);
    if (!validators.includes(hex)) throw new Error(`signer ${hex} is not a validator of this chain`);
    if (seen.has(hex)) throw new Error(`validator ${hex} signed twice`);
    seen.add(hex);
    if (!(await ed25519Verify(key, message, sig))) throw new Error(`signature of validator ${hex} is invalid`);
  }
  const needed = quorum(validators.length);
  if (sigs.length < needed) {
    throw new Error(`${sigs.length} valid signatures, ${needed} of ${validators.length} validators needed`);
  }
  return `${sigs.length} valid signatures of ${validators.length} genesis validators (${needed} needed)`;
}

// ---------------------------------------------------------------- CBOR (readings)

const MAX_DEPTH = 16;

/** A strict CBOR reader: definite lengths only, as crates/reading/src/cbor.rs. */
export class Cbor {
  constructor(b) { this.b = b; this.pos = 0; }
  empty() { return this.pos >= this.b.length; }
  peek() { return this.pos < this.b.length ? this.b[this.pos] >> 5 : -1; }
  take(n) {
    if (n > this.b.length - this.pos) throw new Error("malformed CBOR: input ends inside an item");
    const s = this.b.subarray(this.pos, this.pos + n);
    this.pos += n;
    return s;
  }
  head() {
    const first = this.take(1)[0], major = first >> 5, ai = first & 0x1f;
    let arg;
    if (ai < 24) arg = BigInt(ai);
    else if (ai <= 27) arg = beToBig(this.take(1 << (ai - 24)));
    else if (ai <= 30) throw new Error("malformed CBOR: reserved additional information value");
    else throw new Error("indefinite-length CBOR is not accepted");
    if (major === 7 && ai === 24 && arg < 32n) throw new Error("malformed CBOR: two-byte simple value below 32");
    return { major, arg };
  }
  len(arg) {
    if (arg > BigInt(this.b.length - this.pos)) throw new Error("malformed CBOR: input ends inside an item");
    return Number(arg);
  }
  expect(major, what, kind) {
    const h = this.head();
    if (h.major !== major) throw new Error(`${what} is not ${kind}`);
    return h.arg;
  }
  bytes(what) { return this.take(this.len(this.expect(2, what, "a byte string"))); }
  text(what) {
    const raw = this.take(this.len(this.expect(3, what, "a text string")));
    try { return new TextDecoder("utf-8", { fatal: true }).decode(raw); } catch { throw new Error("malformed CBOR: text string is not UTF-8"); }
  }
  uint(what) { return this.expect(0, what, "an unsigned integer"); }
  int(what) {
    const h = this.head();
    if (h.major === 0) return h.arg;
    if (h.major === 1) return -1n - h.arg;
    throw new Error(`${what} is not an integer`);
  }
  skip(depth) {
    const { major, arg } = this.head();
    if (major === 2 || major === 3) {
      const raw = this.take(this.len(arg));
      if (major === 3) {
        try { new TextDecoder("utf-8", { fatal: true }).decode(raw); } catch { throw new Error("malformed CBOR: text string is not UTF-8"); }
      }
      return;
    }
    const children = major === 4 ? arg : major === 5 ? 2n * arg : major === 6 ? 1n : 0n;
    if (children === 0n) return;
    if (children > BigInt(this.b.length - this.pos)) throw new Error("malformed CBOR: item count exceeds the input");
    if (depth <= 0) throw new Error("CBOR nested too deep");
    for (let i = 0n; i < children; i++) this.skip(depth - 1);
  }
}

/** Decodes a COSE_Sign1 reading (lib.rs decode): {alg, device, seq, ts, stream, data (its CBOR), protected, payload, signature}. */
export function decodeReading(message) {
  const whole = new Cbor(message);
  if (whole.empty()) throw new Error("malformed CBOR: empty input");
  whole.skip(MAX_DEPTH + 4);
  if (!whole.empty()) throw new Error("trailing bytes after the message");
  const r = new Cbor(message);
  if (r.peek() === 6 && r.head().arg !== 18n) throw new Error("message has a CBOR tag other than 18 (COSE_Sign1)");
  if (r.peek() !== 4 || r.head().arg !== 4n) throw new Error("a COSE_Sign1 message is an array of four items");
  const protectedBytes = r.bytes("protected header");
  const unprotected = r.expect(5, "unprotected header", "a map");
  for (let i = 0n; i < unprotected; i++) { r.skip(2); r.skip(MAX_DEPTH); }
  if (r.b[r.pos] === 0xf6) throw new Error("detached payloads (nil) are not supported");
  const payload = r.bytes("payload");
  const signature = r.bytes("signature");
  if (!r.empty()) throw new Error("trailing bytes after the message");
  if (signature.length !== 64) throw new Error(`signature is ${signature.length} bytes, not 64`);
  // protected: {1: alg, 4: kid}; crit (2) refused, other labels ignored
  const p = new Cbor(protectedBytes);
  const n = p.expect(5, "protected header", "a map");
  let alg = null, kid = null;
  const labels = new Set();
  for (let i = 0n; i < n; i++) {
    const t = p.peek();
    if (t !== 0 && t !== 1) { p.skip(1); p.skip(MAX_DEPTH); continue; }
    const label = p.int("header label");
    if (labels.has(label)) throw new Error("duplicate protected header label");
    labels.add(label);
    if (label === 1n) {
      const v = p.int("alg");
      if (v !== -8n && v !== -7n) throw new Error(`unsupported alg ${v}`);
      alg = v === -8n ? "EdDSA" : "ES256";
    } else if (label === 2n) throw new Error("critical headers (label 2) are not supported");
    else if (label === 4n) {
      kid = p.bytes("kid");
      if (kid.length !== 20) throw new Error(`kid is ${kid.length} bytes, not a 20-byte device address`);
    } else p.skip(MAX_DEPTH);
  }
  if (!p.empty()) throw new Error("trailing bytes after the protected header");
  if (alg === null) throw new Error("missing alg (label 1) in the protected header");
  if (kid === null) throw new Error("missing kid (the device address)");
  // payload: {"seq", "ts", "stream"?, "data"}
  const q = new Cbor(payload);
  if (q.peek() !== 5) throw new Error("the payload is a CBOR map with text keys");
  const m = q.head().arg;
  const f = {};
  for (let i = 0n; i < m; i++) {
    if (q.peek() !== 3) throw new Error("payload keys are text strings");
    const key = q.text("payload key");
    if (!["seq", "ts", "stream", "data"].includes(key)) throw new Error(`unknown payload key ${JSON.stringify(key)}`);
    if (key in f) throw new Error(`duplicate payload key ${key}`);
    if (key === "seq" || key === "ts") f[key] = q.uint(`payload key "${key}"`);
    else if (key === "stream") {
      f.stream = q.text('payload key "stream"');
      const len = enc.encode(f.stream).length;
      if (len < 1 || len > 64) throw new Error("stream names are 1 to 64 bytes");
    } else { const at = q.pos; q.skip(MAX_DEPTH); f.data = payload.subarray(at, q.pos); }
  }
  if (!q.empty()) throw new Error("trailing bytes after the payload");
  for (const k of ["seq", "ts", "data"]) if (!(k in f)) throw new Error(`missing payload key "${k}"`);
  return { alg, device: kid, seq: f.seq, ts: f.ts, stream: f.stream ?? "default", data: f.data, protected: protectedBytes, payload, signature };
}

function cborHead(major, len) {
  const m = major << 5;
  if (len < 24) return Uint8Array.of(m | len);
  if (len < 0x100) return Uint8Array.of(m | 24, len);
  if (len < 0x10000) return Uint8Array.of(m | 25, len >> 8, len & 0xff);
  return Uint8Array.of(m | 26, len >>> 24, (len >>> 16) & 0xff, (len >>> 8) & 0xff, len & 0xff);
}
const cborBytes = (b) => concat(cborHead(2, b.length), b);

/** COSE Sig_structure ["Signature1", protected, external_aad, payload] (RFC 9052 §4.4). */
export function sigStructure(protectedBytes, externalAad, payload) {
  const context = enc.encode("Signature1");
  return concat(cborHead(4, 4), cborHead(3, context.length), context,
    cborBytes(protectedBytes), cborBytes(externalAad), cborBytes(payload));
}

const P256_N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;

/** The reading id: SHA-256(0x00 ‖ canonical message), ES256 signatures with the low s. */
export async function readingId(r) {
  let sig = r.signature;
  if (r.alg === "ES256") {
    const s = beToBig(sig.subarray(32));
    if (s > P256_N / 2n && s < P256_N) {
      const low = P256_N - s, tail = new Uint8Array(32);
      for (let i = 31, x = low; i >= 0; i--, x >>= 8n) tail[i] = Number(x & 0xffn);
      sig = concat(sig.subarray(0, 32), tail);
    }
  }
  return sha256(concat(Uint8Array.of(0x00, 0xd2, 0x84), cborBytes(r.protected), Uint8Array.of(0xa0),
    cborBytes(r.payload), Uint8Array.of(0x58, 0x40), sig));
}

/** The device address a key derives: last 20 bytes of keccak256(key), P-256 of x‖y. */
export function deviceAddress(alg, key) {
  const bytes = alg === "ES256" && key.length === 65 ? key.subarray(1) : key;
  return keccak256(bytes).subarray(12);
}

// ---------------------------------------------------------------- Merkle trees

const nodeHash = (l, r) => sha256(concat(Uint8Array.of(1), l, r));
const leafHash = (data) => sha256(concat(Uint8Array.of(0), data));

/** RFC 9162 §2.1.3.2: the audit path leads from `leaf` at `index` of `size` leaves to `root`. */
export async function verifyInclusion(leaf, index, size, path, root) {
  if (index >= size) throw new Error(`leaf index ${index} is not below the tree size ${size}`);
  let fn = index, sn = size - 1n, r = leaf;
  for (const [used, p] of path.entries()) {
    if (sn === 0n) throw new Error(`audit path has ${path.length} hashes, a tree of this size needs ${used}`);
    if ((fn & 1n) === 1n || fn === sn) {
      r = await nodeHash(p, r);
      if ((fn & 1n) === 0n) while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
    } else r = await nodeHash(r, p);
    fn >>= 1n; sn >>= 1n;
  }
  if (sn !== 0n) throw new Error(`audit path has ${path.length} hashes, a tree of this size needs more`);
  if (!equal(r, root)) throw new Error("audit path leads to a different root");
}

/** The peaks of an accumulator of `count` leaves: [level, first leaf] each, left to right. */
function peakLayout(count) {
  const out = [];
  let offset = 0n;
  for (let h = 63n; h >= 0n; h--) {
    if ((count >> h) & 1n) { out.push([h, offset]); offset += 1n << h; }
  }
  return out;
}

/** mmr.rs verify_range: `leafHashes` are exactly leaves first..=last of the accumulator. */
export async function verifyMmrRange(count, first, last, leafHashes, proof, root) {
  if (first > last || last >= count) throw new Error(`leaves ${first}..${last + 1n} are not a range of an accumulator of ${count} leaves`);
  let taken = 0, used = 0;
  const node = async (level, index) => {
    const lo = index << level, hi = ((index + 1n) << level) - 1n;
    if (hi < first || lo > last) {
      if (used >= proof.length) throw new Error("the proof is missing hashes");
      return proof[used++];
    }
    if (level === 0n) {
      if (taken >= leafHashes.length) throw new Error("fewer leaves than the range claims");
      return leafHashes[taken++];
    }
    return nodeHash(await node(level - 1n, 2n * index), await node(level - 1n, 2n * index + 1n));
  };
  const peaks = [];
  for (const [level, at] of peakLayout(count)) peaks.push(await node(level, at >> level));
  if (taken < leafHashes.length) throw new Error(`${leafHashes.length - taken} leaves more than the range`);
  if (used < proof.length) throw new Error(`the proof has ${proof.length - used} hashes too many`);
  const computed = await sha256(concat(Uint8Array.of(2), u64be(count), ...peaks));
  if (!equal(computed, root)) throw new Error("the leaves and the proof lead to a different root");
}

// ---------------------------------------------------------------- Merkle Patricia trie

const nibble = (b, i) => (i % 2 === 0 ? b[i >> 1] >> 4 : b[i >> 1] & 0x0f);

/** mpt.rs verify_mpt: the value at `key` (32 bytes), null when the proof shows there is none. */
export function verifyMpt(root, key, nodes) {
  let expect = { hash: root }, at = 0, index = 0;
  const done = (value) => {
    if (index < nodes.length) throw new Error("the trie proof has nodes after the key");
    return value;
  };
  for (;;) {
    const bad = new Error(`trie node ${index} is not a trie node`);
    let payload;
    if (expect.hash) {
      if (index >= nodes.length) throw new Error("the trie proof ends before the key");
      const node = nodes[index];
      if (!equal(keccak256(node), expect.hash)) {
        throw new Error(`trie node ${index} is not the node its parent refers to (a different state)`);
      }
      index += 1;
      const it = rlpItem(node);
      if (!it || !it.list || it.end !== node.length) throw bad;
      payload = it.payload;
    } else payload = expect.embedded;
    const child = (it) => {
      if (it.list) return { embedded: it.payload };
      if (it.payload.length === 32) return { hash: it.payload };
      throw bad;
    };
    const items = rlpList(payload);
    if (!items) throw bad;
    if (items.length === 17) { // branch
      if (at >= 64) throw bad;
      const next = items[nibble(key, at)];
      at += 1;
      if (!next.list && next.payload.length === 0) return done(null);
      expect = child(next);
    } else if (items.length === 2) { // extension or leaf, hex-prefix path
      if (items[0].list) throw bad;
      const path = items[0].payload;
      if (path.length === 0) throw bad;
      const flag = path[0] >> 4;
      if (flag > 3) throw bad;
      const leaf = flag >= 2, odd = (flag & 1) === 1, rest = path.subarray(1);
      const len = rest.length * 2 + (odd ? 1 : 0);
      if (at + len > 64) return done(null);
      const pathNibble = (i) => (odd ? (i === 0 ? path[0] & 0x0f : nibble(rest, i - 1)) : nibble(rest, i));
      for (let i = 0; i < len; i++) if (pathNibble(i) !== nibble(key, at + i)) return done(null);
      at += len;
      if (leaf) {
        if (at !== 64 || items[1].list) throw bad;
        return done(items[1].payload);
      }
      expect = child(items[1]);
    } else throw bad;
  }
}

// ---------------------------------------------------------------- reports

function report(parts) {
  const checks = [];
  let failed = null;
  const api = {
    checks,
    get failed() { return failed; },
    /** Runs part `name` (unless an earlier one failed); `fn` returns the detail or throws. */
    async run(name, fn) {
      if (failed) { checks.push({ part: name, ok: false, detail: `not checked: ${failed} failed` }); return false; }
      try {
        checks.push({ part: name, ok: true, detail: String(await fn()) });
        return true;
      } catch (e) {
        failed = name;
        checks.push({ part: name, ok: false, detail: e?.message ?? String(e) });
        return false;
      }
    },
    /** Input too malformed to check anything: the first part fails with `why`. */
    skipAll(why) {
      failed = parts[0];
      parts.forEach((p, i) => checks.push({ part: p, ok: false, detail: i ? `not checked: ${why}` : why }));
    },
    result(extra = {}) { return { ok: failed === null && checks.every((c) => c.ok), checks, failed, ...extra }; },
  };
  return api;
}

const READING_PARTS = ["message", "reading id", "device signature", "merkle audit path", "header", "finality certificate"];

/** Checks a proof bundle (GET /v1/readings/{id}/proof) against a genesis. Never throws. */
export async function verifyReadingProof(bundle, genesis) {
  return guard(READING_PARTS, () => readingProof(bundle, genesis));
}

/** A report that `fn` makes, or (on an unforeseen error) a failed one: never a throw. */
async function guard(parts, fn) {
  try {
    return await fn();
  } catch (e) {
    const rep = report(parts);
    rep.skipAll(`internal error: ${e?.message ?? e}`);
    return rep.result();
  }
}

async function readingProof(bundle, genesis) {
  const rep = report(READING_PARTS);
  let g;
  try {
    if (!subtle) throw new Error("WebCrypto (crypto.subtle) is not available");
    g = parseGenesis(genesis);
    if (!bundle || typeof bundle !== "object") throw new Error("the proof bundle is not an object");
  } catch (e) {
    rep.skipAll(e.message);
    return rep.result();
  }
  let r, id, info = {};
  await rep.run("message", () => {
    if (bundle.version !== 1) throw new Error(`unsupported proof version ${bundle.version}`);
    r = decodeReading(hexToBytes(bundle.message));
    info = { device: bytesToHex(r.device), seq: num(r.seq), ts: num(r.ts), stream: r.stream };
    return `${r.alg} reading of device ${info.device}, stream ${JSON.stringify(r.stream)}, seq ${r.seq}, ts ${r.ts}`;
  });
  await rep.run("reading id", async () => {
    id = await readingId(r);
    const claimed = fixed(bundle.reading_id, 32, "reading_id");
    if (!equal(id, claimed)) {
      throw new Error(`leaf hash of the canonical message is ${bytesToHex(id)}, the proof claims ${bytesToHex(claimed)}`);
    }
    return `${bytesToHex(id)} is the leaf hash of the canonical message`;
  });
  await rep.run("device signature", async () => {
    const k = bundle.device_key;
    if (!k || (k.alg !== "EdDSA" && k.alg !== "ES256")) throw new Error(`unknown key algorithm ${JSON.stringify(k?.alg)}`);
    if (k.alg !== r.alg) throw new Error("key algorithm differs from the message's");
    const key = hexToBytes(k.public_key);
    if (k.alg === "EdDSA" && key.length !== 32) throw new Error("an Ed25519 key is 32 bytes");
    if (k.alg === "ES256" && key.length !== 65 && key.length !== 33) throw new Error("not a P-256 public key");
    const signed = sigStructure(r.protected, g.aad, r.payload);
    const valid = k.alg === "EdDSA" ? await ed25519Verify(key, signed, r.signature) : await p256Verify(key, signed, r.signature);
    if (!valid) throw new Error("the message is not signed by the device key");
    const original = equal(deviceAddress(k.alg, key), r.device);
    info.key_is_original = original;
    return `signed by ${k.alg} key ${bytesToHex(key)} for this chain` +
      (original ? "" : " (note: the device key was rotated; it is not the key the device address derives from)");
  });
  await rep.run("merkle audit path", async () => {
    const h = parseHeader(bundle.header);
    if (!Array.isArray(bundle.audit_path)) throw new Error("audit_path is not a list");
    const path = bundle.audit_path.map((x, i) => fixed(x, 32, `audit_path[${i}]`));
    const index = u64(bundle.index, "index");
    await verifyInclusion(id, index, h.reading_count, path, h.readings_root);
    return `leaf ${index} of ${h.reading_count} leads to readings_root ${bytesToHex(h.readings_root)}`;
  });
  let tip;
  await rep.run("header", () => {
    tip = follow(g.chainId, bundle.header, bundle.descendants);
    info.height = num(tip.header.height);
    info.header_hash = bytesToHex(headerHashBytes(tip.header));
    return certifies(bundle.certificate, tip);
  });
  await rep.run("finality certificate", () => checkCertificate(bundle.certificate, g.validators));
  return rep.result({ reading: info });
}

// ---------------------------------------------------------------- complete ranges

const RANGE_PARTS = ["header", "finality certificate", "state proof", "accumulator", "completeness", "readings"];

function decodeLeaf(b) {
  const n = (i) => beToBig(b.subarray(32 + 8 * i, 40 + 8 * i));
  return { id: b.subarray(0, 32), seq: n(0), ts: n(1), height: n(2), block_time_ms: n(3), max_seq: n(4), max_ts: n(5) };
}

function parseRange(j) {
  const kind = j?.kind;
  if (!["all", "seq", "ts", "block_time"].includes(kind)) throw new Error(`unknown range kind ${JSON.stringify(kind)}`);
  const from = j.from === undefined || j.from === null ? 0n : u64(j.from, "range.from");
  const to = j.to === undefined || j.to === null ? U64_MAX : u64(j.to, "range.to");
  const value = (l) => (kind === "seq" ? l.seq : kind === "ts" ? l.ts : l.block_time_ms);
  return {
    kind, from, to,
    takes: (l) => kind === "all" || (from <= value(l) && value(l) <= to),
    allBefore: (l) => kind !== "all" && (kind === "seq" ? l.max_seq : kind === "ts" ? l.max_ts : l.block_time_ms) < from,
    allAfter: (l) => kind === "block_time" && l.block_time_ms > to,
  };
}

/** The accumulator record in the trie: RLP [count, root]. */
function decodeAccumulator(value) {
  const it = rlpItem(value);
  if (!it || !it.list || it.end !== value.length) return null;
  const items = rlpList(it.payload);
  if (!items || items.length !== 2 || items[0].list || items[1].list) return null;
  const [c, r] = [items[0].payload, items[1].payload];
  if (c.length > 8 || c[0] === 0 || r.length !== 32) return null;
  return { count: beToBig(c), root: r };
}

/** Checks a range answer (readings + range_proof) against a genesis. Never throws. */
export async function verifyRangeProof(answer, genesis) {
  return guard(RANGE_PARTS, () => rangeProof(answer, genesis));
}

async function rangeProof(answer, genesis) {
  const rep = report(RANGE_PARTS);
  let g, p, range, descending, messages;
  try {
    if (!subtle) throw new Error("WebCrypto (crypto.subtle) is not available");
    g = parseGenesis(genesis);
    p = answer?.range_proof;
    if (!p || typeof p !== "object") throw new Error("the answer has no range_proof");
    if (p.version !== 1) throw new Error(`unsupported range proof version ${p.version}`);
    if (p.order !== "asc" && p.order !== "desc") throw new Error(`order is asc or desc, not ${JSON.stringify(p.order)}`);
    descending = p.order === "desc";
    range = parseRange(p.range);
    if (!Array.isArray(answer.readings)) throw new Error("the answer has no readings list");
    messages = answer.readings.map((x, i) => {
      try { return hexToBytes(x?.message); } catch { throw new Error(`reading ${i} of the answer has no signed message (0x-hex \`message\`)`); }
    });
  } catch (e) {
    rep.skipAll(e.message);
    return rep.result({ count: null });
  }
  let tip, value, acc, leaves, count = null, taken = 0;
  await rep.run("header", () => { tip = follow(g.chainId, p.header, p.descendants); return certifies(p.certificate, tip); });
  await rep.run("finality certificate", () => checkCertificate(p.certificate, g.validators));
  await rep.run("state proof", () => {
    if (typeof p.stream !== "string") throw new Error("the proof names no stream");
    const device = fixed(p.device, 20, "device");
    const key = keccak256(concat(Uint8Array.of(0x03), device, enc.encode(p.stream)));
    if (!Array.isArray(p.state_proof)) throw new Error("state_proof is not a list");
    const nodes = p.state_proof.map((n, i) => { try { return hexToBytes(n); } catch { throw new Error(`trie node ${i} is not hex`); } });
    value = verifyMpt(tip.header.state_root, key, nodes);
    return value === null
      ? `state_root ${bytesToHex(tip.header.state_root)} holds no accumulator for the stream (it has no readings)`
      : `the trie path leads from state_root ${bytesToHex(tip.header.state_root)} to the accumulator at ${bytesToHex(key)}`;
  });
  await rep.run("accumulator", async () => {
    const claimed = u64(p.count, "count");
    if (value === null) {
      if (claimed !== 0n) throw new Error(`the state commits to 0 readings of the stream, the proof claims ${claimed}`);
      return "no accumulator: the stream has no readings";
    }
    acc = decodeAccumulator(value);
    if (!acc || acc.count === 0n) throw new Error("the state's accumulator record is malformed");
    if (acc.count !== claimed) throw new Error(`the state commits to ${acc.count} readings of the stream, the proof claims ${claimed}`);
    if (!Array.isArray(p.leaves) || !Array.isArray(p.mmr_proof)) throw new Error("leaves and mmr_proof are lists");
    leaves = p.leaves.map((l, i) => fixed(l, 80, `leaf ${i}`));
    const first = u64(p.first, "first");
    if (leaves.length === 0) throw new Error(`no leaves shown of an accumulator of ${acc.count}`);
    const proof = p.mmr_proof.map((h, i) => fixed(h, 32, `mmr_proof[${i}]`));
    const hashes = [];
    for (const l of leaves) hashes.push(await leafHash(l));
    try {
      await verifyMmrRange(acc.count, first, first + BigInt(leaves.length) - 1n, hashes, proof, acc.root);
    } catch (e) {
      throw new Error(`the readings shown are not the stream's (${e.message}): one was left out, added, moved or changed`);
    }
    return `leaves ${first}..${first + BigInt(leaves.length) - 1n} of ${acc.count} and ${proof.length} proof hashes give root ${bytesToHex(acc.root)}`;
  });
  // The walk of range.rs: each window leaf the range takes is, in order, the answer's next
  // reading. Its failures split into `completeness` (left out, added: the counts or ids do
  // not pair up) and `readings` (a reading changed, out of order, or not of the stream).
  const n = messages.length;
  let walkError = null; // {part, detail}
  const decoded = new Map();
  const decodeAt = async (k) => {
    if (!decoded.has(k)) {
      try { const r = decodeReading(messages[k]); decoded.set(k, { r, id: await readingId(r) }); } catch (e) { decoded.set(k, { error: e.message }); }
    }
    return decoded.get(k);
  };
  if (!rep.failed && value !== null) {
    const first = u64(p.first, "first"), last = first + BigInt(leaves.length) - 1n;
    const L = leaves.map(decodeLeaf);
    const device = fixed(p.device, 20, "device");
    if (first !== 0n && !range.allBefore(L[0])) {
      walkError = { part: "completeness", detail: `boundary: the first reading shown (position ${first}) is neither the stream's first nor before the range` };
    } else if (last !== acc.count - 1n && !range.allAfter(L[L.length - 1])) {
      walkError = { part: "completeness", detail: `boundary: the last reading shown (position ${last}) is neither the stream's last nor after the range` };
    }
    for (let i = 0; !walkError && i < L.length; i++) {
      const l = L[i], position = first + BigInt(i);
      if (!range.takes(l)) continue;
      if (taken === n) { walkError = { part: "completeness", detail: `the reading at position ${position} of the stream is in the range and not in the answer` }; break; }
      const index = descending ? n - 1 - taken : taken;
      const d = await decodeAt(index);
      let what = null;
      if (d.error) { walkError = { part: "readings", detail: `reading ${index} of the answer: ${d.error}` }; break; }
      if (!equal(d.id, l.id)) what = "the message (its id)";
      else if (!equal(d.r.device, device)) what = "the device";
      else if (d.r.stream !== p.stream) what = "the stream";
      else if (d.r.seq !== l.seq) what = "the seq";
      else if (d.r.ts !== l.ts) what = "the ts";
      if (what === "the message (its id)") {
        // range.rs explain: left out (the answer goes on with a later reading), out of order, added, or changed.
        const laterLeaf = L.some((x) => range.takes(x) && equal(x.id, d.id));
        let answerHas = false;
        for (let k = 0; k < n && !answerHas; k++) { const e = await decodeAt(k); answerHas = !!e.id && equal(e.id, l.id); }
        if (laterLeaf && answerHas) what = "its place (the answer's order is not the stream's)";
        else if (laterLeaf) { walkError = { part: "completeness", detail: `the reading at position ${position} of the stream is in the range and not in the answer` }; break; }
        else if (answerHas) { walkError = { part: "completeness", detail: `reading ${index} of the answer is not a reading of the range` }; break; }
      }
      if (what) { walkError = { part: "readings", detail: `reading ${index} of the answer is not the stream's reading at its place: ${what} differs` }; break; }
      taken += 1;
    }
    if (!walkError && taken < n) {
      walkError = { part: "completeness", detail: `reading ${descending ? n - 1 - taken : taken} of the answer is not a reading of the range` };
    }
    // What the page shows beside each message (its JSON id, seq, ts, stream) must be the
    // message's own. (`data` is the node's JSON rendering of the payload: not checked here.)
    for (let k = 0; !walkError && k < n; k++) {
      const item = answer.readings[k], d = await decodeAt(k);
      const differs = item.id !== undefined && String(item.id).toLowerCase() !== bytesToHex(d.id) ? "id"
        : item.seq !== undefined && String(item.seq) !== String(d.r.seq) ? "seq"
        : item.ts !== undefined && String(item.ts) !== String(d.r.ts) ? "ts"
        : item.stream !== undefined && item.stream !== d.r.stream ? "stream" : null;
      if (differs) walkError = { part: "readings", detail: `reading ${k} of the answer shows a ${differs} that is not its message's` };
    }
    count = L.filter((l) => range.takes(l)).length;
  } else if (!rep.failed && n > 0) {
    walkError = { part: "completeness", detail: "reading 0 of the answer is not a reading of the range (the stream has none)" };
  } else if (!rep.failed) count = 0;
  await rep.run("completeness", () => {
    if (walkError?.part === "completeness") throw new Error(walkError.detail);
    if (count !== n) throw new Error(`the range has ${count} readings of the stream, the answer ${n}`);
    const where = range.kind === "all" ? "the whole stream" : `${range.kind} ${range.from}..=${range.to}`;
    return `the window covers ${where}: the range has ${count} readings of the ${acc?.count ?? 0n} in the stream, the answer ${n}`;
  });
  await rep.run("readings", () => {
    if (walkError) throw new Error(walkError.detail);
    return `each of the ${taken} readings is, in ${descending ? "descending" : "ascending"} order, the message its leaf's id commits to, of device ${p.device} stream ${JSON.stringify(p.stream)}, with the leaf's seq and ts`;
  });
  const ok = rep.failed === null;
  return rep.result({ count: ok ? taken : count, stream_count: acc ? num(acc.count) : ok ? 0 : null, height: tip ? num(tip.height) : null });
}

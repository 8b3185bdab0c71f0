// A reading's data, decoded here from the signed message's CBOR into JSON by the API's own
// mapping (docs/api.md, "Reading data as JSON"), so the reading page shows what the device
// signed rather than what the node says it signed.

import { Cbor, bytesToHex } from './verify.js';

const SAFE = 2n ** 53n - 1n;

function int(v) {
  return v >= -SAFE && v <= SAFE ? Number(v) : { $bigint: v.toString() };
}

function half(bits) {
  const e = (bits >> 10) & 0x1f, m = bits & 0x3ff, s = bits >> 15 ? -1 : 1;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

function float(x) {
  if (Number.isNaN(x)) return { $float: 'NaN' };
  if (x === Infinity) return { $float: 'Infinity' };
  if (x === -Infinity) return { $float: '-Infinity' };
  return x;
}

function item(c, depth) {
  if (depth < 0) throw new Error('CBOR nested too deep');
  const first = c.b[c.pos];
  const major = first >> 5, ai = first & 0x1f;
  if (major === 7) {
    c.pos += 1;
    if (ai === 20) return false;
    if (ai === 21) return true;
    if (ai === 22 || ai === 23) return null;
    if (ai === 24) c.take(1);
    const n = { 25: 2, 26: 4, 27: 8 }[ai];
    if (!n) return null; // other simple values: the node's mapping gives null too
    const b = c.take(n);
    const view = new DataView(b.buffer, b.byteOffset, n);
    return float(n === 2 ? half(view.getUint16(0)) : n === 4 ? view.getFloat32(0) : view.getFloat64(0));
  }
  const { arg } = c.head();
  switch (major) {
    case 0: return int(arg);
    case 1: return int(-1n - arg);
    case 2: return { $bytes: bytesToHex(c.take(c.len(arg))) };
    case 3: return new TextDecoder('utf-8', { fatal: true }).decode(c.take(c.len(arg)));
    case 4: return Array.from({ length: c.len(arg) }, () => item(c, depth - 1));
    case 5: {
      const pairs = Array.from({ length: c.len(arg) }, () => [item(c, depth - 1), item(c, depth - 1)]);
      if (pairs.every(([k]) => typeof k === 'string' && !k.startsWith('$'))) return Object.fromEntries(pairs);
      return { $map: pairs };
    }
    default: {
      const value = item(c, depth - 1);
      if ((arg === 2n || arg === 3n) && value?.$bytes) {
        const hex = value.$bytes.slice(2);
        // As the node maps them: a magnitude of at most 256 bits is always `$bigint`.
        if (hex.length <= 64) {
          const n = hex ? BigInt(`0x${hex}`) : 0n;
          return { $bigint: (arg === 2n ? n : -1n - n).toString() };
        }
      }
      return { $tag: Number(arg), value };
    }
  }
}

/** The JSON of CBOR `bytes` by the API's mapping. */
export function cborToJson(bytes) {
  const c = new Cbor(bytes);
  const v = item(c, 17);
  if (!c.empty()) throw new Error('trailing bytes after the data');
  return v;
}

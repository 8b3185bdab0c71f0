//! The iotchain device reading: a COSE_Sign1 (RFC 9052) message over a CBOR payload, no_std.
//!
//! # Wire format
//!
//! A reading is a `COSE_Sign1` message, optionally wrapped in CBOR tag 18 (our encoder emits
//! the tag; the decoder accepts both):
//!
//! ```text
//! COSE_Sign1 = [ protected: bstr .cbor { 1: alg, 4: kid }, unprotected: { * label => any },
//!                payload: bstr .cbor Payload, signature: bstr .size 64 ]
//! Payload    = { "seq": uint, "ts": uint, ? "stream": tstr, "data": any }
//! ```
//!
//! - `alg` is -8 (EdDSA with Ed25519) or -7 (ES256: ECDSA P-256 with SHA-256, signature as
//!   raw `r‖s`); `kid` is the 20-byte device address. Both must be in the protected header.
//!   Label 2 (`crit`) is rejected; other protected labels and the unprotected map are ignored.
//! - `seq` increases strictly per device; `ts` is the device's clock in ms since the Unix
//!   epoch; `stream` is 1 to 64 bytes, `"default"` when absent; `data` is any CBOR item
//!   nested at most [`MAX_DEPTH`] levels. Unknown or duplicate payload keys are rejected.
//! - Only definite lengths are accepted; integers and lengths may use any head size.
//! - The signature is over `Sig_structure = ["Signature1", protected, external_aad, payload]`
//!   ([`sig_structure`]), with the protected and payload bytes exactly as received. On a chain
//!   that binds readings to itself (genesis `params.reading_aad = "genesis_hash"`, the default
//!   for new chains) `external_aad` is the 32-byte genesis hash, so a reading signed for one
//!   chain never verifies on another; on older chains it is empty (`h''`).
//!
//! # Identity
//!
//! A reading's id is the RFC 6962 leaf hash of its *canonical message*,
//! `SHA-256(0x00 ‖ canonical)` ([`reading_id`], [`Reading::id`]), where the canonical message
//! is what [`encode_message`] writes: tag 18 as the one byte `0xd2`, shortest heads, the
//! protected and payload bytes exactly as received (the signature covers them), an empty
//! unprotected map, and for ES256 the signature with the low `s` (`n - s` when `s > n/2`:
//! both verify). Everything the signature does not cover, and so anyone on the way could
//! change, leaves the id as it is: the tag present or not (or in a longer head), longer heads
//! in the envelope, unprotected headers, the twin ECDSA signature. What devices send (this
//! crate's encoder, the device SDK, pycose) is canonical already: its id is the leaf hash of
//! the bytes sent.
//!
//! A batch (`application/cbor`) is a definite-length CBOR array whose elements are the
//! messages themselves ([`decode_batch`] returns each element's bytes).
//!
//! Encoding ([`encode_protected`], [`encode_payload`], [`encode_message`], and the allocating
//! [`UnsignedReading`]) is deterministic: shortest heads, protected `{1: alg, 4: kid}`, payload
//! keys in the order `seq`, `ts`, `stream` (omitted when `None`), `data`.
#![no_std]

#[cfg(feature = "alloc")]
extern crate alloc;
// The JSON form of `data` is for hosts (the node's APIs, the exporter): it takes std.
#[cfg(feature = "json")]
extern crate std;

mod cbor;
mod error;
#[cfg(feature = "json")]
pub mod json;
mod stream_leaf;

use core::{fmt, str::FromStr};

pub use cbor::MAX_DEPTH;
use cbor::{Major, Reader, Writer};
pub use error::ReadingError;
pub use stream_leaf::{STREAM_LEAF_LEN, StreamLeaf};

/// Default limit on a reading's size in bytes (the node makes its limit configurable).
pub const MAX_MESSAGE_LEN: usize = 16 * 1024;
/// Longest stream name in bytes.
pub const MAX_STREAM_LEN: usize = 64;
/// The stream of a reading that names none.
pub const DEFAULT_STREAM: &str = "default";
/// CBOR tag of COSE_Sign1.
pub const COSE_SIGN1_TAG: u64 = 18;

/// A device address: the last 20 bytes of keccak256 of the device's first public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceAddress(pub [u8; 20]);

impl fmt::Display for DeviceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("0x")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for DeviceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Error parsing a [`DeviceAddress`] from text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressParseError;

impl fmt::Display for AddressParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a device address is 40 hex digits, optionally prefixed by 0x")
    }
}

impl FromStr for DeviceAddress {
    type Err = AddressParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s
            .strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .unwrap_or(s);
        let b = s.as_bytes();
        if b.len() != 40 {
            return Err(AddressParseError);
        }
        let nibble = |c: u8| -> Result<u8, AddressParseError> {
            match c {
                b'0'..=b'9' => Ok(c - b'0'),
                b'a'..=b'f' => Ok(c - b'a' + 10),
                b'A'..=b'F' => Ok(c - b'A' + 10),
                _ => Err(AddressParseError),
            }
        };
        let mut out = [0u8; 20];
        for (i, o) in out.iter_mut().enumerate() {
            *o = (nibble(b[2 * i])? << 4) | nibble(b[2 * i + 1])?;
        }
        Ok(Self(out))
    }
}

/// A reading's signature algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    /// EdDSA with Ed25519 (COSE -8).
    EdDsa,
    /// ECDSA with P-256 and SHA-256 (COSE -7).
    Es256,
}

impl Alg {
    /// The COSE algorithm value.
    pub fn cose_value(self) -> i64 {
        match self {
            Self::EdDsa => -8,
            Self::Es256 => -7,
        }
    }

    /// The algorithm of a COSE value, if supported.
    pub fn from_cose(v: i64) -> Option<Self> {
        match v {
            -8 => Some(Self::EdDsa),
            -7 => Some(Self::Es256),
            _ => None,
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::EdDsa => "EdDSA",
            Self::Es256 => "ES256",
        })
    }
}

/// A decoded reading, borrowing from the message bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading<'a> {
    /// Signature algorithm.
    pub alg: Alg,
    /// Device address (`kid`).
    pub device: DeviceAddress,
    /// Per-device sequence number.
    pub seq: u64,
    /// Device time, ms since the Unix epoch.
    pub ts: u64,
    /// Stream name.
    pub stream: &'a str,
    /// The `data` item, as raw CBOR.
    pub data: &'a [u8],
    /// The protected header bytes (inside the bstr).
    pub protected: &'a [u8],
    /// The payload bytes (inside the bstr).
    pub payload: &'a [u8],
    /// The signature.
    pub signature: &'a [u8; 64],
}

/// The order `n` of the P-256 group, big-endian.
const P256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];
/// `⌊n / 2⌋` of P-256: the largest low `s`.
const P256_HALF_ORDER: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
];

/// A signature's canonical form: for ES256 `r‖s` with `s` at most `n/2` (`r‖(n - s)`
/// otherwise, which verifies as well), EdDSA as it is (a valid Ed25519 signature has one
/// encoding).
pub fn canonical_signature(alg: Alg, signature: &[u8; 64]) -> [u8; 64] {
    let mut out = *signature;
    let s = &signature[32..];
    if alg == Alg::Es256 && s > &P256_HALF_ORDER[..] && s < &P256_ORDER[..] {
        // n - s, big-endian with borrow (s < n: no underflow).
        let mut borrow = 0u16;
        for i in (0..32).rev() {
            let d = P256_ORDER[i] as u16 + 0x100 - s[i] as u16 - borrow;
            out[32 + i] = d as u8;
            borrow = u16::from(d < 0x100);
        }
    }
    out
}

/// Bytes of a CBOR head for `arg`.
fn head_len(arg: usize) -> usize {
    match arg {
        0..=23 => 1,
        24..=0xff => 2,
        0x100..=0xffff => 3,
        _ if arg as u64 <= 0xffff_ffff => 5,
        _ => 9,
    }
}

/// The id of the canonical message of these parts, hashed piece by piece.
fn canonical_id(alg: Alg, protected: &[u8], payload: &[u8], signature: &[u8; 64]) -> [u8; 32] {
    let bstr_head = |out: &mut [u8; 9], len: usize| {
        let mut w = Writer::new(out);
        w.head(2, len as u64).expect("nine bytes hold any head");
        w.len()
    };
    let (mut p_head, mut l_head) = ([0u8; 9], [0u8; 9]);
    let n_p = bstr_head(&mut p_head, protected.len());
    let n_l = bstr_head(&mut l_head, payload.len());
    let signature = canonical_signature(alg, signature);
    iotchain_merkle::leaf_hash_parts(&[
        &[0xc0 | COSE_SIGN1_TAG as u8, 0x84],
        &p_head[..n_p],
        protected,
        &[0xa0],
        &l_head[..n_l],
        payload,
        &[0x58, 0x40],
        &signature,
    ])
}

/// A reading's id: the RFC 6962 leaf hash of its canonical message (see the crate docs),
/// the same for every encoding of one signed reading. Bytes that are no COSE_Sign1 message
/// of a supported algorithm (never accepted, so never given an id by the node) have the
/// leaf hash of the bytes themselves.
pub fn reading_id(message: &[u8]) -> [u8; 32] {
    match envelope(message).and_then(|e| Ok((decode_protected(e.protected)?.0, e))) {
        Ok((alg, e)) => canonical_id(alg, e.protected, e.payload, e.signature),
        Err(_) => iotchain_merkle::leaf_hash(message),
    }
}

impl Reading<'_> {
    /// The reading's id ([`reading_id`] of any of its encodings).
    pub fn id(&self) -> [u8; 32] {
        canonical_id(self.alg, self.protected, self.payload, self.signature)
    }

    /// The signature in its canonical form ([`canonical_signature`]).
    pub fn canonical_signature(&self) -> [u8; 64] {
        canonical_signature(self.alg, self.signature)
    }

    /// Length of the canonical message.
    pub fn canonical_len(&self) -> usize {
        let (p, l) = (self.protected.len(), self.payload.len());
        2 + head_len(p) + p + 1 + head_len(l) + l + 2 + 64
    }

    /// Writes the canonical message into `out`; returns its length.
    pub fn write_canonical(&self, out: &mut [u8]) -> Result<usize, ReadingError> {
        encode_message(
            self.protected,
            self.payload,
            &self.canonical_signature(),
            out,
        )
    }

    /// The canonical message.
    #[cfg(feature = "alloc")]
    pub fn to_canonical(&self) -> alloc::vec::Vec<u8> {
        let mut out = alloc::vec![0u8; self.canonical_len()];
        let n = self
            .write_canonical(&mut out)
            .expect("buffer sized for the message");
        debug_assert_eq!(n, out.len());
        out
    }

    /// Whether `message`, the bytes this reading was decoded from, is its canonical message.
    pub fn is_canonical_encoding(&self, message: &[u8]) -> bool {
        // Each part of the envelope is at least as long as its canonical encoding, which is
        // unique: the same total length with the one-byte tag first means every part is
        // canonical (and the map empty), so only the signature remains to look at.
        message.first() == Some(&(0xc0 | COSE_SIGN1_TAG as u8))
            && message.len() == self.canonical_len()
            && self.canonical_signature() == *self.signature
    }
}

/// The parts of a COSE_Sign1 message a reading is made of.
struct Envelope<'a> {
    protected: &'a [u8],
    payload: &'a [u8],
    signature: &'a [u8; 64],
}

/// Decodes and checks a COSE_Sign1 reading (not its signature: that needs the device key).
pub fn decode(message: &[u8]) -> Result<Reading<'_>, ReadingError> {
    let Envelope {
        protected,
        payload,
        signature,
    } = envelope(message)?;
    let (alg, device) = decode_protected(protected)?;
    let p = decode_payload(payload)?;
    Ok(Reading {
        alg,
        device,
        seq: p.seq,
        ts: p.ts,
        stream: p.stream,
        data: p.data,
        protected,
        payload,
        signature,
    })
}

/// The envelope of a COSE_Sign1 message: the protected header, payload and signature.
fn envelope(message: &[u8]) -> Result<Envelope<'_>, ReadingError> {
    // Well-formedness first, so "not CBOR" and "not COSE" are told apart.
    let mut whole = Reader::new(message);
    if whole.is_empty() {
        return Err(ReadingError::MalformedCbor("empty input"));
    }
    whole.skip(MAX_DEPTH + 4)?;
    if !whole.is_empty() {
        return Err(ReadingError::TrailingBytes);
    }
    let mut r = Reader::new(message);
    if let Some((Major::Tag, _)) = r.peek() {
        let (_, tag, _) = r.head()?;
        if tag != COSE_SIGN1_TAG {
            return Err(ReadingError::MalformedCose(
                "message has a CBOR tag other than 18 (COSE_Sign1)",
            ));
        }
    }
    match r.peek() {
        Some((Major::Array, _)) => {}
        Some(_) => {
            return Err(ReadingError::MalformedCose(
                "a COSE_Sign1 message is an array of four items",
            ));
        }
        None => return Err(ReadingError::MalformedCbor("empty input")),
    }
    if r.array("COSE_Sign1")? != 4 {
        return Err(ReadingError::MalformedCose(
            "a COSE_Sign1 message is an array of four items",
        ));
    }
    let protected = r.bytes("protected header")?;
    let n = r.map("unprotected header")?;
    for _ in 0..n {
        r.skip(2)?;
        r.skip(MAX_DEPTH)?;
    }
    let payload = match r.peek() {
        Some((Major::Simple, 22)) => {
            return Err(ReadingError::MalformedCose(
                "detached payloads (nil) are not supported",
            ));
        }
        _ => r.bytes("payload")?,
    };
    let signature = r.bytes("signature")?;
    if !r.is_empty() {
        return Err(ReadingError::TrailingBytes);
    }
    let signature: &[u8; 64] = signature
        .try_into()
        .map_err(|_| ReadingError::BadSignatureLength(signature.len()))?;
    Ok(Envelope {
        protected,
        payload,
        signature,
    })
}

fn decode_protected(bytes: &[u8]) -> Result<(Alg, DeviceAddress), ReadingError> {
    let mut r = Reader::new(bytes);
    let n = r.map("protected header")?;
    let (mut alg, mut kid) = (None, None);
    let mut seen: [i64; 16] = [0; 16];
    for i in 0..n {
        let label = match r.peek() {
            Some((Major::Unsigned | Major::Negative, _)) => r.int("header label")?,
            _ => {
                // Text labels are allowed by COSE; we ignore them, but they may not repeat
                // an integer label we use, so just skip key and value.
                r.skip(1)?;
                r.skip(MAX_DEPTH)?;
                continue;
            }
        };
        let idx = i as usize;
        if seen[..idx.min(16)].contains(&label) {
            return Err(ReadingError::DuplicateField("protected header label"));
        }
        if idx < 16 {
            seen[idx] = label;
        }
        match label {
            1 => {
                let v = r.int("alg")?;
                alg = Some(Alg::from_cose(v).ok_or(ReadingError::UnsupportedAlg(v))?);
            }
            2 => {
                return Err(ReadingError::MalformedCose(
                    "critical headers (label 2) are not supported",
                ));
            }
            4 => {
                let k = r.bytes("kid")?;
                kid = Some(DeviceAddress(
                    k.try_into().map_err(|_| ReadingError::BadKid(k.len()))?,
                ));
            }
            _ => r.skip(MAX_DEPTH)?,
        }
    }
    if !r.is_empty() {
        return Err(ReadingError::TrailingBytes);
    }
    let alg = alg.ok_or(ReadingError::MissingField(
        "alg (label 1) in the protected header",
    ))?;
    let kid = kid.ok_or(ReadingError::MissingKid)?;
    Ok((alg, kid))
}

struct Payload<'a> {
    seq: u64,
    ts: u64,
    stream: &'a str,
    data: &'a [u8],
}

fn decode_payload(bytes: &[u8]) -> Result<Payload<'_>, ReadingError> {
    let mut r = Reader::new(bytes);
    let n = match r.peek() {
        Some((Major::Map, _)) => r.map("payload")?,
        _ => {
            return Err(ReadingError::MalformedPayload(
                "the payload is a CBOR map with text keys",
            ));
        }
    };
    let (mut seq, mut ts, mut stream, mut data) = (None, None, None, None);
    for _ in 0..n {
        let key = match r.peek() {
            Some((Major::Text, _)) => r.text("payload key")?,
            _ => {
                return Err(ReadingError::MalformedPayload(
                    "payload keys are text strings",
                ));
            }
        };
        match key {
            "seq" if seq.is_none() => seq = Some(r.unsigned("payload key \"seq\"")?),
            "ts" if ts.is_none() => ts = Some(r.unsigned("payload key \"ts\"")?),
            "stream" if stream.is_none() => {
                let s = r.text("payload key \"stream\"")?;
                if s.is_empty() || s.len() > MAX_STREAM_LEN {
                    return Err(ReadingError::MalformedPayload(
                        "stream names are 1 to 64 bytes",
                    ));
                }
                stream = Some(s);
            }
            "data" if data.is_none() => {
                let start = r.position();
                r.skip(MAX_DEPTH)?;
                data = Some(r.slice(start, r.position()));
            }
            "seq" | "ts" | "stream" | "data" => {
                return Err(ReadingError::DuplicateField("payload key"));
            }
            _ => return Err(ReadingError::UnknownField),
        }
    }
    if !r.is_empty() {
        return Err(ReadingError::TrailingBytes);
    }
    Ok(Payload {
        seq: seq.ok_or(ReadingError::MissingField("payload key \"seq\""))?,
        ts: ts.ok_or(ReadingError::MissingField("payload key \"ts\""))?,
        stream: stream.unwrap_or(DEFAULT_STREAM),
        data: data.ok_or(ReadingError::MissingField("payload key \"data\""))?,
    })
}

/// Splits a batch (a CBOR array of COSE_Sign1 messages) into the messages' bytes.
/// Each element is checked to be one well-formed CBOR item; decode each with [`decode`].
#[cfg(feature = "alloc")]
pub fn decode_batch(body: &[u8], max_count: usize) -> Result<alloc::vec::Vec<&[u8]>, ReadingError> {
    let mut r = Reader::new(body);
    let n = match r.peek() {
        Some((Major::Array, _)) => r.array("batch")?,
        Some(_) => return Err(ReadingError::MalformedBatch),
        None => return Err(ReadingError::MalformedCbor("empty input")),
    };
    if n == 0 {
        return Err(ReadingError::EmptyBatch);
    }
    if n > max_count as u64 {
        return Err(ReadingError::BatchTooLarge {
            count: n,
            max: max_count,
        });
    }
    // Each message takes at least one byte: never reserve more than the body could hold.
    let mut out = alloc::vec::Vec::with_capacity((n as usize).min(body.len()));
    for _ in 0..n {
        let start = r.position();
        r.skip(MAX_DEPTH + 4)?;
        out.push(r.slice(start, r.position()));
    }
    if !r.is_empty() {
        return Err(ReadingError::TrailingBytes);
    }
    Ok(out)
}

/// Writes `Sig_structure = ["Signature1", protected, external_aad, payload]` into `out`;
/// returns its length. `external_aad` is the chain's genesis hash on a chain that binds
/// readings to itself, else empty. `out` needs at most `protected + external_aad + payload`
/// lengths + [`SIG_STRUCTURE_OVERHEAD`] bytes.
pub fn write_sig_structure(
    protected: &[u8],
    external_aad: &[u8],
    payload: &[u8],
    out: &mut [u8],
) -> Result<usize, ReadingError> {
    let mut w = Writer::new(out);
    w.head(4, 4)?;
    w.text("Signature1")?;
    w.bytes(protected)?;
    w.bytes(external_aad)?;
    w.bytes(payload)?;
    Ok(w.len())
}

/// The most bytes `Sig_structure` adds to its three byte strings (array head, the context
/// string and three byte-string heads).
pub const SIG_STRUCTURE_OVERHEAD: usize = 1 + 11 + 3 * 9;

/// The bytes a device signs: `Sig_structure = ["Signature1", protected, external_aad,
/// payload]` (see [`write_sig_structure`]).
#[cfg(feature = "alloc")]
pub fn sig_structure(protected: &[u8], external_aad: &[u8], payload: &[u8]) -> alloc::vec::Vec<u8> {
    let mut out = alloc::vec![0u8; protected.len() + external_aad.len() + payload.len() + SIG_STRUCTURE_OVERHEAD];
    let n = write_sig_structure(protected, external_aad, payload, &mut out)
        .expect("buffer sized for the structure");
    out.truncate(n);
    out
}

/// Writes the protected header `{1: alg, 4: kid}`; returns its length (25 bytes).
pub fn encode_protected(
    alg: Alg,
    device: &DeviceAddress,
    out: &mut [u8],
) -> Result<usize, ReadingError> {
    let mut w = Writer::new(out);
    w.head(5, 2)?;
    w.int(1)?;
    w.int(alg.cose_value())?;
    w.int(4)?;
    w.bytes(&device.0)?;
    Ok(w.len())
}

/// Writes the payload map; `data` must be one encoded CBOR item. Returns its length.
pub fn encode_payload(
    seq: u64,
    ts: u64,
    stream: Option<&str>,
    data: &[u8],
    out: &mut [u8],
) -> Result<usize, ReadingError> {
    let mut check = Reader::new(data);
    check.skip(MAX_DEPTH)?;
    if !check.is_empty() {
        return Err(ReadingError::TrailingBytes);
    }
    if let Some(s) = stream
        && (s.is_empty() || s.len() > MAX_STREAM_LEN)
    {
        return Err(ReadingError::MalformedPayload(
            "stream names are 1 to 64 bytes",
        ));
    }
    let mut w = Writer::new(out);
    w.head(5, if stream.is_some() { 4 } else { 3 })?;
    w.text("seq")?;
    w.head(0, seq)?;
    w.text("ts")?;
    w.head(0, ts)?;
    if let Some(s) = stream {
        w.text("stream")?;
        w.text(s)?;
    }
    w.text("data")?;
    w.raw(data)?;
    Ok(w.len())
}

/// Writes the tagged COSE_Sign1 message with an empty unprotected map and shortest heads;
/// returns its length. This is the canonical message when `signature` is canonical
/// ([`canonical_signature`]).
pub fn encode_message(
    protected: &[u8],
    payload: &[u8],
    signature: &[u8; 64],
    out: &mut [u8],
) -> Result<usize, ReadingError> {
    let mut w = Writer::new(out);
    w.head(6, COSE_SIGN1_TAG)?;
    w.head(4, 4)?;
    w.bytes(protected)?;
    w.head(5, 0)?;
    w.bytes(payload)?;
    w.bytes(signature)?;
    Ok(w.len())
}

/// A reading built and waiting for its signature (allocating convenience for hosts).
#[cfg(feature = "alloc")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsignedReading {
    /// Protected header bytes.
    pub protected: alloc::vec::Vec<u8>,
    /// Payload bytes.
    pub payload: alloc::vec::Vec<u8>,
}

#[cfg(feature = "alloc")]
impl UnsignedReading {
    /// Builds the protected header and payload. `data` must be one encoded CBOR item.
    ///
    /// # Panics
    /// If `data` is not one well-formed CBOR item or `stream` is empty or over 64 bytes.
    pub fn new(
        alg: Alg,
        device: DeviceAddress,
        seq: u64,
        ts: u64,
        stream: Option<&str>,
        data: &[u8],
    ) -> Self {
        Self::try_new(alg, device, seq, ts, stream, data)
            .expect("data is one CBOR item and stream is 1..=64 bytes")
    }

    /// Like [`UnsignedReading::new`], returning an error for bad `data` or `stream`.
    pub fn try_new(
        alg: Alg,
        device: DeviceAddress,
        seq: u64,
        ts: u64,
        stream: Option<&str>,
        data: &[u8],
    ) -> Result<Self, ReadingError> {
        let mut protected = alloc::vec![0u8; 32];
        let n = encode_protected(alg, &device, &mut protected)?;
        protected.truncate(n);
        let mut payload = alloc::vec![0u8; data.len() + stream.map_or(0, str::len) + 48];
        let n = encode_payload(seq, ts, stream, data, &mut payload)?;
        payload.truncate(n);
        Ok(Self { protected, payload })
    }

    /// The bytes to sign, with `external_aad` the chain's genesis hash (or empty on a chain
    /// that does not bind readings to itself).
    pub fn sig_structure(&self, external_aad: &[u8]) -> alloc::vec::Vec<u8> {
        sig_structure(&self.protected, external_aad, &self.payload)
    }

    /// The final message with the signature.
    pub fn into_message(self, signature: &[u8; 64]) -> alloc::vec::Vec<u8> {
        let mut out = alloc::vec![0u8; self.protected.len() + self.payload.len() + 96];
        let n = encode_message(&self.protected, &self.payload, signature, &mut out)
            .expect("buffer sized for the message");
        out.truncate(n);
        out
    }
}

/// Encodes messages as a batch: a definite-length CBOR array of the messages' own bytes (the
/// body of an `application/cbor` submission, read back by [`decode_batch`]).
#[cfg(feature = "alloc")]
pub fn encode_batch<M: AsRef<[u8]>>(messages: &[M]) -> alloc::vec::Vec<u8> {
    let mut head = [0u8; 9];
    let mut w = cbor::Writer::new(&mut head);
    w.head(4, messages.len() as u64)
        .expect("nine bytes hold any head");
    let n = w.len();
    let total = n + messages.iter().map(|m| m.as_ref().len()).sum::<usize>();
    let mut out = alloc::vec::Vec::with_capacity(total);
    out.extend_from_slice(&head[..n]);
    for m in messages {
        out.extend_from_slice(m.as_ref());
    }
    out
}

#[cfg(test)]
mod tests;

//! The RLP encoding of a header (a list of its fields, as `alloy-rlp` writes it), into a
//! stack buffer.

use crate::Header;

/// Longest header encoding: five u64 (at most 9 bytes each), five 32-byte strings (33 each),
/// and a two-byte list header.
pub(crate) const MAX_HEADER_LEN: usize = 2 + 5 * 9 + 5 * 33;

struct Writer<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn byte(&mut self, b: u8) {
        self.out[self.at] = b;
        self.at += 1;
    }

    fn u64(&mut self, v: u64) {
        if v == 0 {
            self.byte(0x80);
        } else if v < 0x80 {
            self.byte(v as u8);
        } else {
            let bytes = v.to_be_bytes();
            let skip = (v.leading_zeros() / 8) as usize;
            self.byte(0x80 + (8 - skip) as u8);
            for &b in &bytes[skip..] {
                self.byte(b);
            }
        }
    }

    fn hash(&mut self, h: &[u8; 32]) {
        self.byte(0x80 + 32);
        self.out[self.at..self.at + 32].copy_from_slice(h);
        self.at += 32;
    }
}

/// Writes the header's RLP into `out` (at least [`MAX_HEADER_LEN`] bytes); returns the length.
pub(crate) fn encode_header(h: &Header, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
    // The payload goes after room for the longest list header, then moves into place.
    let mut w = Writer { out, at: 2 };
    w.u64(h.chain_id);
    w.u64(h.height);
    w.hash(&h.parent_hash);
    w.u64(h.timestamp_ms);
    w.hash(&h.proposer);
    w.hash(&h.readings_root);
    w.u64(h.reading_count);
    w.hash(&h.transactions_root);
    w.u64(h.transaction_count);
    w.hash(&h.state_root);
    let payload = w.at - 2;
    // The payload is at least 5 * 33 + 5 bytes: always the long list form, one length byte.
    out[0] = 0xf8;
    out[1] = payload as u8;
    payload + 2
}

//! Checking a Merkle Patricia trie proof (as `eth_getProof` gives them) against a state
//! root, without an allocator: the value it proves borrowed from the proof's nodes.

use core::fmt;

use sha3::{Digest as _, Keccak256};

use crate::Hash;

/// Why a trie proof does not check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MptError {
    /// Node `index` is not what its parent (or the root) refers to.
    WrongNode {
        /// The node's place in the proof.
        index: usize,
    },
    /// Node `index` is not a well-formed trie node.
    Malformed {
        /// The node's place in the proof.
        index: usize,
    },
    /// The proof ends before it reaches the key's leaf or shows its absence.
    TooShort,
    /// The proof has nodes after the key's leaf or the point that shows its absence.
    TooLong,
}

impl fmt::Display for MptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongNode { index } => write!(
                f,
                "trie node {index} is not the node its parent refers to (a different state)"
            ),
            Self::Malformed { index } => write!(f, "trie node {index} is not a trie node"),
            Self::TooShort => f.write_str("the trie proof ends before the key"),
            Self::TooLong => f.write_str("the trie proof has nodes after the key"),
        }
    }
}

/// One RLP item: `(is_list, payload, rest after the item)`.
pub(crate) fn rlp_item(b: &[u8]) -> Option<(bool, &[u8], &[u8])> {
    let (&first, rest) = b.split_first()?;
    let (list, header, len) = match first {
        0x00..=0x7f => return Some((false, &b[..1], rest)),
        0x80..=0xb7 => (false, 1, (first - 0x80) as usize),
        0xb8..=0xbf => {
            let n = (first - 0xb7) as usize;
            (false, 1 + n, be_len(rest.get(..n)?)?)
        }
        0xc0..=0xf7 => (true, 1, (first - 0xc0) as usize),
        0xf8..=0xff => {
            let n = (first - 0xf7) as usize;
            (true, 1 + n, be_len(rest.get(..n)?)?)
        }
    };
    let end = header.checked_add(len)?;
    Some((list, b.get(header..end)?, &b[end..]))
}

fn be_len(b: &[u8]) -> Option<usize> {
    if b.is_empty() || b.len() > 8 || b[0] == 0 {
        return None;
    }
    let mut v = 0usize;
    for &x in b {
        v = v.checked_mul(256)?.checked_add(x as usize)?;
    }
    Some(v)
}

/// The items of an RLP list's payload, into `out`; how many (`None` if more than fit, or
/// malformed).
pub(crate) fn rlp_list<'a>(
    mut payload: &'a [u8],
    out: &mut [(bool, &'a [u8]); 17],
) -> Option<usize> {
    let mut n = 0;
    while !payload.is_empty() {
        let (list, item, rest) = rlp_item(payload)?;
        *out.get_mut(n)? = (list, item);
        n += 1;
        payload = rest;
    }
    Some(n)
}

/// Nibble `i` of `b`, high nibble first.
fn nibble(b: &[u8], i: usize) -> u8 {
    let x = b[i / 2];
    if i.is_multiple_of(2) {
        x >> 4
    } else {
        x & 0x0f
    }
}

/// Checks that `nodes` (RLP trie nodes from the root down, as `eth_getProof` lists them)
/// lead from `root` to the value at `key` (a 32-byte trie key: hashed already), or show that
/// there is none (`Ok(None)`).
pub fn verify_mpt<'a>(
    root: &Hash,
    key: &Hash,
    nodes: &[&'a [u8]],
) -> Result<Option<&'a [u8]>, MptError> {
    // What the next node must be: one with this hash, or a node embedded in its parent (a
    // list's payload).
    enum Next<'a> {
        Hashed(Hash),
        Embedded(&'a [u8]),
    }
    let mut expect = Next::Hashed(*root);
    let mut at = 0usize; // nibbles of the key consumed
    let mut index = 0usize; // proof nodes consumed
    loop {
        let bad = MptError::Malformed { index };
        let payload = match expect {
            Next::Hashed(hash) => {
                let node = *nodes.get(index).ok_or(MptError::TooShort)?;
                if Keccak256::digest(node).as_slice() != hash {
                    return Err(MptError::WrongNode { index });
                }
                index += 1;
                match rlp_item(node) {
                    Some((true, payload, [])) => payload,
                    _ => return Err(bad),
                }
            }
            Next::Embedded(payload) => payload,
        };
        let child = |(list, item): (bool, &'a [u8])| -> Result<Next<'a>, MptError> {
            match (list, item.len()) {
                (true, _) => Ok(Next::Embedded(item)),
                (false, 32) => Ok(Next::Hashed(item.try_into().expect("32 bytes"))),
                _ => Err(bad),
            }
        };
        let mut items = [(false, &[][..]); 17];
        let n = rlp_list(payload, &mut items).ok_or(bad)?;
        match n {
            17 => {
                if at >= 64 {
                    return Err(bad);
                }
                let next = items[nibble(key, at) as usize];
                at += 1;
                if !next.0 && next.1.is_empty() {
                    return done(None, index, nodes);
                }
                expect = child(next)?;
            }
            2 => {
                let (false, path) = items[0] else {
                    return Err(bad);
                };
                let (&flag, rest) = path.split_first().ok_or(bad)?;
                let (leaf, odd) = match flag >> 4 {
                    0 => (false, false),
                    1 => (false, true),
                    2 => (true, false),
                    3 => (true, true),
                    _ => return Err(bad),
                };
                let len = rest.len() * 2 + usize::from(odd);
                if at + len > 64 {
                    return done(None, index, nodes);
                }
                let path_nibble = |i: usize| {
                    if odd {
                        if i == 0 {
                            flag & 0x0f
                        } else {
                            nibble(rest, i - 1)
                        }
                    } else {
                        nibble(rest, i)
                    }
                };
                if (0..len).any(|i| path_nibble(i) != nibble(key, at + i)) {
                    return done(None, index, nodes);
                }
                at += len;
                if leaf {
                    if at != 64 || items[1].0 {
                        return Err(bad);
                    }
                    return done(Some(items[1].1), index, nodes);
                }
                expect = child(items[1])?;
            }
            _ => return Err(bad),
        }
    }
}

fn done<'a>(
    value: Option<&'a [u8]>,
    used: usize,
    nodes: &[&[u8]],
) -> Result<Option<&'a [u8]>, MptError> {
    if used < nodes.len() {
        return Err(MptError::TooLong);
    }
    Ok(value)
}

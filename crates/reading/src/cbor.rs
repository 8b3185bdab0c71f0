//! A small strict CBOR (RFC 8949) reader and writer: just what readings need.
//!
//! Reading rejects indefinite lengths, reserved additional-information values, invalid
//! two-byte simple values, invalid UTF-8 in text strings and nesting deeper than
//! [`MAX_DEPTH`]; it never panics and never allocates.

use crate::ReadingError;

/// Deepest nesting of arrays, maps and tags accepted inside a reading's `data`.
pub const MAX_DEPTH: usize = 16;

/// CBOR major types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Major {
    Unsigned,
    Negative,
    Bytes,
    Text,
    Array,
    Map,
    Tag,
    Simple,
}

/// A position in an input buffer.
pub(crate) struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(input: &'a [u8]) -> Self {
        Self { input, pos: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.input.len()
    }

    pub(crate) fn slice(&self, from: usize, to: usize) -> &'a [u8] {
        &self.input[from..to]
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ReadingError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(ReadingError::MalformedCbor("length overflows"))?;
        let s = self
            .input
            .get(self.pos..end)
            .ok_or(ReadingError::MalformedCbor("input ends inside an item"))?;
        self.pos = end;
        Ok(s)
    }

    /// Reads an item head: major type and argument (length, value or simple/float marker).
    pub(crate) fn head(&mut self) -> Result<(Major, u64, u8), ReadingError> {
        let b = self.take(1)?[0];
        let major = match b >> 5 {
            0 => Major::Unsigned,
            1 => Major::Negative,
            2 => Major::Bytes,
            3 => Major::Text,
            4 => Major::Array,
            5 => Major::Map,
            6 => Major::Tag,
            _ => Major::Simple,
        };
        let ai = b & 0x1f;
        let arg = match ai {
            0..=23 => ai as u64,
            24 => self.take(1)?[0] as u64,
            25 => u16::from_be_bytes(self.take(2)?.try_into().expect("2 bytes")) as u64,
            26 => u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")) as u64,
            27 => u64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")),
            28..=30 => {
                return Err(ReadingError::MalformedCbor(
                    "reserved additional information value",
                ));
            }
            _ => return Err(ReadingError::Indefinite),
        };
        if major == Major::Simple && ai == 24 && arg < 32 {
            return Err(ReadingError::MalformedCbor(
                "two-byte simple value below 32",
            ));
        }
        Ok((major, arg, ai))
    }

    fn len(&self, arg: u64) -> Result<usize, ReadingError> {
        usize::try_from(arg).map_err(|_| ReadingError::MalformedCbor("length does not fit memory"))
    }

    /// Reads a byte string.
    pub(crate) fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], ReadingError> {
        match self.head()? {
            (Major::Bytes, n, _) => {
                let n = self.len(n)?;
                self.take(n)
            }
            _ => Err(ReadingError::WrongType(what, "a byte string")),
        }
    }

    /// Reads a text string (valid UTF-8).
    pub(crate) fn text(&mut self, what: &'static str) -> Result<&'a str, ReadingError> {
        match self.head()? {
            (Major::Text, n, _) => {
                let n = self.len(n)?;
                core::str::from_utf8(self.take(n)?)
                    .map_err(|_| ReadingError::MalformedCbor("text string is not UTF-8"))
            }
            _ => Err(ReadingError::WrongType(what, "a text string")),
        }
    }

    /// Reads an unsigned integer.
    pub(crate) fn unsigned(&mut self, what: &'static str) -> Result<u64, ReadingError> {
        match self.head()? {
            (Major::Unsigned, v, _) => Ok(v),
            _ => Err(ReadingError::WrongType(what, "an unsigned integer")),
        }
    }

    /// Reads an integer in i64 range.
    pub(crate) fn int(&mut self, what: &'static str) -> Result<i64, ReadingError> {
        match self.head()? {
            (Major::Unsigned, v, _) => {
                i64::try_from(v).map_err(|_| ReadingError::WrongType(what, "a small integer"))
            }
            (Major::Negative, v, _) => i64::try_from(v)
                .map(|v| -1 - v)
                .map_err(|_| ReadingError::WrongType(what, "a small integer")),
            _ => Err(ReadingError::WrongType(what, "an integer")),
        }
    }

    /// Reads an array head, returning the count.
    pub(crate) fn array(&mut self, what: &'static str) -> Result<u64, ReadingError> {
        match self.head()? {
            (Major::Array, n, _) => Ok(n),
            _ => Err(ReadingError::WrongType(what, "an array")),
        }
    }

    /// Reads a map head, returning the number of pairs.
    pub(crate) fn map(&mut self, what: &'static str) -> Result<u64, ReadingError> {
        match self.head()? {
            (Major::Map, n, _) => Ok(n),
            _ => Err(ReadingError::WrongType(what, "a map")),
        }
    }

    /// Peeks the next major type without consuming.
    pub(crate) fn peek(&self) -> Option<(Major, u8)> {
        let b = *self.input.get(self.pos)?;
        let major = match b >> 5 {
            0 => Major::Unsigned,
            1 => Major::Negative,
            2 => Major::Bytes,
            3 => Major::Text,
            4 => Major::Array,
            5 => Major::Map,
            6 => Major::Tag,
            _ => Major::Simple,
        };
        Some((major, b & 0x1f))
    }

    /// Skips one well-formed item of any type, nested at most `depth` levels.
    pub(crate) fn skip(&mut self, depth: usize) -> Result<(), ReadingError> {
        // An explicit count of pending items instead of recursion: no stack growth on hostile input.
        let mut pending: u64 = 1;
        let mut stack = [0u64; MAX_DEPTH + 1];
        let mut level = 0usize;
        let limit = depth.min(MAX_DEPTH);
        loop {
            while pending == 0 {
                if level == 0 {
                    return Ok(());
                }
                level -= 1;
                pending = stack[level];
            }
            pending -= 1;
            let (major, arg, _) = self.head()?;
            let children = match major {
                Major::Unsigned | Major::Negative | Major::Simple => 0,
                Major::Bytes => {
                    let n = self.len(arg)?;
                    self.take(n)?;
                    0
                }
                Major::Text => {
                    let n = self.len(arg)?;
                    core::str::from_utf8(self.take(n)?)
                        .map_err(|_| ReadingError::MalformedCbor("text string is not UTF-8"))?;
                    0
                }
                Major::Array => arg,
                Major::Map => arg
                    .checked_mul(2)
                    .ok_or(ReadingError::MalformedCbor("map too large"))?,
                Major::Tag => 1,
            };
            if children > 0 {
                // Each child needs at least one byte: reject counts the input cannot hold.
                if children > (self.input.len() - self.pos) as u64 {
                    return Err(ReadingError::MalformedCbor("item count exceeds the input"));
                }
                if level >= limit {
                    return Err(ReadingError::TooDeep);
                }
                stack[level] = pending;
                level += 1;
                pending = children;
            }
        }
    }
}

/// Writes CBOR into a caller's buffer.
pub(crate) struct Writer<'b> {
    out: &'b mut [u8],
    pos: usize,
}

impl<'b> Writer<'b> {
    pub(crate) fn new(out: &'b mut [u8]) -> Self {
        Self { out, pos: 0 }
    }

    pub(crate) fn len(&self) -> usize {
        self.pos
    }

    pub(crate) fn raw(&mut self, bytes: &[u8]) -> Result<(), ReadingError> {
        let end = self.pos + bytes.len();
        self.out
            .get_mut(self.pos..end)
            .ok_or(ReadingError::BufferTooSmall)?
            .copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }

    /// Writes a head in its shortest form (deterministic encoding, RFC 8949 §4.2.1).
    pub(crate) fn head(&mut self, major: u8, arg: u64) -> Result<(), ReadingError> {
        let m = major << 5;
        if arg < 24 {
            self.raw(&[m | arg as u8])
        } else if arg <= 0xff {
            self.raw(&[m | 24, arg as u8])
        } else if arg <= 0xffff {
            self.raw(&[m | 25])?;
            self.raw(&(arg as u16).to_be_bytes())
        } else if arg <= 0xffff_ffff {
            self.raw(&[m | 26])?;
            self.raw(&(arg as u32).to_be_bytes())
        } else {
            self.raw(&[m | 27])?;
            self.raw(&arg.to_be_bytes())
        }
    }

    pub(crate) fn int(&mut self, v: i64) -> Result<(), ReadingError> {
        if v >= 0 {
            self.head(0, v as u64)
        } else {
            self.head(1, (-1 - v) as u64)
        }
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) -> Result<(), ReadingError> {
        self.head(2, b.len() as u64)?;
        self.raw(b)
    }

    pub(crate) fn text(&mut self, s: &str) -> Result<(), ReadingError> {
        self.head(3, s.len() as u64)?;
        self.raw(s.as_bytes())
    }
}

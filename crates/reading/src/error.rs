//! Why a reading does not decode.

/// A reading decoding or encoding error. [`ReadingError::code`] is the stable
/// machine-readable code the node reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReadingError {
    /// The bytes are not well-formed CBOR.
    #[error("malformed cbor: {0}")]
    MalformedCbor(&'static str),
    /// Indefinite-length items are not accepted.
    #[error("malformed cbor: indefinite-length items are not accepted")]
    Indefinite,
    /// Well-formed CBOR, but not a COSE_Sign1 message as readings use it.
    #[error("malformed cose: {0}")]
    MalformedCose(&'static str),
    /// A field has the wrong CBOR type.
    #[error("{0} must be {1}")]
    WrongType(&'static str, &'static str),
    /// The algorithm is not EdDSA (-8) or ES256 (-7).
    #[error("unsupported alg {0}: use EdDSA (-8) or ES256 (-7)")]
    UnsupportedAlg(i64),
    /// No `kid` in the protected header.
    #[error("the protected header has no kid (label 4): it must carry the 20-byte device address")]
    MissingKid,
    /// The `kid` is not 20 bytes.
    #[error("kid is {0} bytes: it must be the 20-byte device address")]
    BadKid(usize),
    /// The payload is not a map of the expected shape.
    #[error("malformed payload: {0}")]
    MalformedPayload(&'static str),
    /// A required field is missing.
    #[error("missing {0}")]
    MissingField(&'static str),
    /// The payload has a key other than seq, ts, stream, data.
    #[error("unknown payload key: only \"seq\", \"ts\", \"stream\" and \"data\" are allowed")]
    UnknownField,
    /// A key appears twice.
    #[error("duplicate {0}")]
    DuplicateField(&'static str),
    /// The signature is not 64 bytes.
    #[error("signature is {0} bytes, expected 64")]
    BadSignatureLength(usize),
    /// Bytes follow the item.
    #[error("trailing bytes after the item")]
    TrailingBytes,
    /// Nesting deeper than the limit.
    #[error("data nests deeper than {} levels", crate::MAX_DEPTH)]
    TooDeep,
    /// The output buffer is too small.
    #[error("output buffer too small")]
    BufferTooSmall,
    /// A batch is not a CBOR array.
    #[error("a batch is a CBOR array of COSE_Sign1 messages")]
    MalformedBatch,
    /// A batch holds more messages than allowed.
    #[error("batch holds {count} readings, the limit is {max}")]
    BatchTooLarge {
        /// Messages in the batch.
        count: u64,
        /// The limit.
        max: usize,
    },
    /// A batch holds no message.
    #[error("empty batch")]
    EmptyBatch,
}

impl ReadingError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedCbor(_) | Self::Indefinite => "malformed_cbor",
            Self::MalformedCose(_) => "malformed_cose",
            Self::WrongType(..) => "wrong_type",
            Self::UnsupportedAlg(_) => "unsupported_alg",
            Self::MissingKid => "missing_kid",
            Self::BadKid(_) => "bad_kid",
            Self::MalformedPayload(_) => "malformed_payload",
            Self::MissingField(_) => "missing_field",
            Self::UnknownField => "unknown_field",
            Self::DuplicateField(_) => "duplicate_field",
            Self::BadSignatureLength(_) => "bad_signature_length",
            Self::TrailingBytes => "trailing_bytes",
            Self::TooDeep => "too_deep",
            Self::BufferTooSmall => "buffer_too_small",
            Self::MalformedBatch => "malformed_batch",
            Self::BatchTooLarge { .. } => "batch_too_large",
            Self::EmptyBatch => "empty_batch",
        }
    }
}

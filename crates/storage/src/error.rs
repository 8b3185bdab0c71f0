//! The crate's error type.

/// Result alias for this crate.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Storage failures. Any of these is fatal for the node: it stops rather than diverge.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// File system error.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Database error.
    #[error("database: {0}")]
    Db(String),
    /// Stored bytes do not decode: the data directory is damaged.
    #[error("corrupt store: {0}")]
    Corrupt(String),
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StorageError {
            fn from(e: $t) -> Self { Self::Db(e.to_string()) }
        }
    )*};
}
db_err!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

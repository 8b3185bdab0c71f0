//! Errors of the exporter, split into those worth retrying (a node or database that is
//! away) and those that are not (a wrong URL, another chain's database, a broken block).

use alloy_primitives::B256;

/// Result with the exporter's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What stopped an export.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `--db` value is not a PostgreSQL connection string.
    #[error(
        "bad --db {url:?}: {reason} (expected postgres://user[:password]@host[:port]/database)"
    )]
    BadDbUrl {
        /// The value given, password removed.
        url: String,
        /// Why it does not parse.
        reason: String,
    },
    /// The node could not be reached or did not answer in time.
    #[error("node {url} unreachable: {reason}")]
    NodeUnreachable {
        /// The node URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The node answered with an HTTP error status.
    #[error("node answered {status} to {what}: {body}")]
    NodeStatus {
        /// What was asked.
        what: String,
        /// The status code.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
    /// The node's answer is not what its API documents.
    #[error("unexpected answer from the node to {what}: {reason}")]
    NodeAnswer {
        /// What was asked.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// PostgreSQL could not be reached, or the connection broke.
    #[error("database unreachable: {0}")]
    DbUnreachable(String),
    /// PostgreSQL refused a statement (or the login).
    #[error("database error: {0}")]
    Db(String),
    /// The database holds another chain's export.
    #[error(
        "the database holds an export of another chain (genesis {db}), not of this node's \
         (genesis {node}): use a new database"
    )]
    OtherChain {
        /// Genesis hash recorded in the database.
        db: B256,
        /// The node's genesis hash.
        node: B256,
    },
    /// The database's tables were written by another version of the exporter.
    #[error(
        "the database has export schema version {found}; this exporter writes version \
         {supported} (migrate it or use a new database)"
    )]
    SchemaVersion {
        /// The version recorded in the database.
        found: i32,
        /// The version this exporter writes.
        supported: i32,
    },
    /// `--from-height` names another point than where the database's export stands.
    #[error(
        "--from-height {asked}, but the database already holds blocks up to height {cursor} \
         (it resumes at {next}); leave --from-height out or use a new database",
        next = cursor + 1
    )]
    FromHeight {
        /// The height asked for.
        asked: u64,
        /// The cursor in the database.
        cursor: u64,
    },
    /// The cursor moved under this exporter: another one writes the same database.
    #[error(
        "the export cursor is at {found}, expected {expected}: another exporter is writing \
         this database (run one per database)"
    )]
    CursorMoved {
        /// The height this exporter wrote last.
        expected: u64,
        /// The height found.
        found: u64,
    },
    /// A block from the node does not follow the exported chain or does not check out.
    #[error("block {height}: {reason}")]
    BadBlock {
        /// Its height.
        height: u64,
        /// What is wrong.
        reason: String,
    },
}

impl Error {
    /// Whether waiting and trying again may help: the node or the database is away, busy
    /// or restarting. Everything else needs an operator.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::NodeUnreachable { .. } | Self::DbUnreachable(_) => true,
            Self::NodeStatus { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        // An error with a SQLSTATE is the server's answer; one without is the connection.
        match e.code() {
            // Serialization failures, deadlocks, a server shutting down or out of resources:
            // the statement may pass when retried.
            Some(code)
                if code.code().starts_with("40")
                    || code.code().starts_with("53")
                    || code.code().starts_with("57P")
                    || code.code().starts_with("08") =>
            {
                Self::DbUnreachable(db_message(&e))
            }
            Some(_) => Self::Db(db_message(&e)),
            None => Self::DbUnreachable(db_message(&e)),
        }
    }
}

/// The server's message when there is one (tokio-postgres' Display says only "db error").
fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => match d.detail() {
            Some(detail) => format!("{}: {} ({detail})", d.severity(), d.message()),
            None => format!("{}: {}", d.severity(), d.message()),
        },
        None => {
            let mut s = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(c) = source {
                s.push_str(": ");
                s.push_str(&c.to_string());
                source = c.source();
            }
            s
        }
    }
}

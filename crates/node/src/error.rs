//! Why a node does not start.

/// Errors starting the node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The engine (the data directory, the store, the item log) does not open.
    #[error(transparent)]
    Engine(#[from] iotchain_api::EngineError),
    /// Opening the data directory panicked inside the store: its files are damaged.
    #[error(
        "{0} is damaged ({1}): restore it from a backup, or resync the node from its peers into an empty data directory"
    )]
    Damaged(String, String),
    /// The HTTP port could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(String, std::io::Error),
}

//! Why a node does not start.

/// Errors starting the node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The engine (the data directory, the store, the item log) does not open.
    #[error(transparent)]
    Engine(#[from] iotchain_api::EngineError),
    /// The HTTP port could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(String, std::io::Error),
}

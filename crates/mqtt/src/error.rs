//! Errors of the MQTT bridge.

/// Errors configuring or running the MQTT bridge.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// The broker URL cannot be used.
    #[error("broker url {url:?}: {reason}")]
    BadUrl {
        /// The URL as given, its password redacted.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The reading topic filter or the ack topic template is not usable.
    #[error("topic {topic:?}: {reason}")]
    BadTopic {
        /// The topic as given.
        topic: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The protocol version is neither `v4` (3.1.1) nor `v5`.
    #[error("mqtt protocol {0:?}: use \"v4\" (MQTT 3.1.1) or \"v5\"")]
    BadProtocol(String),
    /// TLS was asked for but cannot be set up.
    #[error("tls: {0}")]
    Tls(String),
    /// The MQTT client's request queue is closed (the event loop stopped).
    #[error("mqtt client: {0}")]
    Client(String),
}

/// Result alias of the bridge.
pub type Result<T, E = MqttError> = std::result::Result<T, E>;

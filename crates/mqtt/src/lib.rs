//! The iotchain MQTT bridge: readings from a broker into the node, acknowledgements back.
//!
//! The node connects to a broker (Mosquitto, EMQX, …) as a client, subscribes with QoS 1 and a
//! persistent session to a reading topic (default `iotchain/+/readings`, the `+` level being
//! the device's address), submits each message's readings to the node's pool and answers on the
//! ack topic (default `iotchain/{device}/acks`): once per message with every reading's outcome
//! (accepted with its id, or rejected with the same `code` as the HTTP API), and once more per
//! block when accepted readings become final.
//!
//! A message is acknowledged to the broker (PUBACK) only after the node has durably accepted or
//! definitively rejected all of its readings, so a broker or node going away loses nothing:
//! the broker redelivers what was not acknowledged, and a redelivered reading the node already
//! holds is recognised by its id and acknowledged as accepted again (`"duplicate": true`), not
//! stored twice. See `docs/mqtt.md` for topics, payloads and the ack format.

mod ack;
mod bridge;
mod config;
mod error;
mod link;
mod metrics;
mod payload;
mod topic;

pub use ack::{AckError, AckResult, FinalAck, MessageAck};
pub use bridge::Bridge;
pub use config::{MqttConfig, Protocol, redact_url};
pub use error::{MqttError, Result};
pub use metrics::BridgeMetrics;
pub use payload::{Payload, split_payload};
pub use topic::TopicFilter;

//! One interface over rumqttc's MQTT 3.1.1 and MQTT 5 clients: connect options, the event
//! loop's events the bridge cares about, publishing and acknowledging.

use std::borrow::Cow;

use alloy_primitives::Bytes;
use rumqttc::{
    QoS,
    v5::{self, mqttbytes::v5 as p5},
};

use crate::{MqttConfig, MqttError, Protocol, Result, config::Endpoint};

/// Largest packet MQTT can carry. rumqttc drops the connection on a packet over its limit, and
/// the broker would redeliver the same message forever, so the limit is the protocol's and
/// [`MqttConfig::max_message_bytes`] is enforced by rejecting the message instead.
const MQTT_MAX_PACKET: usize = 268_435_455;

/// Capacity of the client's request queue (publishes, PUBACKs, subscriptions).
const REQUEST_QUEUE: usize = 4096;

/// A message received from the broker, kept whole so that it can be acknowledged.
#[derive(Debug, Clone)]
pub(crate) enum Received {
    V4(rumqttc::Publish),
    V5(p5::Publish),
}

impl Received {
    pub(crate) fn topic(&self) -> Cow<'_, str> {
        match self {
            Self::V4(p) => Cow::Borrowed(&p.topic),
            Self::V5(p) => String::from_utf8_lossy(&p.topic),
        }
    }

    pub(crate) fn payload(&self) -> Bytes {
        match self {
            Self::V4(p) => Bytes::from(p.payload.clone()),
            Self::V5(p) => Bytes::from(p.payload.clone()),
        }
    }

    pub(crate) fn payload_len(&self) -> usize {
        match self {
            Self::V4(p) => p.payload.len(),
            Self::V5(p) => p.payload.len(),
        }
    }

    /// MQTT 5 content type, if any.
    pub(crate) fn content_type(&self) -> Option<&str> {
        match self {
            Self::V4(_) => None,
            Self::V5(p) => p.properties.as_ref()?.content_type.as_deref(),
        }
    }
}

/// What the event loop reports.
pub(crate) enum LinkEvent {
    Connected { session_present: bool },
    Message(Box<Received>),
    Other,
}

/// The event loop of either protocol version.
pub(crate) enum Link {
    V4(Box<rumqttc::EventLoop>),
    V5(Box<v5::EventLoop>),
}

impl Link {
    /// Polls the connection (reconnecting after an error on the next call).
    pub(crate) async fn poll(&mut self) -> std::result::Result<LinkEvent, String> {
        use rumqttc::{Event, Packet};
        match self {
            Self::V4(l) => match l.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(c))) => Ok(LinkEvent::Connected {
                    session_present: c.session_present,
                }),
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    Ok(LinkEvent::Message(Box::new(Received::V4(p))))
                }
                Ok(_) => Ok(LinkEvent::Other),
                Err(e) => Err(e.to_string()),
            },
            Self::V5(l) => match l.poll().await {
                Ok(v5::Event::Incoming(p5::Packet::ConnAck(c))) => Ok(LinkEvent::Connected {
                    session_present: c.session_present,
                }),
                Ok(v5::Event::Incoming(p5::Packet::Publish(p))) => {
                    Ok(LinkEvent::Message(Box::new(Received::V5(p))))
                }
                Ok(_) => Ok(LinkEvent::Other),
                Err(e) => Err(e.to_string()),
            },
        }
    }
}

/// The client handle of either protocol version.
#[derive(Clone)]
pub(crate) enum Client {
    V4(rumqttc::AsyncClient),
    V5(v5::AsyncClient),
}

fn client_error(e: impl std::fmt::Display) -> MqttError {
    MqttError::Client(e.to_string())
}

impl Client {
    /// Subscribes with QoS 1 without waiting on the request queue (called from the loop that
    /// drains it).
    pub(crate) fn try_subscribe(&self, filter: &str) -> Result<()> {
        match self {
            Self::V4(c) => c
                .try_subscribe(filter, QoS::AtLeastOnce)
                .map_err(client_error),
            Self::V5(c) => c
                .try_subscribe(filter, v5::mqttbytes::QoS::AtLeastOnce)
                .map_err(client_error),
        }
    }

    /// Publishes with QoS 1.
    pub(crate) async fn publish(&self, topic: String, payload: Vec<u8>) -> Result<()> {
        match self {
            Self::V4(c) => c
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .map_err(client_error),
            Self::V5(c) => c
                .publish(topic, v5::mqttbytes::QoS::AtLeastOnce, false, payload)
                .await
                .map_err(client_error),
        }
    }

    /// Acknowledges a received message to the broker (PUBACK).
    pub(crate) async fn ack(&self, r: &Received) -> Result<()> {
        match (self, r) {
            (Self::V4(c), Received::V4(p)) => c.ack(p).await.map_err(client_error),
            (Self::V5(c), Received::V5(p)) => c.ack(p).await.map_err(client_error),
            _ => Err(MqttError::Client(
                "a message acknowledged on a client of another protocol version".into(),
            )),
        }
    }

    /// Queues a clean DISCONNECT (after everything already queued).
    pub(crate) fn try_disconnect(&self) {
        let _ = match self {
            Self::V4(c) => c.try_disconnect().map_err(client_error),
            Self::V5(c) => c.try_disconnect().map_err(client_error),
        };
    }
}

/// Builds the client and its event loop: persistent session, manual acknowledgements.
pub(crate) fn connect(config: &MqttConfig) -> Result<(Client, Link)> {
    let Endpoint {
        host,
        port,
        tls,
        credentials,
    } = config.endpoint()?;
    let transport = if tls {
        tls_transport(config)?
    } else {
        rumqttc::Transport::tcp()
    };
    match config.protocol {
        Protocol::V4 => {
            let mut o = rumqttc::MqttOptions::new(config.client_id(), host, port);
            o.set_clean_session(false)
                .set_manual_acks(true)
                .set_keep_alive(config.keep_alive())
                .set_max_packet_size(MQTT_MAX_PACKET, MQTT_MAX_PACKET)
                .set_inflight(config.max_inflight.max(1))
                .set_transport(transport);
            if let Some((u, p)) = credentials {
                o.set_credentials(u, p);
            }
            let (c, l) = rumqttc::AsyncClient::new(o, REQUEST_QUEUE);
            Ok((Client::V4(c), Link::V4(Box::new(l))))
        }
        Protocol::V5 => {
            let mut o = v5::MqttOptions::new(config.client_id(), host, port);
            o.set_clean_start(false)
                // "Never expires": the session outlives any outage, as with 3.1.1.
                .set_session_expiry_interval(Some(u32::MAX))
                .set_receive_maximum(Some(config.max_inflight.max(1)))
                .set_manual_acks(true)
                .set_keep_alive(config.keep_alive())
                .set_max_packet_size(Some(MQTT_MAX_PACKET as u32))
                .set_transport(transport);
            if let Some((u, p)) = credentials {
                o.set_credentials(u, p);
            }
            let (c, l) = v5::AsyncClient::new(o, REQUEST_QUEUE);
            Ok((Client::V5(c), Link::V5(Box::new(l))))
        }
    }
}

#[cfg(feature = "tls")]
fn tls_transport(config: &MqttConfig) -> Result<rumqttc::Transport> {
    let tls = |e: &dyn std::fmt::Display| MqttError::Tls(e.to_string());
    let ca = config
        .ca_file
        .clone()
        .unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into());
    let pem = std::fs::read(&ca).map_err(|e| tls(&format!("{}: {e}", ca.display())))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.map_err(|e| tls(&e))?).map_err(|e| tls(&e))?;
    }
    if roots.is_empty() {
        return Err(tls(&format!("{}: no certificates", ca.display())));
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_root_certificates(roots);
    let client = match (&config.client_cert_file, &config.client_key_file) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let pem = std::fs::read(cert).map_err(|e| tls(&format!("{}: {e}", cert.display())))?;
            let chain = rustls_pemfile::certs(&mut pem.as_slice())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| tls(&format!("{}: {e}", cert.display())))?;
            if chain.is_empty() {
                return Err(tls(&format!("{}: no certificates", cert.display())));
            }
            let pem = std::fs::read(key).map_err(|e| tls(&format!("{}: {e}", key.display())))?;
            let key_der = rustls_pemfile::private_key(&mut pem.as_slice())
                .map_err(|e| tls(&format!("{}: {e}", key.display())))?
                .ok_or_else(|| tls(&format!("{}: no private key", key.display())))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| tls(&format!("client certificate {}: {e}", cert.display())))?
        }
        _ => {
            return Err(tls(
                &"a client certificate needs both client_cert_file and client_key_file",
            ));
        }
    };
    Ok(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(std::sync::Arc::new(client)),
    ))
}

#[cfg(not(feature = "tls"))]
fn tls_transport(_: &MqttConfig) -> Result<rumqttc::Transport> {
    Err(MqttError::Tls(
        "this build has no TLS support (build iotchain-mqtt with the `tls` feature)".into(),
    ))
}

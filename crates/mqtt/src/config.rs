//! The bridge's configuration: the `[mqtt]` section of a node config file.

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

use crate::{MqttError, Result, TopicFilter};

/// MQTT protocol version spoken to the broker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// MQTT 3.1.1 (protocol level 4).
    #[default]
    V4,
    /// MQTT 5.
    V5,
}

impl std::str::FromStr for Protocol {
    type Err = MqttError;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "v4" | "4" | "3.1.1" => Ok(Self::V4),
            "v5" | "5" => Ok(Self::V5),
            _ => Err(MqttError::BadProtocol(s.to_string())),
        }
    }
}

/// How the node reaches its broker and which topics it uses.
///
/// In a node config file:
///
/// ```toml
/// [mqtt]
/// url = "mqtt://127.0.0.1:1883"   # mqtts://host:8883 for TLS
/// client_id = "iotchain-validator-0"
/// protocol = "v4"                 # or "v5"
/// ```
///
/// Its `Debug` form, like every log line and banner that names the broker, shows the URL
/// with the password replaced by `***` ([`redact_url`]) and no `password`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// Broker URL: `mqtt://[user[:password]@]host[:port]` (port 1883 by default) or
    /// `mqtts://…` (TLS, port 8883 by default).
    pub url: String,
    /// Protocol version.
    #[serde(default)]
    pub protocol: Protocol,
    /// Client id. It names the persistent session on the broker, so it must stay the same
    /// across restarts and differ between nodes on one broker (default `iotchain-node`; the
    /// `iotchain` command derives one from the validator key).
    #[serde(default)]
    pub client_id: Option<String>,
    /// User name (overrides one in the URL).
    #[serde(default)]
    pub username: Option<String>,
    /// Password (overrides one in the URL).
    #[serde(default)]
    pub password: Option<String>,
    /// PEM file of the CA certificates that sign the broker's certificate (TLS only; default:
    /// the system's roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM file of this node's client certificate (chain), for a broker that requires mutual
    /// TLS (AWS IoT Core, most production brokers); needs `client_key_file`.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key (PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// Topic filter subscribed to; exactly one `+` level, the device address.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Topic acknowledgements are published on; `{device}` is replaced by the `+` level of
    /// the reading's topic.
    #[serde(default = "default_ack_topic")]
    pub ack_topic: String,
    /// Keep-alive interval, seconds.
    #[serde(default = "default_keep_alive")]
    pub keep_alive_s: u64,
    /// Most unacknowledged messages the broker may send at once (MQTT 5 receive maximum; with
    /// 3.1.1 the broker's own setting, e.g. Mosquitto's `max_inflight_messages`, applies).
    #[serde(default = "default_inflight")]
    pub max_inflight: u16,
    /// Largest message accepted from the broker, bytes.
    #[serde(default = "default_max_message")]
    pub max_message_bytes: usize,
}

pub use iotchain_api::redact_url;

impl std::fmt::Debug for MqttConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttConfig")
            .field("url", &redact_url(&self.url))
            .field("protocol", &self.protocol)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("ca_file", &self.ca_file)
            .field("client_cert_file", &self.client_cert_file)
            .field("client_key_file", &self.client_key_file)
            .field("topic", &self.topic)
            .field("ack_topic", &self.ack_topic)
            .finish_non_exhaustive()
    }
}

fn default_topic() -> String {
    "iotchain/+/readings".into()
}
fn default_ack_topic() -> String {
    "iotchain/{device}/acks".into()
}
fn default_keep_alive() -> u64 {
    30
}
fn default_inflight() -> u16 {
    100
}
fn default_max_message() -> usize {
    8 * 1024 * 1024
}

/// Where to connect, from the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) tls: bool,
    pub(crate) credentials: Option<(String, String)>,
}

impl MqttConfig {
    /// Defaults for a broker URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            protocol: Protocol::default(),
            client_id: None,
            username: None,
            password: None,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            topic: default_topic(),
            ack_topic: default_ack_topic(),
            keep_alive_s: default_keep_alive(),
            max_inflight: default_inflight(),
            max_message_bytes: default_max_message(),
        }
    }

    /// Checks the URL and topics without connecting.
    pub fn validate(&self) -> Result<()> {
        self.endpoint()?;
        TopicFilter::new(&self.topic, &self.ack_topic)?;
        if self.client_id().is_empty() {
            return Err(MqttError::BadUrl {
                url: self.redacted_url(),
                reason: "the client id must not be empty (it names the persistent session)".into(),
            });
        }
        Ok(())
    }

    /// The broker URL as it may be printed: its password replaced by `***`.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    /// Host and port of the broker, from the URL.
    pub fn broker_address(&self) -> Result<(String, u16)> {
        let e = self.endpoint()?;
        Ok((e.host, e.port))
    }

    /// The client id in use.
    pub fn client_id(&self) -> &str {
        self.client_id.as_deref().unwrap_or("iotchain-node")
    }

    pub(crate) fn keep_alive(&self) -> Duration {
        Duration::from_secs(self.keep_alive_s.max(5))
    }

    /// Host, port, TLS and credentials from the URL and the explicit fields.
    pub(crate) fn endpoint(&self) -> Result<Endpoint> {
        let bad = |reason: &str| MqttError::BadUrl {
            url: self.redacted_url(),
            reason: reason.to_string(),
        };
        let (scheme, rest) = self
            .url
            .split_once("://")
            .ok_or_else(|| bad("expected mqtt://host:port or mqtts://host:port"))?;
        let (tls, default_port) = match scheme.to_ascii_lowercase().as_str() {
            "mqtt" | "tcp" => (false, 1883),
            "mqtts" | "ssl" | "tls" => (true, 8883),
            _ => return Err(bad("the scheme must be mqtt:// or mqtts://")),
        };
        let authority = rest.split(['/', '?']).next().unwrap_or("");
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed [ in an IPv6 host"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad("the port must be a number"))?,
                None if after.is_empty() => default_port,
                None => return Err(bad("unexpected text after the IPv6 host")),
            };
            (h.to_string(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_string(),
                    p.parse().map_err(|_| bad("the port must be a number"))?,
                ),
                None => (hostport.to_string(), default_port),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let from_url = userinfo.map(|u| match u.split_once(':') {
            Some((user, pass)) => (user.to_string(), pass.to_string()),
            None => (u.to_string(), String::new()),
        });
        let credentials = match (&self.username, from_url) {
            (Some(user), url) => Some((
                user.clone(),
                self.password
                    .clone()
                    .or(url.map(|(_, p)| p))
                    .unwrap_or_default(),
            )),
            (None, Some((user, pass))) => Some((user, self.password.clone().unwrap_or(pass))),
            (None, None) => None,
        };
        if tls && !cfg!(feature = "tls") {
            return Err(MqttError::Tls(
                "this build has no TLS support (build iotchain-mqtt with the `tls` feature)".into(),
            ));
        }
        Ok(Endpoint {
            host,
            port,
            tls,
            credentials,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_forms() {
        let e = MqttConfig::new("mqtt://127.0.0.1:1884").endpoint().unwrap();
        assert_eq!((e.host.as_str(), e.port, e.tls), ("127.0.0.1", 1884, false));
        assert_eq!(e.credentials, None);
        let e = MqttConfig::new("mqtt://broker.local").endpoint().unwrap();
        assert_eq!(e.port, 1883);
        let e = MqttConfig::new("mqtt://alice:s3cret@[::1]:2000/")
            .endpoint()
            .unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 2000));
        assert_eq!(e.credentials, Some(("alice".into(), "s3cret".into())));
        let mut c = MqttConfig::new("mqtt://alice:s3cret@host");
        c.password = Some("other".into());
        assert_eq!(
            c.endpoint().unwrap().credentials,
            Some(("alice".into(), "other".into()))
        );
    }

    #[test]
    fn credentials_are_never_printed() {
        for (url, shown) in [
            (
                "mqtts://node:secret@host:8883",
                "mqtts://node:***@host:8883",
            ),
            (
                "mqtt://node:secret@[::1]:1/a?b",
                "mqtt://node:***@[::1]:1/a?b",
            ),
            ("mqtt://node:p@ss:w@rd@host", "mqtt://node:***@host"),
            ("node:secret@host:1883", "node:***@host:1883"),
            ("mqtt://node:@host", "mqtt://node:***@host"),
            ("mqtt://node@host", "mqtt://node@host"),
            ("mqtt://host:1883/a@b:c", "mqtt://host:1883/a@b:c"),
            ("mqtt://host:1883", "mqtt://host:1883"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
        let mut c = MqttConfig::new("mqtts://node:hunter2@host:8883");
        c.password = Some("swordfish".into());
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("swordfish"),
            "{debug}"
        );
        assert!(debug.contains("node:***@host"), "{debug}");
        // An unusable URL names itself in errors without its password.
        for url in ["mqtt://node:hunter2@host:port", "http://node:hunter2@host"] {
            let e = MqttConfig::new(url).endpoint().unwrap_err().to_string();
            assert!(!e.contains("hunter2") && e.contains("node:***@"), "{e}");
        }
    }

    #[test]
    fn bad_urls() {
        for url in [
            "127.0.0.1:1883",
            "http://host:1883",
            "mqtt://:1883",
            "mqtt://host:port",
            "mqtt://host:70000",
            "mqtt://[::1",
        ] {
            assert!(MqttConfig::new(url).endpoint().is_err(), "{url}");
        }
    }

    #[test]
    fn toml_section() {
        let c: MqttConfig = toml_like(
            r#"{"url": "mqtt://h:1", "protocol": "v5", "client_id": "n1", "topic": "site/+/r"}"#,
        );
        assert_eq!(c.protocol, Protocol::V5);
        assert_eq!(c.ack_topic, "iotchain/{device}/acks");
        assert!(c.validate().is_ok());
    }

    fn toml_like(json: &str) -> MqttConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn protocol_names() {
        assert_eq!("v5".parse::<Protocol>().unwrap(), Protocol::V5);
        assert_eq!("3.1.1".parse::<Protocol>().unwrap(), Protocol::V4);
        assert!("v6".parse::<Protocol>().is_err());
    }
}

//! The reading topic filter and the ack topic derived from a reading's topic.

use crate::{MqttError, Result};

/// The subscribed filter (one `+` level: the device) and the ack topic template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicFilter {
    filter: String,
    /// Levels of the filter; `None` is the `+` level.
    levels: Vec<Option<String>>,
    ack_template: String,
}

impl TopicFilter {
    /// Checks a filter such as `iotchain/+/readings` (exactly one `+` level, no `#`) and an
    /// ack template such as `iotchain/{device}/acks`.
    pub fn new(filter: &str, ack_template: &str) -> Result<Self> {
        let bad = |reason| MqttError::BadTopic {
            topic: filter.to_string(),
            reason,
        };
        if filter.is_empty() || filter.contains('\0') {
            return Err(bad("a topic filter must be non-empty text without NUL"));
        }
        let mut levels = Vec::new();
        for level in filter.split('/') {
            match level {
                "+" => levels.push(None),
                l if l.contains(['+', '#']) => {
                    return Err(bad(
                        "only one whole `+` level (the device) is allowed; no `#`",
                    ));
                }
                l => levels.push(Some(l.to_string())),
            }
        }
        if levels.iter().filter(|l| l.is_none()).count() != 1 {
            return Err(bad(
                "the filter needs exactly one `+` level, where the device address goes",
            ));
        }
        if !ack_template.contains("{device}") || ack_template.contains(['+', '#', '\0']) {
            return Err(MqttError::BadTopic {
                topic: ack_template.to_string(),
                reason: "the ack topic must contain {device} and no wildcard",
            });
        }
        Ok(Self {
            filter: filter.to_string(),
            levels,
            ack_template: ack_template.to_string(),
        })
    }

    /// The filter to subscribe to.
    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// The `+` level of a topic that matches the filter, or `None` if it does not match.
    pub fn device<'t>(&self, topic: &'t str) -> Option<&'t str> {
        let mut device = None;
        let mut parts = topic.split('/');
        for level in &self.levels {
            let part = parts.next()?;
            match level {
                None if part.is_empty() => return None,
                None => device = Some(part),
                Some(l) if l != part => return None,
                Some(_) => {}
            }
        }
        if parts.next().is_some() {
            return None;
        }
        device
    }

    /// The ack topic for a device level.
    pub fn ack_topic(&self, device: &str) -> String {
        self.ack_template.replace("{device}", device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default() -> TopicFilter {
        TopicFilter::new("iotchain/+/readings", "iotchain/{device}/acks").unwrap()
    }

    #[test]
    fn matches_the_device_level() {
        let f = default();
        let dev = "0x00112233445566778899aabbccddeeff00112233";
        assert_eq!(f.device(&format!("iotchain/{dev}/readings")), Some(dev));
        assert_eq!(
            f.ack_topic(dev),
            format!("iotchain/{dev}/acks"),
            "acks go next to the readings"
        );
    }

    #[test]
    fn refuses_other_topics() {
        let f = default();
        for t in [
            "iotchain/readings",
            "iotchain//readings",
            "iotchain/a/readings/extra",
            "other/a/readings",
            "iotchain/a/acks",
            "",
        ] {
            assert_eq!(f.device(t), None, "{t:?}");
        }
    }

    #[test]
    fn refuses_bad_filters() {
        for (f, a) in [
            ("iotchain/#", "x/{device}"),
            ("iotchain/+/+/r", "x/{device}"),
            ("iotchain/readings", "x/{device}"),
            ("iotchain/a+/readings", "x/{device}"),
            ("iotchain/+/readings", "x/acks"),
            ("iotchain/+/readings", "x/+/{device}"),
            ("", "x/{device}"),
        ] {
            assert!(TopicFilter::new(f, a).is_err(), "{f} {a}");
        }
        assert!(TopicFilter::new("+", "{device}/acks").is_ok());
    }
}

//! Counters of the bridge, rendered into the node's `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// What the bridge counts; shown at `/metrics` as `iotchain_mqtt_*`.
#[derive(Debug, Default)]
pub struct BridgeMetrics {
    /// 1 while connected to the broker.
    pub connected: AtomicU64,
    /// Successful connections (the first one and every reconnection).
    pub connections: AtomicU64,
    /// Connection failures and losses.
    pub connection_errors: AtomicU64,
    /// Reading messages received.
    pub messages_received: AtomicU64,
    /// Messages acknowledged to the broker.
    pub messages_acked: AtomicU64,
    /// Readings accepted (duplicates included).
    pub readings_accepted: AtomicU64,
    /// Readings the node already held (redeliveries).
    pub readings_duplicate: AtomicU64,
    /// Readings rejected.
    pub readings_rejected: AtomicU64,
    /// Final acknowledgements published (one per reading).
    pub readings_final_acked: AtomicU64,
}

impl prometheus_client::collector::Collector for BridgeMetrics {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::{
            encoding::EncodeMetric,
            metrics::{counter::ConstCounter, gauge::ConstGauge},
        };
        let connected = ConstGauge::new(self.connected.load(Relaxed) as i64);
        connected.encode(encoder.encode_descriptor(
            "iotchain_mqtt_connected",
            "1 while the MQTT bridge is connected to its broker.",
            None,
            connected.metric_type(),
        )?)?;
        let counters: [(&str, &str, &AtomicU64); 8] = [
            (
                "iotchain_mqtt_connections",
                "Successful connections to the broker.",
                &self.connections,
            ),
            (
                "iotchain_mqtt_connection_errors",
                "Failed or lost broker connections.",
                &self.connection_errors,
            ),
            (
                "iotchain_mqtt_messages_received",
                "Reading messages received from the broker.",
                &self.messages_received,
            ),
            (
                "iotchain_mqtt_messages_acked",
                "Reading messages acknowledged to the broker (PUBACK).",
                &self.messages_acked,
            ),
            (
                "iotchain_mqtt_readings_accepted",
                "Readings from MQTT accepted (duplicates included).",
                &self.readings_accepted,
            ),
            (
                "iotchain_mqtt_readings_duplicate",
                "Readings from MQTT the node already held (redeliveries).",
                &self.readings_duplicate,
            ),
            (
                "iotchain_mqtt_readings_rejected",
                "Readings from MQTT rejected.",
                &self.readings_rejected,
            ),
            (
                "iotchain_mqtt_readings_final_acked",
                "Final acknowledgements published (one per reading).",
                &self.readings_final_acked,
            ),
        ];
        for (name, help, value) in counters {
            let c = ConstCounter::new(value.load(Relaxed));
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = std::sync::Arc::new(BridgeMetrics::default());
        m.messages_received.store(3, Relaxed);
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(m));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        assert!(
            out.contains("\niotchain_mqtt_messages_received_total 3\n"),
            "{out}"
        );
        assert!(
            out.contains("# TYPE iotchain_mqtt_connected gauge"),
            "{out}"
        );
    }
}

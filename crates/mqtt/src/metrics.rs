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

impl iotchain_node::MetricsSource for BridgeMetrics {
    fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let series: [(&str, &str, &str, &AtomicU64); 9] = [
            (
                "iotchain_mqtt_connected",
                "1 while the MQTT bridge is connected to its broker.",
                "gauge",
                &self.connected,
            ),
            (
                "iotchain_mqtt_connections_total",
                "Successful connections to the broker.",
                "counter",
                &self.connections,
            ),
            (
                "iotchain_mqtt_connection_errors_total",
                "Failed or lost broker connections.",
                "counter",
                &self.connection_errors,
            ),
            (
                "iotchain_mqtt_messages_received_total",
                "Reading messages received from the broker.",
                "counter",
                &self.messages_received,
            ),
            (
                "iotchain_mqtt_messages_acked_total",
                "Reading messages acknowledged to the broker (PUBACK).",
                "counter",
                &self.messages_acked,
            ),
            (
                "iotchain_mqtt_readings_accepted_total",
                "Readings from MQTT accepted (duplicates included).",
                "counter",
                &self.readings_accepted,
            ),
            (
                "iotchain_mqtt_readings_duplicate_total",
                "Readings from MQTT the node already held (redeliveries).",
                "counter",
                &self.readings_duplicate,
            ),
            (
                "iotchain_mqtt_readings_rejected_total",
                "Readings from MQTT rejected.",
                "counter",
                &self.readings_rejected,
            ),
            (
                "iotchain_mqtt_readings_final_acked_total",
                "Readings from MQTT whose finality was acknowledged.",
                "counter",
                &self.readings_final_acked,
            ),
        ];
        for (name, help, kind, value) in series {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                value.load(Relaxed)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iotchain_node::MetricsSource;

    #[test]
    fn renders_prometheus_text() {
        let m = BridgeMetrics::default();
        m.messages_received.store(3, Relaxed);
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("\niotchain_mqtt_messages_received_total 3\n"));
        assert!(out.contains("# TYPE iotchain_mqtt_connected gauge"));
    }
}

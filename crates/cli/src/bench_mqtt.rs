//! `iotchain bench --mqtt`: the same pre-signed readings, published through an MQTT broker
//! to a node that bridges it, timed until each batch's final ack arrives on the ack topic.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use alloy_primitives::B256;
use anyhow::{Context, bail};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;

/// Longest wait for the next ack before the bench gives up.
const STALL: Duration = Duration::from_secs(60);

/// Publishes every client's readings in batches (CBOR arrays, QoS 1) on
/// `iotchain/bench-<client>/readings`, round-robin over clients, and returns the sorted
/// publish→final latencies of the batches (ms) and the number of rejected readings.
pub(crate) async fn send(
    url: &str,
    signed: Vec<Vec<Vec<u8>>>,
    batch: usize,
    rate: Option<f64>,
) -> anyhow::Result<(Vec<f64>, usize)> {
    let (host, port) = iotchain_mqtt::MqttConfig::new(url).broker_address()?;
    let mut options = MqttOptions::new(
        format!("iotchain-bench-publisher-{}", std::process::id()),
        host,
        port,
    );
    options
        .set_clean_session(true)
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(256 << 20, 256 << 20)
        .set_inflight(1000);
    let (client, mut eventloop) = AsyncClient::new(options, 4096);
    let (acks_tx, mut acks) = tokio::sync::mpsc::unbounded_channel::<alloy_primitives::Bytes>();
    let (ready_tx, ready) = tokio::sync::oneshot::channel::<()>();
    let driver = tokio::spawn(async move {
        let mut ready_tx = Some(ready_tx);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if acks_tx.send(p.payload.into()).is_err() {
                        return Ok(());
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(r) = ready_tx.take() {
                        let _ = r.send(());
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(anyhow::anyhow!("bench mqtt connection: {e}")),
            }
        }
    });
    client
        .subscribe("iotchain/+/acks", QoS::AtLeastOnce)
        .await
        .context("subscribing to acks")?;
    if tokio::time::timeout(Duration::from_secs(10), ready)
        .await
        .is_err()
    {
        driver.abort();
        bail!(
            "no subscription ack from the broker at {} within 10 s",
            iotchain_mqtt::redact_url(url)
        );
    }

    // Batches round-robin over clients; each client's topic keeps its devices' order.
    let mut batches: Vec<(String, Vec<u8>, B256)> = Vec::new();
    let chunked: Vec<Vec<&[Vec<u8>]>> = signed.iter().map(|m| m.chunks(batch).collect()).collect();
    let rounds = chunked.iter().map(Vec::len).max().unwrap_or(0);
    for i in 0..rounds {
        for (c, chunks) in chunked.iter().enumerate() {
            if let Some(chunk) = chunks.get(i)
                && let Some(last) = chunk.last()
            {
                batches.push((
                    format!("iotchain/bench-{c}/readings"),
                    iotchain_reading::encode_batch(chunk),
                    B256::from(iotchain_reading::reading_id(last)),
                ));
            }
        }
    }
    let total_batches = batches.len();
    let sent: Arc<std::sync::Mutex<HashMap<B256, Instant>>> = Arc::default();
    let publisher = {
        let client = client.clone();
        let sent = sent.clone();
        tokio::spawn(async move {
            let mut ticker = rate.filter(|r| *r > 0.0).map(|r| {
                let mut t = tokio::time::interval(Duration::from_secs_f64(batch as f64 / r));
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            for (topic, payload, last) in batches {
                if let Some(t) = ticker.as_mut() {
                    t.tick().await;
                }
                sent.lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .insert(last, crate::clock::stopwatch());
                client
                    .publish(topic, QoS::AtLeastOnce, false, payload)
                    .await
                    .context("publishing a batch")?;
            }
            Ok::<_, anyhow::Error>(())
        })
    };

    let (mut acked_messages, mut accepted, mut rejected, mut finals) =
        (0usize, 0usize, 0usize, 0usize);
    let mut latencies = Vec::new();
    while acked_messages < total_batches || finals < accepted {
        let payload = match tokio::time::timeout(STALL, acks.recv()).await {
            Ok(Some(p)) => p,
            Ok(None) => bail!("the bench's MQTT connection ended"),
            Err(_) => bail!(
                "no ack for {} s: {acked_messages}/{total_batches} batches acked, {finals}/{accepted} readings final (is the node bridged to {}?)",
                STALL.as_secs(),
                iotchain_mqtt::redact_url(url)
            ),
        };
        let v: Value = serde_json::from_slice(&payload).context("an ack that is not JSON")?;
        let results = v["results"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        if v["status"] == "final" {
            finals += results.len();
            let mut sent = sent.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            for r in results {
                if let Some(t) = r["id"]
                    .as_str()
                    .and_then(|id| id.parse::<B256>().ok())
                    .and_then(|id| sent.remove(&id))
                {
                    latencies.push(t.elapsed().as_secs_f64() * 1e3);
                }
            }
        } else {
            acked_messages += 1;
            accepted += v["accepted"].as_u64().unwrap_or(0) as usize;
            rejected += v["rejected"].as_u64().unwrap_or(0) as usize;
            if rejected > 0 && acked_messages == 1 {
                eprintln!("first batch had rejections: {v}");
            }
        }
    }
    publisher.await??;
    let _ = client.disconnect().await;
    driver.abort();
    latencies.sort_by(|x, y| x.total_cmp(y));
    Ok((latencies, rejected))
}

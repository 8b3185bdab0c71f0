//! The bridge's two tasks: the connection (event loop, reconnection with backoff) and the
//! processor (submit readings, publish acks, PUBACK, report finality).

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use alloy_primitives::{B256, Bytes};
use iotchain_block::BlockItem;
use iotchain_node::{ApiError, Chain, ItemResult, ReadingStatus};
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};

use crate::{
    AckError, AckResult, BridgeMetrics, FinalAck, MessageAck, MqttConfig, Result, TopicFilter,
    link::{self, Client, Link, LinkEvent, Received},
    split_payload,
};

/// First and longest wait before reconnecting.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// First and longest wait before resubmitting readings the node could not take yet.
const RETRY_MIN: Duration = Duration::from_millis(20);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// Most readings submitted to the chain in one call (several messages are grouped).
const MAX_READINGS_PER_SUBMIT: usize = 20_000;
/// Waiting messages are grouped into one submission up to about this many payload bytes
/// (some 8,000 readings: a few hundred ms of verification) or this many messages.
const GROUP_BYTES: usize = 1 << 20;
const GROUP_MESSAGES: usize = 1024;
/// How long [`Bridge::stop`] waits for in-flight work and the clean disconnect.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Error codes that say "not now", not "never": the message is kept (not acknowledged to
/// the broker) and its readings are submitted again.
fn is_transient(e: &ApiError) -> bool {
    matches!(e.code, "overloaded" | "storage_unavailable")
}

/// Final acks to publish: by block height and ack topic, the block time and the results.
type Finals = BTreeMap<(u64, Arc<str>), (u64, Vec<AckResult>)>;

/// Resolves once the flag is set (or its sender is gone).
async fn stopped(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|s| *s).await;
}

/// A running MQTT bridge.
#[derive(Debug)]
pub struct Bridge {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    metrics: Arc<BridgeMetrics>,
}

impl Bridge {
    /// Checks the configuration and starts connecting to the broker in the background
    /// (a broker that is down is retried with backoff, never an error here). Its counters
    /// are added to the node's `/metrics`.
    pub fn start(chain: Arc<Chain>, config: MqttConfig) -> Result<Self> {
        config.validate()?;
        let topics = TopicFilter::new(&config.topic, &config.ack_topic)?;
        let (client, link) = link::connect(&config)?;
        let metrics = Arc::new(BridgeMetrics::default());
        chain.add_metrics_source(metrics.clone());
        let (stop, stop_rx) = watch::channel(false);
        let (disconnect, disconnect_rx) = watch::channel(false);
        let (tx, rx) = mpsc::unbounded_channel();
        let epoch = Arc::new(AtomicU64::new(0));
        let connection = tokio::spawn(run_connection(
            link,
            client.clone(),
            topics.filter().to_string(),
            tx,
            metrics.clone(),
            epoch.clone(),
            disconnect_rx,
        ));
        let processor = Processor {
            head: chain.head().height,
            chain,
            client,
            topics,
            metrics: metrics.clone(),
            max_message: config.max_message_bytes,
            awaiting_final: HashMap::new(),
            stop: stop_rx,
            epoch,
        };
        let task = tokio::spawn(async move {
            processor.run(rx).await;
            // PUBACKs and acks already queued go out before the DISCONNECT.
            let _ = disconnect.send(true);
            let _ = connection.await;
        });
        tracing::info!(url = %config.url, topic = %config.topic, protocol = ?config.protocol, client_id = %config.client_id(), "mqtt bridge started");
        Ok(Self {
            stop,
            task,
            metrics,
        })
    }

    /// The bridge's counters.
    pub fn metrics(&self) -> &Arc<BridgeMetrics> {
        &self.metrics
    }

    /// Finishes the message in hand (acknowledging it), disconnects cleanly and returns.
    /// Messages not acknowledged stay with the broker for the next start.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let abort = self.task.abort_handle();
        if tokio::time::timeout(STOP_TIMEOUT, self.task).await.is_err() {
            tracing::warn!("mqtt bridge did not stop in time (broker unreachable?); aborted");
            abort.abort();
        }
    }
}

/// A message and the connection it arrived on.
struct Delivery {
    received: Received,
    /// [`run_connection`]'s epoch when it arrived.
    epoch: u64,
}

/// Drives the event loop: forwards messages to the processor, resubscribes on every
/// connection, reconnects with exponential backoff.
///
/// `epoch` changes whenever the connection comes up or goes down. A PUBACK is only sent for a
/// message of the current epoch: one received on an earlier connection is redelivered by the
/// broker on the new one (with a packet id the broker may since have given to another message,
/// which a late PUBACK would acknowledge unprocessed).
async fn run_connection(
    mut link: Link,
    client: Client,
    filter: String,
    messages: mpsc::UnboundedSender<Delivery>,
    metrics: Arc<BridgeMetrics>,
    epoch: Arc<AtomicU64>,
    mut disconnect: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let event = tokio::select! {
            _ = stopped(&mut disconnect) => break,
            e = link.poll() => e,
        };
        match event {
            Ok(LinkEvent::Connected { session_present }) => {
                epoch.fetch_add(1, Relaxed);
                backoff = BACKOFF_MIN;
                metrics.connected.store(1, Relaxed);
                metrics.connections.fetch_add(1, Relaxed);
                tracing::info!(session_present, "mqtt connected");
                // Subscribing again is harmless when the session kept the subscription.
                if let Err(e) = client.try_subscribe(&filter) {
                    tracing::error!(error = %e, "mqtt subscribe failed");
                }
            }
            Ok(LinkEvent::Message(m)) => {
                metrics.messages_received.fetch_add(1, Relaxed);
                let d = Delivery {
                    received: *m,
                    epoch: epoch.load(Relaxed),
                };
                if messages.send(d).is_err() {
                    break;
                }
            }
            Ok(LinkEvent::Other) => {}
            Err(e) => {
                if metrics.connected.swap(0, Relaxed) == 1 {
                    epoch.fetch_add(1, Relaxed);
                }
                metrics.connection_errors.fetch_add(1, Relaxed);
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "mqtt connection lost or refused");
                tokio::select! {
                    _ = stopped(&mut disconnect) => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
    // Flush what is queued (PUBACKs, acks), then DISCONNECT; give up after a short while.
    if metrics.connected.load(Relaxed) == 1 {
        client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while link.poll().await.is_ok() {}
        })
        .await;
    }
    metrics.connected.store(0, Relaxed);
}

/// One received message on its way through the chain.
struct Work {
    received: Received,
    epoch: u64,
    /// Where its acks go (`None`: the topic did not match the filter).
    ack_topic: Option<Arc<str>>,
    /// The whole payload was refused before any reading was looked at.
    refused: Option<ApiError>,
    /// Range of its readings in the submission.
    first: usize,
    count: usize,
}

struct Processor {
    chain: Arc<Chain>,
    client: Client,
    topics: TopicFilter,
    metrics: Arc<BridgeMetrics>,
    max_message: usize,
    /// Accepted readings not yet final, with the topic their final ack goes to.
    awaiting_final: HashMap<B256, Arc<str>>,
    /// Height up to which blocks were searched for awaited readings.
    head: u64,
    stop: watch::Receiver<bool>,
    /// The connection's epoch (see [`run_connection`]).
    epoch: Arc<AtomicU64>,
}

impl Processor {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Delivery>) {
        let mut heads = self.chain.subscribe_head();
        let mut stop = self.stop.clone();
        loop {
            tokio::select! {
                _ = stopped(&mut stop) => break,
                m = rx.recv() => {
                    let Some(first) = m else { break };
                    // Group what already waits: one submission, one log sync for all of it;
                    // but not so much that the first message waits long for its ack.
                    let mut bytes = first.received.payload_len();
                    let mut batch = vec![first];
                    while bytes < GROUP_BYTES && batch.len() < GROUP_MESSAGES {
                        match rx.try_recv() {
                            Ok(m) => {
                                bytes += m.received.payload_len();
                                batch.push(m);
                            }
                            Err(_) => break,
                        }
                    }
                    if self.handle(batch).await.is_err() {
                        break;
                    }
                }
                changed = heads.changed() => if changed.is_err() { break },
            }
            self.report_finality().await;
        }
    }

    /// Submits the readings of a group of messages and answers each message: the ack, then
    /// the PUBACK. `Err` when stopping before the group could be answered (the broker keeps
    /// the messages).
    async fn handle(&mut self, group: Vec<Delivery>) -> std::result::Result<(), ()> {
        let mut works = Vec::with_capacity(group.len());
        let mut readings: Vec<Bytes> = Vec::new();
        for Delivery { received, epoch } in group {
            let ack_topic = self
                .topics
                .device(&received.topic())
                .map(|d| Arc::<str>::from(self.topics.ack_topic(d)));
            let payload = received.payload();
            let mut refused = None;
            let first = readings.len();
            if ack_topic.is_none() {
                tracing::warn!(topic = %received.topic(), "mqtt message on a topic outside the filter; dropped");
            } else if payload.len() > self.max_message {
                refused = Some(ApiError::new(
                    iotchain_node::StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!(
                        "message of {} bytes exceeds the node's limit of {}",
                        payload.len(),
                        self.max_message
                    ),
                ));
            } else {
                match split_payload(&payload, received.content_type(), self.chain.max_batch()) {
                    Ok(p) => readings.extend(p.into_messages()),
                    Err(e) => refused = Some(e),
                }
            }
            works.push(Work {
                count: readings.len() - first,
                received,
                epoch,
                ack_topic,
                refused,
                first,
            });
        }
        let outcomes = self.submit(&readings).await?;
        let mut finals: Finals = BTreeMap::new();
        for w in works {
            if let Some(topic) = &w.ack_topic {
                let results = match &w.refused {
                    Some(e) => vec![AckResult::Rejected {
                        index: 0,
                        id: None,
                        error: e.into(),
                    }],
                    None => (0..w.count)
                        .map(|i| {
                            let k = w.first + i;
                            self.result(i, &readings[k], &outcomes[k], topic, &mut finals)
                        })
                        .collect(),
                };
                let ack = MessageAck::new(results);
                self.metrics
                    .readings_accepted
                    .fetch_add(ack.accepted as u64, Relaxed);
                self.metrics
                    .readings_rejected
                    .fetch_add(ack.rejected as u64, Relaxed);
                self.publish(topic, &ack).await;
            }
            if w.epoch != self.epoch.load(Relaxed) {
                tracing::debug!("message from an earlier connection: the broker redelivers it");
                continue;
            }
            if let Err(e) = self.client.ack(&w.received).await {
                tracing::error!(error = %e, "mqtt puback not queued");
                return Err(());
            }
            self.metrics.messages_acked.fetch_add(1, Relaxed);
        }
        self.publish_finals(finals).await;
        Ok(())
    }

    /// Submits readings until each has a definitive outcome (transient refusals are retried
    /// with backoff). `Err` if asked to stop meanwhile.
    async fn submit(&self, readings: &[Bytes]) -> std::result::Result<Vec<ItemResult>, ()> {
        let mut outcomes: Vec<Option<ItemResult>> = vec![None; readings.len()];
        let mut retry = RETRY_MIN;
        loop {
            let todo: Vec<usize> = outcomes
                .iter()
                .enumerate()
                .filter(|(_, o)| match o {
                    None => true,
                    Some(Err(e)) => is_transient(e),
                    Some(Ok(_)) => false,
                })
                .map(|(i, _)| i)
                .collect();
            if todo.is_empty() {
                break;
            }
            if outcomes.iter().any(Option::is_some) {
                if *self.stop.borrow() {
                    return Err(());
                }
                tracing::debug!(
                    readings = todo.len(),
                    retry_ms = retry.as_millis() as u64,
                    "node busy; resubmitting"
                );
                let mut stop = self.stop.clone();
                tokio::select! {
                    _ = stopped(&mut stop) => return Err(()),
                    _ = tokio::time::sleep(retry) => {}
                }
                retry = (retry * 2).min(RETRY_MAX);
            }
            for part in todo.chunks(MAX_READINGS_PER_SUBMIT) {
                let messages: Vec<Bytes> = part.iter().map(|&i| readings[i].clone()).collect();
                let results = self.chain.submit_readings(messages).await;
                if results.len() != part.len() {
                    // The submission failed as a whole (e.g. a worker panicked): all again.
                    let e = ApiError::storage(&"reading submission failed");
                    for &i in part {
                        outcomes[i] = Some(Err(e.clone()));
                    }
                    continue;
                }
                for (&i, r) in part.iter().zip(results) {
                    outcomes[i] = Some(r);
                }
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(ApiError::storage(&"no outcome"))))
            .collect())
    }

    /// One reading's ack result; a replay of a reading the node holds counts as accepted.
    fn result(
        &mut self,
        index: usize,
        message: &Bytes,
        outcome: &ItemResult,
        topic: &Arc<str>,
        finals: &mut Finals,
    ) -> AckResult {
        let e = match outcome {
            Ok(id) => {
                self.awaiting_final.insert(*id, topic.clone());
                return AckResult::Accepted {
                    index,
                    id: *id,
                    duplicate: false,
                };
            }
            Err(e) => e,
        };
        let id = B256::from(iotchain_reading::reading_id(message));
        if e.code == "replayed_seq" {
            match self.chain.reading_status(&id) {
                Ok(Some(ReadingStatus::Pending { .. })) => {
                    self.metrics.readings_duplicate.fetch_add(1, Relaxed);
                    self.awaiting_final.insert(id, topic.clone());
                    return AckResult::Accepted {
                        index,
                        id,
                        duplicate: true,
                    };
                }
                Ok(Some(ReadingStatus::Final {
                    location,
                    block_time_ms,
                })) => {
                    self.metrics.readings_duplicate.fetch_add(1, Relaxed);
                    finals
                        .entry((location.height, topic.clone()))
                        .or_insert_with(|| (block_time_ms, Vec::new()))
                        .1
                        .push(AckResult::Final {
                            id,
                            height: location.height,
                            block_index: location.index as u64,
                        });
                    return AckResult::Accepted {
                        index,
                        id,
                        duplicate: true,
                    };
                }
                _ => {}
            }
        }
        AckResult::Rejected {
            index,
            id: Some(id),
            error: AckError::from(e),
        }
    }

    /// Publishes an ack as JSON; a failure to queue it is logged (the readings' fate is in
    /// the chain either way, and HTTP tells it).
    async fn publish<T: serde::Serialize>(&self, topic: &str, ack: &T) {
        let json = match serde_json::to_vec(ack) {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(error = %e, "ack does not serialize");
                return;
            }
        };
        if let Err(e) = self.client.publish(topic.to_string(), json).await {
            tracing::warn!(error = %e, %topic, "mqtt ack not queued");
        }
    }

    async fn publish_finals(&self, finals: Finals) {
        for ((height, topic), (block_time_ms, results)) in finals {
            self.metrics
                .readings_final_acked
                .fetch_add(results.len() as u64, Relaxed);
            let ack = FinalAck {
                status: "final".into(),
                height,
                block_time_ms,
                results,
            };
            self.publish(&topic, &ack).await;
        }
    }

    /// Looks through the blocks finalized since the last look for awaited readings, and
    /// publishes one final ack per block and topic: work per block, not per reading.
    async fn report_finality(&mut self) {
        let head = self.chain.head().height;
        if head <= self.head {
            return;
        }
        if self.awaiting_final.is_empty() {
            self.head = head;
            return;
        }
        for height in self.head + 1..=head {
            let chain = self.chain.clone();
            let block = match tokio::task::spawn_blocking(move || chain.store().block(height)).await
            {
                Ok(Ok(Some(b))) => b,
                Ok(Ok(None)) => break, // not stored yet: look again at the next head
                Ok(Err(e)) => {
                    tracing::error!(height, error = %e, "cannot read a final block; finality acks for it skipped");
                    self.head = height;
                    continue;
                }
                Err(_) => break,
            };
            let mut finals: Finals = BTreeMap::new();
            let readings = block.items.iter().filter_map(|i| match i {
                BlockItem::Reading(r) => Some(r),
                BlockItem::Tx(_) => None,
            });
            for (block_index, r) in readings.enumerate() {
                let id = B256::from(iotchain_reading::reading_id(r));
                if let Some(topic) = self.awaiting_final.remove(&id) {
                    finals
                        .entry((height, topic))
                        .or_insert_with(|| (block.header.timestamp_ms, Vec::new()))
                        .1
                        .push(AckResult::Final {
                            id,
                            height,
                            block_index: block_index as u64,
                        });
                }
            }
            self.publish_finals(finals).await;
            self.head = height;
            if self.awaiting_final.is_empty() {
                self.head = head;
                break;
            }
        }
    }
}

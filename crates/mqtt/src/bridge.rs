//! The bridge's tasks: the connection (event loop, reconnection with backoff), lanes that
//! submit readings and publish acks, the acker (PUBACKs in arrival order) and the finality
//! watcher (final acks).

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use alloy_primitives::{B256, Bytes};
use iotchain_api::{ChainQuery, Item, ItemPool, MetricsRegistry, Origin, ReadingStatus, Submitted};
use iotchain_block::BlockItem;
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
    /// are added to `registry` (the node's `/metrics`).
    pub fn start<N: ItemPool + ChainQuery + Clone>(
        chain: N,
        config: MqttConfig,
        registry: &MetricsRegistry,
    ) -> Result<Self> {
        config.validate()?;
        let topics = TopicFilter::new(&config.topic, &config.ack_topic)?;
        let (client, link) = link::connect(&config)?;
        let metrics = Arc::new(BridgeMetrics::default());
        registry
            .lock()
            .register_collector(Box::new(metrics.clone()));
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
        // Readings acknowledged before a restart get their final (or refused) ack too.
        let awaiting: HashMap<B256, Awaited> = chain
            .pending_readings()
            .into_iter()
            .map(|(id, device)| {
                let awaited = Awaited {
                    topic: Arc::from(topics.ack_topic(&device.to_string())),
                    confirmed: true,
                    found: None,
                };
                (id, awaited)
            })
            .collect();
        let processor = Processor {
            shared: Arc::new(Shared {
                chain,
                client,
                topics,
                metrics: metrics.clone(),
                max_message: config.max_message_bytes,
                stop: stop_rx,
                awaiting: std::sync::Mutex::new(awaiting),
            }),
            epoch,
        };
        let task = tokio::spawn(async move {
            processor.run(rx).await;
            // PUBACKs and acks already queued go out before the DISCONNECT.
            let _ = disconnect.send(true);
            let _ = connection.await;
        });
        tracing::info!(url = %config.redacted_url(), topic = %config.topic, protocol = ?config.protocol, client_id = %config.client_id(), "mqtt bridge started");
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
    /// Position among received messages: PUBACKs go out in this order.
    seq: u64,
    delivery: Delivery,
    /// Where its acks go (`None`: the topic did not match the filter).
    ack_topic: Option<Arc<str>>,
    /// The whole payload was refused before any reading was looked at.
    refused: Option<AckError>,
    /// Range of its readings in the submission.
    first: usize,
    count: usize,
}

/// A reading waiting for its block.
struct Awaited {
    topic: Arc<str>,
    /// Its submission came back accepted (before that it is registered tentatively, so
    /// that a block finalized meanwhile is not missed).
    confirmed: bool,
    /// Found in a final block before it was confirmed: (height, block time, block index).
    found: Option<(u64, u64, u64)>,
}

/// What the lanes and the finality task share.
struct Shared<N> {
    chain: N,
    client: Client,
    topics: TopicFilter,
    metrics: Arc<BridgeMetrics>,
    max_message: usize,
    stop: watch::Receiver<bool>,
    /// Readings awaited in blocks, by id.
    awaiting: std::sync::Mutex<HashMap<B256, Awaited>>,
}

impl<N> Shared<N> {
    fn awaiting(&self) -> std::sync::MutexGuard<'_, HashMap<B256, Awaited>> {
        self.awaiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Messages of one topic always go to the same lane, so one device's readings keep their
/// order; lanes run side by side, so one lane's log sync and acks overlap another's
/// verification.
const LANES: usize = 4;

struct Processor<N> {
    shared: Arc<Shared<N>>,
    /// The connection's epoch (see [`run_connection`]).
    epoch: Arc<AtomicU64>,
}

impl<N: ItemPool + ChainQuery + Clone> Processor<N> {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<Delivery>) {
        let shared = self.shared;
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let acker = tokio::spawn(run_acker(
            shared.client.clone(),
            shared.metrics.clone(),
            self.epoch,
            done_rx,
        ));
        let finality = tokio::spawn(run_finality(shared.clone()));
        let refusals = tokio::spawn(run_refusals(shared.clone()));
        let mut lanes = Vec::with_capacity(LANES);
        let mut lane_tasks = Vec::with_capacity(LANES);
        for _ in 0..LANES {
            let (tx, rx) = mpsc::unbounded_channel();
            lanes.push(tx);
            lane_tasks.push(tokio::spawn(run_lane(shared.clone(), rx, done_tx.clone())));
        }
        drop(done_tx);
        let mut stop = shared.stop.clone();
        let mut seq = 0u64;
        loop {
            let d = tokio::select! {
                _ = stopped(&mut stop) => break,
                d = rx.recv() => match d { Some(d) => d, None => break },
            };
            seq += 1;
            let lane = {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                d.received.topic().hash(&mut h);
                (h.finish() % LANES as u64) as usize
            };
            if lanes[lane].send((seq, d)).is_err() {
                break;
            }
        }
        drop(lanes);
        for t in lane_tasks {
            let _ = t.await;
        }
        let _ = acker.await;
        finality.abort();
        refusals.abort();
    }
}

/// Sends PUBACKs in the order the messages arrived, whichever lane finished first.
async fn run_acker(
    client: Client,
    metrics: Arc<BridgeMetrics>,
    epoch: Arc<AtomicU64>,
    mut done: mpsc::UnboundedReceiver<(u64, Delivery)>,
) {
    let mut next = 1u64;
    let mut ready: BTreeMap<u64, Delivery> = BTreeMap::new();
    while let Some((seq, d)) = done.recv().await {
        ready.insert(seq, d);
        while let Some(d) = ready.remove(&next) {
            next += 1;
            if d.epoch != epoch.load(Relaxed) {
                tracing::debug!("message from an earlier connection: the broker redelivers it");
                continue;
            }
            if let Err(e) = client.ack(&d.received).await {
                tracing::error!(error = %e, "mqtt puback not queued");
                return;
            }
            metrics.messages_acked.fetch_add(1, Relaxed);
        }
    }
}

/// One lane: groups the messages waiting in it into one submission, answers each.
async fn run_lane<N: ItemPool + ChainQuery>(
    shared: Arc<Shared<N>>,
    mut rx: mpsc::UnboundedReceiver<(u64, Delivery)>,
    done: mpsc::UnboundedSender<(u64, Delivery)>,
) {
    let mut stop = shared.stop.clone();
    loop {
        let first = tokio::select! {
            _ = stopped(&mut stop) => break,
            m = rx.recv() => match m { Some(m) => m, None => break },
        };
        // Group what already waits: one submission, one log sync for all of it; but not so
        // much that the first message waits long for its ack.
        let mut bytes = first.1.received.payload_len();
        let mut group = vec![first];
        while bytes < GROUP_BYTES && group.len() < GROUP_MESSAGES {
            match rx.try_recv() {
                Ok(m) => {
                    bytes += m.1.received.payload_len();
                    group.push(m);
                }
                Err(_) => break,
            }
        }
        match handle(&shared, group).await {
            Ok(answered) => {
                for a in answered {
                    if done.send(a).is_err() {
                        return;
                    }
                }
            }
            Err(()) => break,
        }
    }
}

/// Submits the readings of a group of messages and publishes each message's ack; returns the
/// messages to PUBACK. `Err` when stopping before the group could be answered (the broker
/// keeps the messages).
async fn handle<N: ItemPool + ChainQuery>(
    shared: &Shared<N>,
    group: Vec<(u64, Delivery)>,
) -> std::result::Result<Vec<(u64, Delivery)>, ()> {
    let mut works = Vec::with_capacity(group.len());
    let mut readings: Vec<Bytes> = Vec::new();
    for (seq, delivery) in group {
        let received = &delivery.received;
        let ack_topic = shared
            .topics
            .device(&received.topic())
            .map(|d| Arc::<str>::from(shared.topics.ack_topic(d)));
        let payload = received.payload();
        let mut refused = None;
        let first = readings.len();
        if ack_topic.is_none() {
            tracing::warn!(topic = %received.topic(), "mqtt message on a topic outside the filter; dropped");
        } else if payload.len() > shared.max_message {
            refused = Some(AckError::new(
                "body_too_large",
                format!(
                    "message of {} bytes exceeds the node's limit of {}",
                    payload.len(),
                    shared.max_message
                ),
            ));
        } else {
            match split_payload(&payload, received.content_type(), shared.chain.max_batch()) {
                Ok(p) => readings.extend(p.into_messages()),
                Err(e) => refused = Some(AckError::from(&e)),
            }
        }
        works.push(Work {
            seq,
            count: readings.len() - first,
            delivery,
            ack_topic,
            refused,
            first,
        });
    }
    // Register every reading before submitting it: a block that takes it may be final
    // before the submission returns.
    let ids: Vec<B256> = readings
        .iter()
        .map(|m| B256::from(iotchain_reading::reading_id(m)))
        .collect();
    {
        let mut awaiting = shared.awaiting();
        for w in &works {
            if let (Some(topic), None) = (&w.ack_topic, &w.refused) {
                for id in &ids[w.first..w.first + w.count] {
                    awaiting.entry(*id).or_insert_with(|| Awaited {
                        topic: topic.clone(),
                        confirmed: false,
                        found: None,
                    });
                }
            }
        }
    }
    let outcomes = match submit(shared, &readings).await {
        Ok(o) => o,
        Err(()) => {
            let mut awaiting = shared.awaiting();
            for id in &ids {
                if awaiting.get(id).is_some_and(|a| !a.confirmed) {
                    awaiting.remove(id);
                }
            }
            return Err(());
        }
    };
    let mut finals = Finals::new();
    let mut answered = Vec::with_capacity(works.len());
    for w in works {
        if let Some(topic) = &w.ack_topic {
            let results = match &w.refused {
                Some(e) => vec![AckResult::Rejected {
                    index: 0,
                    id: None,
                    error: e.clone(),
                }],
                None => (0..w.count)
                    .map(|i| {
                        let k = w.first + i;
                        result(shared, i, ids[k], &outcomes[k], topic, &mut finals)
                    })
                    .collect(),
            };
            let ack = MessageAck::new(results);
            shared
                .metrics
                .readings_accepted
                .fetch_add(ack.accepted as u64, Relaxed);
            shared
                .metrics
                .readings_rejected
                .fetch_add(ack.rejected as u64, Relaxed);
            publish(shared, topic, &ack).await;
        }
        answered.push((w.seq, w.delivery));
    }
    publish_finals(shared, finals).await;
    Ok(answered)
}

/// Submits readings until each has a definitive outcome (transient refusals are retried
/// with backoff). `Err` if asked to stop meanwhile.
async fn submit<N: ItemPool>(
    shared: &Shared<N>,
    readings: &[Bytes],
) -> std::result::Result<Vec<Submitted>, ()> {
    let mut outcomes: Vec<Option<Submitted>> = vec![None; readings.len()];
    let mut retry = RETRY_MIN;
    loop {
        let todo: Vec<usize> = outcomes
            .iter()
            .enumerate()
            .filter(|(_, o)| match o {
                None => true,
                Some(Err(e)) => e.is_transient(),
                Some(Ok(_)) => false,
            })
            .map(|(i, _)| i)
            .collect();
        if todo.is_empty() {
            break;
        }
        if outcomes.iter().any(Option::is_some) {
            if *shared.stop.borrow() {
                return Err(());
            }
            tracing::debug!(
                readings = todo.len(),
                retry_ms = retry.as_millis() as u64,
                "node busy; resubmitting"
            );
            let mut stop = shared.stop.clone();
            tokio::select! {
                _ = stopped(&mut stop) => return Err(()),
                _ = tokio::time::sleep(retry) => {}
            }
            retry = (retry * 2).min(RETRY_MAX);
        }
        for part in todo.chunks(MAX_READINGS_PER_SUBMIT) {
            let items: Vec<Item> = part
                .iter()
                .map(|&i| Item::Reading(readings[i].clone()))
                .collect();
            let results = shared.chain.submit(items, Origin::Local).await;
            if results.len() != part.len() {
                // The submission failed as a whole (e.g. a worker panicked): all again.
                let e = iotchain_api::PoolError::Storage("reading submission failed".into());
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
        .map(|o| o.unwrap_or_else(|| Err(iotchain_api::PoolError::Storage("no outcome".into()))))
        .collect())
}

/// One reading's ack result; confirms or drops its registration. A replay of a reading the
/// node holds counts as accepted.
fn result<N: ChainQuery>(
    shared: &Shared<N>,
    index: usize,
    id: B256,
    outcome: &Submitted,
    topic: &Arc<str>,
    finals: &mut Finals,
) -> AckResult {
    let mut push_final = |height: u64, block_time_ms: u64, block_index: u64| {
        finals
            .entry((height, topic.clone()))
            .or_insert_with(|| (block_time_ms, Vec::new()))
            .1
            .push(AckResult::Final {
                id,
                height,
                block_index,
            });
    };
    // Confirms the registration; a block found meanwhile is reported now.
    let confirm = |push_final: &mut dyn FnMut(u64, u64, u64)| {
        let mut awaiting = shared.awaiting();
        let found = match awaiting.get_mut(&id) {
            Some(a) => {
                a.confirmed = true;
                a.found
            }
            None => None,
        };
        if let Some((height, time, index)) = found {
            awaiting.remove(&id);
            push_final(height, time, index);
        }
    };
    let e = match outcome {
        Ok(_) => {
            confirm(&mut push_final);
            return AckResult::Accepted {
                index,
                id,
                duplicate: false,
            };
        }
        Err(e) => e,
    };
    {
        match iotchain_api::held_already(&shared.chain, &id, e) {
            Some(ReadingStatus::Pending { .. }) => {
                shared.metrics.readings_duplicate.fetch_add(1, Relaxed);
                confirm(&mut push_final);
                return AckResult::Accepted {
                    index,
                    id,
                    duplicate: true,
                };
            }
            Some(ReadingStatus::Final {
                location,
                block_time_ms,
            }) => {
                shared.metrics.readings_duplicate.fetch_add(1, Relaxed);
                shared.awaiting().remove(&id);
                push_final(location.height, block_time_ms, location.index as u64);
                return AckResult::Accepted {
                    index,
                    id,
                    duplicate: true,
                };
            }
            _ => {}
        }
    }
    {
        let mut awaiting = shared.awaiting();
        if awaiting.get(&id).is_some_and(|a| !a.confirmed) {
            awaiting.remove(&id);
        }
    }
    AckResult::Rejected {
        index,
        id: Some(id),
        error: AckError::from(e),
    }
}

/// Publishes an ack as JSON; a failure to queue it is logged (the readings' fate is in the
/// chain either way, and HTTP tells it).
async fn publish<N, T: serde::Serialize>(shared: &Shared<N>, topic: &str, ack: &T) {
    let json = match serde_json::to_vec(ack) {
        Ok(j) => j,
        Err(e) => {
            tracing::error!(error = %e, "ack does not serialize");
            return;
        }
    };
    if let Err(e) = shared.client.publish(topic.to_string(), json).await {
        tracing::warn!(error = %e, %topic, "mqtt ack not queued");
    }
}

async fn publish_finals<N>(shared: &Shared<N>, finals: Finals) {
    for ((height, topic), (block_time_ms, results)) in finals {
        shared
            .metrics
            .readings_final_acked
            .fetch_add(results.len() as u64, Relaxed);
        let ack = FinalAck {
            status: "final".into(),
            height,
            block_time_ms,
            results,
        };
        publish(shared, &topic, &ack).await;
    }
}

/// Publishes a `"refused"` ack for each awaited reading a final block refused for good.
async fn run_refusals<N: ItemPool + ChainQuery>(shared: Arc<Shared<N>>) {
    let mut refused = shared.chain.subscribe_refused();
    loop {
        let r = match refused.recv().await {
            Ok(r) => r,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "refusals came faster than their acks went out");
                continue;
            }
            Err(_) => return,
        };
        let Some(awaited) = shared.awaiting().remove(&r.id) else {
            continue;
        };
        let ack = FinalAck {
            status: "refused".into(),
            height: r.height,
            block_time_ms: 0,
            results: vec![AckResult::Refused {
                id: r.id,
                height: r.height,
                error: AckError::new(&r.code, r.message),
            }],
        };
        publish(&shared, &awaited.topic, &ack).await;
    }
}

/// At every new head, looks through the blocks finalized since the last look for awaited
/// readings and publishes one final ack per block and topic: work per block, not per
/// reading.
async fn run_finality<N: ChainQuery + Clone>(shared: Arc<Shared<N>>) {
    let mut heads = shared.chain.subscribe_head();
    let mut scanned = shared.chain.head().height;
    loop {
        let head = shared.chain.head().height;
        while scanned < head {
            if shared.awaiting().is_empty() {
                // Readings registered from now on are taken by later blocks.
                scanned = head;
                break;
            }
            let height = scanned + 1;
            let chain = shared.chain.clone();
            let block = match tokio::task::spawn_blocking(move || chain.block(height)).await {
                Ok(Ok(Some(b))) => b,
                Ok(Ok(None)) | Err(_) => break, // not readable yet: look again at the next head
                Ok(Err(e)) => {
                    tracing::error!(height, error = %e, "cannot read a final block; finality acks for it skipped");
                    scanned = height;
                    continue;
                }
            };
            let time = block.header.timestamp_ms;
            let mut finals = Finals::new();
            {
                let mut awaiting = shared.awaiting();
                let readings = block.items.iter().filter_map(|i| match i {
                    BlockItem::Reading(r) => Some(r),
                    BlockItem::Tx(_) | BlockItem::EthTx(_) => None,
                });
                for (block_index, r) in readings.enumerate() {
                    let id = B256::from(iotchain_reading::reading_id(r));
                    let Some(a) = awaiting.get_mut(&id) else {
                        continue;
                    };
                    if !a.confirmed {
                        a.found = Some((height, time, block_index as u64));
                        continue;
                    }
                    let topic = a.topic.clone();
                    awaiting.remove(&id);
                    finals
                        .entry((height, topic))
                        .or_insert_with(|| (time, Vec::new()))
                        .1
                        .push(AckResult::Final {
                            id,
                            height,
                            block_index: block_index as u64,
                        });
                }
            }
            publish_finals(&shared, finals).await;
            scanned = height;
        }
        if heads.changed().await.is_err() {
            return;
        }
    }
}

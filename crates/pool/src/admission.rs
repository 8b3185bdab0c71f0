//! Admission: decoding, the checks against the pending view, signature batches and sender
//! recovery, then queueing for the item log.

use std::sync::Arc;

use alloy_primitives::{B256, Bytes};
use iotchain_api::{Item, Origin, PoolError};
use iotchain_block::SignedTx;
use iotchain_execution::{
    AcceptedItem, CheckedReading, DecodedReading, ItemError, apply_reading, decode_eth_tx,
    signed_by_any, verify_readings,
};
use iotchain_state::StateError;
use iotchain_storage::ItemKind;

use crate::{Inner, queue::Queue};

/// An admitted item: its id and its item-log seq (to wait for).
pub(crate) type Admitted = Result<(B256, u64), PoolError>;

impl Inner {
    /// Checks and queues `items` (CPU work: run off the async workers). One result per item.
    /// Items from local clients are offered to the other nodes until final (when there are
    /// other nodes).
    pub(crate) fn admit(&self, items: Vec<Item>, origin: Origin) -> Vec<Admitted> {
        let offer = origin == Origin::Local && self.relay.get().is_some();
        let n = items.len();
        let mut out: Vec<Option<Admitted>> = (0..n).map(|_| None).collect();
        let (mut readings, mut owner_txs, mut eth_txs) = (Vec::new(), Vec::new(), Vec::new());
        for (i, item) in items.into_iter().enumerate() {
            match item {
                Item::Reading(b) => readings.push((i, b)),
                Item::OwnerTx(b) => owner_txs.push((i, b)),
                Item::EthTx(b) => eth_txs.push((i, b)),
            }
        }
        if let Some(e) = self.stopped_taking() {
            return (0..n).map(|_| Err(e.clone())).collect();
        }
        if !readings.is_empty() {
            let (idx, bytes): (Vec<usize>, Vec<Bytes>) = readings.into_iter().unzip();
            let checked = self.check_readings(bytes, true);
            for (i, r) in idx.into_iter().zip(self.accept_readings(checked, offer)) {
                out[i] = Some(r);
            }
        }
        for (i, raw) in owner_txs {
            out[i] = Some(self.accept_owner_tx(raw, offer));
        }
        if !eth_txs.is_empty() {
            let (idx, raws): (Vec<usize>, Vec<Bytes>) = eth_txs.into_iter().unzip();
            for (i, r) in idx.into_iter().zip(self.accept_eth_txs(raws, offer)) {
                out[i] = Some(r);
            }
        }
        let out: Vec<Admitted> = out
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(PoolError::Storage("no result".into()))))
            .collect();
        for r in &out {
            match r {
                Ok(_) => {}
                Err(e) => self.metrics.reject(e.code()),
            }
        }
        out
    }

    /// Decodes, looks up keys in the pending view and (with `verify`) checks signatures.
    pub(crate) fn check_readings(
        &self,
        messages: Vec<Bytes>,
        verify: bool,
    ) -> Vec<Result<CheckedReading, ItemError>> {
        let max = self.genesis.params.max_reading_bytes as usize;
        let aad = self.genesis.reading_aad(&self.config.genesis_hash);
        // Decode outside the lock, then look up keys under it.
        let decoded: Vec<Result<DecodedReading, ItemError>> = messages
            .into_iter()
            .map(|m| DecodedReading::decode(m, max, aad))
            .collect();
        let prepared: Vec<Result<CheckedReading, ItemError>> = {
            let queue = self.queue.lock();
            decoded
                .into_iter()
                .map(|d| d.and_then(|d| d.attach_key(&queue.pending)))
                .collect()
        };
        if !verify {
            return prepared;
        }
        let candidates: Vec<CheckedReading> = prepared
            .iter()
            .filter_map(|p| p.as_ref().ok())
            .cloned()
            .collect();
        let mut verdicts = verify_readings(&candidates).into_iter();
        prepared
            .into_iter()
            .map(|p| {
                let c = p?;
                if verdicts.next().unwrap_or(false) {
                    Ok(c)
                } else {
                    Err(self.explain_bad_signature(&c))
                }
            })
            .collect()
    }

    /// A signature failed with the current key: tell a replaced key from a forgery.
    fn explain_bad_signature(&self, c: &CheckedReading) -> ItemError {
        let device = c.reading.meta.device;
        let previous: Vec<_> = self
            .queue
            .lock()
            .pending
            .device(&device)
            .map(|d| d.previous_keys.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|k| *k != c.key)
            .collect();
        if signed_by_any(&c.reading, &previous) {
            ItemError::State(StateError::RotatedKey(device))
        } else {
            ItemError::BadSignature(device)
        }
    }

    pub(crate) fn overloaded(&self, pending: usize) -> PoolError {
        PoolError::Overloaded {
            pending,
            limit: self.config.max_pending_items,
        }
    }

    /// Applies checked readings to the pending view and queues them for the log.
    pub(crate) fn accept_readings(
        &self,
        checked: Vec<Result<CheckedReading, ItemError>>,
        offer: bool,
    ) -> Vec<Admitted> {
        let arrival_ms = self.runtime.now_ms();
        let mut guard = self.queue.lock();
        let queue = &mut *guard;
        if queue.items.len() + checked.len() > self.config.max_pending_items {
            let e = self.overloaded(queue.items.len());
            return checked
                .into_iter()
                .map(|c| match c {
                    Ok(_) => Err(e.clone()),
                    Err(err) => Err(err.into()),
                })
                .collect();
        }
        let results: Vec<Admitted> = checked
            .into_iter()
            .map(|c| {
                let c = c?;
                let CheckedReading {
                    reading,
                    key_version,
                    ..
                } = c;
                apply_reading(&mut queue.pending, &reading.meta, reading.id, key_version)?;
                let seq = queue.take_seq();
                queue.push(AcceptedItem {
                    seq,
                    kind: ItemKind::Reading,
                    meta: Some(reading.meta),
                    id: reading.id,
                    bytes: reading.bytes,
                    arrival_ms,
                    key_version,
                    eth: None,
                    max_cost: Default::default(),
                });
                if offer {
                    queue.offer(seq, arrival_ms);
                }
                Ok((reading.id, seq))
            })
            .collect();
        drop(guard);
        let accepted = results.iter().filter(|r| r.is_ok()).count();
        self.metrics.readings_accepted.inc_by(accepted as u64);
        results
    }

    /// Refuses a transaction when the queue is full or the transaction is queued already
    /// (or, with `final_too`, final already).
    fn check_new_tx(
        &self,
        queue: &Queue,
        hash: &B256,
        geth_wording: bool,
        final_too: bool,
    ) -> Result<(), PoolError> {
        if queue.items.len() >= self.config.max_pending_items {
            return Err(self.overloaded(queue.items.len()));
        }
        if queue.index.contains_key(hash) || (final_too && (self.is_final)(hash)) {
            return Err(PoolError::Known {
                hash: *hash,
                geth_wording,
            });
        }
        Ok(())
    }

    /// Accepts an owner transaction (RLP bytes). An owner transaction that is final already
    /// is refused by its nonce.
    fn accept_owner_tx(&self, raw: Bytes, offer: bool) -> Admitted {
        let tx = SignedTx::decode_and_check(&raw, self.genesis.chain_id)
            .map_err(|e| ItemError::InvalidTransaction(e.to_string()))?;
        let hash = tx.hash();
        let arrival_ms = self.runtime.now_ms();
        let mut guard = self.queue.lock();
        let queue = &mut *guard;
        self.check_new_tx(queue, &hash, false, true)?;
        queue.pending.apply_tx(&tx, 0).map_err(ItemError::from)?;
        let seq = queue.take_seq();
        queue.push(AcceptedItem {
            seq,
            kind: ItemKind::Tx,
            meta: None,
            id: hash,
            bytes: raw,
            arrival_ms,
            key_version: 0,
            eth: None,
            max_cost: Default::default(),
        });
        if offer {
            queue.offer(seq, arrival_ms);
        }
        drop(guard);
        self.metrics.transactions_accepted.inc();
        Ok((hash, seq))
    }

    /// Decodes `raws` and recovers their senders (in parallel: the costly part), then checks
    /// and queues them in order under one lock. A final Ethereum transaction needs no lookup:
    /// its nonce is used, so it is refused as `nonce too low`, as geth refuses it.
    fn accept_eth_txs(&self, raws: Vec<Bytes>, offer: bool) -> Vec<Admitted> {
        use rayon::prelude::*;
        let decoded: Vec<Result<iotchain_evm::EthTx, ItemError>> = raws
            .par_iter()
            .with_min_len(8)
            .map(|raw| decode_eth_tx(&self.genesis, raw))
            .collect();
        let ctx = {
            let parent = *self.parent.lock();
            crate::pending_context(
                &self.genesis,
                &parent,
                &self.config.proposer,
                self.runtime.now_ms(),
            )
        };
        let arrival_ms = self.runtime.now_ms();
        let mut guard = self.queue.lock();
        let queue = &mut *guard;
        let results: Vec<Admitted> = decoded
            .into_iter()
            .map(|tx| {
                let tx = Arc::new(tx?);
                // "already known" is geth's wording, which Ethereum clients match on.
                self.check_new_tx(queue, &tx.hash, true, false)?;
                let hash = tx.hash;
                let seq = queue.enqueue_eth(tx, &ctx, arrival_ms, None)?;
                if offer {
                    queue.offer(seq, arrival_ms);
                }
                Ok((hash, seq))
            })
            .collect();
        drop(guard);
        let accepted = results.iter().filter(|r| r.is_ok()).count();
        self.metrics.transactions_accepted.inc_by(accepted as u64);
        results
    }
}

#[cfg(feature = "byzantine-testing")]
impl crate::Pool {
    /// Queues readings WITHOUT checking their signatures, so that this node proposes blocks
    /// with forged readings: a Byzantine validator, for simulations only.
    pub async fn submit_unverified(&self, messages: Vec<Bytes>) -> Vec<iotchain_api::Submitted> {
        let checked = self.inner.check_readings(messages, false);
        let admitted = self.inner.accept_readings(checked, false);
        let max_seq = admitted
            .iter()
            .filter_map(|r| r.as_ref().ok().map(|(_, s)| *s))
            .max()
            .unwrap_or(0);
        if max_seq > 0
            && let Err(e) = self.inner.wait_durable(max_seq).await
        {
            return admitted.into_iter().map(|_| Err(e.clone())).collect();
        }
        admitted.into_iter().map(|r| r.map(|(id, _)| id)).collect()
    }
}

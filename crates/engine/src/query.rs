//! The chain's queries ([`ChainQuery`]): statuses, proofs, devices, blocks, receipts.

use alloy_primitives::B256;
use iotchain_api::{
    ChainQuery, ConsensusStats, HeadInfo, QueryError, QueryResult, ReadingStatus, Refused, StateAt,
    TxStatus,
};
use iotchain_block::{
    Block, BlockItem, DeviceKeyJson, FinalityCertificate, Genesis, Header, ProofBundle,
};
use iotchain_crypto::{SignatureCheck, verify_signatures};
use iotchain_execution::{StoredReceipt, hook_ids_of, hooks_key};
use iotchain_state::State;
use iotchain_storage::BlockGas;
use tokio::sync::watch;

use crate::Engine;

fn storage(e: impl std::fmt::Display) -> QueryError {
    QueryError::storage(e)
}

fn decode_receipt(bytes: Vec<u8>) -> QueryResult<StoredReceipt> {
    StoredReceipt::decode(&bytes).ok_or_else(|| storage("undecodable receipt"))
}

impl Engine {
    /// The refusal of an item this node acknowledged: recorded, or waiting for the next commit.
    fn refusal(&self, id: &B256) -> QueryResult<Option<Refused>> {
        if let Some(r) = self.inner.pool.refused(id) {
            return Ok(Some(r));
        }
        Ok(self
            .inner
            .store
            .refused(id)
            .map_err(storage)?
            .map(|r| Refused {
                id: r.id,
                code: r.code,
                message: r.message,
                height: r.height,
            }))
    }
}

/// The certificate that finalizes the block at `height`, and the headers after it up to the
/// certified one (a block finalized through a descendant is certified by the descendant's).
pub(crate) fn certified(
    store: &iotchain_storage::ChainStore,
    height: u64,
) -> QueryResult<(FinalityCertificate, Vec<Header>)> {
    let certificate = store
        .certificate(height)
        .map_err(storage)?
        .ok_or_else(|| storage("certificate missing"))?;
    let descendants = (height + 1..=certificate.height)
        .map(|h| {
            store
                .header(h)
                .map_err(storage)?
                .ok_or_else(|| storage("descendant header missing"))
        })
        .collect::<QueryResult<Vec<_>>>()?;
    Ok((certificate, descendants))
}

impl ChainQuery for Engine {
    fn genesis(&self) -> &Genesis {
        &self.inner.genesis
    }

    fn genesis_hash(&self) -> B256 {
        self.inner.genesis_hash
    }

    fn head(&self) -> HeadInfo {
        *self.inner.head.borrow()
    }

    fn subscribe_head(&self) -> watch::Receiver<HeadInfo> {
        self.inner.head.subscribe()
    }

    fn head_gas(&self) -> BlockGas {
        *self.inner.head_gas.read()
    }

    fn consensus_stats(&self) -> &ConsensusStats {
        &self.inner.stats
    }

    fn reading_status(&self, id: &B256) -> QueryResult<Option<ReadingStatus>> {
        // Look in the pool first: an item leaves it only after its block is stored.
        let pending = self.inner.pool.get(id).map(|q| ReadingStatus::Pending {
            arrival_ms: q.arrival_ms,
            ts: q.meta.as_ref().map_or(0, |m| m.ts),
        });
        if let Some(location) = self.inner.store.reading(&id.0).map_err(storage)? {
            let block_time_ms = self
                .inner
                .store
                .header(location.height)
                .map_err(storage)?
                .map_or(0, |h| h.timestamp_ms);
            return Ok(Some(ReadingStatus::Final {
                location,
                block_time_ms,
            }));
        }
        if pending.is_some() {
            return Ok(pending);
        }
        Ok(self.refusal(id)?.map(ReadingStatus::Refused))
    }

    fn tx_status(&self, hash: &B256) -> QueryResult<TxStatus> {
        let pending = self.inner.pool.contains(hash);
        Ok(match self.inner.store.transaction(hash).map_err(storage)? {
            Some(location) => TxStatus::Final(location),
            None if pending => TxStatus::Pending,
            None => match self.refusal(hash)? {
                Some(r) => TxStatus::Refused(r),
                None => TxStatus::Unknown,
            },
        })
    }

    fn proof(&self, id: &B256) -> QueryResult<ProofBundle> {
        let store = &self.inner.store;
        let location = store.reading(&id.0).map_err(storage)?.ok_or_else(|| {
            if self.inner.pool.contains(id) {
                QueryError::NotFinal(*id)
            } else {
                QueryError::NotFound(format!("reading {id} is unknown"))
            }
        })?;
        let block = store
            .block(location.height)
            .map_err(storage)?
            .ok_or_else(|| storage("block missing"))?;
        let (certificate, descendants) = certified(store, location.height)?;
        let ids = block.reading_ids();
        let audit_path = iotchain_merkle::audit_path(&ids, location.index as usize)
            .into_iter()
            .map(B256::from)
            .collect();
        let Some(BlockItem::Reading(message)) = block.items.get(location.item as usize) else {
            return Err(storage("reading index points at a non-reading"));
        };
        let reading = iotchain_reading::decode(message).map_err(storage)?;
        let record = self
            .device(&reading.device)
            .ok_or_else(|| storage("device of a final reading missing"))?;
        let aad = self.inner.genesis.reading_aad(&self.inner.genesis_hash);
        let sig_structure =
            iotchain_reading::sig_structure(reading.protected, aad, reading.payload);
        let key = std::iter::once(&record.public_key)
            .chain(record.previous_keys.iter().rev())
            .find(|k| {
                verify_signatures(&[SignatureCheck {
                    key: k,
                    message: &sig_structure,
                    signature: reading.signature,
                }])[0]
            })
            .cloned()
            .ok_or_else(|| storage("no key of the device verifies a final reading"))?;
        Ok(ProofBundle {
            version: 1,
            reading_id: *id,
            message: message.clone(),
            index: location.index as u64,
            audit_path,
            device_key: DeviceKeyJson::from_key(&key),
            header: block.header,
            descendants,
            certificate,
        })
    }

    fn with_state<R>(&self, at: StateAt, f: impl FnOnce(&State) -> R) -> R {
        let snapshot = match at {
            StateAt::Committed => self.inner.committed.read().clone(),
            StateAt::Pending => self.inner.pool.snapshot(),
        };
        f(&snapshot)
    }

    fn with_state_at<R>(&self, height: u64, f: impl FnOnce(&State) -> R) -> QueryResult<R> {
        Ok(f(&self.state_at(height)?))
    }

    fn header(&self, height: u64) -> QueryResult<Option<Header>> {
        self.inner.store.header(height).map_err(storage)
    }

    fn block(&self, height: u64) -> QueryResult<Option<Block>> {
        self.inner.store.block(height).map_err(storage)
    }

    fn stream_series(
        &self,
        device: &iotchain_reading::DeviceAddress,
        stream: &str,
        from: u64,
        to: u64,
        bucket_ms: u64,
    ) -> QueryResult<Option<Vec<iotchain_storage::Bucket>>> {
        self.inner
            .store
            .stream_series(&device.0, stream, from, to, bucket_ms)
            .map_err(storage)
    }

    fn streams(
        &self,
        device: &iotchain_reading::DeviceAddress,
    ) -> QueryResult<Vec<iotchain_storage::StreamInfo>> {
        self.inner.store.streams(&device.0).map_err(storage)
    }

    fn stream_page(
        &self,
        device: &iotchain_reading::DeviceAddress,
        stream: &str,
        range: &iotchain_storage::StreamRange,
        after: iotchain_storage::StreamCursor,
        descending: bool,
        limit: usize,
    ) -> QueryResult<
        Option<(
            iotchain_storage::StreamInfo,
            Vec<iotchain_storage::StreamEntry>,
            bool,
        )>,
    > {
        self.inner
            .store
            .stream_page(&device.0, stream, range, after, descending, limit)
            .map_err(storage)
    }

    fn stream_proof(
        &self,
        device: &iotchain_reading::DeviceAddress,
        stream: &str,
        range: &iotchain_storage::StreamRange,
        descending: bool,
        max_leaves: u64,
    ) -> QueryResult<Result<iotchain_api::StreamProof, iotchain_api::NoStreamProof>> {
        crate::range_proof::stream_proof(self, device, stream, range, descending, max_leaves)
    }

    fn certificate(&self, height: u64) -> QueryResult<Option<FinalityCertificate>> {
        self.inner.store.certificate(height).map_err(storage)
    }

    fn height_of(&self, hash: &B256) -> QueryResult<Option<u64>> {
        self.inner.store.height_of(hash).map_err(storage)
    }

    fn block_gas(&self, height: u64) -> QueryResult<Option<BlockGas>> {
        self.inner.store.block_gas(height).map_err(storage)
    }

    fn receipt(&self, hash: &B256) -> QueryResult<Option<StoredReceipt>> {
        self.inner
            .store
            .receipt(hash)
            .map_err(storage)?
            .map(decode_receipt)
            .transpose()
    }

    fn receipts_in(&self, height: u64, hashes: &[B256]) -> QueryResult<Vec<Option<StoredReceipt>>> {
        self.inner
            .store
            .receipts_in(height, hashes)
            .map_err(storage)?
            .into_iter()
            .map(|b| b.map(decode_receipt).transpose())
            .collect()
    }

    fn hook_ids(&self, height: u64) -> QueryResult<Vec<B256>> {
        Ok(self
            .inner
            .store
            .receipts_in(height, &[hooks_key(height)])
            .map_err(storage)?
            .pop()
            .flatten()
            .map(|v| hook_ids_of(&v))
            .unwrap_or_default())
    }
}

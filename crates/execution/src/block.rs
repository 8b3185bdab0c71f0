//! One [`BlockExecution`] for the proposer that builds a block and for every validator that
//! verifies it: the same code applies the items, runs the hooks and computes the roots;
//! only the [`Policy`] differs when an item does not apply (the builder leaves it out, the
//! verifier refuses the block).

use std::sync::Arc;

use alloy_primitives::{B256, Bytes, U256};
use iotchain_block::{Block, BlockItem, Genesis, Header, MAX_OWNER_TX_BYTES_PER_BLOCK, SignedTx};
use iotchain_evm::{BlockContext, BlockExecutor, BlockHashes, EthTx};
use iotchain_reading::DeviceAddress;
use iotchain_state::{LeafPlace, State, StateRecords, StreamHead};
use iotchain_storage::{BlockGas, ItemKind, ReadingLocation, TxLocation};

use crate::{
    CheckedReading, DecodedReading, ItemError, ReadingMeta, VerifyError, apply_reading,
    receipts::BlockReceipts, verify_readings,
};

/// How far ahead of the verifier's clock a block's time may be.
pub const MAX_CLOCK_DRIFT_MS: u64 = 5_000;

/// What to do with an item that does not apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Building a block from the pool: leave the item out (it is logged) and go on.
    Build,
    /// Verifying a block: refuse the whole block, naming the item.
    Verify,
}

/// An item the pool accepted: decoded and checked once, held until a block includes it.
#[derive(Debug, Clone)]
pub struct AcceptedItem {
    /// Its position in the item log (acceptance order, from 1).
    pub seq: u64,
    /// Reading, owner or Ethereum transaction.
    pub kind: ItemKind,
    /// Reading id or transaction hash.
    pub id: B256,
    /// The bytes as received.
    pub bytes: Bytes,
    /// When this node accepted it, ms since the Unix epoch (the runtime's clock).
    pub arrival_ms: u64,
    /// For a reading: the device key version that verified it.
    pub key_version: u32,
    /// For a reading: what block production needs of it.
    pub meta: Option<ReadingMeta>,
    /// For an Ethereum transaction: decoded, its sender recovered.
    pub eth: Option<Arc<EthTx>>,
    /// For an Ethereum transaction: the most it may cost its sender (reserved while queued).
    pub max_cost: U256,
}

impl AcceptedItem {
    /// The item as a block carries it.
    pub fn block_item(&self) -> BlockItem {
        match self.kind {
            ItemKind::Reading => BlockItem::Reading(self.bytes.clone()),
            ItemKind::Tx => BlockItem::Tx(self.bytes.clone()),
            ItemKind::EthTx => BlockItem::EthTx(self.bytes.clone()),
        }
    }
}

/// The id a block item is known by: a reading's id or a transaction's hash.
pub fn item_id(item: &BlockItem) -> B256 {
    match item {
        BlockItem::Reading(b) => B256::from(iotchain_reading::reading_id(b)),
        BlockItem::Tx(b) | BlockItem::EthTx(b) => alloy_primitives::keccak256(b),
    }
}

/// Checks what a header says about itself against its parent: chain, height, time (not
/// before the parent's, at most [`MAX_CLOCK_DRIFT_MS`] after `now_ms`) and proposer.
pub fn check_header(
    genesis: &Genesis,
    header: &Header,
    parent_height: u64,
    parent_time_ms: u64,
    now_ms: u64,
) -> Result<(), VerifyError> {
    if header.chain_id != genesis.chain_id {
        return Err(VerifyError::ChainId(header.chain_id));
    }
    if header.height != parent_height + 1 {
        return Err(VerifyError::Height {
            height: header.height,
            parent: parent_height,
        });
    }
    if header.timestamp_ms < parent_time_ms
        || header.timestamp_ms > now_ms.saturating_add(MAX_CLOCK_DRIFT_MS)
    {
        return Err(VerifyError::Time {
            time: header.timestamp_ms,
            parent: parent_time_ms,
            now: now_ms,
            drift_ms: MAX_CLOCK_DRIFT_MS,
        });
    }
    if !genesis.validator_keys().contains(&header.proposer) {
        return Err(VerifyError::Proposer(header.proposer));
    }
    Ok(())
}

/// Applies one block's items to a state, in order.
pub struct BlockExecution<'a, H: BlockHashes + ?Sized> {
    genesis: &'a Genesis,
    reading_aad: &'a [u8],
    policy: Policy,
    height: u64,
    timestamp_ms: u64,
    state: State,
    executor: BlockExecutor<'a, H>,
    receipts: BlockReceipts,
    hook_calls: Vec<(DeviceAddress, StreamHead)>,
    items: Vec<BlockItem>,
    readings: Vec<([u8; 32], ReadingLocation)>,
    txs: Vec<(B256, TxLocation)>,
    tx_leaves: Vec<[u8; 32]>,
    /// Bytes of the owner transactions applied so far.
    owner_tx_bytes: usize,
    /// Readings decoded here, with their position among the block's readings: their
    /// signatures are checked in one batch when the block is finished.
    unverified: Vec<CheckedReading>,
    consumed: Vec<u64>,
    sources: Vec<Option<u64>>,
    left_out: Vec<(u64, ItemError)>,
}

impl<H: BlockHashes + ?Sized> std::fmt::Debug for BlockExecution<'_, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockExecution")
            .field("height", &self.height)
            .field("policy", &self.policy)
            .field("items", &self.items.len())
            .finish()
    }
}

/// A block's items applied: what its header must commit to, and everything committing it
/// writes.
#[derive(Debug)]
pub struct ExecutedBlock {
    /// The block.
    pub block: Block,
    /// The state after the block.
    pub state: State,
    /// The records the block changed.
    pub records: StateRecords,
    /// Reading ids with their locations.
    pub readings: Vec<([u8; 32], ReadingLocation)>,
    /// Transaction hashes with their locations.
    pub txs: Vec<(B256, TxLocation)>,
    /// Receipts of the Ethereum transactions and hook calls, encoded for the store.
    pub receipts: Vec<(B256, Vec<u8>)>,
    /// The ids of the hook calls.
    pub hook_calls: Vec<B256>,
    /// Base fee and gas used.
    pub gas: BlockGas,
    /// Item-log seqs of the pool items a block built here took (included or left out);
    /// empty for a verified block.
    pub consumed: Vec<u64>,
    /// For each of the block's items, its item-log seq when this node's pool holds it (so a
    /// record of the block can name it instead of copying it).
    pub sources: Vec<Option<u64>>,
    /// The pool items a block built here left out (by item-log seq), and why: once the block
    /// is final they are refused for good.
    pub left_out: Vec<(u64, ItemError)>,
}

impl<'a, H: BlockHashes + ?Sized> BlockExecution<'a, H> {
    /// Starts a block at `ctx.number` on `state` (the state after its parent).
    pub fn new(
        genesis: &'a Genesis,
        reading_aad: &'a [u8],
        policy: Policy,
        state: State,
        ctx: BlockContext,
        hashes: &'a H,
    ) -> Self {
        Self {
            genesis,
            reading_aad,
            policy,
            height: ctx.number,
            timestamp_ms: ctx.timestamp_ms,
            state,
            executor: BlockExecutor::new(ctx, hashes),
            receipts: BlockReceipts::default(),
            hook_calls: Vec::new(),
            items: Vec::new(),
            readings: Vec::new(),
            txs: Vec::new(),
            tx_leaves: Vec::new(),
            owner_tx_bytes: 0,
            unverified: Vec::new(),
            consumed: Vec::new(),
            sources: Vec::new(),
            left_out: Vec::new(),
        }
    }

    /// The state as the items so far leave it.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Applies an item the pool accepted (a block built here).
    pub fn push_accepted(&mut self, item: &AcceptedItem) -> Result<(), VerifyError> {
        self.consumed.push(item.seq);
        self.push(item.block_item(), Some(item), item.arrival_ms)
    }

    /// Applies a block's item, with the pool's copy of it if this node accepted it too
    /// (then its signature or sender is not checked again). `arrival_ms` is recorded for
    /// an item the pool does not hold.
    pub fn push(
        &mut self,
        item: BlockItem,
        known: Option<&AcceptedItem>,
        arrival_ms: u64,
    ) -> Result<(), VerifyError> {
        let index = self.items.len();
        let params = &self.genesis.params;
        let applied = match &item {
            BlockItem::Reading(bytes) => {
                if self.readings.len() as u64 >= params.max_readings_per_block {
                    return Err(VerifyError::TooManyReadings(params.max_readings_per_block));
                }
                self.apply_reading(bytes, known, arrival_ms, index)
            }
            BlockItem::Tx(bytes) | BlockItem::EthTx(bytes) => {
                if self.txs.len() as u64 >= params.max_transactions_per_block {
                    return Err(VerifyError::TooManyTransactions(
                        params.max_transactions_per_block,
                    ));
                }
                if matches!(item, BlockItem::Tx(_))
                    && self.owner_tx_bytes + bytes.len() > MAX_OWNER_TX_BYTES_PER_BLOCK
                {
                    return Err(VerifyError::OwnerTxBytes(MAX_OWNER_TX_BYTES_PER_BLOCK));
                }
                let hash = match &item {
                    BlockItem::Tx(_) => self.apply_owner_tx(bytes).inspect(|_| {
                        self.owner_tx_bytes += bytes.len();
                    }),
                    _ => self.apply_eth_tx(bytes, known),
                };
                hash.map(|hash| {
                    self.txs.push((
                        hash,
                        TxLocation {
                            height: self.height,
                            item: index as u32,
                        },
                    ));
                    self.tx_leaves.push(iotchain_merkle::leaf_hash(bytes));
                })
            }
        };
        match applied {
            Ok(()) => {
                self.items.push(item);
                self.sources.push(known.map(|k| k.seq));
                Ok(())
            }
            Err(source) => match self.policy {
                Policy::Verify => Err(VerifyError::Item { index, source }),
                Policy::Build => {
                    tracing::info!(id = %item_id(&item), error = %source, "accepted item no longer applies; left out of the block");
                    if let Some(k) = known {
                        self.left_out.push((k.seq, source));
                    }
                    Ok(())
                }
            },
        }
    }

    fn apply_reading(
        &mut self,
        bytes: &Bytes,
        known: Option<&AcceptedItem>,
        arrival_ms: u64,
        index: usize,
    ) -> Result<(), ItemError> {
        // A reading the pool verified is applied from what it kept, unless the device's key
        // changed since; the others are decoded here and verified in one batch at the end.
        let fast = known.and_then(|k| {
            let meta = k.meta.as_ref()?;
            let kv = self.state.device(&meta.device).map(|r| r.key_version());
            (kv == Some(k.key_version)).then_some((meta.clone(), k.id, k.key_version))
        });
        let (meta, id) = match fast {
            Some((meta, id, key_version)) => {
                apply_reading(&mut self.state, &meta, id, key_version)?;
                (meta, id)
            }
            None => {
                let max = self.genesis.params.max_reading_bytes as usize;
                let checked = DecodedReading::decode(bytes.clone(), max, self.reading_aad)?
                    .attach_key(&self.state)?;
                // A builder leaves out a reading that fails (its device rotated its key since
                // the pool verified it); a verifier checks all of them in one batch at the end.
                if self.policy == Policy::Build
                    && !verify_readings(std::slice::from_ref(&checked))[0]
                {
                    return Err(ItemError::BadSignature(checked.reading.meta.device));
                }
                let (meta, id) = (checked.reading.meta.clone(), checked.reading.id);
                apply_reading(&mut self.state, &meta, id, checked.key_version)?;
                if self.policy == Policy::Verify {
                    self.unverified.push(checked);
                }
                (meta, id)
            }
        };
        if self.genesis.params.stream_accumulators {
            let at = LeafPlace {
                height: self.height,
                block_time_ms: self.timestamp_ms,
            };
            self.state
                .accumulate(&meta.device, &meta.stream, id, (meta.seq, meta.ts), at);
        }
        if self.state.hook(&meta.device, &meta.stream).is_some() {
            self.hook_calls.push((meta.device, meta.head(id)));
        }
        let location = ReadingLocation {
            height: self.height,
            index: self.readings.len() as u32,
            item: index as u32,
            arrival_ms: known.map_or(arrival_ms, |k| k.arrival_ms),
            ts: Some(meta.ts),
        };
        self.readings.push((id.0, location));
        Ok(())
    }

    fn apply_owner_tx(&mut self, bytes: &[u8]) -> Result<B256, ItemError> {
        apply_owner_tx(&mut self.state, bytes, self.genesis.chain_id, self.height)
    }

    fn apply_eth_tx(
        &mut self,
        bytes: &[u8],
        known: Option<&AcceptedItem>,
    ) -> Result<B256, ItemError> {
        let tx = match known.and_then(|k| k.eth.clone()) {
            Some(tx) => tx,
            None => Arc::new(decode_eth_tx(self.genesis, bytes)?),
        };
        let receipt = self.executor.execute(&mut self.state, &tx)?;
        self.receipts.push(self.height, receipt);
        Ok(tx.hash)
    }

    /// Runs the hooks, checks the signatures of the readings decoded here and computes the
    /// roots. A bad signature refuses the block under either policy (the builder's readings
    /// are all verified already).
    pub fn finish(mut self) -> Result<Executed, VerifyError> {
        self.receipts.run_hooks(
            &mut self.executor,
            &mut self.state,
            &self.hook_calls,
            self.height,
        );
        if let Some(bad) = verify_readings(&self.unverified).iter().position(|ok| !ok) {
            let r = &self.unverified[bad].reading;
            return Err(VerifyError::BadSignature {
                id: r.id,
                device: r.meta.device,
            });
        }
        let ids: Vec<[u8; 32]> = self.readings.iter().map(|(id, _)| *id).collect();
        let gas = BlockGas {
            base_fee: self.executor.context().base_fee,
            gas_used: self.executor.gas_used(),
        };
        let records = self.state.changed_records();
        let state_root = self.state.root()?;
        Ok(Executed {
            readings_root: B256::from(iotchain_merkle::root(&ids)),
            transactions_root: B256::from(iotchain_merkle::root(&self.tx_leaves)),
            state_root,
            block: ExecutedBlock {
                block: Block {
                    header: Header {
                        chain_id: self.genesis.chain_id,
                        height: self.height,
                        parent_hash: B256::ZERO,
                        timestamp_ms: 0,
                        proposer: B256::ZERO,
                        readings_root: B256::ZERO,
                        reading_count: ids.len() as u64,
                        transactions_root: B256::ZERO,
                        transaction_count: self.tx_leaves.len() as u64,
                        state_root,
                    },
                    items: self.items,
                },
                state: self.state,
                records,
                readings: self.readings,
                txs: self.txs,
                receipts: self.receipts.encoded,
                hook_calls: self.receipts.hook_calls,
                gas,
                consumed: self.consumed,
                sources: self.sources,
                left_out: self.left_out,
            },
        })
    }
}

/// A block whose items are applied, before it has a header: [`Executed::seal`] gives the
/// builder's header, [`Executed::check`] holds a received header against it.
#[derive(Debug)]
pub struct Executed {
    /// RFC 6962 root over the reading ids.
    pub readings_root: B256,
    /// RFC 6962 root over the transactions' leaf hashes.
    pub transactions_root: B256,
    /// The state root after the block.
    pub state_root: B256,
    block: ExecutedBlock,
}

impl Executed {
    /// The block as its builder seals it: on `parent`, at `timestamp_ms`, by `proposer`.
    pub fn seal(mut self, parent: B256, timestamp_ms: u64, proposer: B256) -> ExecutedBlock {
        let h = &mut self.block.block.header;
        h.parent_hash = parent;
        h.timestamp_ms = timestamp_ms;
        h.proposer = proposer;
        h.readings_root = self.readings_root;
        h.transactions_root = self.transactions_root;
        self.block
    }

    /// The block under a received `header`, if the header commits to exactly what the items
    /// gave.
    pub fn check(mut self, header: Header) -> Result<ExecutedBlock, VerifyError> {
        let expect = |what: &'static str, computed: B256, header: B256| {
            if computed == header {
                Ok(())
            } else {
                Err(VerifyError::Root {
                    what,
                    header,
                    computed,
                })
            }
        };
        expect("readings_root", self.readings_root, header.readings_root)?;
        expect(
            "transactions_root",
            self.transactions_root,
            header.transactions_root,
        )?;
        let body = &self.block.block.header;
        if header.reading_count != body.reading_count
            || header.transaction_count != body.transaction_count
        {
            return Err(VerifyError::Counts);
        }
        expect("state_root", self.state_root, header.state_root)?;
        self.block.block.header = header;
        Ok(self.block)
    }
}

/// Decodes an owner transaction of this chain and applies it to `state` at `height`; its hash.
pub fn apply_owner_tx(
    state: &mut State,
    bytes: &[u8],
    chain_id: u64,
    height: u64,
) -> Result<B256, ItemError> {
    let tx = SignedTx::decode_and_check(bytes, chain_id)
        .map_err(|e| ItemError::InvalidTransaction(e.to_string()))?;
    state.apply_tx(&tx, height)?;
    Ok(tx.hash())
}

/// Decodes an Ethereum transaction of this chain and recovers its sender.
pub fn decode_eth_tx(genesis: &Genesis, bytes: &[u8]) -> Result<EthTx, ItemError> {
    Ok(EthTx::decode(
        bytes,
        genesis.chain_id,
        genesis.params.max_eth_tx_bytes as usize,
    )?)
}

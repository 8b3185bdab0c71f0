//! The pending queue: accepted items not yet in a block, the pending view of the state they
//! make, and the reserved funds of the senders of queued Ethereum transactions.

use std::collections::{BTreeMap, HashMap};

use alloy_primitives::{Address, B256, U256};
use iotchain_evm::{BlockContext, EthTx, QueuedSender};
use iotchain_execution::{AcceptedItem, ItemError};
use iotchain_state::State;
use iotchain_storage::{ItemKind, LogItem};

use std::sync::Arc;

/// When an item accepted from a local client is next offered to the other nodes again (until
/// a final block includes or refuses it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Offer {
    pub(crate) next_at_ms: u64,
    pub(crate) attempts: u32,
}

/// The first re-offer waits this long after acceptance (the immediate relay went out then);
/// each next one twice as long, up to [`REOFFER_MAX_MS`].
pub(crate) const REOFFER_FIRST_MS: u64 = 2_000;
/// The longest wait between two offers of one item.
pub(crate) const REOFFER_MAX_MS: u64 = 30_000;

/// A sender's queued Ethereum transactions.
#[derive(Debug, Clone, Copy, Default)]
struct QueuedTxs {
    count: u64,
    max_cost: U256,
}

/// Accepted items waiting for a block.
#[derive(Debug)]
pub(crate) struct Queue {
    /// Committed state plus every queued reading and owner transaction. Queued Ethereum
    /// transactions are not executed here (the block that includes one executes it): their
    /// senders' nonces and reserved funds are in `senders`.
    pub(crate) pending: State,
    /// Accepted items not yet in a block, by item-log seq (oldest first).
    pub(crate) items: BTreeMap<u64, AcceptedItem>,
    /// Reading ids and transaction hashes in the queue (lookups only).
    pub(crate) index: HashMap<B256, u64>,
    /// Senders of queued Ethereum transactions (lookups only).
    senders: HashMap<Address, QueuedTxs>,
    /// Queued owner and Ethereum transactions.
    pub(crate) owner_txs: usize,
    pub(crate) eth_txs: usize,
    pub(crate) next_seq: u64,
    /// Accepted items not yet synced to the log.
    pub(crate) unsynced: Vec<LogItem>,
    /// Items this node must keep offering to the others (accepted from local clients, or
    /// recovered from the log), by log seq.
    pub(crate) offers: BTreeMap<u64, Offer>,
}

impl Queue {
    pub(crate) fn new(pending: State, next_seq: u64) -> Self {
        Self {
            pending,
            items: BTreeMap::new(),
            index: HashMap::new(),
            senders: HashMap::new(),
            owner_txs: 0,
            eth_txs: 0,
            next_seq,
            unsynced: Vec::new(),
            offers: BTreeMap::new(),
        }
    }

    /// Keeps offering the item with log seq `seq` to the other nodes, from `now_ms` on.
    pub(crate) fn offer(&mut self, seq: u64, now_ms: u64) {
        self.offers.insert(
            seq,
            Offer {
                next_at_ms: now_ms + REOFFER_FIRST_MS,
                attempts: 0,
            },
        );
    }

    /// Readings and transactions waiting.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let txs = self.owner_txs + self.eth_txs;
        (self.items.len() - txs, txs)
    }

    /// Queues an accepted item (already applied to the pending view, if it applies there)
    /// and hands it to the item log.
    pub(crate) fn push(&mut self, item: AcceptedItem) {
        self.unsynced.push(LogItem {
            seq: item.seq,
            kind: item.kind,
            arrival_ms: item.arrival_ms,
            key_version: item.key_version,
            bytes: item.bytes.clone(),
        });
        self.insert(item);
    }

    /// Queues an item that is in the item log already.
    pub(crate) fn insert(&mut self, item: AcceptedItem) {
        match (&item.kind, &item.eth) {
            (ItemKind::Tx, _) => self.owner_txs += 1,
            (ItemKind::EthTx, Some(tx)) => {
                self.eth_txs += 1;
                let s = self.senders.entry(tx.sender).or_default();
                s.count += 1;
                s.max_cost = s.max_cost.saturating_add(item.max_cost);
            }
            _ => {}
        }
        self.index.insert(item.id, item.seq);
        self.items.insert(item.seq, item);
    }

    /// Takes the item with log seq `seq` out of the queue.
    pub(crate) fn remove(&mut self, seq: u64) -> Option<AcceptedItem> {
        self.offers.remove(&seq);
        let item = self.items.remove(&seq)?;
        self.index.remove(&item.id);
        match (&item.kind, &item.eth) {
            (ItemKind::Tx, _) => self.owner_txs -= 1,
            (ItemKind::EthTx, Some(tx)) => {
                self.eth_txs -= 1;
                if let Some(s) = self.senders.get_mut(&tx.sender) {
                    s.count -= 1;
                    s.max_cost = s.max_cost.saturating_sub(item.max_cost);
                    if s.count == 0 {
                        self.senders.remove(&tx.sender);
                    }
                }
            }
            _ => {}
        }
        Some(item)
    }

    /// The queued item with this id.
    pub(crate) fn get(&self, id: &B256) -> Option<&AcceptedItem> {
        self.items.get(self.index.get(id)?)
    }

    /// The next log seq.
    pub(crate) fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// `sender` as its next Ethereum transaction sees it: its account in the pending view
    /// after its queued transactions.
    pub(crate) fn queued_sender(&self, sender: &Address) -> QueuedSender {
        let account = self.pending.account(sender);
        let queued = self.senders.get(sender).copied().unwrap_or_default();
        QueuedSender {
            nonce: account.map_or(0, |a| a.nonce) + queued.count,
            balance: account
                .map_or(U256::ZERO, |a| a.balance)
                .saturating_sub(queued.max_cost),
            has_code: account.is_some_and(|a| a.code_hash != alloy_primitives::KECCAK256_EMPTY),
        }
    }

    /// Checks an Ethereum transaction as its sender's next one and queues it; its log seq.
    pub(crate) fn enqueue_eth(
        &mut self,
        tx: Arc<EthTx>,
        ctx: &BlockContext,
        arrival_ms: u64,
        logged: Option<u64>,
    ) -> Result<u64, ItemError> {
        let max_cost = iotchain_evm::check_next(&tx, ctx, &self.queued_sender(&tx.sender))?;
        let item = |seq| AcceptedItem {
            seq,
            kind: ItemKind::EthTx,
            meta: None,
            id: tx.hash,
            bytes: tx.raw.clone(),
            arrival_ms,
            key_version: 0,
            eth: Some(tx.clone()),
            max_cost,
        };
        Ok(match logged {
            Some(seq) => {
                self.insert(item(seq));
                seq
            }
            None => {
                let seq = self.take_seq();
                self.push(item(seq));
                seq
            }
        })
    }

    /// Drops queued Ethereum transactions that can no longer follow their sender's nonce in
    /// the pending view (another transaction of the sender took that nonce in a block, or an
    /// earlier one of the sender was left out of a block), and those after them; returns them
    /// with why.
    pub(crate) fn drop_stale_eth_txs(&mut self) -> Vec<(AcceptedItem, ItemError)> {
        let mut dropped = Vec::new();
        if self.eth_txs == 0 {
            return dropped;
        }
        // Per sender: the nonce its next queued transaction must carry (lookups only).
        let mut next: HashMap<Address, Option<u64>> = HashMap::new();
        let mut stale = Vec::new();
        for item in self.items.values() {
            let Some(tx) = &item.eth else { continue };
            let account_nonce = self.pending.account(&tx.sender).map_or(0, |a| a.nonce);
            let expected = next.entry(tx.sender).or_insert(Some(account_nonce));
            if *expected == Some(tx.nonce()) {
                *expected = tx.nonce().checked_add(1);
            } else {
                *expected = None;
                let e = if tx.nonce() < account_nonce {
                    iotchain_evm::EvmError::NonceTooLow {
                        sender: tx.sender,
                        got: tx.nonce(),
                        expected: account_nonce,
                    }
                } else {
                    iotchain_evm::EvmError::NonceTooHigh {
                        sender: tx.sender,
                        got: tx.nonce(),
                        expected: account_nonce,
                    }
                };
                stale.push((item.seq, ItemError::Evm(e)));
            }
        }
        for (seq, e) in stale {
            if let Some(item) = self.remove(seq) {
                dropped.push((item, e));
            }
        }
        dropped
    }
}

//! The state's trie nodes on disk: each node of the state trie and of every storage trie
//! under its path ([`iotchain_state::node_key`]), written with the block that changed it, and
//! read back through a snapshot of one committed version, so a state never mixes versions.

use std::sync::Arc;

use alloy_primitives::Address;
use alloy_trie::Nibbles;
use iotchain_state::{NodeSource, StateRecords, node_key};
use redb::{ReadOnlyTable, ReadableDatabase, TableDefinition, WriteTransaction};

use crate::{ChainStore, Result};

/// Trie nodes by store key.
pub(crate) const TRIE_NODES: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("trie_nodes");

/// Writes a block's changed trie nodes; first drops every stored node of the storage tries
/// the block wiped or deleted (their new nodes, if any, are among `nodes`).
pub(crate) fn write(
    w: &WriteTransaction,
    state: &StateRecords,
    nodes: &[(Vec<u8>, Vec<u8>)],
) -> Result<()> {
    let mut table = w.open_table(TRIE_NODES)?;
    let gone = state.wiped.iter().chain(
        state
            .accounts
            .iter()
            .filter(|(_, a)| a.is_none())
            .map(|(a, _)| a),
    );
    for a in gone {
        let mut from = vec![1u8];
        from.extend_from_slice(a.as_slice());
        let mut to = from.clone();
        to.push(u8::MAX);
        table.retain_in(from.as_slice()..to.as_slice(), |_, _| false)?;
    }
    for (k, v) in nodes {
        table.insert(k.as_slice(), v.as_slice())?;
    }
    Ok(())
}

/// The trie nodes of one committed version of the store.
struct Snapshot {
    table: ReadOnlyTable<&'static [u8], &'static [u8]>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("trie node snapshot")
    }
}

impl NodeSource for Snapshot {
    fn node(
        &self,
        trie: Option<&Address>,
        path: &Nibbles,
    ) -> std::result::Result<Option<Vec<u8>>, String> {
        self.table
            .get(node_key(trie, path).as_slice())
            .map(|v| v.map(|v| v.value().to_vec()))
            .map_err(|e| format!("the store failed: {e}"))
    }
}

impl ChainStore {
    /// The trie nodes as of the last commit, to read a state's nodes from; it keeps that
    /// version readable while it is held.
    pub fn trie_nodes(&self) -> Result<Arc<dyn NodeSource>> {
        let table = self.db.begin_read()?.open_table(TRIE_NODES)?;
        Ok(Arc::new(Snapshot { table }))
    }

    /// Drops every stored trie node, as a data directory from before they were stored
    /// (for tests of the upgrade path).
    #[doc(hidden)]
    pub fn forget_trie_nodes(&self) -> Result<()> {
        let w = self.db.begin_write()?;
        w.open_table(TRIE_NODES)?.retain(|_, _| false)?;
        w.commit()?;
        Ok(())
    }

    /// Whether the store holds the state trie's root node (a store from before trie nodes
    /// were stored does not, and its state is rebuilt from the records once).
    pub fn has_trie_nodes(&self) -> Result<bool> {
        let r = self.db.begin_read()?;
        let t = r.open_table(TRIE_NODES)?;
        Ok(t.get(node_key(None, &Nibbles::new()).as_slice())?.is_some())
    }
}

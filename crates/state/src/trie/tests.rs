//! The trie against alloy-trie's `HashBuilder`: roots, contents and proofs over random
//! changes, saving, pruning and reopening; bad stored nodes.
use std::collections::BTreeMap;

use alloy_trie::{HashBuilder, proof::ProofRetainer};
use proptest::prelude::*;

use super::*;

fn reference_root(m: &BTreeMap<Vec<u8>, Vec<u8>>) -> B256 {
    let mut hb = HashBuilder::default();
    for (k, v) in m {
        hb.add_leaf(Nibbles::unpack(k), v);
    }
    hb.root()
}

fn reference_proof(m: &BTreeMap<Vec<u8>, Vec<u8>>, key: &[u8]) -> Vec<Bytes> {
    let target = Nibbles::unpack(key);
    let mut hb = HashBuilder::default().with_proof_retainer(ProofRetainer::new(vec![target]));
    for (k, v) in m {
        hb.add_leaf(Nibbles::unpack(k), v);
    }
    hb.root();
    if m.is_empty() {
        return vec![];
    }
    hb.take_proof_nodes()
        .matching_nodes_sorted(&target)
        .into_iter()
        .map(|(_, n)| n)
        .collect()
}

/// Random changes over a small key space (so keys collide, branches split and
/// collapse), with values long and short (so some nodes are inlined in their parent).
fn ops(key_len: usize) -> impl Strategy<Value = Vec<(Vec<u8>, Option<Vec<u8>>)>> {
    let key = prop::collection::vec(
        prop::sample::select(vec![0u8, 1, 0x10, 0x11, 0xff]),
        key_len,
    );
    let value = prop::option::weighted(0.7, prop::collection::vec(any::<u8>(), 1..40));
    prop::collection::vec((key, value), 0..80)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// After every change, root, contents and proofs equal a trie built from scratch;
    /// a clone taken before the changes keeps its old root.
    #[test]
    fn matches_hash_builder(key_len in 1usize..5, ops in ops(4)) {
        let mut trie = Trie::new();
        let mut model = BTreeMap::new();
        let mut snapshots = Vec::new();
        for (i, (key, value)) in ops.iter().enumerate() {
            let key = &key[..key_len];
            match value {
                Some(v) => {
                    trie.insert(key, v.clone()).unwrap();
                    model.insert(key.to_vec(), v.clone());
                }
                None => {
                    prop_assert_eq!(trie.remove(key).unwrap(), model.remove(key).is_some());
                }
            }
            prop_assert_eq!(trie.is_empty(), model.is_empty());
            prop_assert_eq!(trie.get(key).unwrap(), model.get(key).cloned());
            if i % 7 == 0 {
                prop_assert_eq!(trie.root(), reference_root(&model));
                snapshots.push((trie.clone(), reference_root(&model)));
            }
        }
        prop_assert_eq!(trie.root(), reference_root(&model));
        let contents: Vec<(Vec<u8>, Vec<u8>)> =
            trie.iter().map(|(k, v)| (k.pack().to_vec(), v.to_vec())).collect();
        let expected: Vec<(Vec<u8>, Vec<u8>)> = model.clone().into_iter().collect();
        prop_assert_eq!(contents, expected);
        for (key, _) in &ops {
            let key = &key[..key_len];
            prop_assert_eq!(trie.proof(key).unwrap(), reference_proof(&model, key));
        }
        for (snapshot, root) in snapshots {
            prop_assert_eq!(snapshot.root(), root);
        }
    }
}

#[test]
fn empty_trie() {
    let mut t = Trie::new();
    assert_eq!(t.root(), EMPTY_ROOT_HASH);
    assert!(t.proof(&[0; 32]).unwrap().is_empty());
    assert!(!t.remove(&[0; 32]).unwrap());
    t.insert(&[1; 32], vec![1]).unwrap();
    // Keys of another length are not in it (and may not be inserted).
    assert_eq!(t.get(&[1; 31]).unwrap(), None);
    assert!(!t.remove(&[1; 33]).unwrap());
    assert!(t.proof(&[1; 31]).unwrap().is_empty());
    let copy = t.clone();
    let shorter = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        copy.clone().insert(&[1; 31], vec![1])
    }));
    assert!(shorter.is_err());
    assert!(t.remove(&[1; 32]).unwrap());
    assert_eq!(t.root(), EMPTY_ROOT_HASH);
    assert!(t.is_empty());
}

fn save(trie: &mut Trie, nodes: &MemNodes) {
    trie.root();
    let mut store = nodes.nodes.lock().unwrap();
    trie.unsaved(|path, node| {
        store.insert(node_key(None, path), node);
    });
    drop(store);
    trie.mark_saved();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A trie saved after each batch of changes ("block"), pruned to a random depth or
    /// reopened from its stored root ("restart"), keeps the root, contents and proofs
    /// of a trie built from scratch; loads check every node against its hash.
    #[test]
    fn saved_pruned_and_reopened(
        blocks in prop::collection::vec((ops(4), 0usize..4, any::<bool>()), 1..6),
    ) {
        let nodes: Arc<MemNodes> = Arc::default();
        let source: Arc<dyn NodeSource> = nodes.clone();
        let mut trie = Trie::new();
        trie.set_source(source.clone(), None);
        let mut model = BTreeMap::new();
        for (ops, depth, reopen) in blocks {
            for (key, value) in &ops {
                match value {
                    Some(v) => {
                        trie.insert(key, v.clone()).unwrap();
                        model.insert(key.clone(), v.clone());
                    }
                    None => {
                        prop_assert_eq!(trie.remove(key).unwrap(), model.remove(key).is_some());
                    }
                }
            }
            prop_assert_eq!(trie.root(), reference_root(&model));
            save(&mut trie, &nodes);
            trie.prune(depth);
            if reopen {
                trie = Trie::stored(reference_root(&model), source.clone(), None);
            }
            prop_assert_eq!(trie.root(), reference_root(&model));
            for (key, _) in &ops {
                prop_assert_eq!(trie.get(key).unwrap(), model.get(key).cloned());
                prop_assert_eq!(trie.proof(key).unwrap(), reference_proof(&model, key));
            }
        }
    }
}

#[test]
fn a_missing_or_forged_node_is_an_error() {
    let nodes: Arc<MemNodes> = Arc::default();
    let mut trie = Trie::new();
    for i in 0..64u8 {
        trie.insert(&[i, 1, 2, 3], vec![i; 40]).unwrap();
    }
    save(&mut trie, &nodes);
    let root = trie.root();
    let source: Arc<dyn NodeSource> = nodes.clone();
    let key_of_root = node_key(None, &Nibbles::new());
    // Another node under the root's path: refused by its hash.
    let forged = {
        let mut store = nodes.nodes.lock().unwrap();
        let other = store
            .iter()
            .find(|(k, _)| **k != key_of_root)
            .map(|(_, v)| v.clone())
            .unwrap();
        store.insert(key_of_root.clone(), other)
    };
    let mut reopened = Trie::stored(root, source.clone(), None);
    let e = reopened.insert(&[9, 9, 9, 9], vec![1]).unwrap_err();
    assert!(e.reason.contains("is not"), "{e}");
    // No node at all: a clear error, not a panic.
    nodes
        .nodes
        .lock()
        .unwrap()
        .insert(key_of_root.clone(), forged.unwrap());
    nodes
        .nodes
        .lock()
        .unwrap()
        .retain(|k, _| k.len() <= key_of_root.len());
    let reopened = Trie::stored(root, source, None);
    let e = reopened.proof(&[5, 1, 2, 3]).unwrap_err();
    assert!(e.reason.contains("not in the store"), "{e}");
    assert_eq!(e.trie, "state trie");
}

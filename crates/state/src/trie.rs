//! An incremental, persistent Merkle Patricia trie: Ethereum's hexary trie (the node encoding
//! is alloy-trie's), updated in place and rehashed only along the paths a change touched.
//!
//! Nodes are shared through `Arc`s, so a clone of a [`Trie`] is O(1) and a change to one copy
//! copies only the nodes on its path (`Arc::make_mut`). Each node caches its RLP reference
//! (the node itself when shorter than 32 bytes, else its hash); a change clears the caches on
//! its path, and [`Trie::root`] recomputes only those. This replaces rebuilding the trie from
//! every leaf at every block: a block that touches `k` of `n` leaves hashes about
//! `k · log₁₆ n` nodes instead of `n`.
//!
//! alloy-trie's `HashBuilder` computes roots and proofs from sorted leaves only (it has no
//! updates); the tests hold this trie to it for roots and proofs over random changes.

use std::sync::{Arc, OnceLock};

use alloy_primitives::{B256, Bytes, keccak256};
use alloy_trie::{
    EMPTY_ROOT_HASH, Nibbles, TrieMask,
    nodes::{BranchNodeRef, ExtensionNodeRef, LeafNodeRef, RlpNode},
};

/// A Merkle Patricia trie over keys of one length (the state's are 32-byte hashes).
#[derive(Debug, Clone, Default)]
pub struct Trie {
    root: Option<Arc<Node>>,
    len: usize,
    /// The length of its keys, in bytes, from the first insert (a key that is a prefix of
    /// another has no place in this trie: its branches hold no values).
    key_len: Option<usize>,
}

#[derive(Debug, Clone)]
enum Node {
    /// The rest of a key and its value; its reference is computed when it is made.
    Leaf {
        key: Nibbles,
        value: Vec<u8>,
        rlp: RlpNode,
    },
    /// A shared run of nibbles above a branch.
    Extension {
        key: Nibbles,
        child: Arc<Node>,
        rlp: OnceLock<RlpNode>,
    },
    /// Up to 16 children, by the next nibble (keys of one length never end at a branch).
    Branch {
        children: Box<[Option<Arc<Node>>; 16]>,
        rlp: OnceLock<RlpNode>,
    },
}

impl Node {
    fn leaf(key: Nibbles, value: Vec<u8>) -> Self {
        let rlp = LeafNodeRef::new(&key, &value).rlp(&mut Vec::new());
        Node::Leaf { key, value, rlp }
    }

    /// The node's reference in its parent: its RLP when shorter than 32 bytes, else the
    /// RLP of its hash. Cached until the node changes.
    fn rlp(&self) -> &RlpNode {
        match self {
            Node::Leaf { rlp, .. } => rlp,
            Node::Extension { key, child, rlp } => {
                rlp.get_or_init(|| ExtensionNodeRef::new(key, child.rlp()).rlp(&mut Vec::new()))
            }
            Node::Branch { children, rlp } => rlp.get_or_init(|| {
                let (stack, mask) = branch_stack(children);
                BranchNodeRef::new(&stack, mask).rlp(&mut Vec::new())
            }),
        }
    }

    /// The node's full RLP encoding (what a proof carries).
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Node::Leaf { key, value, .. } => {
                LeafNodeRef::new(key, value).rlp(&mut out);
            }
            Node::Extension { key, child, .. } => {
                ExtensionNodeRef::new(key, child.rlp()).rlp(&mut out);
            }
            Node::Branch { children, .. } => {
                let (stack, mask) = branch_stack(children);
                BranchNodeRef::new(&stack, mask).rlp(&mut out);
            }
        }
        out
    }

    /// Forgets the cached reference (the node is about to change).
    fn invalidate(&mut self) {
        match self {
            Node::Leaf { .. } => {}
            Node::Extension { rlp, .. } | Node::Branch { rlp, .. } => {
                rlp.take();
            }
        }
    }
}

fn branch_stack(children: &[Option<Arc<Node>>; 16]) -> (Vec<RlpNode>, TrieMask) {
    let mut mask = TrieMask::default();
    let mut stack = Vec::with_capacity(16);
    for (i, c) in children.iter().enumerate() {
        if let Some(c) = c {
            mask.set_bit(i as u8);
            stack.push(c.rlp().clone());
        }
    }
    (stack, mask)
}

fn branch(children: [Option<Arc<Node>>; 16]) -> Node {
    Node::Branch {
        children: Box::new(children),
        rlp: OnceLock::new(),
    }
}

/// `prefix ‖ rest` as one key.
fn join(prefix: &Nibbles, rest: &Nibbles) -> Nibbles {
    prefix.join(rest)
}

impl Trie {
    /// An empty trie.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `key` has the length of this trie's keys (any length while it has none).
    fn fits(&self, key: &[u8]) -> bool {
        self.key_len.is_none_or(|l| l == key.len())
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the trie has no keys.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The root hash (`EMPTY_ROOT_HASH` when empty). Rehashes only the nodes changed since
    /// the last call.
    pub fn root(&self) -> B256 {
        match &self.root {
            None => EMPTY_ROOT_HASH,
            Some(n) => {
                let rlp = n.rlp();
                rlp.as_hash().unwrap_or_else(|| keccak256(rlp))
            }
        }
    }

    /// The value under `key`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        if !self.fits(key) {
            return None;
        }
        find(self.root.as_deref()?, &Nibbles::unpack(key))
    }

    /// Sets `key` to `value` (an empty value is not allowed in a trie: use [`Trie::remove`]).
    ///
    /// # Panics
    ///
    /// If `key` is not as long as the keys inserted before (a caller's bug).
    pub fn insert(&mut self, key: &[u8], value: Vec<u8>) {
        debug_assert!(!value.is_empty(), "empty trie value");
        let len = *self.key_len.get_or_insert(key.len());
        assert_eq!(key.len(), len, "trie keys are all {len} bytes long");
        let path = Nibbles::unpack(key);
        if insert(&mut self.root, &path, value) {
            self.len += 1;
        }
    }

    /// Removes `key`; returns whether it was there.
    pub fn remove(&mut self, key: &[u8]) -> bool {
        if !self.fits(key) {
            return false;
        }
        let path = Nibbles::unpack(key);
        let removed = remove(&mut self.root, &path);
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// The RLP of every node on the path from the root towards `key`: an EIP-1186 proof of
    /// its value, or of its absence (empty for the empty trie, as geth answers).
    pub fn proof(&self, key: &[u8]) -> Vec<Bytes> {
        if !self.fits(key) {
            return Vec::new();
        }
        let path = Nibbles::unpack(key);
        let mut out = Vec::new();
        let mut next = self.root.as_deref();
        let mut at = 0;
        while let Some(node) = next {
            out.push(Bytes::from(node.encode()));
            next = match node {
                Node::Leaf { .. } => None,
                Node::Extension { key, child, .. } => {
                    let rest = path.slice(at..);
                    rest.starts_with(key).then(|| {
                        at += key.len();
                        child.as_ref()
                    })
                }
                Node::Branch { children, .. } => {
                    let c = children[path.get_unchecked(at) as usize].as_deref();
                    at += 1;
                    c
                }
            };
        }
        out
    }

    /// Every key and value, in key order (for tests and rebuilds).
    pub fn iter(&self) -> impl Iterator<Item = (Nibbles, &[u8])> {
        let mut stack: Vec<(Nibbles, &Node)> = Vec::new();
        if let Some(r) = self.root.as_deref() {
            stack.push((Nibbles::new(), r));
        }
        std::iter::from_fn(move || {
            while let Some((prefix, node)) = stack.pop() {
                match node {
                    Node::Leaf { key, value, .. } => return Some((join(&prefix, key), &value[..])),
                    Node::Extension { key, child, .. } => stack.push((join(&prefix, key), child)),
                    Node::Branch { children, .. } => {
                        for (i, c) in children.iter().enumerate().rev() {
                            if let Some(c) = c {
                                let mut p = prefix;
                                p.push(i as u8);
                                stack.push((p, c));
                            }
                        }
                    }
                }
            }
            None
        })
    }
}

/// Inserts `path → value` below `slot`; returns whether the key is new.
fn insert(slot: &mut Option<Arc<Node>>, path: &Nibbles, value: Vec<u8>) -> bool {
    match slot {
        None => {
            *slot = Some(Arc::new(Node::leaf(*path, value)));
            true
        }
        Some(node) => insert_into(node, path, value),
    }
}

/// Inserts `path → value` into the subtrie at `node`, changing in place the nodes no
/// snapshot shares (`Arc::make_mut` copies the others).
fn insert_into(node: &mut Arc<Node>, path: &Nibbles, value: Vec<u8>) -> bool {
    let node = Arc::make_mut(node);
    node.invalidate();
    match node {
        Node::Leaf { key, value: v, .. } => {
            if key == path {
                *node = Node::leaf(*path, value);
                return false;
            }
            // Split: a branch below the common prefix, with both leaves.
            let common = key.common_prefix_length(path);
            let mut children: [Option<Arc<Node>>; 16] = Default::default();
            let old = Node::leaf(key.slice(common + 1..), std::mem::take(v));
            children[key.get_unchecked(common) as usize] = Some(Arc::new(old));
            children[path.get_unchecked(common) as usize] =
                Some(Arc::new(Node::leaf(path.slice(common + 1..), value)));
            *node = with_prefix(path.slice(..common), branch(children));
            true
        }
        Node::Extension { key, child, .. } => {
            let common = key.common_prefix_length(path);
            if common == key.len() {
                return insert_into(child, &path.slice(common..), value);
            }
            // Split the extension where the new key leaves it.
            let mut children: [Option<Arc<Node>>; 16] = Default::default();
            let below = key.slice(common + 1..);
            let old: Arc<Node> = if below.is_empty() {
                child.clone()
            } else {
                Arc::new(Node::Extension {
                    key: below,
                    child: child.clone(),
                    rlp: OnceLock::new(),
                })
            };
            children[key.get_unchecked(common) as usize] = Some(old);
            children[path.get_unchecked(common) as usize] =
                Some(Arc::new(Node::leaf(path.slice(common + 1..), value)));
            *node = with_prefix(path.slice(..common), branch(children));
            true
        }
        Node::Branch { children, .. } => {
            let i = path.get_unchecked(0) as usize;
            insert(&mut children[i], &path.slice(1..), value)
        }
    }
}

/// `node` below an extension of `prefix` (or `node` itself for an empty prefix).
fn with_prefix(prefix: Nibbles, node: Node) -> Node {
    if prefix.is_empty() {
        node
    } else {
        Node::Extension {
            key: prefix,
            child: Arc::new(node),
            rlp: OnceLock::new(),
        }
    }
}

/// Removes `path` below `slot`, collapsing what is left; returns whether it was there.
fn remove(slot: &mut Option<Arc<Node>>, path: &Nibbles) -> bool {
    let Some(node) = slot else {
        return false;
    };
    // Look before copying: a key that is not there changes nothing.
    if find(node, path).is_none() {
        return false;
    }
    if remove_from(node, path) {
        *slot = None;
    }
    true
}

/// Removes `path`, which the subtrie at `node` holds; returns whether the subtrie is left
/// empty (it was that leaf). What is left collapses: a branch with one child becomes that
/// child one nibble longer, and an extension over what is no longer a branch merges with it.
fn remove_from(node: &mut Arc<Node>, path: &Nibbles) -> bool {
    if matches!(**node, Node::Leaf { .. }) {
        return true;
    }
    let node = Arc::make_mut(node);
    node.invalidate();
    match node {
        Node::Leaf { .. } => unreachable!("returned above"),
        Node::Extension { key, child, .. } => {
            // The child is a branch: it keeps at least one child.
            remove_from(child, &path.slice(key.len()..));
            if let Some(merged) = prefixed(key, child) {
                *node = merged;
            }
        }
        Node::Branch { children, .. } => {
            let i = path.get_unchecked(0) as usize;
            if remove_from(children[i].as_mut().expect("contains"), &path.slice(1..)) {
                children[i] = None;
            }
            let mut left = children.iter().enumerate().filter(|(_, c)| c.is_some());
            let (only, _) = left.next().expect("a branch had two children");
            if left.next().is_none() {
                // One child left: the branch becomes that child with its nibble in front.
                let c = children[only].take().expect("present");
                let nibble = Nibbles::from_nibbles_unchecked([only as u8]);
                *node = prefixed(&nibble, &c).unwrap_or_else(|| Node::Extension {
                    key: nibble,
                    child: c,
                    rlp: OnceLock::new(),
                });
            }
        }
    }
    false
}

/// `child` with `prefix` in front, merged into one node, when it is a leaf or an extension;
/// `None` for a branch (which needs an extension above it).
fn prefixed(prefix: &Nibbles, child: &Arc<Node>) -> Option<Node> {
    match &**child {
        Node::Branch { .. } => None,
        Node::Leaf { key, value, .. } => Some(Node::leaf(join(prefix, key), value.clone())),
        Node::Extension { key, child, .. } => Some(Node::Extension {
            key: join(prefix, key),
            child: child.clone(),
            rlp: OnceLock::new(),
        }),
    }
}

/// The value under `path` in the subtrie at `node`.
fn find<'a>(mut node: &'a Node, path: &Nibbles) -> Option<&'a [u8]> {
    let mut at = 0;
    loop {
        match node {
            Node::Leaf { key, value, .. } => {
                return (path.slice(at..) == *key).then_some(value.as_slice());
            }
            Node::Extension { key, child, .. } => {
                if !path.slice(at..).starts_with(key) {
                    return None;
                }
                at += key.len();
                node = child;
            }
            Node::Branch { children, .. } => {
                node = children[path.get_unchecked(at) as usize].as_deref()?;
                at += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
                        trie.insert(key, v.clone());
                        model.insert(key.to_vec(), v.clone());
                    }
                    None => {
                        prop_assert_eq!(trie.remove(key), model.remove(key).is_some());
                    }
                }
                prop_assert_eq!(trie.len(), model.len());
                prop_assert_eq!(trie.get(key), model.get(key).map(|v| v.as_slice()));
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
                prop_assert_eq!(trie.proof(key), reference_proof(&model, key));
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
        assert!(t.proof(&[0; 32]).is_empty());
        assert!(!t.remove(&[0; 32]));
        t.insert(&[1; 32], vec![1]);
        // Keys of another length are not in it (and may not be inserted).
        assert_eq!(t.get(&[1; 31]), None);
        assert!(!t.remove(&[1; 33]));
        assert!(t.proof(&[1; 31]).is_empty());
        let shorter = std::panic::catch_unwind(|| t.clone().insert(&[1; 31], vec![1]));
        assert!(shorter.is_err());
        assert!(t.remove(&[1; 32]));
        assert_eq!(t.root(), EMPTY_ROOT_HASH);
        assert!(t.is_empty());
    }
}

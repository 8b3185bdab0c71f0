//! An incremental, persistent Merkle Patricia trie: Ethereum's hexary trie (the node encoding
//! is alloy-trie's), updated in place and rehashed only along the paths a change touched, whose
//! nodes may live in the store rather than in memory.
//!
//! Nodes are shared through `Arc`s, so a clone of a [`Trie`] is O(1) and a change to one copy
//! copies only the nodes on its path (`Arc::make_mut`). Each node caches its RLP reference
//! (the node itself when shorter than 32 bytes, else its hash); a change clears the caches on
//! its path, and [`Trie::root`] recomputes only those. A block that touches `k` of `n` leaves
//! hashes about `k · log₁₆ n` nodes instead of `n`.
//!
//! **Stored nodes.** A trie may be backed by a [`NodeSource`]: one version of the store, where
//! each node is kept under its path ([`node_key`]). A subtrie not in memory is a reference
//! (its hash); a change or a proof that reaches it loads it, checking it against the hash.
//! [`Trie::unsaved`] yields the nodes changed since they were saved, for the block's commit;
//! [`Trie::mark_saved`] records that they are; [`Trie::prune`] then drops everything below a
//! depth from memory. So memory is bounded by how much is kept, not by the number of leaves,
//! and a restart starts from the stored root ([`Trie::stored`]) instead of reinserting them.
//!
//! alloy-trie's `HashBuilder` computes roots and proofs from sorted leaves only (it has no
//! updates); the tests hold this trie to it for roots and proofs over random changes, pruning
//! and reloading.

use std::{
    fmt,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
};

use alloy_primitives::{Address, B256, Bytes, keccak256};
use alloy_rlp::Decodable;
use alloy_trie::{
    EMPTY_ROOT_HASH, Nibbles, TrieMask,
    nodes::{BranchNodeRef, ExtensionNodeRef, LeafNodeRef, RlpNode, TrieNode},
};

/// Where the nodes of stored tries are read from: one version of the store (a read
/// snapshot), so a trie never mixes nodes of two versions.
pub trait NodeSource: Send + Sync + fmt::Debug {
    /// The encoding of the node saved at `path` of `trie` (`None`: the state trie; `Some(a)`:
    /// the storage trie of account `a`), if one is saved there.
    fn node(&self, trie: Option<&Address>, path: &Nibbles) -> Result<Option<Vec<u8>>, String>;
}

/// The store key of the node at `path` of `trie`: `0x00` for the state trie or
/// `0x01 ‖ account` for a storage trie, then the path's length in nibbles and its packed
/// nibbles. Each account's storage trie is one key range.
pub fn node_key(trie: Option<&Address>, path: &Nibbles) -> Vec<u8> {
    let mut key = Vec::with_capacity(22 + 33);
    match trie {
        None => key.push(0),
        Some(a) => {
            key.push(1);
            key.extend_from_slice(a.as_slice());
        }
    }
    key.push(path.len() as u8);
    key.extend_from_slice(&path.pack());
    key
}

/// A stored node that could not be read: the store failed, lacks it, or holds another.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("trie node {path} of the {trie}: {reason}")]
pub struct TrieError {
    /// Which trie: the state trie or an account's storage trie.
    pub trie: String,
    /// The node's path, in hex nibbles.
    pub path: String,
    /// What went wrong.
    pub reason: String,
}

/// A path as hex nibbles, for errors.
fn hex_path(path: &Nibbles) -> String {
    path.iter().map(|n| format!("{n:x}")).collect()
}

/// A trie's store: the source and which of its tries this one is.
#[derive(Debug, Clone)]
struct Source {
    nodes: Arc<dyn NodeSource>,
    trie: Option<Address>,
}

impl Source {
    fn error(&self, path: &Nibbles, reason: impl Into<String>) -> TrieError {
        TrieError {
            trie: match &self.trie {
                None => "state trie".into(),
                Some(a) => format!("storage trie of {a}"),
            },
            path: hex_path(path),
            reason: reason.into(),
        }
    }

    /// The node at `path` whose reference is `expected`: decoded from the reference itself
    /// when it is inlined, else read from the store and checked against the hash.
    fn load(&self, path: &Nibbles, expected: &RlpNode) -> Result<Node, TrieError> {
        let bytes = match expected.as_hash() {
            None => expected.to_vec(),
            Some(hash) => {
                let bytes = self
                    .nodes
                    .node(self.trie.as_ref(), path)
                    .map_err(|e| self.error(path, e))?
                    .ok_or_else(|| self.error(path, "not in the store"))?;
                if keccak256(&bytes) != hash {
                    return Err(self.error(path, format!("the stored node is not {hash}")));
                }
                bytes
            }
        };
        let node = TrieNode::decode(&mut bytes.as_slice())
            .map_err(|e| self.error(path, format!("undecodable: {e}")))?;
        let saved = Saved(AtomicBool::new(true));
        let rlp = OnceLock::from(expected.clone());
        Ok(match node {
            TrieNode::EmptyRoot => return Err(self.error(path, "an empty node below the root")),
            TrieNode::Leaf(l) => Node::Leaf {
                rlp: LeafNodeRef::new(&l.key, &l.value).rlp(&mut Vec::new()),
                key: l.key,
                value: l.value,
                saved,
            },
            TrieNode::Extension(e) => Node::Extension {
                key: e.key,
                child: Arc::new(Node::Stored { rlp: e.child }),
                rlp,
                saved,
            },
            TrieNode::Branch(b) => {
                let mut children: [Option<Arc<Node>>; 16] = Default::default();
                let mut stack = b.stack.into_iter();
                for (i, c) in children.iter_mut().enumerate() {
                    if b.state_mask.is_bit_set(i as u8) {
                        let rlp = stack
                            .next()
                            .ok_or_else(|| self.error(path, "a branch lacks a child"))?;
                        *c = Some(Arc::new(Node::Stored { rlp }));
                    }
                }
                Node::Branch {
                    children: Box::new(children),
                    rlp,
                    saved,
                }
            }
        })
    }
}

/// Whether a node is in the store as it is (cleared by any change to it).
#[derive(Debug, Default)]
struct Saved(AtomicBool);

impl Saved {
    fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

impl Clone for Saved {
    fn clone(&self) -> Self {
        Saved(AtomicBool::new(self.get()))
    }
}

/// A Merkle Patricia trie over keys of one length (the state's are 32-byte hashes).
#[derive(Debug, Clone, Default)]
pub struct Trie {
    root: Option<Arc<Node>>,
    /// The length of its keys, in bytes, from the first insert (a key that is a prefix of
    /// another has no place in this trie: its branches hold no values).
    key_len: Option<usize>,
    source: Option<Source>,
    /// About how many nodes are in memory (an overestimate: loads and saves add, only
    /// [`Trie::prune`] recounts).
    resident: usize,
}

#[derive(Debug, Clone)]
enum Node {
    /// The rest of a key and its value; its reference is computed when it is made.
    Leaf {
        key: Nibbles,
        value: Vec<u8>,
        rlp: RlpNode,
        saved: Saved,
    },
    /// A shared run of nibbles above a branch.
    Extension {
        key: Nibbles,
        child: Arc<Node>,
        rlp: OnceLock<RlpNode>,
        saved: Saved,
    },
    /// Up to 16 children, by the next nibble (keys of one length never end at a branch).
    Branch {
        children: Box<[Option<Arc<Node>>; 16]>,
        rlp: OnceLock<RlpNode>,
        saved: Saved,
    },
    /// A saved subtrie not in memory: its reference, to load it by.
    Stored { rlp: RlpNode },
}

impl Node {
    fn leaf(key: Nibbles, value: Vec<u8>) -> Self {
        let rlp = LeafNodeRef::new(&key, &value).rlp(&mut Vec::new());
        Node::Leaf {
            key,
            value,
            rlp,
            saved: Saved::default(),
        }
    }

    /// The node's reference in its parent: its RLP when shorter than 32 bytes, else the
    /// RLP of its hash. Cached until the node changes.
    fn rlp(&self) -> &RlpNode {
        match self {
            Node::Leaf { rlp, .. } | Node::Stored { rlp } => rlp,
            Node::Extension {
                key, child, rlp, ..
            } => rlp.get_or_init(|| ExtensionNodeRef::new(key, child.rlp()).rlp(&mut Vec::new())),
            Node::Branch { children, rlp, .. } => rlp.get_or_init(|| {
                let (stack, mask) = branch_stack(children);
                BranchNodeRef::new(&stack, mask).rlp(&mut Vec::new())
            }),
        }
    }

    /// The node's full RLP encoding (what a proof carries and the store keeps); `None` for
    /// a node not in memory.
    fn encode(&self) -> Option<Vec<u8>> {
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
            Node::Stored { .. } => return None,
        }
        Some(out)
    }

    /// Whether the node is in the store as it is (a node not in memory always is).
    fn is_saved(&self) -> bool {
        match self {
            Node::Leaf { saved, .. }
            | Node::Extension { saved, .. }
            | Node::Branch { saved, .. } => saved.get(),
            Node::Stored { .. } => true,
        }
    }

    fn set_saved(&self) {
        if let Node::Leaf { saved, .. }
        | Node::Extension { saved, .. }
        | Node::Branch { saved, .. } = self
        {
            saved.0.store(true, Ordering::Relaxed);
        }
    }

    /// Forgets the cached reference and the saved mark (the node is about to change).
    fn invalidate(&mut self) {
        match self {
            Node::Leaf { saved, .. } => *saved = Saved::default(),
            Node::Extension { rlp, saved, .. } | Node::Branch { rlp, saved, .. } => {
                rlp.take();
                *saved = Saved::default();
            }
            Node::Stored { .. } => {}
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
        saved: Saved::default(),
    }
}

fn extension(key: Nibbles, child: Arc<Node>) -> Node {
    Node::Extension {
        key,
        child,
        rlp: OnceLock::new(),
        saved: Saved::default(),
    }
}

/// `prefix ‖ rest` as one key.
fn join(prefix: &Nibbles, rest: &Nibbles) -> Nibbles {
    prefix.join(rest)
}

/// `path ‖ nibble`.
fn child_path(path: &Nibbles, nibble: u8) -> Nibbles {
    let mut p = *path;
    p.push(nibble);
    p
}

/// What a change needs to load nodes: the source, and a count of the nodes it loaded.
struct Loader<'a> {
    source: Option<&'a Source>,
    loaded: usize,
}

impl Loader<'_> {
    /// Brings the node in `slot` (at `path`) into memory if it is not.
    fn resolve(&mut self, slot: &mut Arc<Node>, path: &Nibbles) -> Result<(), TrieError> {
        if let Node::Stored { rlp } = &**slot {
            let node = self.load(path, rlp)?;
            *slot = Arc::new(node);
            self.loaded += 1;
        }
        Ok(())
    }

    fn load(&self, path: &Nibbles, rlp: &RlpNode) -> Result<Node, TrieError> {
        match self.source {
            Some(s) => s.load(path, rlp),
            None => Err(TrieError {
                trie: "trie".into(),
                path: hex_path(path),
                reason: "a stored node with no store to load it from".into(),
            }),
        }
    }

    /// The node in `node` (at `path`), loaded without keeping it if it is not in memory.
    fn peek(&self, node: &Arc<Node>, path: &Nibbles) -> Result<Arc<Node>, TrieError> {
        match &**node {
            Node::Stored { rlp } => Ok(Arc::new(self.load(path, rlp)?)),
            _ => Ok(node.clone()),
        }
    }
}

impl Trie {
    /// An empty trie, all in memory.
    pub fn new() -> Self {
        Self::default()
    }

    /// The trie saved in `nodes` under `root` (`trie`: `None` for the state trie, `Some(a)`
    /// for the storage trie of `a`). Nothing is loaded until a change or a proof needs it.
    pub fn stored(root: B256, nodes: Arc<dyn NodeSource>, trie: Option<Address>) -> Self {
        Self {
            root: (root != EMPTY_ROOT_HASH).then(|| {
                Arc::new(Node::Stored {
                    rlp: RlpNode::word_rlp(&root),
                })
            }),
            key_len: None,
            source: Some(Source { nodes, trie }),
            resident: 0,
        }
    }

    /// Reads the nodes not in memory from `nodes` from now on (a newer version of the same
    /// store, which holds every node this trie has saved).
    pub fn set_source(&mut self, nodes: Arc<dyn NodeSource>, trie: Option<Address>) {
        self.source = Some(Source { nodes, trie });
    }

    /// Whether `key` has the length of this trie's keys (any length while it has none).
    fn fits(&self, key: &[u8]) -> bool {
        self.key_len.is_none_or(|l| l == key.len())
    }

    /// Whether the trie has no keys.
    pub fn is_empty(&self) -> bool {
        self.root.is_none()
    }

    /// About how many of its nodes are in memory (an overestimate until the next
    /// [`Trie::prune`]).
    pub fn resident(&self) -> usize {
        self.resident
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

    fn loader(&self) -> Loader<'_> {
        Loader {
            source: self.source.as_ref(),
            loaded: 0,
        }
    }

    /// The value under `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, TrieError> {
        if !self.fits(key) {
            return Ok(None);
        }
        let Some(root) = &self.root else {
            return Ok(None);
        };
        find(&self.loader(), root, &Nibbles::unpack(key))
    }

    /// Sets `key` to `value` (an empty value is not allowed in a trie: use [`Trie::remove`]).
    ///
    /// # Panics
    ///
    /// If `key` is not as long as the keys inserted before (a caller's bug).
    pub fn insert(&mut self, key: &[u8], value: Vec<u8>) -> Result<(), TrieError> {
        debug_assert!(!value.is_empty(), "empty trie value");
        let len = *self.key_len.get_or_insert(key.len());
        assert_eq!(key.len(), len, "trie keys are all {len} bytes long");
        let path = Nibbles::unpack(key);
        let mut loader = Loader {
            source: self.source.as_ref(),
            loaded: 0,
        };
        let result = insert(&mut loader, &mut self.root, &path, 0, value);
        self.resident += loader.loaded;
        result
    }

    /// Removes `key`; returns whether it was there.
    pub fn remove(&mut self, key: &[u8]) -> Result<bool, TrieError> {
        if !self.fits(key) {
            return Ok(false);
        }
        let path = Nibbles::unpack(key);
        let Some(root) = &self.root else {
            return Ok(false);
        };
        // Look before copying: a key that is not there changes nothing.
        if find(&self.loader(), root, &path)?.is_none() {
            return Ok(false);
        }
        let mut loader = Loader {
            source: self.source.as_ref(),
            loaded: 0,
        };
        let root = self.root.as_mut().expect("checked above");
        let result = remove_from(&mut loader, root, &path, 0);
        self.resident += loader.loaded;
        if result? {
            self.root = None;
        }
        Ok(true)
    }

    /// The RLP of every node on the path from the root towards `key`: an EIP-1186 proof of
    /// its value, or of its absence (empty for the empty trie, as geth answers).
    pub fn proof(&self, key: &[u8]) -> Result<Vec<Bytes>, TrieError> {
        if !self.fits(key) {
            return Ok(Vec::new());
        }
        let loader = self.loader();
        let path = Nibbles::unpack(key);
        let mut out = Vec::new();
        let mut next = self.root.clone();
        let mut at = 0;
        while let Some(node) = next {
            let node = loader.peek(&node, &path.slice(..at))?;
            out.push(Bytes::from(node.encode().expect("loaded")));
            next = match &*node {
                Node::Leaf { .. } | Node::Stored { .. } => None,
                Node::Extension { key, child, .. } => {
                    let rest = path.slice(at..);
                    rest.starts_with(key).then(|| {
                        at += key.len();
                        child.clone()
                    })
                }
                Node::Branch { children, .. } => {
                    let c = children[path.get_unchecked(at) as usize].clone();
                    at += 1;
                    c
                }
            };
        }
        Ok(out)
    }

    /// The nodes changed since they were saved, each with its path and encoding, for the
    /// store ([`node_key`]). Call after [`Trie::root`]. A node inlined in its parent is
    /// saved with it; the root is always saved, inlined or not.
    pub fn unsaved(&self, mut out: impl FnMut(&Nibbles, Vec<u8>)) {
        if let Some(root) = &self.root {
            walk_unsaved(root, Nibbles::new(), true, &mut |path, node| {
                out(path, node.encode().expect("in memory"));
            });
        }
    }

    /// Records that the nodes [`Trie::unsaved`] yielded are in the store now.
    pub fn mark_saved(&mut self) {
        let mut marked = 0;
        if let Some(root) = &self.root {
            walk_unsaved(root, Nibbles::new(), true, &mut |_, node| {
                node.set_saved();
                marked += 1;
            });
        }
        self.resident += marked;
    }

    /// Counts the nodes in memory exactly (a walk over them), replacing the estimate.
    pub fn recount(&mut self) -> usize {
        fn count(node: &Node) -> usize {
            1 + match node {
                Node::Stored { .. } => return 0,
                Node::Leaf { .. } => 0,
                Node::Extension { child, .. } => count(child),
                Node::Branch { children, .. } => children.iter().flatten().map(|c| count(c)).sum(),
            }
        }
        self.resident = self.root.as_deref().map_or(0, count);
        self.resident
    }

    /// Drops from memory every node `depth` or more nibbles below the root: they are loaded
    /// again when a change or a proof reaches them. Only saved nodes are dropped, so call it
    /// after [`Trie::mark_saved`] (and it needs a source to load them from again).
    pub fn prune(&mut self, depth: usize) {
        if self.source.is_none() {
            return;
        }
        let mut kept = 0;
        if let Some(root) = &mut self.root {
            prune(root, 0, depth, &mut kept);
        }
        self.resident = kept;
    }

    /// Every key and value, in key order, of a trie all in memory (for tests).
    #[cfg(test)]
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
                                stack.push((child_path(&prefix, i as u8), c));
                            }
                        }
                    }
                    Node::Stored { .. } => panic!("iter of a trie not all in memory"),
                }
            }
            None
        })
    }
}

/// Calls `f` on each unsaved node at or below `node` (at `path`) that the store keeps on its
/// own (not inlined in its parent).
fn walk_unsaved(node: &Node, path: Nibbles, root: bool, f: &mut dyn FnMut(&Nibbles, &Node)) {
    if node.is_saved() || (!root && node.rlp().as_hash().is_none()) {
        return;
    }
    f(&path, node);
    match node {
        Node::Extension { key, child, .. } => walk_unsaved(child, join(&path, key), false, f),
        Node::Branch { children, .. } => {
            for (i, c) in children.iter().enumerate() {
                if let Some(c) = c {
                    walk_unsaved(c, child_path(&path, i as u8), false, f);
                }
            }
        }
        Node::Leaf { .. } | Node::Stored { .. } => {}
    }
}

fn prune(slot: &mut Arc<Node>, at: usize, depth: usize, kept: &mut usize) {
    if matches!(**slot, Node::Stored { .. }) {
        return;
    }
    // A node inlined in its parent is saved with the parent, which is (else it would not be
    // pruned below).
    let inlined = at > 0 && slot.rlp().as_hash().is_none();
    if !inlined && !slot.is_saved() {
        // Not in the store yet: keep it and everything below it.
        return;
    }
    if at >= depth && at > 0 {
        *slot = Arc::new(Node::Stored {
            rlp: slot.rlp().clone(),
        });
        return;
    }
    *kept += 1;
    let node = Arc::make_mut(slot);
    match node {
        Node::Extension { key, child, .. } => prune(child, at + key.len(), depth, kept),
        Node::Branch { children, .. } => {
            for c in children.iter_mut().flatten() {
                prune(c, at + 1, depth, kept);
            }
        }
        Node::Leaf { .. } | Node::Stored { .. } => {}
    }
}

/// Inserts `path → value` below `slot` (at `path[..at]`).
fn insert(
    loader: &mut Loader<'_>,
    slot: &mut Option<Arc<Node>>,
    path: &Nibbles,
    at: usize,
    value: Vec<u8>,
) -> Result<(), TrieError> {
    match slot {
        None => {
            *slot = Some(Arc::new(Node::leaf(path.slice(at..), value)));
            Ok(())
        }
        Some(node) => insert_into(loader, node, path, at, value),
    }
}

/// Inserts `path → value` into the subtrie at `node` (at `path[..at]`), changing in place
/// the nodes no snapshot shares (`Arc::make_mut` copies the others).
fn insert_into(
    loader: &mut Loader<'_>,
    node: &mut Arc<Node>,
    path: &Nibbles,
    at: usize,
    value: Vec<u8>,
) -> Result<(), TrieError> {
    loader.resolve(node, &path.slice(..at))?;
    let node = Arc::make_mut(node);
    node.invalidate();
    let rest = path.slice(at..);
    match node {
        Node::Stored { .. } => unreachable!("resolved above"),
        Node::Leaf { key, value: v, .. } => {
            if *key == rest {
                *node = Node::leaf(rest, value);
                return Ok(());
            }
            // Split: a branch below the common prefix, with both leaves.
            let common = key.common_prefix_length(&rest);
            let mut children: [Option<Arc<Node>>; 16] = Default::default();
            let old = Node::leaf(key.slice(common + 1..), std::mem::take(v));
            children[key.get_unchecked(common) as usize] = Some(Arc::new(old));
            children[rest.get_unchecked(common) as usize] =
                Some(Arc::new(Node::leaf(rest.slice(common + 1..), value)));
            *node = with_prefix(rest.slice(..common), branch(children));
            Ok(())
        }
        Node::Extension { key, child, .. } => {
            let common = key.common_prefix_length(&rest);
            if common == key.len() {
                return insert_into(loader, child, path, at + common, value);
            }
            // Split the extension where the new key leaves it (the child stays at its path).
            let mut children: [Option<Arc<Node>>; 16] = Default::default();
            let below = key.slice(common + 1..);
            let old: Arc<Node> = if below.is_empty() {
                child.clone()
            } else {
                Arc::new(extension(below, child.clone()))
            };
            children[key.get_unchecked(common) as usize] = Some(old);
            children[rest.get_unchecked(common) as usize] =
                Some(Arc::new(Node::leaf(rest.slice(common + 1..), value)));
            *node = with_prefix(rest.slice(..common), branch(children));
            Ok(())
        }
        Node::Branch { children, .. } => {
            let i = rest.get_unchecked(0) as usize;
            insert(loader, &mut children[i], path, at + 1, value)
        }
    }
}

/// `node` below an extension of `prefix` (or `node` itself for an empty prefix).
fn with_prefix(prefix: Nibbles, node: Node) -> Node {
    if prefix.is_empty() {
        node
    } else {
        extension(prefix, Arc::new(node))
    }
}

/// Removes `path`, which the subtrie at `node` (at `path[..at]`) holds; returns whether the
/// subtrie is left empty (it was that leaf). What is left collapses: a branch with one child
/// becomes that child one nibble longer, and an extension over what is no longer a branch
/// merges with it.
fn remove_from(
    loader: &mut Loader<'_>,
    node: &mut Arc<Node>,
    path: &Nibbles,
    at: usize,
) -> Result<bool, TrieError> {
    loader.resolve(node, &path.slice(..at))?;
    if matches!(**node, Node::Leaf { .. }) {
        return Ok(true);
    }
    let node = Arc::make_mut(node);
    node.invalidate();
    match node {
        Node::Leaf { .. } | Node::Stored { .. } => unreachable!("returned or resolved above"),
        Node::Extension { key, child, .. } => {
            // The child is a branch: it keeps at least one child.
            remove_from(loader, child, path, at + key.len())?;
            if let Some(merged) = prefixed(key, child) {
                *node = merged;
            }
        }
        Node::Branch { children, .. } => {
            let i = path.get_unchecked(at) as usize;
            let child = children[i].as_mut().expect("the key is there");
            if remove_from(loader, child, path, at + 1)? {
                children[i] = None;
            }
            let mut left = children.iter().enumerate().filter(|(_, c)| c.is_some());
            let (only, _) = left.next().expect("a branch had two children");
            if left.next().is_none() {
                // One child left: the branch becomes that child with its nibble in front.
                let mut c = children[only].take().expect("present");
                loader.resolve(&mut c, &child_path(&path.slice(..at), only as u8))?;
                let nibble = Nibbles::from_nibbles_unchecked([only as u8]);
                *node = prefixed(&nibble, &c).unwrap_or_else(|| extension(nibble, c));
            }
        }
    }
    Ok(false)
}

/// `child` with `prefix` in front, merged into one node, when it is a leaf or an extension;
/// `None` for a branch (which needs an extension above it). `child` is in memory.
fn prefixed(prefix: &Nibbles, child: &Arc<Node>) -> Option<Node> {
    match &**child {
        Node::Branch { .. } => None,
        Node::Leaf { key, value, .. } => Some(Node::leaf(join(prefix, key), value.clone())),
        Node::Extension { key, child, .. } => Some(extension(join(prefix, key), child.clone())),
        Node::Stored { .. } => unreachable!("resolved by the caller"),
    }
}

/// The value under `path` in the subtrie at `node` (the root), loading what it must
/// without keeping it.
fn find(
    loader: &Loader<'_>,
    node: &Arc<Node>,
    path: &Nibbles,
) -> Result<Option<Vec<u8>>, TrieError> {
    let mut node = loader.peek(node, &Nibbles::new())?;
    let mut at = 0;
    loop {
        let next = match &*node {
            Node::Leaf { key, value, .. } => {
                return Ok((path.slice(at..) == *key).then(|| value.clone()));
            }
            Node::Extension { key, child, .. } => {
                if !path.slice(at..).starts_with(key) {
                    return Ok(None);
                }
                at += key.len();
                child.clone()
            }
            Node::Branch { children, .. } => {
                let Some(c) = children[path.get_unchecked(at) as usize].clone() else {
                    return Ok(None);
                };
                at += 1;
                c
            }
            Node::Stored { .. } => unreachable!("peeked"),
        };
        node = loader.peek(&next, &path.slice(..at))?;
    }
}

/// A store of saved nodes in memory, by [`node_key`] (for tests).
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct MemNodes {
    pub(crate) nodes: std::sync::Mutex<std::collections::BTreeMap<Vec<u8>, Vec<u8>>>,
}

#[cfg(test)]
impl NodeSource for MemNodes {
    fn node(&self, trie: Option<&Address>, path: &Nibbles) -> Result<Option<Vec<u8>>, String> {
        Ok(self
            .nodes
            .lock()
            .unwrap()
            .get(&node_key(trie, path))
            .cloned())
    }
}

#[cfg(test)]
mod tests;

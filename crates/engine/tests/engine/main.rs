//! Integration tests of the engine: restarts (the chain resumes where it stopped, items
//! accepted but not yet in a block come back from the log, recorded blocks are restored,
//! another chain's data is refused), backpressure and proofs; two validators exchanging
//! blocks; the contract lane through blocks; a follower's promise; the state at older blocks.

mod eth;
mod follower;
mod history;
mod pair;
mod restart;
mod stored_trie;
mod validators;

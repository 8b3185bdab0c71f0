//! The state's stream accumulators: appending a reading, reading one back, and the trie
//! proof of one against the state root.

use std::sync::Arc;

use alloy_primitives::{B256, Bytes};
use iotchain_merkle::mmr::Peaks;
use iotchain_reading::{DeviceAddress, StreamLeaf};

use super::State;
use crate::{StreamAccumulator, accumulator_key};

/// Where a reading sits, as its stream's accumulator records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeafPlace {
    /// Height of the block holding the reading.
    pub height: u64,
    /// That block's time, ms.
    pub block_time_ms: u64,
}

impl State {
    /// Appends a reading to its stream's accumulator, for a stream the device record tracks
    /// (one of its [`MAX_STREAMS`](crate::MAX_STREAMS) heads: a stream is tracked from its
    /// first reading or never, so an accumulator holds every reading of its stream). Call it
    /// after [`State::record_stream`].
    pub fn accumulate(
        &mut self,
        device: &DeviceAddress,
        stream: &str,
        id: B256,
        (seq, ts): (u64, u64),
        at: LeafPlace,
    ) {
        let tracked = self.devices.get(device).is_some_and(|r| {
            r.streams
                .binary_search_by(|h| h.stream.as_str().cmp(stream))
                .is_ok()
        });
        if !tracked {
            return;
        }
        let accs = Arc::make_mut(self.accumulators.entry(*device).or_default());
        let leaf = |prev: Option<&StreamLeaf>| {
            StreamLeaf::next(prev, id.0, seq, ts, at.height, at.block_time_ms)
        };
        match accs.binary_search_by(|a| a.stream.as_str().cmp(stream)) {
            Ok(i) => {
                let a = &mut accs[i];
                a.last = leaf(Some(&a.last));
                a.peaks.push(a.last.hash());
            }
            Err(i) => {
                let last = leaf(None);
                let mut peaks = Peaks::default();
                peaks.push(last.hash());
                accs.insert(
                    i,
                    StreamAccumulator {
                        stream: stream.to_string(),
                        peaks,
                        last,
                    },
                );
            }
        }
        self.dirty_accumulators.insert(*device);
    }

    /// A device stream's accumulator, if the stream has one.
    pub fn accumulator(&self, device: &DeviceAddress, stream: &str) -> Option<&StreamAccumulator> {
        let accs = self.accumulators.get(device)?;
        let i = accs
            .binary_search_by(|a| a.stream.as_str().cmp(stream))
            .ok()?;
        Some(&accs[i])
    }

    /// The trie nodes from the state root to a device stream's accumulator (or to where it
    /// would be: then they prove it has none). The state must be clean, as the committed
    /// state always is.
    pub fn accumulator_proof(
        &self,
        device: &DeviceAddress,
        stream: &str,
    ) -> Result<Vec<Bytes>, crate::TrieError> {
        debug_assert!(self.is_clean(), "proof of a state with unfolded changes");
        self.trie.proof(accumulator_key(device, stream).as_slice())
    }

    /// Adds stored accumulators (to rebuild the state on start).
    pub fn with_accumulators(
        mut self,
        accumulators: impl IntoIterator<Item = (DeviceAddress, Vec<StreamAccumulator>)>,
    ) -> Self {
        for (device, accs) in accumulators {
            self.dirty_accumulators.insert(device);
            self.accumulators.insert(device, Arc::new(accs));
        }
        self
    }
}

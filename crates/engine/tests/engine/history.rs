//! State history: a query at an older block sees that block's state (rebuilt from the undos
//! on disk, its root checked against the block's header), beyond the window it gets a clear
//! error, the history survives a restart, and an archive node keeps all of it.

use iotchain_api::{ChainQuery, QueryError};
use iotchain_engine::{Engine, History};

use crate::restart::{Fixture, drain, fixture, open_chain, open_with_device, submit};

/// Readings in five blocks after the registration: each block's height and the device's
/// reading count after it.
async fn five_blocks(chain: &Engine, f: &Fixture) -> Vec<(u64, u64)> {
    let mut after = Vec::new();
    for round in 0..5u64 {
        submit(chain, f, round * 2..round * 2 + 2).await;
        drain(chain);
        after.push((chain.head().height, round * 2 + 2));
    }
    after
}

fn reading_count(chain: &Engine, f: &Fixture, height: u64) -> Result<Option<u64>, QueryError> {
    let address = f.device.address();
    chain.with_state_at(height, |s| s.device(&address).map(|d| d.reading_count))
}

/// With a window of 3 blocks: the last blocks' device counts, and clear errors below the
/// window and above the head.
fn check_window(chain: &Engine, f: &Fixture, after: &[(u64, u64)], registered: u64) {
    let head = chain.head().height;
    for (height, count) in after.iter().filter(|(h, _)| h + 3 >= head) {
        assert_eq!(
            reading_count(chain, f, *height).unwrap(),
            Some(*count),
            "block {height}"
        );
    }
    // Beyond the window: a clear error naming the window and the way out.
    match reading_count(chain, f, head - 4).unwrap_err() {
        QueryError::NotKept(why) => {
            assert!(why.contains(&format!("block {}", head - 4)), "{why}");
            assert!(why.contains("--history-blocks"), "{why}");
            assert!(why.contains("--archive"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        reading_count(chain, f, registered - 1),
        Err(QueryError::NotKept(_))
    ));
    assert!(matches!(
        reading_count(chain, f, head + 1),
        Err(QueryError::NotFound(_))
    ));
}

#[test]
fn older_blocks_answer_within_the_window_and_after_a_restart() {
    iotchain_engine::testing::run(|context| async move {
        let mut f = fixture();
        f.config.history = History::Blocks(3);
        let chain = open_with_device(&context, &f).await;
        let registered = chain.head().height;
        let after = five_blocks(&chain, &f).await;
        check_window(&chain, &f, &after, registered);
        // The undos are on disk: a restarted node answers the same.
        chain.shutdown().await;
        drop(chain);
        let chain = open_chain(&context, &f);
        check_window(&chain, &f, &after, registered);
    })
}

#[test]
fn an_archive_node_answers_at_every_block() {
    iotchain_engine::testing::run(|context| async move {
        let mut f = fixture();
        f.config.history = History::Archive;
        let chain = open_with_device(&context, &f).await;
        let registered = chain.head().height;
        let after = five_blocks(&chain, &f).await;
        // Oldest first, then newest first: each built from the head or from a cached state.
        for (height, count) in after.iter().chain(after.iter().rev()) {
            assert_eq!(reading_count(&chain, &f, *height).unwrap(), Some(*count));
        }
        assert_eq!(reading_count(&chain, &f, registered).unwrap(), Some(0));
        for before in 0..registered {
            assert_eq!(
                reading_count(&chain, &f, before).unwrap(),
                None,
                "block {before}"
            );
        }
        // One query reads a bounded amount of history: past it, a clear error, not a stall.
        chain.shutdown().await;
        drop(chain);
        f.config.history_query_bytes = 1;
        let chain = open_chain(&context, &f);
        let head = chain.head().height;
        assert_eq!(reading_count(&chain, &f, head).unwrap(), Some(10));
        match reading_count(&chain, &f, head - 2).unwrap_err() {
            QueryError::NotKept(why) => {
                assert!(
                    why.contains("2 blocks back, more history than one query may rebuild"),
                    "{why}"
                );
            }
            other => panic!("{other:?}"),
        }
    })
}

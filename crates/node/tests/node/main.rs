//! The node as one process: it stops when asked, whatever its peers and clients do; and
//! Ethereum JSON-RPC over real HTTP ([`rpc`]).

mod rpc;

use std::time::Duration;

use alloy_primitives::B256;
use commonware_runtime::Supervisor as _;
use iotchain_block::Genesis;
use iotchain_crypto::ValidatorKey;
use iotchain_engine::testing::run;
use iotchain_node::NodeConfig;

struct Fixture {
    config: NodeConfig,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let validator = ValidatorKey::from_secret(&[2; 32]);
    let genesis = Genesis::single_validator(77, 1, B256::from(validator.public_key()), vec![]);
    let mut config = NodeConfig::new(dir.path().to_path_buf(), genesis, validator);
    config.block_interval = Duration::from_millis(20);
    Fixture { config, _dir: dir }
}

/// A node of a network (it has peers to forward to) stops when asked. Its forwarder used to
/// wait for a channel that lives as long as the chain, so `iotchain node` never exited on
/// Ctrl-C or SIGTERM with peers configured.
#[test]
fn a_node_with_peers_stops_when_asked() {
    run(|context| async move {
        let mut f = fixture();
        f.config.http_addr = "127.0.0.1:0".parse().unwrap();
        f.config.peers = vec!["http://127.0.0.1:9".into()];
        let node = iotchain_node::Node::start(context.child("node"), f.config.clone())
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(30), node.stop())
            .await
            .expect("a node with peers did not stop");
    })
}

/// A client that sends half a request and holds its connection does not keep a node from
/// stopping: requests in flight get a few seconds, then they are cut off.
#[test]
fn a_client_holding_a_request_open_does_not_keep_the_node_from_stopping() {
    run(|context| async move {
        use tokio::io::AsyncWriteExt;
        let mut f = fixture();
        f.config.http_addr = "127.0.0.1:0".parse().unwrap();
        let node = iotchain_node::Node::start(context.child("node"), f.config.clone())
            .await
            .unwrap();
        let mut slow = tokio::net::TcpStream::connect(node.http_addr)
            .await
            .unwrap();
        slow.write_all(
            b"POST /v1/readings HTTP/1.1\r\nhost: x\r\ncontent-type: application/cbor\r\n\
              content-length: 1000\r\n\r\nhalf",
        )
        .await
        .unwrap();
        slow.flush().await.unwrap();
        // Connections are accepted in the order they arrive (the listen queue is FIFO): once a
        // status query on a later connection is answered, the half-sent request is being served.
        let status = reqwest::get(format!("http://{}/v1/status", node.http_addr))
            .await
            .unwrap();
        assert!(status.status().is_success());
        tokio::time::timeout(
            iotchain_node::HTTP_DRAIN + Duration::from_secs(25),
            node.stop(),
        )
        .await
        .expect("a half-sent request kept the node from stopping");
        drop(slow);
    })
}

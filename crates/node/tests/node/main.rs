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

/// Reads until the server closes the connection; what it sent.
async fn until_closed(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut out))
        .await
        .expect("the server kept the connection open")
        .unwrap_or_default();
    String::from_utf8_lossy(&out).into_owned()
}

/// A TCP connection to `to` from the loopback address `from` (all of 127/8 is loopback).
async fn connect_from(from: [u8; 4], to: std::net::SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::from((from, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

/// Connections are capped per address and in all: beyond the cap a connection is told so
/// (503, the documented JSON shape) and closed, while other addresses are still served; a
/// client that does not finish its headers, or keeps an idle connection, is cut off.
#[test]
fn connections_are_capped_and_slow_or_idle_ones_are_cut_off() {
    run(|context| async move {
        use tokio::io::AsyncWriteExt;
        let mut f = fixture();
        f.config.http_addr = "127.0.0.1:0".parse().unwrap();
        f.config.http.max_connections = 6;
        f.config.http.max_connections_per_ip = 3;
        f.config.http.header_timeout = Duration::from_secs(3);
        let node = iotchain_node::Node::start(context.child("node"), f.config.clone())
            .await
            .unwrap();
        let addr = node.http_addr;
        let status = || async move {
            reqwest::get(format!("http://{addr}/v1/status"))
                .await
                .map(|r| r.status())
        };
        // A hostile address holds its share; its next connection is refused in JSON.
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut s = connect_from([127, 0, 0, 2], addr).await;
            s.write_all(b"GET /v1/status HTTP/1.1\r\n").await.unwrap();
            held.push(s);
        }
        let mut refused = connect_from([127, 0, 0, 2], addr).await;
        let answer = until_closed(&mut refused).await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(
            answer.contains(r#""code":"too_many_connections""#),
            "{answer}"
        );
        assert_eq!(
            node.http_stats
                .refused_per_ip
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        // Another address is served meanwhile.
        assert!(status().await.unwrap().is_success());
        // The half-sent headers are cut off after the header timeout, freeing the slots.
        for s in &mut held {
            let _ = until_closed(s).await;
        }
        // So is an idle keep-alive connection after its request.
        let mut idle = connect_from([127, 0, 0, 3], addr).await;
        idle.write_all(b"GET /v1/health HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let answer = until_closed(&mut idle).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        // The cap in all: six connections from six addresses, the seventh is refused.
        let mut all = Vec::new();
        for i in 0..6 {
            let mut s = connect_from([127, 0, 1, i + 1], addr).await;
            s.write_all(b"GET /v1/status HTTP/1.1\r\n").await.unwrap();
            all.push(s);
        }
        // Accepts are in order: once this one is answered, the six above hold their slots.
        let mut seventh = connect_from([127, 0, 2, 1], addr).await;
        let answer = until_closed(&mut seventh).await;
        assert!(answer.contains("too_many_connections"), "{answer}");
        node.stop().await;
    })
}

//! `iotchain bench --transfers N`: Ethereum transfers through JSON-RPC, end to end (signed
//! here, sent in JSON-RPC batches, final on the chain), measured while the readings phase
//! sends readings at the same time.
//!
//! Senders are funded from the testnet owner's genesis allocation first. Each client owns a
//! disjoint set of senders and sends one transaction per sender per batch, so a sender's
//! nonces arrive in order. With `--erc20`, each transfer is an ERC-20 `transfer` of a token
//! every sender holds (tests/eth/contracts/Token.sol, compiled by solc from npm into
//! `crates/cli/src/token.bin`).

use std::{sync::Arc, time::Instant};

use alloy_primitives::{Address, TxKind, U256};
use alloy_sol_types::{SolCall, SolConstructor, sol};
use anyhow::{Context, bail};
use iotchain_evm::key_address;
use k256::ecdsa::SigningKey;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::{
    bench::percentile,
    client::{Client, TxSigner},
};

/// Creation bytecode of tests/eth/contracts/Token.sol (see the module doc).
const TOKEN_BIN: &str = include_str!("token.bin");

sol! {
    contract Token {
        constructor(string name_, string symbol_, uint256 supply);
        function transfer(address to, uint256 amount) external returns (bool);
    }
}

/// Starts the transfers and the readings they run beside at one moment: the transfers say
/// when they are signed and serialized (`ready`), the readings phase then starts both (`go`).
#[derive(Default)]
pub(crate) struct StartLine {
    pub(crate) ready: Notify,
    pub(crate) go: Notify,
}

/// What the transfers phase measured.
pub(crate) struct EthPhase {
    pub(crate) transfers: usize,
    /// When the first transfer was sent.
    pub(crate) started: Instant,
    pub(crate) seconds: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
}

/// How the transfers phase runs.
pub(crate) struct EthBench {
    pub(crate) total: usize,
    pub(crate) senders: usize,
    pub(crate) clients: usize,
    pub(crate) erc20: bool,
    /// Offer transfers at this rate (per second) instead of as fast as the node takes them.
    pub(crate) rate: Option<f64>,
}

fn sender_key(i: usize) -> SigningKey {
    let mut secret = [0u8; 32];
    secret[0] = 0x5e;
    secret[24..].copy_from_slice(&(i as u64 + 1).to_be_bytes());
    SigningKey::from_slice(&secret).expect("a valid secret")
}

/// One reply of a JSON-RPC batch, as the bench reads it (borrowed: no JSON tree).
#[derive(serde::Deserialize)]
struct Reply<'a> {
    #[serde(borrow)]
    result: Option<&'a str>,
    error: Option<Value>,
}

/// Sends a serialized JSON-RPC batch of raw transactions; an error refuses the batch.
async fn send_batch(client: &Client, body: Vec<u8>) -> anyhow::Result<()> {
    let (status, reply) = client.post_bytes("/", "application/json", body).await?;
    let replies: Vec<Reply<'_>> = serde_json::from_slice(&reply)
        .with_context(|| format!("JSON-RPC batch answered {status}"))?;
    for r in replies {
        if r.result.is_none() {
            bail!("transaction refused: {}", r.error.unwrap_or_default());
        }
    }
    Ok(())
}

/// Sends raw transactions in one JSON-RPC batch (setup: funding, token handouts).
async fn send_setup(client: &Client, raws: &[String]) -> anyhow::Result<Option<String>> {
    let refs: Vec<&String> = raws.iter().collect();
    send_batch(client, rpc_body(&refs)?).await?;
    Ok(raws.last().and_then(|r| {
        let bytes = hex::decode(r.trim_start_matches("0x")).ok()?;
        Some(alloy_primitives::keccak256(bytes).to_string())
    }))
}

/// Waits until the transaction `hash` is final (long poll on the REST API).
async fn wait_final(client: &Client, hash: &str) -> anyhow::Result<()> {
    if client
        .final_height(hash, std::time::Duration::from_secs(60))
        .await?
        .is_none()
    {
        bail!("transaction {hash} not final after 60 s");
    }
    Ok(())
}

/// Funds the senders (and with `--erc20` deploys the token and hands it out), signs every
/// transfer, waits for `start`, then sends them and waits for all to be final.
pub(crate) async fn run(
    nodes: &[Client],
    owner_secret: &[u8; 32],
    b: &EthBench,
    start: Arc<StartLine>,
) -> anyhow::Result<EthPhase> {
    let client = &nodes[0];
    let owner = SigningKey::from_slice(owner_secret).context("the owner key")?;
    let owner_address = key_address(&owner);
    let chain_id = client.rpc_quantity("eth_chainId", json!([])).await? as u64;
    // Room for a rising base fee while blocks are full.
    let max_fee = client.rpc_quantity("eth_gasPrice", json!([])).await? * 50;
    let signer = TxSigner {
        chain_id,
        max_fee,
        tip: 1,
    };
    let senders: Vec<SigningKey> = (0..b.senders.max(1)).map(sender_key).collect();
    let mut nonce = client
        .rpc_quantity(
            "eth_getTransactionCount",
            json!([owner_address.to_string(), "pending"]),
        )
        .await? as u64;
    println!("   eth: funding {} senders…", senders.len());
    let ether = U256::from(10u64).pow(U256::from(18));
    let mut setup = Vec::new();
    let token = owner_address.create(nonce);
    if b.erc20 {
        let mut code = hex::decode(TOKEN_BIN.trim()).context("the token bytecode")?;
        code.extend(
            Token::constructorCall {
                name_: "Bench".into(),
                symbol_: "BNCH".into(),
                supply: U256::from(10u64).pow(U256::from(30)),
            }
            .abi_encode(),
        );
        setup.push(signer.sign(&owner, nonce, TxKind::Create, U256::ZERO, code, 3_000_000)?);
        nonce += 1;
    }
    for k in &senders {
        let to = key_address(k);
        setup.push(signer.sign(
            &owner,
            nonce,
            TxKind::Call(to),
            ether * U256::from(1000),
            vec![],
            21_000,
        )?);
        nonce += 1;
        if b.erc20 {
            let give = Token::transferCall {
                to,
                amount: U256::from(10u64).pow(U256::from(24)),
            };
            setup.push(signer.sign(
                &owner,
                nonce,
                TxKind::Call(token),
                U256::ZERO,
                give.abi_encode(),
                100_000,
            )?);
            nonce += 1;
        }
    }
    let mut last = None;
    for chunk in setup.chunks(100) {
        last = send_setup(client, chunk).await?;
    }
    if let Some(h) = last {
        wait_final(client, &h).await?;
    }

    let per_sender = b.total.div_ceil(senders.len());
    println!("   eth: signing {} transfers…", per_sender * senders.len());
    let sink = Address::repeat_byte(0x5b);
    let erc20 = b.erc20;
    let keys = senders.clone();
    let clients = b.clients.max(1);
    // Client c sends, round after round, one batch holding the transfer of each of its
    // senders (s ≡ c mod clients) with that round's nonce: JSON-RPC bodies built and the last
    // transfer's hash computed now, so the clock measures the node, not the bench.
    let batches: Vec<Vec<(Vec<u8>, String)>> = tokio::task::spawn_blocking(move || {
        let rounds: Vec<Vec<String>> = (0..per_sender as u64)
            .map(|n| {
                keys.iter()
                    .map(|k| {
                        if erc20 {
                            let call = Token::transferCall {
                                to: sink,
                                amount: U256::from(1),
                            };
                            signer.sign(
                                k,
                                n,
                                TxKind::Call(token),
                                U256::ZERO,
                                call.abi_encode(),
                                60_000,
                            )
                        } else {
                            signer.sign(k, n, TxKind::Call(sink), U256::from(1), vec![], 21_000)
                        }
                    })
                    .collect::<anyhow::Result<Vec<_>>>()
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        (0..clients)
            .map(|c| {
                rounds
                    .iter()
                    .filter_map(|round| {
                        let mine: Vec<&String> = round.iter().skip(c).step_by(clients).collect();
                        let last = mine.last()?;
                        let hash = alloy_primitives::keccak256(
                            hex::decode(last.trim_start_matches("0x")).ok()?,
                        );
                        Some(rpc_body(&mine).map(|body| (body, hash.to_string())))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()
            })
            .collect::<anyhow::Result<Vec<_>>>()
    })
    .await??;
    let per_batch = senders.len().div_ceil(clients);
    // With a target rate, each client sends one batch every `clients × batch / rate` s.
    let pace = b
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| std::time::Duration::from_secs_f64((clients * per_batch) as f64 / r));
    start.ready.notify_one();
    start.go.notified().await;
    println!(
        "   eth: sending {} {} from {clients} clients in batches of {per_batch}{}…",
        per_sender * senders.len(),
        if erc20 {
            "ERC-20 transfers"
        } else {
            "plain transfers"
        },
        match b.rate {
            Some(r) => format!(" at {r:.0}/s"),
            None => String::new(),
        }
    );
    let started = crate::clock::stopwatch();
    let mut tasks = Vec::new();
    for (c, mine) in batches.into_iter().enumerate() {
        let client = nodes[c % nodes.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut waiters = Vec::new();
            let mut ticker = pace.map(|p| {
                let mut t = tokio::time::interval_at(
                    tokio::time::Instant::now() + p.mul_f64(c as f64 / clients as f64),
                    p,
                );
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            for (body, last) in mine {
                if let Some(t) = ticker.as_mut() {
                    t.tick().await;
                }
                let sent = crate::clock::stopwatch();
                send_batch(&client, body).await?;
                let client = client.clone();
                waiters.push(tokio::spawn(async move {
                    wait_final(&client, &last).await?;
                    Ok::<_, anyhow::Error>(sent.elapsed().as_secs_f64() * 1e3)
                }));
            }
            let mut latencies = Vec::new();
            for w in waiters {
                latencies.push(w.await??);
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_by(|x, y| x.total_cmp(y));
    Ok(EthPhase {
        transfers: per_sender * senders.len(),
        started,
        seconds,
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
    })
}

/// A JSON-RPC batch of `eth_sendRawTransaction` calls, serialized.
fn rpc_body(raws: &[&String]) -> anyhow::Result<Vec<u8>> {
    let requests: Vec<Value> = raws
        .iter()
        .enumerate()
        .map(|(i, r)| json!({"jsonrpc": "2.0", "id": i, "method": "eth_sendRawTransaction", "params": [r]}))
        .collect();
    Ok(serde_json::to_vec(&requests)?)
}

//! Measures the contract lane's execution cost of plain transfers on this machine: decoding
//! and sender recovery, execution by revm against the state, and the state root, for
//! blocks of `--per-block` transfers from many senders.
//!
//! `cargo run --release -p iotchain-evm --example transfers -- [total] [per_block]`

use alloy_consensus::TxEip1559;
use alloy_primitives::{Address, B256, Bytes, TxKind, U256};
use iotchain_evm::{BlockContext, BlockExecutor, EthTx, key_address, sign_tx};
use iotchain_state::{Account, State};
use k256::ecdsa::SigningKey;

fn main() {
    let mut args = std::env::args().skip(1);
    let total: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let per_block: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let senders: Vec<SigningKey> = (1..=200u32)
        .map(|i| {
            let mut secret = [0u8; 32];
            secret[28..].copy_from_slice(&i.to_be_bytes());
            SigningKey::from_bytes(&secret.into()).expect("valid secret")
        })
        .collect();
    let mut state = State::default();
    for k in &senders {
        state.set_account(
            key_address(k),
            Some(Account::with_balance(U256::from(10u128.pow(24)))),
        );
    }
    state.root().expect("a state all in memory");
    let raw: Vec<Bytes> = (0..total)
        .map(|i| {
            let k = &senders[i % senders.len()];
            let tx = TxEip1559 {
                chain_id: 1,
                nonce: (i / senders.len()) as u64,
                gas_limit: 21_000,
                max_fee_per_gas: 10_000_000_000,
                max_priority_fee_per_gas: 1_000_000_000,
                to: TxKind::Call(Address::with_last_byte((i % 251) as u8 + 1)),
                value: U256::from(1),
                access_list: Default::default(),
                input: Bytes::new(),
            };
            sign_tx(k, tx).expect("signs")
        })
        .collect();

    let t = stopwatch();
    let txs: Vec<EthTx> = raw
        .iter()
        .map(|r| EthTx::decode(r, 1, 128 * 1024).expect("decodes"))
        .collect();
    let decode = t.elapsed().as_secs_f64();

    let (mut exec_s, mut root_s) = (0.0, 0.0);
    for (n, block) in txs.chunks(per_block).enumerate() {
        let ctx = BlockContext {
            chain_id: 1,
            number: n as u64 + 1,
            timestamp: 1_700_000_000 + n as u64,
            timestamp_ms: (1_700_000_000 + n as u64) * 1000,
            beneficiary: Address::repeat_byte(0xfe),
            base_fee: 1_000_000_000,
            gas_limit: 30_000_000,
            prevrandao: B256::ZERO,
        };
        let t = stopwatch();
        let mut exec = BlockExecutor::new(ctx, &());
        for tx in block {
            exec.execute(&mut state, tx).expect("executes");
        }
        exec_s += t.elapsed().as_secs_f64();
        let t = stopwatch();
        let _ = state.changed_records();
        state.root().expect("a state all in memory");
        root_s += t.elapsed().as_secs_f64();
    }
    let rate = |s: f64| total as f64 / s;
    println!(
        "{total} transfers, {per_block} per block, {} senders",
        senders.len()
    );
    println!(
        "  decode + recover sender: {:>9.0} tx/s (one core)",
        rate(decode)
    );
    println!("  execute (revm):          {:>9.0} tx/s", rate(exec_s));
    println!("  state root:              {:>9.0} tx/s", rate(root_s));
    println!(
        "  all three, one core:     {:>9.0} tx/s",
        rate(decode + exec_s + root_s)
    );
}

/// The example's stopwatch.
#[expect(
    clippy::disallowed_methods,
    reason = "the example measures wall-clock time"
)]
fn stopwatch() -> std::time::Instant {
    std::time::Instant::now()
}

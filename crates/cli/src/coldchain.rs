//! The cold-chain example on the devnet: `iotchain dev` deploys two shipment escrows
//! (examples/coldchain/ColdChainEscrow.sol, compiled by solc from npm into the `.bin` next to
//! it) as reading hooks on two simulated thermometers, and reports when their readings
//! release a payment to the carrier or refund the shipper.

use std::time::Duration;

use alloy_primitives::{Address, Bytes, I256, TxKind, U256};
use alloy_sol_types::{SolCall, SolConstructor, sol};
use anyhow::{Context, bail};
use iotchain_evm::{IIoT, IOT_ADDRESS};
use iotchain_reading::DeviceAddress;
use serde_json::{Value, json};

use crate::client::{Client, TxSigner};

/// The escrow's creation bytecode, hex (see the module doc).
const ESCROW_BIN: &str = include_str!("../../../examples/coldchain/ColdChainEscrow.bin");

sol! {
    contract ColdChainEscrow {
        constructor(address carrier, address sensor, string stream, int256 maxMicroCelsius, uint64 readingsToDeliver) payable;
        function state() external view returns (uint8);
    }
}

/// The stream the simulated thermometers report on (a CBOR float, °C).
pub(crate) const STREAM: &str = "temperature";

/// One shipment: its escrow and its sensor.
pub(crate) struct Shipment {
    name: &'static str,
    escrow: Address,
    sensor: DeviceAddress,
}

/// Deploys one escrow per `(name, sensor, max °C, readings to deliver, payment in ether)`
/// from the devnet owner (the shipper) and attaches each as the hook on its sensor's
/// temperature stream; waits for the transactions to be final.
pub(crate) async fn deploy(
    url: &str,
    owner_secret: &[u8; 32],
    chain_id: u64,
    shipments: &[(&'static str, DeviceAddress, f64, u64, u64)],
) -> anyhow::Result<Vec<Shipment>> {
    let key = k256::ecdsa::SigningKey::from_slice(owner_secret).context("the owner key")?;
    let owner = iotchain_evm::key_address(&key);
    let rpc = Client::new(url);
    let mut nonce = rpc
        .rpc_quantity(
            "eth_getTransactionCount",
            json!([owner.to_string(), "pending"]),
        )
        .await? as u64;
    let gas_price = rpc.rpc_quantity("eth_gasPrice", json!([])).await?;
    let signer = TxSigner {
        chain_id,
        max_fee: gas_price * 2,
        tip: 0,
    };
    let code = hex::decode(ESCROW_BIN.trim()).context("the escrow bytecode")?;
    let mut sent = Vec::new();
    let mut out = Vec::new();
    for (i, &(name, sensor, max_c, readings, ether)) in shipments.iter().enumerate() {
        // The carrier: a fresh address per shipment, so its balance shows the payment.
        let carrier = Address::from_word(alloy_primitives::keccak256(format!("carrier {i}")));
        let args = ColdChainEscrow::constructorCall {
            carrier,
            sensor: Address::from(sensor.0),
            stream: STREAM.into(),
            maxMicroCelsius: I256::try_from((max_c * 1e6) as i64)?,
            readingsToDeliver: readings,
        };
        let mut input = code.clone();
        input.extend(args.abi_encode());
        let escrow = owner.create(nonce);
        let attach = IIoT::attachHookCall {
            device: Address::from(sensor.0),
            stream: STREAM.into(),
            hookContract: escrow,
            gasLimit: 200_000,
        };
        let txs = [
            (
                TxKind::Create,
                input,
                U256::from(ether) * U256::from(10u64).pow(U256::from(18)),
                2_000_000,
            ),
            (
                TxKind::Call(IOT_ADDRESS),
                attach.abi_encode(),
                U256::from(10u64).pow(U256::from(17)),
                200_000,
            ),
        ];
        for (to, input, value, gas_limit) in txs {
            let raw = signer.sign(&key, nonce, to, value, input, gas_limit)?;
            let hash = rpc.rpc("eth_sendRawTransaction", json!([raw])).await?;
            sent.push(hash.as_str().context("a hash")?.to_string());
            nonce += 1;
        }
        out.push(Shipment {
            name,
            escrow,
            sensor,
        });
        println!(
            "cold chain: {name}: escrow {escrow} holds {ether} ETH for carrier {carrier}; \
             hook on {sensor} `{STREAM}`: released after {readings} readings <= {max_c} °C, \
             refunded on one above"
        );
    }
    for hash in sent {
        let mut tries = 0;
        loop {
            let r = rpc.rpc("eth_getTransactionReceipt", json!([hash])).await?;
            if !r.is_null() {
                if r["status"] != "0x1" {
                    bail!("cold-chain transaction {hash} failed: {r}");
                }
                break;
            }
            tries += 1;
            if tries > 300 {
                bail!("cold-chain transaction {hash} not final after 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(out)
}

/// Prints each shipment's outcome once its readings decide it.
pub(crate) async fn watch(url: &str, shipments: Vec<Shipment>) -> anyhow::Result<()> {
    let rpc = Client::new(url);
    let mut open: Vec<Shipment> = shipments;
    let data = Bytes::from(ColdChainEscrow::stateCall {}.abi_encode());
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while !open.is_empty() {
        tick.tick().await;
        let mut still = Vec::new();
        for s in open {
            let call = json!([{"to": s.escrow.to_string(), "data": data.to_string()}, "latest"]);
            let state = rpc
                .rpc("eth_call", call)
                .await
                .ok()
                .and_then(|v| last_byte(&v))
                .unwrap_or(0);
            match state {
                1 => println!(
                    "cold chain: {}: delivered cold, escrow {} paid the carrier (sensor {})",
                    s.name, s.escrow, s.sensor
                ),
                2 => println!(
                    "cold chain: {}: sensor {} reported above the threshold, escrow {} refunded the shipper",
                    s.name, s.sensor, s.escrow
                ),
                _ => still.push(s),
            }
        }
        open = still;
    }
    Ok(())
}

/// The last byte of a 32-byte ABI word returned as 0x-hex.
fn last_byte(v: &Value) -> Option<u8> {
    let bytes = hex::decode(v.as_str()?.trim_start_matches("0x")).ok()?;
    (bytes.len() == 32).then(|| bytes[31])
}

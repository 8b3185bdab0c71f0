//! The rows a final block becomes: one per block, reading, owner transaction and Ethereum
//! transaction, decoded with the chain's own codecs (no I/O here, so every conversion is
//! unit-tested).

use alloy_primitives::{Address, B256, U256};
use iotchain_block::{Block, BlockItem, DeviceOp, SignedTx};
use iotchain_evm::EthTx;
use serde_json::Value;

use crate::{Error, Result, source::ReceiptJson};

/// Latest device time kept as a `timestamptz` (9999-12-31T23:59:59.999Z): a device may send
/// any `u64`, and PostgreSQL's timestamps end in the year 294276.
pub const MAX_TS_MS: u64 = 253_402_300_799_999;

/// A block's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRow {
    /// Height.
    pub height: u64,
    /// Header hash.
    pub hash: B256,
    /// Parent header hash.
    pub parent_hash: B256,
    /// Block time, ms since the Unix epoch.
    pub time_ms: u64,
    /// The proposer's Ed25519 key.
    pub proposer: B256,
    /// Readings in the block.
    pub reading_count: u64,
    /// Owner and Ethereum transactions in the block.
    pub transaction_count: u64,
    /// State root after the block.
    pub state_root: B256,
}

/// A reading's row.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadingRow {
    /// Reading id (RFC 6962 leaf hash of the canonical message).
    pub id: [u8; 32],
    /// Block height.
    pub height: u64,
    /// Position among the block's items (readings and transactions).
    pub idx: u32,
    /// Device address.
    pub device: [u8; 20],
    /// Stream name.
    pub stream: String,
    /// The device's sequence number.
    pub seq: u64,
    /// The device's time, ms since the Unix epoch.
    pub ts_ms: u64,
    /// Block time, ms.
    pub block_time_ms: u64,
    /// The data when it is one number (see [`data_value`]).
    pub value: Option<f64>,
    /// The data as JSON (`iotchain_reading::json::data_json`, the API's mapping).
    pub data: Value,
}

/// An owner transaction's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerTxRow {
    /// keccak256 of its RLP.
    pub hash: B256,
    /// Block height.
    pub height: u64,
    /// Position among the block's items.
    pub idx: u32,
    /// The signing owner.
    pub owner: Address,
    /// The owner's nonce.
    pub nonce: u64,
    /// `register`, `rotate`, `revoke`, `register_many` or `manufacturer`.
    pub kind: &'static str,
    /// The device it registers, rotates or revokes (a batch's first; a manufacturer
    /// authorisation's manufacturer).
    pub device: [u8; 20],
    /// Every device it registers or changes (not a column: the exporter writes their rows).
    pub devices: Vec<[u8; 20]>,
}

/// An Ethereum transaction's row (status and gas used come from its receipt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthTxRow {
    /// Transaction hash.
    pub hash: B256,
    /// Block height.
    pub height: u64,
    /// Position among the block's items.
    pub idx: u32,
    /// The recovered sender.
    pub from: Address,
    /// The recipient; `None` for a contract creation.
    pub to: Option<Address>,
    /// The sender's nonce.
    pub nonce: u64,
    /// Wei sent.
    pub value: U256,
    /// Gas limit.
    pub gas_limit: u64,
    /// EIP-2718 type (0 legacy, 1 EIP-2930, 2 EIP-1559).
    pub tx_type: u8,
    /// Bytes of call data or init code.
    pub input_len: usize,
    /// Whether it succeeded, from its receipt.
    pub status: Option<bool>,
    /// Gas it used, from its receipt.
    pub gas_used: Option<u64>,
}

/// Everything a block contributes, before receipts and devices.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockRows {
    /// The block.
    pub block: BlockRow,
    /// Its readings, in order.
    pub readings: Vec<ReadingRow>,
    /// Its owner transactions, in order.
    pub owner_txs: Vec<OwnerTxRow>,
    /// Its Ethereum transactions, in order.
    pub eth_txs: Vec<EthTxRow>,
}

/// The numeric `value` of a reading: its data when that is one CBOR number (an integer,
/// bignums included, or a finite float), else `None`. Read from the JSON mapping, so it is
/// the number the API shows; NaN and ±∞ (`{"$float": …}`) are `None` so that they never
/// poison an average.
pub fn data_value(data: &Value) -> Option<f64> {
    match data {
        Value::Number(n) => n.as_f64(),
        Value::Object(o) if o.len() == 1 => o.get("$bigint")?.as_str()?.parse().ok(),
        _ => None,
    }
}

/// A value for a `bigint` column: `None` above 2^63 − 1 (what a device may put in `seq` or
/// `ts`; the chain never reaches it for heights, counts or gas).
pub fn bigint(v: u64) -> Option<i64> {
    i64::try_from(v).ok()
}

fn bad(height: u64, idx: usize, reason: impl std::fmt::Display) -> Error {
    Error::BadBlock {
        height,
        reason: format!("item {idx}: {reason}"),
    }
}

/// Decodes a final block's items into rows. A block the node finalized decodes; an item
/// that does not is an error (the node, or what sits between it and us, is broken).
pub fn block_rows(block: &Block) -> Result<BlockRows> {
    let h = &block.header;
    let mut rows = BlockRows {
        block: BlockRow {
            height: h.height,
            hash: h.hash(),
            parent_hash: h.parent_hash,
            time_ms: h.timestamp_ms,
            proposer: h.proposer,
            reading_count: h.reading_count,
            transaction_count: h.transaction_count,
            state_root: h.state_root,
        },
        readings: Vec::with_capacity(h.reading_count as usize),
        owner_txs: Vec::new(),
        eth_txs: Vec::new(),
    };
    for (i, item) in block.items.iter().enumerate() {
        let idx = i as u32;
        match item {
            BlockItem::Reading(m) => {
                let r = iotchain_reading::decode(m).map_err(|e| bad(h.height, i, e))?;
                let data = iotchain_reading::json::data_json(r.data)
                    .ok_or_else(|| bad(h.height, i, "reading data is not one CBOR item"))?;
                rows.readings.push(ReadingRow {
                    id: iotchain_reading::reading_id(m),
                    height: h.height,
                    idx,
                    device: r.device.0,
                    stream: r.stream.to_owned(),
                    seq: r.seq,
                    ts_ms: r.ts,
                    block_time_ms: h.timestamp_ms,
                    value: data_value(&data),
                    data,
                });
            }
            BlockItem::Tx(b) => {
                let tx =
                    SignedTx::decode_and_check(b, h.chain_id).map_err(|e| bad(h.height, i, e))?;
                rows.owner_txs.push(owner_tx_row(&tx, h.height, idx));
            }
            BlockItem::EthTx(b) => {
                let tx =
                    EthTx::decode(b, h.chain_id, usize::MAX).map_err(|e| bad(h.height, i, e))?;
                rows.eth_txs.push(EthTxRow {
                    hash: tx.hash,
                    height: h.height,
                    idx,
                    from: tx.sender,
                    to: tx.to(),
                    nonce: tx.nonce(),
                    value: tx.value(),
                    gas_limit: tx.gas_limit(),
                    tx_type: tx.tx_type(),
                    input_len: tx.input().len(),
                    status: None,
                    gas_used: None,
                });
            }
        }
    }
    Ok(rows)
}

/// The row of a decoded owner transaction.
pub fn owner_tx_row(tx: &SignedTx, height: u64, idx: u32) -> OwnerTxRow {
    let devices: Vec<[u8; 20]> = tx.op.devices().iter().map(|d| d.0).collect();
    // The row's device: the first one a batch registers; for a manufacturer's authorisation,
    // the manufacturer.
    let device = match &tx.op {
        DeviceOp::Manufacturer { manufacturer, .. } => manufacturer.0.0,
        _ => devices[0],
    };
    OwnerTxRow {
        hash: tx.hash(),
        height,
        idx,
        owner: tx.owner,
        nonce: tx.nonce,
        kind: tx.op.name(),
        device,
        devices,
    }
}

/// A receipt's row: an Ethereum transaction's or a reading hook call's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptRow {
    /// Transaction hash, or the hook call's id.
    pub tx_hash: B256,
    /// Block height.
    pub height: u64,
    /// `eth` or `hook`.
    pub kind: &'static str,
    /// Index among the block's Ethereum transactions, then its hook calls.
    pub tx_index: u64,
    /// Sender (the IoT precompile for a hook call).
    pub from: Address,
    /// Recipient.
    pub to: Option<Address>,
    /// Created contract.
    pub contract_address: Option<Address>,
    /// Gas used.
    pub gas_used: u64,
    /// Gas used in the block so far.
    pub cumulative_gas_used: u64,
    /// Success.
    pub status: bool,
}

/// A log's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow {
    /// Block height.
    pub height: u64,
    /// The receipt it belongs to.
    pub tx_hash: B256,
    /// Index in the block.
    pub log_index: u64,
    /// Emitting contract.
    pub address: Address,
    /// Topics.
    pub topics: Vec<B256>,
    /// Data.
    pub data: alloy_primitives::Bytes,
}

/// The receipt and log rows of one block, and each Ethereum transaction's status and gas
/// used filled in from its receipt. A receipt whose hash is not one of the block's Ethereum
/// transactions is a reading hook's.
pub fn receipt_rows(
    rows: &mut BlockRows,
    receipts: &[ReceiptJson],
    out_receipts: &mut Vec<ReceiptRow>,
    out_logs: &mut Vec<LogRow>,
) {
    let height = rows.block.height;
    for r in receipts {
        let status = r.status.to::<u64>() == 1;
        let gas_used = r.gas_used.to::<u64>();
        let eth = rows
            .eth_txs
            .iter_mut()
            .find(|t| t.hash == r.transaction_hash);
        let kind = match eth {
            Some(t) => {
                t.status = Some(status);
                t.gas_used = Some(gas_used);
                "eth"
            }
            None => "hook",
        };
        out_receipts.push(ReceiptRow {
            tx_hash: r.transaction_hash,
            height,
            kind,
            tx_index: r.transaction_index.to(),
            from: r.from,
            to: r.to,
            contract_address: r.contract_address,
            gas_used,
            cumulative_gas_used: r.cumulative_gas_used.to(),
            status,
        });
        out_logs.extend(r.logs.iter().map(|l| LogRow {
            height,
            tx_hash: r.transaction_hash,
            log_index: l.log_index.to(),
            address: l.address,
            topics: l.topics.clone(),
            data: l.data.clone(),
        }));
    }
}

/// A device's row: its record at the node when the batch that touched it was exported.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRow {
    /// Device address.
    pub address: [u8; 20],
    /// Owner.
    pub owner: Address,
    /// `EdDSA` or `ES256`.
    pub alg: String,
    /// Current public key.
    pub public_key: Vec<u8>,
    /// Times the key was replaced.
    pub key_version: u32,
    /// `active` or `revoked`.
    pub status: String,
    /// Model.
    pub model: String,
    /// Firmware hash.
    pub firmware_hash: Vec<u8>,
    /// Labels as one JSON object (a repeated key keeps its last value).
    pub labels: Value,
    /// Height of the block that registered it.
    pub registered_at: u64,
    /// Height of the batch's last block when the row was written.
    pub updated_height: u64,
}

/// The row of a device from `GET /v1/devices/{address}`.
pub fn device_row(v: &Value, updated_height: u64) -> std::result::Result<DeviceRow, String> {
    let text = |k: &str| -> std::result::Result<String, String> {
        v[k].as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("device `{k}` is not a string"))
    };
    let hex_field = |k: &str| -> std::result::Result<Vec<u8>, String> {
        iotchain_block::unhex(&text(k)?).map_err(|e| format!("device `{k}`: {e}"))
    };
    let address: [u8; 20] = hex_field("address")?
        .try_into()
        .map_err(|_| "device `address` is not 20 bytes".to_owned())?;
    let owner = Address::try_from(hex_field("owner")?.as_slice())
        .map_err(|_| "device `owner` is not 20 bytes".to_owned())?;
    let mut labels = serde_json::Map::new();
    for l in v["labels"].as_array().into_iter().flatten() {
        if let (Some(k), Some(val)) = (l["key"].as_str(), l["value"].as_str()) {
            labels.insert(k.to_owned(), Value::String(val.to_owned()));
        }
    }
    let number = |k: &str| {
        v[k].as_u64()
            .ok_or_else(|| format!("device `{k}` is not a number"))
    };
    Ok(DeviceRow {
        address,
        owner,
        alg: text("alg")?,
        public_key: hex_field("public_key")?,
        key_version: number("key_version")? as u32,
        status: text("status")?,
        model: text("model")?,
        firmware_hash: hex_field("firmware_hash")?,
        labels: Value::Object(labels),
        registered_at: number("registered_at")?,
        updated_height,
    })
}

#[cfg(test)]
mod tests {
    use alloy_primitives::Bytes;
    use ciborium::value::Value as Cbor;
    use iotchain_block::Header;
    use iotchain_crypto::{DeviceSigner, KeyAlg, OwnerKey};
    use iotchain_reading::UnsignedReading;
    use serde_json::json;

    use super::*;

    fn cbor(v: &Cbor) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::ser::into_writer(v, &mut out).unwrap();
        out
    }

    fn header(height: u64) -> Header {
        Header {
            chain_id: 7,
            height,
            parent_hash: B256::repeat_byte(1),
            timestamp_ms: 1_700_000_000_000,
            proposer: B256::repeat_byte(2),
            readings_root: B256::ZERO,
            reading_count: 0,
            transactions_root: B256::ZERO,
            transaction_count: 0,
            state_root: B256::repeat_byte(3),
        }
    }

    #[test]
    fn value_is_the_data_when_it_is_one_number() {
        let cases = [
            (json!(21.5), Some(21.5)),
            (json!(-3), Some(-3.0)),
            (
                json!({"$bigint": "18446744073709551616"}),
                Some(18446744073709551616.0),
            ),
            (json!({"$float": "NaN"}), None),
            (json!({"$float": "Infinity"}), None),
            (json!({"temp": 4.2}), None),
            (json!([1, 2]), None),
            (json!("21.5"), None),
            (json!(true), None),
            (Value::Null, None),
            (json!({"$bigint": "1", "x": 2}), None),
        ];
        for (data, want) in cases {
            assert_eq!(data_value(&data), want, "{data}");
        }
    }

    #[test]
    fn bigint_refuses_what_postgres_cannot_hold() {
        assert_eq!(bigint(0), Some(0));
        assert_eq!(bigint(i64::MAX as u64), Some(i64::MAX));
        assert_eq!(bigint(i64::MAX as u64 + 1), None);
        assert_eq!(bigint(u64::MAX), None);
    }

    #[test]
    fn block_items_become_rows() {
        let signer = DeviceSigner::generate(KeyAlg::Ed25519).unwrap();
        let device = signer.address();
        let map = cbor(&Cbor::Map(vec![(
            Cbor::Text("temp_c".into()),
            Cbor::Float(4.25),
        )]));
        let number = cbor(&Cbor::Integer(42.into()));
        let sign = |seq: u64, data: &[u8]| -> Vec<u8> {
            let u = UnsignedReading::new(signer.alg(), device, seq, 1_000 + seq, Some("env"), data);
            let sig = signer.sign(&u.sig_structure(&[]));
            u.into_message(&sig)
        };
        let (r1, r2) = (sign(1, &map), sign(2, &number));

        let owner = OwnerKey::from_secret(&[7; 32]).unwrap();
        let other = DeviceSigner::generate(KeyAlg::P256).unwrap();
        let register = SignedTx::sign(
            &owner,
            7,
            0,
            DeviceOp::Register {
                public_key: other.public_key(),
                model: "m".into(),
                firmware_hash: Bytes::new(),
                labels: vec![],
            },
        )
        .unwrap();
        let revoke = SignedTx::sign(&owner, 7, 1, DeviceOp::Revoke { device }).unwrap();

        let block = Block {
            header: header(5),
            items: vec![
                BlockItem::Reading(r1.clone().into()),
                BlockItem::Tx(register.encode_rlp().into()),
                BlockItem::Reading(r2.clone().into()),
                BlockItem::Tx(revoke.encode_rlp().into()),
            ],
        };
        let rows = block_rows(&block).unwrap();
        assert_eq!(rows.block.height, 5);
        assert_eq!(rows.block.hash, block.header.hash());
        assert_eq!(rows.block.time_ms, 1_700_000_000_000);

        assert_eq!(rows.readings.len(), 2);
        let (a, b) = (&rows.readings[0], &rows.readings[1]);
        assert_eq!(a.id, iotchain_reading::reading_id(&r1));
        assert_eq!((a.idx, b.idx), (0, 2));
        assert_eq!(a.device, device.0);
        assert_eq!((a.stream.as_str(), a.seq, a.ts_ms), ("env", 1, 1_001));
        // The JSON is the API's mapping, and only a bare number has a value.
        assert_eq!(a.data, iotchain_reading::json::data_json(&map).unwrap());
        assert_eq!(a.data, json!({"temp_c": 4.25}));
        assert_eq!(a.value, None);
        assert_eq!((b.data.clone(), b.value), (json!(42), Some(42.0)));

        assert_eq!(rows.owner_txs.len(), 2);
        let (reg, rev) = (&rows.owner_txs[0], &rows.owner_txs[1]);
        assert_eq!(reg.hash, alloy_primitives::keccak256(register.encode_rlp()));
        assert_eq!((reg.kind, reg.idx, reg.nonce), ("register", 1, 0));
        assert_eq!(reg.owner, owner.address());
        assert_eq!(reg.device, other.address().0);
        assert_eq!((rev.kind, rev.device, rev.nonce), ("revoke", device.0, 1));

        // A batch names its first device and lists all of them for the device rows; a
        // manufacturer's authorisation names the manufacturer and no device.
        let keys: Vec<_> = (0..3)
            .map(|_| DeviceSigner::generate(KeyAlg::Ed25519).unwrap())
            .collect();
        let op = DeviceOp::RegisterMany {
            devices: keys
                .iter()
                .map(|k| iotchain_block::NewDevice::new(k.public_key(), "m"))
                .collect(),
        };
        let batch = owner_tx_row(&SignedTx::sign(&owner, 7, 2, op).unwrap(), 5, 4);
        assert_eq!(
            (batch.kind, batch.device),
            ("register_many", keys[0].address().0)
        );
        let all: Vec<[u8; 20]> = keys.iter().map(|k| k.address().0).collect();
        assert_eq!(batch.devices, all);
        let trust = DeviceOp::Manufacturer {
            manufacturer: Address::repeat_byte(9),
            authorised: true,
        };
        let trust = owner_tx_row(&SignedTx::sign(&owner, 7, 3, trust).unwrap(), 5, 5);
        assert_eq!((trust.kind, trust.device), ("manufacturer", [9; 20]));
        assert!(trust.devices.is_empty());
    }

    #[test]
    fn malformed_items_are_errors_naming_the_block() {
        for item in [
            BlockItem::Reading(Bytes::from_static(b"\xd2\x84garbage")),
            BlockItem::Tx(Bytes::from_static(b"\xc0")),
            BlockItem::EthTx(Bytes::from_static(b"\x02\xc0")),
        ] {
            let block = Block {
                header: header(9),
                items: vec![item],
            };
            let e = block_rows(&block).unwrap_err().to_string();
            assert!(e.contains("block 9") && e.contains("item 0"), "{e}");
        }
    }
    #[test]
    fn receipts_split_into_eth_and_hook_and_fill_the_transaction() {
        let eth_hash = B256::repeat_byte(0xee);
        let hook_hash = B256::repeat_byte(0x77);
        let mut rows = BlockRows {
            block: block_rows(&Block {
                header: header(3),
                items: vec![],
            })
            .unwrap()
            .block,
            readings: vec![],
            owner_txs: vec![],
            eth_txs: vec![EthTxRow {
                hash: eth_hash,
                height: 3,
                idx: 0,
                from: Address::repeat_byte(1),
                to: None,
                nonce: 0,
                value: U256::ZERO,
                gas_limit: 100_000,
                tx_type: 2,
                input_len: 10,
                status: None,
                gas_used: None,
            }],
        };
        let receipts: Vec<ReceiptJson> = serde_json::from_value(json!([
            {"transactionHash": eth_hash, "transactionIndex": "0x0", "from": Address::repeat_byte(1),
             "to": null, "contractAddress": Address::repeat_byte(9), "gasUsed": "0x5208",
             "cumulativeGasUsed": "0x5208", "status": "0x1", "logs": []},
            {"transactionHash": hook_hash, "transactionIndex": "0x1",
             "from": "0x0000000000000000000000000000000000001070", "to": Address::repeat_byte(9),
             "contractAddress": null, "gasUsed": "0x100", "cumulativeGasUsed": "0x5308", "status": "0x0",
             "logs": [{"address": Address::repeat_byte(9), "topics": [B256::repeat_byte(4)],
                       "data": "0x0102", "logIndex": "0x0"}]},
        ]))
        .unwrap();
        let (mut rs, mut ls) = (vec![], vec![]);
        receipt_rows(&mut rows, &receipts, &mut rs, &mut ls);
        assert_eq!(rows.eth_txs[0].status, Some(true));
        assert_eq!(rows.eth_txs[0].gas_used, Some(21_000));
        assert_eq!((rs[0].kind, rs[1].kind), ("eth", "hook"));
        assert_eq!(rs[0].contract_address, Some(Address::repeat_byte(9)));
        assert!(!rs[1].status);
        assert_eq!(ls.len(), 1);
        assert_eq!(
            (ls[0].tx_hash, ls[0].height, ls[0].log_index),
            (hook_hash, 3, 0)
        );
        assert_eq!(ls[0].data.as_ref(), &[1, 2]);
    }

    #[test]
    fn device_json_becomes_a_row() {
        let v = json!({
            "address": "0x00112233445566778899aabbccddeeff00112233",
            "owner": "0x1111111111111111111111111111111111111111",
            "alg": "EdDSA", "public_key": "0x0a0b", "key_version": 1, "status": "revoked",
            "model": "m1", "firmware_hash": "0xab",
            "labels": [{"key": "site", "value": "a"}, {"key": "site", "value": "b"}],
            "registered_at": 4, "last_seq": 3,
        });
        let d = device_row(&v, 10).unwrap();
        assert_eq!(d.address[0..2], [0x00, 0x11]);
        assert_eq!(d.owner, Address::repeat_byte(0x11));
        assert_eq!(
            (d.alg.as_str(), d.status.as_str(), d.key_version),
            ("EdDSA", "revoked", 1)
        );
        assert_eq!((d.public_key, d.firmware_hash), (vec![10, 11], vec![0xab]));
        assert_eq!(d.labels, json!({"site": "b"}));
        assert_eq!((d.registered_at, d.updated_height), (4, 10));
        let mut broken = v.clone();
        broken["address"] = json!("0x12");
        assert!(device_row(&broken, 10).unwrap_err().contains("address"));
    }
}

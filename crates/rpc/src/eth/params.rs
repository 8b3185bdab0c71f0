//! Parsing the positional parameters of Ethereum JSON-RPC methods: quantities, data, hashes,
//! addresses, block tags and call objects, each with a clear -32602 message.

use alloy_eips::eip2930::{AccessList, AccessListItem};
use alloy_primitives::{Address, B256, Bytes, U256};
use iotchain_evm::CallRequest;
use jsonrpsee::types::{ErrorObject, ErrorObjectOwned};
use serde_json::Value;

/// A JSON-RPC error.
pub(crate) type RpcError = ErrorObjectOwned;

/// -32602: invalid params.
pub(crate) fn params_error(message: impl Into<String>) -> RpcError {
    ErrorObject::owned(-32602, message.into(), None::<()>)
}

/// -32000: a server or transaction error (Ethereum clients match on some messages).
pub(crate) fn server_error(message: impl Into<String>) -> RpcError {
    ErrorObject::owned(-32000, message.into(), None::<()>)
}

/// Positional parameters.
pub(crate) struct Params(pub(crate) Vec<Value>);

impl Params {
    /// The parameters of a request: an array, or none.
    pub(crate) fn of(params: &jsonrpsee::types::Params<'_>) -> Result<Self, RpcError> {
        match params.as_str() {
            None => Ok(Self(Vec::new())),
            Some(raw) => match serde_json::from_str::<Value>(raw) {
                Ok(Value::Array(p)) => Ok(Self(p)),
                Ok(Value::Null) => Ok(Self(Vec::new())),
                Ok(_) => Err(params_error("params must be an array")),
                Err(e) => Err(params_error(format!("params are not JSON: {e}"))),
            },
        }
    }

    pub(crate) fn opt(&self, i: usize) -> Option<&Value> {
        self.0.get(i).filter(|v| !v.is_null())
    }

    pub(crate) fn get(&self, i: usize) -> Result<&Value, RpcError> {
        self.opt(i)
            .ok_or_else(|| params_error(format!("missing value for required argument {i}")))
    }

    pub(crate) fn str(&self, i: usize) -> Result<&str, RpcError> {
        self.get(i)?
            .as_str()
            .ok_or_else(|| params_error(format!("argument {i} must be a string")))
    }

    pub(crate) fn address(&self, i: usize) -> Result<Address, RpcError> {
        self.str(i)?
            .parse()
            .map_err(|_| params_error(format!("argument {i} is not a 20-byte hex address")))
    }

    pub(crate) fn b256(&self, i: usize) -> Result<B256, RpcError> {
        self.str(i)?
            .parse()
            .map_err(|_| params_error(format!("argument {i} is not a 32-byte hex hash")))
    }

    pub(crate) fn u256(&self, i: usize) -> Result<U256, RpcError> {
        parse_u256(self.get(i)?)
    }

    pub(crate) fn bytes(&self, i: usize) -> Result<Bytes, RpcError> {
        parse_bytes(self.get(i)?)
    }
}

/// A 0x-prefixed hex quantity of at most 256 bits.
pub(crate) fn parse_u256(v: &Value) -> Result<U256, RpcError> {
    let s = v
        .as_str()
        .ok_or_else(|| params_error("expected a hex quantity"))?;
    let hex = s
        .strip_prefix("0x")
        .ok_or_else(|| params_error(format!("{s:?} is not 0x-prefixed hex")))?;
    if hex.is_empty() || hex.len() > 64 {
        return Err(params_error(format!("{s:?} is not a 256-bit hex value")));
    }
    U256::from_str_radix(hex, 16).map_err(|_| params_error(format!("{s:?} is not hex")))
}

/// A 0x-prefixed hex quantity that fits in 64 bits.
pub(crate) fn parse_u64(v: &Value) -> Result<u64, RpcError> {
    let x = parse_u256(v)?;
    x.try_into()
        .map_err(|_| params_error(format!("{x} does not fit in 64 bits")))
}

/// 0x-prefixed hex data.
pub(crate) fn parse_bytes(v: &Value) -> Result<Bytes, RpcError> {
    let s = v
        .as_str()
        .ok_or_else(|| params_error("expected 0x-prefixed hex data"))?;
    let hex = s
        .strip_prefix("0x")
        .ok_or_else(|| params_error("hex data must start with 0x"))?;
    hex::decode(hex)
        .map(Bytes::from)
        .map_err(|e| params_error(format!("invalid hex data: {e}")))
}

/// Most entries (accounts plus storage keys) an access list of a call may name.
pub(crate) const MAX_ACCESS_LIST_ENTRIES: usize = 10_000;

/// An EIP-2930 access list: `[{"address", "storageKeys": [...]}, …]`.
pub(crate) fn parse_access_list(v: &Value) -> Result<AccessList, RpcError> {
    let bad = || params_error("accessList must be an array of {address, storageKeys}");
    let items = v.as_array().ok_or_else(bad)?;
    let mut entries = 0usize;
    let mut list = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let o = item.as_object().ok_or_else(bad)?;
        let address = o
            .get("address")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<Address>().ok())
            .ok_or_else(|| params_error(format!("accessList[{i}].address is not an address")))?;
        let storage_keys = match o.get("storageKeys") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(keys)) => keys
                .iter()
                .map(|k| {
                    k.as_str().and_then(|s| s.parse::<B256>().ok()).ok_or_else(|| {
                        params_error(format!(
                            "accessList[{i}].storageKeys holds a value that is not 32 bytes of hex"
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => {
                return Err(params_error(format!(
                    "accessList[{i}].storageKeys must be an array"
                )));
            }
        };
        entries += 1 + storage_keys.len();
        if entries > MAX_ACCESS_LIST_ENTRIES {
            return Err(params_error(format!(
                "accessList names more than {MAX_ACCESS_LIST_ENTRIES} accounts and keys"
            )));
        }
        list.push(AccessListItem {
            address,
            storage_keys,
        });
    }
    Ok(AccessList(list))
}

/// A call object (`eth_call`, `eth_estimateGas`, `eth_createAccessList`).
pub(crate) fn call_request(v: &Value) -> Result<CallRequest, RpcError> {
    let o = v
        .as_object()
        .ok_or_else(|| params_error("the call must be an object"))?;
    let field = |k: &str| o.get(k).filter(|v| !v.is_null());
    let address = |k: &str| -> Result<Option<Address>, RpcError> {
        field(k)
            .map(|v| {
                v.as_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| params_error(format!("{k} is not an address")))
            })
            .transpose()
    };
    let input = match field("input").or_else(|| field("data")) {
        Some(v) => parse_bytes(v)?,
        None => Bytes::new(),
    };
    Ok(CallRequest {
        from: address("from")?,
        to: address("to")?,
        gas: field("gas").map(parse_u64).transpose()?,
        gas_price: field("gasPrice")
            .or_else(|| field("maxFeePerGas"))
            .map(parse_u256)
            .transpose()?
            .map(|x| x.saturating_to()),
        value: field("value").map(parse_u256).transpose()?,
        input,
        access_list: field("accessList")
            .map(parse_access_list)
            .transpose()?
            .unwrap_or_default(),
    })
}

/// A block parameter: a tag, a number, or (EIP-1898) `{"blockHash"}` / `{"blockNumber"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BlockId {
    /// `latest`, `safe`, `finalized` (all the head: blocks are final when committed).
    Latest,
    /// `pending`: the head plus what waits for a block.
    Pending,
    /// `earliest`.
    Earliest,
    /// A height.
    Number(u64),
    /// A block hash.
    Hash(B256),
}

/// Parses a block parameter (absent: `latest`).
pub(crate) fn block_id(v: Option<&Value>) -> Result<BlockId, RpcError> {
    match v {
        None => Ok(BlockId::Latest),
        Some(Value::String(s)) => match s.as_str() {
            "latest" | "safe" | "finalized" => Ok(BlockId::Latest),
            "pending" => Ok(BlockId::Pending),
            "earliest" => Ok(BlockId::Earliest),
            // A bare block hash, as geth takes it (EIP-1898's `{"blockHash": …}` below).
            h if h.len() == 66 && h.starts_with("0x") => h
                .parse()
                .map(BlockId::Hash)
                .map_err(|_| params_error(format!("block hash {h} is not 32 bytes of hex"))),
            _ => parse_u64(&Value::String(s.clone())).map(BlockId::Number),
        },
        Some(Value::Object(o)) => {
            if let Some(h) = o.get("blockHash").and_then(Value::as_str) {
                let hash: B256 = h
                    .parse()
                    .map_err(|_| params_error("blockHash is not a 32-byte hash"))?;
                Ok(BlockId::Hash(hash))
            } else if let Some(n) = o.get("blockNumber") {
                parse_u64(n).map(BlockId::Number)
            } else {
                Err(params_error("block must be a tag, number or hash"))
            }
        }
        Some(_) => Err(params_error("block must be a tag, number or hash")),
    }
}

/// Most addresses one log filter may name (`eth_getLogs`, `logs` subscriptions).
pub(crate) const MAX_FILTER_ADDRESSES: usize = 1000;
/// Most topics one log filter may name, over all its positions.
pub(crate) const MAX_FILTER_TOPICS: usize = 1000;

/// A log filter's addresses and topics (`eth_getLogs`, `logs` subscriptions), sorted for
/// matching by binary search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LogMatch {
    /// Accepted addresses (empty: any), sorted, without repeats.
    pub(crate) addresses: Vec<Address>,
    /// Per position: the accepted topics (empty: any), sorted, without repeats.
    pub(crate) topics: Vec<Vec<B256>>,
}

impl LogMatch {
    /// The addresses and topics of a filter object, within [`MAX_FILTER_ADDRESSES`],
    /// [`MAX_FILTER_TOPICS`] and four topic positions.
    pub(crate) fn parse(o: &serde_json::Map<String, Value>) -> Result<Self, RpcError> {
        let field = |k: &str| o.get(k).filter(|v| !v.is_null());
        let parse_addr = |v: &Value| -> Result<Address, RpcError> {
            v.as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| params_error("address is not a 20-byte hex address"))
        };
        let mut addresses = match field("address") {
            None => Vec::new(),
            Some(Value::Array(a)) if a.len() > MAX_FILTER_ADDRESSES => {
                return Err(params_error(format!(
                    "a filter may name at most {MAX_FILTER_ADDRESSES} addresses, this one names {}",
                    a.len()
                )));
            }
            Some(Value::Array(a)) => a.iter().map(parse_addr).collect::<Result<_, _>>()?,
            Some(v) => vec![parse_addr(v)?],
        };
        addresses.sort_unstable();
        addresses.dedup();
        let parse_topic = |v: &Value| -> Result<B256, RpcError> {
            v.as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| params_error("topic is not a 32-byte hash"))
        };
        let topics: Vec<Vec<B256>> = match field("topics") {
            None => Vec::new(),
            Some(Value::Array(t)) if t.len() > 4 => {
                return Err(params_error("a log has at most 4 topics"));
            }
            Some(Value::Array(t)) => {
                let named: usize = t.iter().map(|p| p.as_array().map_or(1, Vec::len)).sum();
                if named > MAX_FILTER_TOPICS {
                    return Err(params_error(format!(
                        "a filter may name at most {MAX_FILTER_TOPICS} topics, this one names {named}"
                    )));
                }
                t.iter()
                    .map(|p| {
                        let mut accepted: Vec<B256> = match p {
                            Value::Null => Vec::new(),
                            Value::Array(any) => {
                                any.iter().map(parse_topic).collect::<Result<_, _>>()?
                            }
                            one => vec![parse_topic(one)?],
                        };
                        accepted.sort_unstable();
                        accepted.dedup();
                        Ok(accepted)
                    })
                    .collect::<Result<_, RpcError>>()?
            }
            Some(_) => return Err(params_error("topics must be an array")),
        };
        Ok(Self { addresses, topics })
    }

    /// Addresses and topics the filter holds (what a subscription costs in memory).
    pub(crate) fn size(&self) -> usize {
        self.addresses.len() + self.topics.iter().map(Vec::len).sum::<usize>()
    }

    /// Whether a log matches.
    pub(crate) fn matches(&self, log: &alloy_primitives::Log) -> bool {
        if !self.addresses.is_empty() && self.addresses.binary_search(&log.address).is_err() {
            return false;
        }
        self.topics.iter().enumerate().all(|(i, accepted)| {
            accepted.is_empty()
                || log
                    .topics()
                    .get(i)
                    .is_some_and(|t| accepted.binary_search(t).is_ok())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn code(e: RpcError) -> i32 {
        e.code()
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_u256(&json!("0x0")).unwrap(), U256::ZERO);
        assert_eq!(parse_u256(&json!("0xff")).unwrap(), U256::from(255));
        assert_eq!(parse_u64(&json!("0x10")).unwrap(), 16);
        for bad in [
            json!("ff"),
            json!("0x"),
            json!("0xzz"),
            json!(5),
            json!(null),
        ] {
            assert_eq!(code(parse_u256(&bad).unwrap_err()), -32602, "{bad}");
        }
        let too_long = format!("0x1{}", "0".repeat(64));
        assert_eq!(code(parse_u256(&json!(too_long)).unwrap_err()), -32602);
        let over_64 = format!("0x1{}", "0".repeat(16));
        assert!(
            parse_u64(&json!(over_64))
                .unwrap_err()
                .message()
                .contains("64 bits")
        );
    }

    #[test]
    fn data() {
        assert_eq!(parse_bytes(&json!("0x")).unwrap(), Bytes::new());
        assert_eq!(
            parse_bytes(&json!("0x0102")).unwrap(),
            Bytes::from(vec![1, 2])
        );
        assert!(
            parse_bytes(&json!("0x123"))
                .unwrap_err()
                .message()
                .contains("invalid hex")
        );
        assert!(
            parse_bytes(&json!("0102"))
                .unwrap_err()
                .message()
                .contains("0x")
        );
    }

    #[test]
    fn block_ids() {
        assert_eq!(block_id(None).unwrap(), BlockId::Latest);
        for tag in ["latest", "safe", "finalized"] {
            assert_eq!(block_id(Some(&json!(tag))).unwrap(), BlockId::Latest);
        }
        assert_eq!(block_id(Some(&json!("pending"))).unwrap(), BlockId::Pending);
        assert_eq!(
            block_id(Some(&json!("earliest"))).unwrap(),
            BlockId::Earliest
        );
        assert_eq!(block_id(Some(&json!("0x2a"))).unwrap(), BlockId::Number(42));
        let h = B256::repeat_byte(7);
        assert_eq!(
            block_id(Some(&json!({"blockHash": h}))).unwrap(),
            BlockId::Hash(h)
        );
        assert_eq!(
            block_id(Some(&json!({"blockNumber": "0x3"}))).unwrap(),
            BlockId::Number(3)
        );
        // A bare hash is a hash (as geth takes it); a malformed one is named as one.
        assert_eq!(block_id(Some(&json!(h))).unwrap(), BlockId::Hash(h));
        let bad_hash = format!("0x{}zz", "ab".repeat(31));
        let err = block_id(Some(&json!(bad_hash))).unwrap_err();
        assert!(err.message().contains("block hash"), "{err:?}");
        for bad in [
            json!("soon"),
            json!({}),
            json!(7),
            json!({"blockHash": "0x12"}),
        ] {
            assert_eq!(code(block_id(Some(&bad)).unwrap_err()), -32602, "{bad}");
        }
    }

    #[test]
    fn calls() {
        let a = Address::repeat_byte(1);
        let c = call_request(&json!({"to": a, "data": "0x01", "gas": "0x5208", "value": "0x1"}))
            .unwrap();
        assert_eq!(c.to, Some(a));
        assert_eq!(c.input, Bytes::from(vec![1]));
        assert_eq!(c.gas, Some(21_000));
        assert_eq!(c.value, Some(U256::from(1)));
        // `input` wins over `data`, as geth reads it.
        let c = call_request(&json!({"input": "0x02", "data": "0x01"})).unwrap();
        assert_eq!(c.input, Bytes::from(vec![2]));
        assert_eq!(code(call_request(&json!([1])).unwrap_err()), -32602);
        assert!(
            call_request(&json!({"to": "0x12"}))
                .unwrap_err()
                .message()
                .contains("to is not an address")
        );
    }

    #[test]
    fn log_filters() {
        let a = Address::repeat_byte(1);
        let t = B256::repeat_byte(2);
        let m = LogMatch::parse(
            json!({"address": a, "topics": [t, null, [t, B256::ZERO]]})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(m.addresses, vec![a]);
        assert_eq!(m.topics, vec![vec![t], vec![], vec![B256::ZERO, t]]);
        let log = alloy_primitives::Log::new_unchecked(a, vec![t, t, B256::ZERO], Bytes::new());
        assert!(m.matches(&log));
        let other = alloy_primitives::Log::new_unchecked(a, vec![B256::ZERO], Bytes::new());
        assert!(!m.matches(&other));
        assert!(LogMatch::parse(json!({"topics": "x"}).as_object().unwrap()).is_err());
        assert!(LogMatch::parse(json!({"address": ["0x1"]}).as_object().unwrap()).is_err());
    }

    #[test]
    fn log_filters_are_bounded_and_match_by_search() {
        let many: Vec<Address> = (0..MAX_FILTER_ADDRESSES as u64)
            .map(|i| Address::left_padding_from(&i.to_be_bytes()))
            .collect();
        let m = LogMatch::parse(json!({"address": many}).as_object().unwrap()).unwrap();
        assert_eq!(m.size(), MAX_FILTER_ADDRESSES);
        for (i, a) in many.iter().enumerate().step_by(97) {
            let log = alloy_primitives::Log::new_unchecked(*a, vec![], Bytes::new());
            assert!(m.matches(&log), "address {i}");
        }
        let outside = Address::repeat_byte(0xff);
        assert!(!m.matches(&alloy_primitives::Log::new_unchecked(
            outside,
            vec![],
            Bytes::new()
        )));
        let mut too_many = many.clone();
        too_many.push(outside);
        let e = LogMatch::parse(json!({"address": too_many}).as_object().unwrap()).unwrap_err();
        assert!(
            e.message().contains("at most 1000 addresses"),
            "{}",
            e.message()
        );
        let topics: Vec<B256> = (0..=MAX_FILTER_TOPICS as u64)
            .map(|i| B256::left_padding_from(&i.to_be_bytes()))
            .collect();
        let e = LogMatch::parse(json!({"topics": [topics]}).as_object().unwrap()).unwrap_err();
        assert!(
            e.message().contains("at most 1000 topics"),
            "{}",
            e.message()
        );
        let five = json!({"topics": [null, null, null, null, null]});
        assert!(LogMatch::parse(five.as_object().unwrap()).is_err());
    }

    #[test]
    fn params_are_positional() {
        let p = jsonrpsee::types::Params::new(Some(r#"["0x1", null]"#));
        let p = Params::of(&p).unwrap();
        assert_eq!(p.str(0).unwrap(), "0x1");
        assert!(p.opt(1).is_none());
        assert!(p.get(1).unwrap_err().message().contains("argument 1"));
        let obj = jsonrpsee::types::Params::new(Some(r#"{"a": 1}"#));
        assert_eq!(code(Params::of(&obj).err().unwrap()), -32602);
        assert!(
            Params::of(&jsonrpsee::types::Params::new(None))
                .unwrap()
                .0
                .is_empty()
        );
    }
}

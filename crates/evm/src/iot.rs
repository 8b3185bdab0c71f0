//! The IoT precompile: the device registry and the latest readings, reachable from
//! contracts at [`IOT_ADDRESS`] (Solidity interface: `contracts/IIoT.sol`).
//!
//! Views (`device`, `latestReading`, `hook`) read the state as it was when the transaction
//! started. Changes (`registerDevice`, `rotateKey`, `revokeDevice`, `attachHook`) are checked
//! when called and emitted as events of the precompile; when the transaction succeeds, the
//! executor applies those events to the registry ([`apply_events`]). A reverted frame drops
//! its events with the rest of its effects, so a registry change never outlives the call
//! that made it. One change per device per transaction.

use alloy_primitives::{Address, B256, Bytes, I256, Log, U256, address};
use alloy_sol_types::{SolCall, SolError, SolEvent, sol};
use iotchain_block::DeviceOp;
use iotchain_crypto::DevicePublicKey;
use iotchain_reading::{Alg, DeviceAddress};
use iotchain_state::{DeviceStatus, State, StateError};
use revm::{
    context::Cfg,
    context_interface::{Block, ContextTr, JournalTr},
    handler::{EthPrecompiles, PrecompileProvider},
    interpreter::{CallInputs, Gas, InstructionResult, InterpreterResult},
    primitives::AddressSet,
};

/// Where the IoT precompile lives.
pub const IOT_ADDRESS: Address = address!("0x0000000000000000000000000000000000001070");

/// Gas of a view.
const VIEW_GAS: u64 = 2_600;
/// Gas of a registry change (it writes a trie record).
const CHANGE_GAS: u64 = 40_000;

sol! {
    /// The IoT precompile (keep in step with contracts/IIoT.sol).
    interface IIoT {
        function device(address device) external view returns (bool registered, address owner, uint8 status, int64 alg, bool hasSeq, uint64 lastSeq);
        function latestReading(address device, string calldata stream) external view returns (bool found, uint64 seq, uint64 ts, bytes32 readingId, bool hasValue, int256 value);
        function hook(address device, string calldata stream) external view returns (address hookContract, uint64 gasLimit, uint256 deposit);
        function registerDevice(int64 alg, bytes calldata publicKey, string calldata model) external returns (address device);
        function rotateKey(address device, int64 alg, bytes calldata publicKey) external;
        function revokeDevice(address device) external;
        function attachHook(address device, string calldata stream, address hookContract, uint64 gasLimit) external payable;

        event DeviceRegistered(address indexed device, address indexed owner, int64 alg, bytes publicKey, string model);
        event KeyRotated(address indexed device, address indexed owner, int64 alg, bytes publicKey);
        event DeviceRevoked(address indexed device, address indexed owner);
        event HookAttached(address indexed device, address indexed owner, string stream, address hookContract, uint64 gasLimit, uint256 deposit);
    }

    /// What a reading hook implements (contracts/IReadingHook.sol).
    interface IReadingHook {
        function onReading(address device, string calldata stream, uint64 seq, uint64 ts, bool hasValue, int256 value, bytes32 readingId) external;
    }
}

pub(crate) use IReadingHook::onReadingCall as OnReadingCall;

/// Gives the precompile the state revm executes against.
pub(crate) trait StateAccess {
    fn state(&self) -> &State;
}

/// The Ethereum precompiles plus the IoT precompile.
#[derive(Debug, Clone)]
pub(crate) struct IotPrecompiles {
    eth: EthPrecompiles,
    addresses: AddressSet,
}

impl IotPrecompiles {
    pub(crate) fn new(spec: revm::primitives::hardfork::SpecId) -> Self {
        let eth = EthPrecompiles::new(spec);
        let mut addresses = eth.warm_addresses().clone();
        addresses.insert(IOT_ADDRESS);
        Self { eth, addresses }
    }
}

impl<CTX> PrecompileProvider<CTX> for IotPrecompiles
where
    CTX: ContextTr,
    CTX::Db: StateAccess,
{
    type Output = InterpreterResult;

    fn set_spec(&mut self, spec: <CTX::Cfg as Cfg>::Spec) -> bool {
        let changed = <EthPrecompiles as PrecompileProvider<CTX>>::set_spec(&mut self.eth, spec);
        if changed {
            self.addresses = self.eth.warm_addresses().clone();
            self.addresses.insert(IOT_ADDRESS);
        }
        changed
    }

    fn run(
        &mut self,
        context: &mut CTX,
        inputs: &CallInputs,
    ) -> Result<Option<InterpreterResult>, String> {
        if inputs.bytecode_address != IOT_ADDRESS {
            return self.eth.run(context, inputs);
        }
        let input = inputs.input.bytes(context);
        let outcome = call_iot(context, inputs, &input);
        let mut gas = Gas::new_with_regular_gas_and_reservoir(inputs.gas_limit, inputs.reservoir);
        let (result, output) = match outcome {
            Ok((cost, output)) => {
                if gas.record_regular_cost(cost) {
                    (InstructionResult::Return, output)
                } else {
                    gas.spend_all();
                    (InstructionResult::PrecompileOOG, Bytes::new())
                }
            }
            Err(why) => {
                let _ = gas.record_regular_cost(VIEW_GAS.min(inputs.gas_limit));
                (InstructionResult::Revert, revert_reason(&why))
            }
        };
        Ok(Some(InterpreterResult::new(result, output, gas)))
    }

    fn warm_addresses(&self) -> &AddressSet {
        &self.addresses
    }

    fn contains(&self, address: &Address) -> bool {
        self.addresses.contains(address)
    }
}

/// `Error(string)` revert data, as Solidity's `revert("...")` produces.
fn revert_reason(why: &str) -> Bytes {
    alloy_sol_types::Revert::from(why).abi_encode().into()
}

fn device_address(a: Address) -> DeviceAddress {
    DeviceAddress(a.0.0)
}

fn key_of(alg: i64, bytes: &[u8]) -> Result<DevicePublicKey, String> {
    let alg = Alg::from_cose(alg).ok_or_else(|| format!("unknown key algorithm {alg}"))?;
    DevicePublicKey::from_bytes(alg, bytes).map_err(|e| e.to_string())
}

/// Runs one IoT precompile call: its gas cost and output, or why it reverts.
fn call_iot<CTX>(
    context: &mut CTX,
    inputs: &CallInputs,
    input: &[u8],
) -> Result<(u64, Bytes), String>
where
    CTX: ContextTr,
    CTX::Db: StateAccess,
{
    let selector: [u8; 4] = input
        .get(..4)
        .and_then(|s| s.try_into().ok())
        .ok_or("no function selector")?;
    let bad = |e: alloy_sol_types::Error| format!("malformed call: {e}");
    let state = context.db_ref().state();
    match selector {
        IIoT::deviceCall::SELECTOR => {
            let call = IIoT::deviceCall::abi_decode(input).map_err(bad)?;
            let out = match state.device(&device_address(call.device)) {
                Some(d) => IIoT::deviceReturn {
                    registered: true,
                    owner: d.owner,
                    status: match d.status {
                        DeviceStatus::Active => 0,
                        DeviceStatus::Revoked => 1,
                    },
                    alg: d.public_key.alg().cose_value(),
                    hasSeq: d.last_seq.is_some(),
                    lastSeq: d.last_seq.unwrap_or(0),
                },
                None => IIoT::deviceReturn {
                    registered: false,
                    owner: Address::ZERO,
                    status: 0,
                    alg: 0,
                    hasSeq: false,
                    lastSeq: 0,
                },
            };
            Ok((VIEW_GAS, IIoT::deviceCall::abi_encode_returns(&out).into()))
        }
        IIoT::latestReadingCall::SELECTOR => {
            let call = IIoT::latestReadingCall::abi_decode(input).map_err(bad)?;
            let head = state
                .device(&device_address(call.device))
                .and_then(|d| d.streams.iter().find(|h| h.stream == call.stream));
            let out = match head {
                Some(h) => IIoT::latestReadingReturn {
                    found: true,
                    seq: h.seq,
                    ts: h.ts,
                    readingId: h.id,
                    hasValue: h.value.is_some(),
                    value: h.value.unwrap_or(I256::ZERO),
                },
                None => IIoT::latestReadingReturn {
                    found: false,
                    seq: 0,
                    ts: 0,
                    readingId: B256::ZERO,
                    hasValue: false,
                    value: I256::ZERO,
                },
            };
            Ok((
                VIEW_GAS,
                IIoT::latestReadingCall::abi_encode_returns(&out).into(),
            ))
        }
        IIoT::hookCall::SELECTOR => {
            let call = IIoT::hookCall::abi_decode(input).map_err(bad)?;
            let out = match state.hook(&device_address(call.device), &call.stream) {
                Some(h) => IIoT::hookReturn {
                    hookContract: h.contract,
                    gasLimit: h.gas_limit,
                    deposit: h.deposit,
                },
                None => IIoT::hookReturn {
                    hookContract: Address::ZERO,
                    gasLimit: 0,
                    deposit: U256::ZERO,
                },
            };
            Ok((VIEW_GAS, IIoT::hookCall::abi_encode_returns(&out).into()))
        }
        _ => change(context, inputs, selector, input),
    }
}

/// The registry changes: checked now, applied when the transaction succeeds.
fn change<CTX>(
    context: &mut CTX,
    inputs: &CallInputs,
    selector: [u8; 4],
    input: &[u8],
) -> Result<(u64, Bytes), String>
where
    CTX: ContextTr,
    CTX::Db: StateAccess,
{
    if inputs.is_static {
        return Err("a registry change in a static call".into());
    }
    if inputs.target_address != IOT_ADDRESS {
        return Err("the IoT precompile must be called directly, not delegated to".into());
    }
    let owner = inputs.caller;
    let value = inputs.transfer_value().unwrap_or_default();
    let bad = |e: alloy_sol_types::Error| format!("malformed call: {e}");
    let refused = |e: StateError| e.to_string();
    let state = context.db_ref().state();
    let (device, log, output): (DeviceAddress, alloy_primitives::LogData, Bytes) = match selector {
        IIoT::registerDeviceCall::SELECTOR => {
            let call = IIoT::registerDeviceCall::abi_decode(input).map_err(bad)?;
            let public_key = key_of(call.alg, &call.publicKey)?;
            let op = DeviceOp::Register {
                public_key: public_key.clone(),
                model: call.model.clone(),
                firmware_hash: Bytes::new(),
                labels: vec![],
            };
            state.check_op(owner, &op).map_err(refused)?;
            let device = public_key.address();
            let event = IIoT::DeviceRegistered {
                device: Address::from(device.0),
                owner,
                alg: call.alg,
                publicKey: call.publicKey,
                model: call.model,
            };
            let out = IIoT::registerDeviceCall::abi_encode_returns(&Address::from(device.0));
            (device, event.encode_log_data(), out.into())
        }
        IIoT::rotateKeyCall::SELECTOR => {
            let call = IIoT::rotateKeyCall::abi_decode(input).map_err(bad)?;
            let device = device_address(call.device);
            let op = DeviceOp::Rotate {
                device,
                public_key: key_of(call.alg, &call.publicKey)?,
            };
            state.check_op(owner, &op).map_err(refused)?;
            let event = IIoT::KeyRotated {
                device: call.device,
                owner,
                alg: call.alg,
                publicKey: call.publicKey,
            };
            (device, event.encode_log_data(), Bytes::new())
        }
        IIoT::revokeDeviceCall::SELECTOR => {
            let call = IIoT::revokeDeviceCall::abi_decode(input).map_err(bad)?;
            let device = device_address(call.device);
            state
                .check_op(owner, &DeviceOp::Revoke { device })
                .map_err(refused)?;
            let event = IIoT::DeviceRevoked {
                device: call.device,
                owner,
            };
            (device, event.encode_log_data(), Bytes::new())
        }
        IIoT::attachHookCall::SELECTOR => {
            let call = IIoT::attachHookCall::abi_decode(input).map_err(bad)?;
            let device = device_address(call.device);
            state
                .check_hook(owner, &device, &call.stream)
                .map_err(refused)?;
            if call.hookContract == Address::ZERO || call.gasLimit == 0 {
                return Err("a hook needs a contract and a gas limit".into());
            }
            let limit = context.block().gas_limit();
            if call.gasLimit > limit {
                return Err(format!(
                    "a hook's gas limit {} is above the block gas limit {limit}",
                    call.gasLimit
                ));
            }
            let event = IIoT::HookAttached {
                device: call.device,
                owner,
                stream: call.stream,
                hookContract: call.hookContract,
                gasLimit: call.gasLimit,
                deposit: value,
            };
            (device, event.encode_log_data(), Bytes::new())
        }
        _ => return Err("unknown function".into()),
    };
    if selector != IIoT::attachHookCall::SELECTOR && !value.is_zero() {
        return Err("only attachHook takes value".into());
    }
    // One change per device per transaction: later ones would be checked against a
    // registry that does not have the earlier ones yet.
    let earlier = context
        .journal_ref()
        .logs()
        .iter()
        .filter(|l| l.address == IOT_ADDRESS)
        .any(|l| l.topics().get(1).map(|t| &t[12..]) == Some(&device.0[..]));
    if earlier {
        return Err(format!(
            "device {device} was already changed in this transaction"
        ));
    }
    context.journal_mut().log(Log {
        address: IOT_ADDRESS,
        data: log,
    });
    Ok((CHANGE_GAS, output))
}

/// Applies the registry changes a successful transaction's IoT events carry, in order, at
/// block `height`. The events were checked when emitted; one that no longer applies (it
/// cannot happen with one change per device per transaction) is skipped.
pub(crate) fn apply_events(state: &mut State, logs: &[Log], height: u64) {
    for log in logs.iter().filter(|l| l.address == IOT_ADDRESS) {
        let _ = apply_event(state, log, height);
    }
}

fn apply_event(state: &mut State, log: &Log, height: u64) -> Result<(), String> {
    let Some(topic) = log.topics().first() else {
        return Ok(());
    };
    match *topic {
        IIoT::DeviceRegistered::SIGNATURE_HASH => {
            let e =
                IIoT::DeviceRegistered::decode_log_data(&log.data).map_err(|e| e.to_string())?;
            let op = DeviceOp::Register {
                public_key: key_of(e.alg, &e.publicKey)?,
                model: e.model,
                firmware_hash: Bytes::new(),
                labels: vec![],
            };
            state
                .apply_op(e.owner, &op, height)
                .map_err(|e| e.to_string())
        }
        IIoT::KeyRotated::SIGNATURE_HASH => {
            let e = IIoT::KeyRotated::decode_log_data(&log.data).map_err(|e| e.to_string())?;
            let op = DeviceOp::Rotate {
                device: device_address(e.device),
                public_key: key_of(e.alg, &e.publicKey)?,
            };
            state
                .apply_op(e.owner, &op, height)
                .map_err(|e| e.to_string())
        }
        IIoT::DeviceRevoked::SIGNATURE_HASH => {
            let e = IIoT::DeviceRevoked::decode_log_data(&log.data).map_err(|e| e.to_string())?;
            let op = DeviceOp::Revoke {
                device: device_address(e.device),
            };
            state
                .apply_op(e.owner, &op, height)
                .map_err(|e| e.to_string())
        }
        IIoT::HookAttached::SIGNATURE_HASH => {
            let e = IIoT::HookAttached::decode_log_data(&log.data).map_err(|e| e.to_string())?;
            state
                .attach_hook(
                    e.owner,
                    &device_address(e.device),
                    &e.stream,
                    e.hookContract,
                    e.gasLimit,
                    e.deposit,
                )
                .map_err(|e| e.to_string())
        }
        _ => Ok(()),
    }
}

//! The IoT precompile against the state: registry changes through contracts take effect
//! only when the transaction succeeds, never from a static call, and at most once per
//! device per transaction; views show what the readings lane wrote.

use alloy_consensus::TxEip1559;
use alloy_primitives::{Address, B256, Bytes, I256, TxKind, U256};
use alloy_sol_types::SolCall;
use iotchain_crypto::{KeyAlg, KeyFile};
use iotchain_evm::{
    BlockContext, BlockExecutor, CallRequest, EthTx, IIoT, IOT_ADDRESS, call, key_address, sign_tx,
};
use iotchain_reading::DeviceAddress;
use iotchain_state::{Account, OwnerRecord, State, StreamHead};
use k256::ecdsa::SigningKey;

const CHAIN_ID: u64 = 7;
const GWEI: u128 = 1_000_000_000;

/// Forwards its calldata to the precompile with CALL, then reverts.
const CALL_THEN_REVERT: &[u8] = &[
    0x36, 0x5f, 0x5f, 0x37, 0x5f, 0x5f, 0x36, 0x5f, 0x5f, 0x61, 0x10, 0x70, 0x5a, 0xf1, 0x50, 0x5f,
    0x5f, 0xfd,
];
/// Forwards its calldata with STATICCALL and stores the call's success flag in slot 0.
const STATIC_CALL: &[u8] = &[
    0x36, 0x5f, 0x5f, 0x37, 0x5f, 0x5f, 0x36, 0x5f, 0x61, 0x10, 0x70, 0x5a, 0xfa, 0x5f, 0x55, 0x00,
];
/// Forwards its calldata with CALL twice; the success flags go to slots 0 and 1.
const CALL_TWICE: &[u8] = &[
    0x36, 0x5f, 0x5f, 0x37, 0x5f, 0x5f, 0x36, 0x5f, 0x5f, 0x61, 0x10, 0x70, 0x5a, 0xf1, 0x5f, 0x55,
    0x5f, 0x5f, 0x36, 0x5f, 0x5f, 0x61, 0x10, 0x70, 0x5a, 0xf1, 0x60, 0x01, 0x55, 0x00,
];

fn ctx() -> BlockContext {
    BlockContext {
        chain_id: CHAIN_ID,
        number: 1,
        timestamp: 1_700_000_000,
        timestamp_ms: 1_700_000_000_000,
        beneficiary: Address::repeat_byte(0xfe),
        base_fee: GWEI as u64,
        gas_limit: 30_000_000,
        prevrandao: B256::repeat_byte(1),
    }
}

struct Setup {
    state: State,
    sender: SigningKey,
    nonce: u64,
}

/// A funded sender, and contracts at 0xc0..c2 (authorised owners, as the sender is).
fn setup() -> Setup {
    let sender = SigningKey::from_bytes(&[3u8; 32].into()).unwrap();
    let from = key_address(&sender);
    let contracts = [CALL_THEN_REVERT, STATIC_CALL, CALL_TWICE];
    let owners = std::iter::once(from)
        .chain((0..3).map(|i| Address::repeat_byte(0xc0 + i)))
        .map(|a| (a, OwnerRecord::default()));
    let mut state = State::from_records([], owners);
    state.set_account(
        from,
        Some(Account::with_balance(U256::from(10u128.pow(21)))),
    );
    for (i, code) in contracts.iter().enumerate() {
        let code_hash = state.insert_code(Bytes::from_static(code));
        let account = Account {
            nonce: 1,
            balance: U256::ZERO,
            code_hash,
        };
        state.set_account(Address::repeat_byte(0xc0 + i as u8), Some(account));
    }
    Setup {
        state,
        sender,
        nonce: 0,
    }
}

impl Setup {
    /// Sends `input` to `to` in one transaction; whether it succeeded.
    fn send(&mut self, to: Address, input: Vec<u8>) -> bool {
        let raw = sign_tx(
            &self.sender,
            TxEip1559 {
                chain_id: CHAIN_ID,
                nonce: self.nonce,
                gas_limit: 500_000,
                max_fee_per_gas: 3 * GWEI,
                max_priority_fee_per_gas: 0,
                to: TxKind::Call(to),
                value: U256::ZERO,
                access_list: Default::default(),
                input: input.into(),
            },
        )
        .unwrap();
        self.nonce += 1;
        let tx = EthTx::decode(&raw, CHAIN_ID, usize::MAX).unwrap();
        let mut exec = BlockExecutor::new(ctx(), &());
        exec.execute(&mut self.state, &tx).unwrap().status
    }
}

/// A reading of the stream `temp` (no value).
fn temp_head() -> StreamHead {
    StreamHead {
        stream: "temp".to_string(),
        seq: 1,
        ts: 2,
        id: B256::repeat_byte(9),
        value: None,
    }
}

fn device_key() -> (DeviceAddress, Vec<u8>) {
    let k = KeyFile::generate(KeyAlg::Ed25519);
    let signer = k.device_signer().unwrap();
    (signer.address(), k.public_key_bytes().unwrap())
}

fn register(public_key: &[u8]) -> Vec<u8> {
    IIoT::registerDeviceCall {
        alg: -8,
        publicKey: public_key.to_vec().into(),
        model: "m".into(),
    }
    .abi_encode()
}

#[test]
fn a_registration_applies_only_when_its_transaction_succeeds() {
    let mut s = setup();
    let (device, key) = device_key();
    // Through a contract that reverts after the call: nothing registered.
    assert!(!s.send(Address::repeat_byte(0xc0), register(&key)));
    assert!(s.state.device(&device).is_none());
    // Directly: registered under the sender.
    assert!(s.send(IOT_ADDRESS, register(&key)));
    let record = s.state.device(&device).expect("registered");
    assert_eq!(record.owner, key_address(&s.sender));
    // A second registration of the same key reverts.
    assert!(!s.send(IOT_ADDRESS, register(&key)));
}

#[test]
fn a_static_call_cannot_change_the_registry() {
    let mut s = setup();
    let (device, key) = device_key();
    let static_caller = Address::repeat_byte(0xc1);
    assert!(s.send(static_caller, register(&key)));
    assert_eq!(
        s.state.storage_slot(&static_caller, &U256::ZERO),
        U256::ZERO
    );
    assert!(s.state.device(&device).is_none());
}

#[test]
fn one_change_per_device_per_transaction() {
    let mut s = setup();
    let (device, key) = device_key();
    let twice = Address::repeat_byte(0xc2);
    assert!(s.send(twice, register(&key)));
    assert_eq!(s.state.storage_slot(&twice, &U256::ZERO), U256::from(1));
    assert_eq!(s.state.storage_slot(&twice, &U256::from(1)), U256::ZERO);
    assert_eq!(s.state.device(&device).unwrap().owner, twice);
}

#[test]
fn views_show_the_readings_lane_and_refuse_malformed_calls() {
    let mut s = setup();
    let (device, key) = device_key();
    assert!(s.send(IOT_ADDRESS, register(&key)));
    s.state.record_stream(
        &device,
        &StreamHead {
            stream: "temp",
            seq: 9,
            ts: 1234,
            id: B256::repeat_byte(7),
            value: Some(I256::try_from(-2_500_000).unwrap()),
        },
    );
    let view = |input: Vec<u8>| {
        call(
            &s.state,
            &(),
            &ctx(),
            &CallRequest {
                to: Some(IOT_ADDRESS),
                input: input.into(),
                ..CallRequest::default()
            },
            &iotchain_evm::CallLimits::NONE,
        )
    };
    let out = view(
        IIoT::latestReadingCall {
            device: Address::from(device.0),
            stream: "temp".into(),
        }
        .abi_encode(),
    )
    .unwrap();
    let r = IIoT::latestReadingCall::abi_decode_returns(&out.output).unwrap();
    assert!(r.found && r.hasValue);
    assert_eq!((r.seq, r.ts, r.readingId), (9, 1234, B256::repeat_byte(7)));
    assert_eq!(r.value, I256::try_from(-2_500_000).unwrap());
    // Truncated arguments, an unknown selector, no selector: reverts, not panics.
    let mut truncated = IIoT::deviceCall {
        device: Address::ZERO,
    }
    .abi_encode();
    truncated.truncate(20);
    for bad in [truncated, vec![0xde, 0xad, 0xbe, 0xef], vec![0x01]] {
        assert!(view(bad).is_err());
    }
}

#[test]
fn an_owner_rotates_a_key_and_a_stranger_cannot() {
    let mut s = setup();
    let (device, key) = device_key();
    assert!(s.send(IOT_ADDRESS, register(&key)));
    let (_, new_key) = device_key();
    let rotate = |k: &[u8]| {
        IIoT::rotateKeyCall {
            device: Address::from(device.0),
            alg: -8,
            publicKey: k.to_vec().into(),
        }
        .abi_encode()
    };
    // A contract (an authorised owner, but not this device's) is refused.
    let twice = Address::repeat_byte(0xc2);
    assert!(s.send(twice, rotate(&new_key)));
    assert_eq!(s.state.storage_slot(&twice, &U256::ZERO), U256::ZERO);
    assert_eq!(s.state.device(&device).unwrap().key_version(), 0);
    // The owner rotates; the old key cannot come back.
    assert!(s.send(IOT_ADDRESS, rotate(&new_key)));
    let record = s.state.device(&device).unwrap();
    assert_eq!(record.key_version(), 1);
    assert_eq!(record.public_key.to_bytes(), new_key);
    assert!(!s.send(IOT_ADDRESS, rotate(&key)));
}

#[test]
fn an_unfunded_hook_is_not_called_and_a_funded_one_pays_from_its_deposit() {
    let mut s = setup();
    let (device, key) = device_key();
    assert!(s.send(IOT_ADDRESS, register(&key)));
    let owner = key_address(&s.sender);
    // The hook contract: the revert-after-call proxy (any code will do; it reverts).
    let hook = Address::repeat_byte(0xc0);
    s.state
        .attach_hook(owner, &device, "temp", hook, 50_000, U256::from(1))
        .unwrap();
    let head = temp_head();
    let mut exec = BlockExecutor::new(ctx(), &());
    let receipt = exec.run_hook(&mut s.state, &device, &head).unwrap();
    assert!(!receipt.status);
    assert_eq!(
        receipt.gas_used, 0,
        "not called: 1 wei does not cover 50,000 gas"
    );
    assert_eq!(receipt.tx_hash, iotchain_evm::hook_call_id(&head.id, &hook));
    // Funded: called (it reverts: a failed receipt), and the gas is taken from the deposit.
    let deposit = U256::from(10u128.pow(18));
    s.state
        .attach_hook(owner, &device, "temp", hook, 50_000, deposit)
        .unwrap();
    s.state.set_account(
        IOT_ADDRESS,
        Some(Account::with_balance(deposit + U256::from(1))),
    );
    let receipt = exec.run_hook(&mut s.state, &device, &head).unwrap();
    assert!(!receipt.status);
    assert!(receipt.gas_used > 21_000);
    let fee = U256::from(receipt.gas_used) * U256::from(GWEI);
    let left = s.state.hook(&device, "temp").unwrap().deposit;
    assert_eq!(left, deposit + U256::from(1) - fee);
    assert_eq!(
        s.state.account(&IOT_ADDRESS).unwrap().balance,
        deposit + U256::from(1) - fee
    );
    // No hook on another stream: nothing to call.
    let other = StreamHead {
        stream: "humidity".to_string(),
        ..head
    };
    assert!(exec.run_hook(&mut s.state, &device, &other).is_none());
}

#[test]
fn hooks_share_a_gas_budget_of_one_block_gas_limit() {
    let mut s = setup();
    let (device, key) = device_key();
    assert!(s.send(IOT_ADDRESS, register(&key)));
    let owner = key_address(&s.sender);
    // A hook that loops until its gas runs out.
    let looping = Address::repeat_byte(0xc4);
    let code_hash = s.state.insert_code(Bytes::from_static(&[0x5b, 0x5f, 0x56]));
    s.state.set_account(
        looping,
        Some(Account {
            nonce: 1,
            balance: U256::ZERO,
            code_hash,
        }),
    );
    // Above the block gas limit: refused by the precompile.
    let attach = |gas: u64| {
        IIoT::attachHookCall {
            device: Address::from(device.0),
            stream: "temp".into(),
            hookContract: looping,
            gasLimit: gas,
        }
        .abi_encode()
    };
    assert!(!s.send(IOT_ADDRESS, attach(30_000_001)));
    assert!(s.state.hook(&device, "temp").is_none());
    // 20M each: the first call burns 20M of the 30M budget, the second does not fit.
    let deposit = U256::from(10u128.pow(20));
    s.state
        .attach_hook(owner, &device, "temp", looping, 20_000_000, deposit)
        .unwrap();
    s.state
        .set_account(IOT_ADDRESS, Some(Account::with_balance(deposit)));
    let head = temp_head();
    let mut exec = BlockExecutor::new(ctx(), &());
    let first = exec.run_hook(&mut s.state, &device, &head).unwrap();
    assert!(!first.status);
    assert_eq!(first.gas_used, 20_000_000);
    let second = exec.run_hook(&mut s.state, &device, &head).unwrap();
    assert!(!second.status);
    assert_eq!(
        second.gas_used, 0,
        "past the block's hook budget: not called"
    );
    // The next block has a budget of its own.
    let mut next = BlockExecutor::new(ctx(), &());
    assert_eq!(
        next.run_hook(&mut s.state, &device, &head)
            .unwrap()
            .gas_used,
        20_000_000
    );
}

//! Executing Ethereum transactions against the iotchain state: transfers, fees, contract
//! creation and storage, proofs, and every way a transaction is refused.

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope, TxLegacy};
use alloy_primitives::{Address, B256, Bytes, Signature, TxKind, U256, keccak256};
use alloy_trie::{Nibbles, proof::verify_proof};
use iotchain_evm::{
    BlockContext, BlockExecutor, CallLimits, CallRequest, EthTx, EvmError, call, estimate_gas,
    key_address, sign_tx,
};
use iotchain_state::{Account, State};
use k256::ecdsa::SigningKey;

const CHAIN_ID: u64 = 7;
const BASE_FEE: u64 = 1_000_000_000;
const GWEI: u128 = 1_000_000_000;

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32].into()).unwrap()
}

fn address(k: &SigningKey) -> Address {
    key_address(k)
}

fn sign<T: SignableTransaction<Signature>>(k: &SigningKey, tx: T) -> Bytes
where
    TxEnvelope: From<alloy_consensus::Signed<T>>,
{
    sign_tx(k, tx).unwrap()
}

fn eip1559(k: &SigningKey, nonce: u64, to: TxKind, value: U256, input: Bytes, gas: u64) -> Bytes {
    sign(
        k,
        TxEip1559 {
            chain_id: CHAIN_ID,
            nonce,
            gas_limit: gas,
            max_fee_per_gas: 3 * GWEI,
            max_priority_fee_per_gas: GWEI,
            to,
            value,
            access_list: Default::default(),
            input,
        },
    )
}

fn transfer(k: &SigningKey, nonce: u64, to: Address, value: u64) -> Bytes {
    eip1559(
        k,
        nonce,
        TxKind::Call(to),
        U256::from(value),
        Bytes::new(),
        21_000,
    )
}

fn ctx() -> BlockContext {
    BlockContext {
        chain_id: CHAIN_ID,
        number: 1,
        timestamp: 1_700_000_000,
        timestamp_ms: 1_700_000_000_000,
        beneficiary: Address::repeat_byte(0xfe),
        base_fee: BASE_FEE,
        gas_limit: 30_000_000,
        prevrandao: B256::repeat_byte(1),
    }
}

fn funded(k: &SigningKey) -> State {
    let mut state = State::default();
    state.set_account(
        address(k),
        Some(Account::with_balance(U256::from(10u128.pow(21)))),
    );
    state
}

fn decode(raw: &Bytes) -> EthTx {
    EthTx::decode(raw, CHAIN_ID, 128 * 1024).unwrap()
}

fn balance(state: &State, a: &Address) -> U256 {
    state.account(a).map(|a| a.balance).unwrap_or_default()
}

#[test]
fn transfer_moves_value_burns_base_fee_and_tips_the_proposer() {
    let alice = key(1);
    let bob = Address::repeat_byte(0xb0);
    let mut state = funded(&alice);
    let before = balance(&state, &address(&alice));
    let mut exec = BlockExecutor::new(ctx(), &());
    let receipt = exec
        .execute(&mut state, &decode(&transfer(&alice, 0, bob, 1000)))
        .unwrap();
    assert!(receipt.status);
    assert_eq!(receipt.gas_used, 21_000);
    assert_eq!(receipt.effective_gas_price, 2 * GWEI);
    assert_eq!(balance(&state, &bob), U256::from(1000));
    assert_eq!(
        balance(&state, &address(&alice)),
        before - U256::from(1000u128 + 21_000 * 2 * GWEI)
    );
    // Only the priority fee reaches the proposer; the base fee is burned.
    assert_eq!(
        balance(&state, &ctx().beneficiary),
        U256::from(21_000 * GWEI)
    );
    assert_eq!(state.account(&address(&alice)).unwrap().nonce, 1);
    assert_eq!(exec.gas_used(), 21_000);
}

#[test]
fn refused_transactions_leave_the_state_unchanged() {
    let alice = key(1);
    let bob = Address::repeat_byte(0xb0);
    let mut state = funded(&alice);
    let mut exec = BlockExecutor::new(ctx(), &());
    exec.execute(&mut state, &decode(&transfer(&alice, 0, bob, 1)))
        .unwrap();
    let root = state.root().unwrap();
    let refuse = |state: &mut State, exec: &mut BlockExecutor<'_, ()>, raw: Bytes| {
        exec.execute(state, &decode(&raw)).unwrap_err()
    };
    // Replay and gap.
    assert!(matches!(
        refuse(&mut state, &mut exec, transfer(&alice, 0, bob, 1)),
        EvmError::NonceTooLow {
            got: 0,
            expected: 1,
            ..
        }
    ));
    assert!(matches!(
        refuse(&mut state, &mut exec, transfer(&alice, 5, bob, 1)),
        EvmError::NonceTooHigh {
            got: 5,
            expected: 1,
            ..
        }
    ));
    // More than the balance.
    let e = refuse(
        &mut state,
        &mut exec,
        eip1559(
            &alice,
            1,
            TxKind::Call(bob),
            U256::from(10u128.pow(22)),
            Bytes::new(),
            21_000,
        ),
    );
    assert!(matches!(e, EvmError::InsufficientFunds { .. }), "{e}");
    let poor = key(9);
    let e = refuse(&mut state, &mut exec, transfer(&poor, 0, bob, 0));
    assert!(e.to_string().starts_with("insufficient funds"), "{e}");
    // Gas above the block limit, and too little gas.
    let e = refuse(
        &mut state,
        &mut exec,
        eip1559(
            &alice,
            1,
            TxKind::Call(bob),
            U256::ZERO,
            Bytes::new(),
            30_000_001,
        ),
    );
    assert!(matches!(e, EvmError::GasAboveBlockLimit { .. }), "{e}");
    let e = refuse(
        &mut state,
        &mut exec,
        eip1559(
            &alice,
            1,
            TxKind::Call(bob),
            U256::ZERO,
            Bytes::new(),
            20_000,
        ),
    );
    assert!(matches!(e, EvmError::IntrinsicGasTooLow { .. }), "{e}");
    // A fee cap under the base fee.
    let cheap = sign(
        &alice,
        TxEip1559 {
            chain_id: CHAIN_ID,
            nonce: 1,
            gas_limit: 21_000,
            max_fee_per_gas: 1,
            max_priority_fee_per_gas: 1,
            to: TxKind::Call(bob),
            ..Default::default()
        },
    );
    assert!(matches!(
        refuse(&mut state, &mut exec, cheap),
        EvmError::FeeCapTooLow { .. }
    ));
    assert_eq!(state.root().unwrap(), root);
    assert_eq!(exec.gas_used(), 21_000);
}

#[test]
fn decoding_refuses_malformed_foreign_and_forged_transactions() {
    let alice = key(1);
    let raw = transfer(&alice, 0, Address::ZERO, 1);
    let err = |bytes: &[u8]| EthTx::decode(bytes, CHAIN_ID, 1024).unwrap_err();
    assert!(matches!(err(&[]), EvmError::Malformed(_)));
    assert!(matches!(err(&[0xc0]), EvmError::Malformed(_)));
    assert!(matches!(err(&raw[..raw.len() - 3]), EvmError::Malformed(_)));
    let mut trailing = raw.to_vec();
    trailing.push(0);
    assert!(matches!(err(&trailing), EvmError::Malformed(_)));
    assert!(matches!(err(&[0x7f, 1, 2]), EvmError::Malformed(_)));
    assert!(matches!(
        err(&[0u8; 2000]),
        EvmError::TooLarge {
            size: 2000,
            max: 1024
        }
    ));
    // Another chain, and a legacy transaction without EIP-155 replay protection.
    let foreign = sign(
        &alice,
        TxEip1559 {
            chain_id: CHAIN_ID + 1,
            gas_limit: 21_000,
            to: TxKind::Call(Address::ZERO),
            ..Default::default()
        },
    );
    assert!(matches!(
        err(&foreign),
        EvmError::WrongChainId {
            got: Some(8),
            expected: CHAIN_ID
        }
    ));
    let unprotected = sign(
        &alice,
        TxLegacy {
            chain_id: None,
            gas_limit: 21_000,
            gas_price: 2 * GWEI,
            to: TxKind::Call(Address::ZERO),
            ..Default::default()
        },
    );
    assert!(matches!(
        err(&unprotected),
        EvmError::WrongChainId { got: None, .. }
    ));
    // A signature whose s is above the curve order recovers nobody.
    let mut forged = raw.to_vec();
    let n = forged.len();
    forged[n - 32..].fill(0xff);
    assert_eq!(err(&forged), EvmError::BadSignature);
    // A legacy EIP-155 transaction decodes and recovers its sender.
    let legacy = sign(
        &alice,
        TxLegacy {
            chain_id: Some(CHAIN_ID),
            gas_limit: 21_000,
            gas_price: 2 * GWEI,
            to: TxKind::Call(Address::ZERO),
            ..Default::default()
        },
    );
    assert_eq!(
        EthTx::decode(&legacy, CHAIN_ID, 1024).unwrap().sender,
        address(&alice)
    );
}

/// Init code that stores 42 at slot 1 and deploys a runtime that returns slot 1, or
/// reverts with `Error("no")` when called with data.
fn counter_init() -> Bytes {
    // runtime: CALLDATASIZE PUSH1 rev JUMPI  PUSH1 1 SLOAD PUSH1 0 MSTORE PUSH1 32 PUSH1 0 RETURN
    //          rev: JUMPDEST  (Error("no") revert)
    let mut runtime = vec![
        0x36, 0x60, 0x0e, 0x57, 0x60, 0x01, 0x54, 0x60, 0x00, 0x52, 0x60, 0x20, 0x60, 0x00, 0xf3,
        0x5b,
    ];
    runtime[2] = 15; // the JUMPDEST offset
    let mut reason = [0u8; 100];
    reason[..4].copy_from_slice(&[0x08, 0xc3, 0x79, 0xa0]);
    reason[35] = 0x20;
    reason[67] = 2;
    reason[68..70].copy_from_slice(b"no");
    // Store the revert data in memory word by word, then REVERT(0, 100).
    for (i, chunk) in reason.chunks(32).enumerate() {
        let mut word = [0u8; 32];
        word[..chunk.len()].copy_from_slice(chunk);
        runtime.push(0x7f);
        runtime.extend_from_slice(&word);
        runtime.extend_from_slice(&[0x60, (i * 32) as u8, 0x52]);
    }
    runtime.extend_from_slice(&[0x60, 100, 0x60, 0x00, 0xfd]);
    let len = runtime.len() as u8;
    // init: SSTORE(1, 42); CODECOPY(0, 15, len); RETURN(0, len)
    let mut init = vec![
        0x60, 42, 0x60, 0x01, 0x55, 0x60, len, 0x60, 15, 0x60, 0x00, 0x39, 0x60, len, 0x60, 0x00,
        0xf3,
    ];
    init[8] = init.len() as u8;
    init.extend_from_slice(&runtime);
    init.into()
}

#[test]
fn contracts_are_created_called_and_proven() {
    let alice = key(1);
    let mut state = funded(&alice);
    let mut exec = BlockExecutor::new(ctx(), &());
    let deploy = decode(&eip1559(
        &alice,
        0,
        TxKind::Create,
        U256::ZERO,
        counter_init(),
        200_000,
    ));
    let receipt = exec.execute(&mut state, &deploy).unwrap();
    assert!(receipt.status, "{receipt:?}");
    let contract = receipt.contract_address.unwrap();
    assert_eq!(contract, address(&alice).create(0));
    assert!(!state.account_code(&contract).is_empty());
    assert_eq!(
        state.storage_slot(&contract, &U256::from(1)),
        U256::from(42)
    );

    let req = CallRequest {
        to: Some(contract),
        ..Default::default()
    };
    let out = call(&state, &(), &ctx(), &req, &CallLimits::NONE).unwrap();
    assert_eq!(U256::from_be_slice(&out.output), U256::from(42));
    let gas = estimate_gas(&state, &(), &ctx(), &req, &CallLimits::NONE).unwrap();
    assert!(gas > 21_000 && gas < 30_000, "{gas}");
    let reverted = call(
        &state,
        &(),
        &ctx(),
        &CallRequest {
            input: Bytes::from_static(&[1]),
            ..req.clone()
        },
        &CallLimits::NONE,
    )
    .unwrap_err();
    let EvmError::Reverted(data) = reverted else {
        panic!("{reverted}")
    };
    assert_eq!(&data[..4], &[0x08, 0xc3, 0x79, 0xa0]);

    // A reverting transaction is included: nonce and fee taken, status 0.
    let tx = decode(&eip1559(
        &alice,
        1,
        TxKind::Call(contract),
        U256::ZERO,
        Bytes::from_static(&[1]),
        100_000,
    ));
    let receipt = exec.execute(&mut state, &tx).unwrap();
    assert!(!receipt.status);
    assert_eq!(state.account(&address(&alice)).unwrap().nonce, 2);

    // EIP-1186 proofs of the account and its slot verify against the state root.
    let root = state.root().unwrap();
    let proof = state
        .account_proof(&contract, &[U256::from(1), U256::from(2)])
        .unwrap();
    let account = proof.account.unwrap();
    verify_proof(
        root,
        Nibbles::unpack(keccak256(contract)),
        Some(account.trie_value(proof.storage_root)),
        &proof.proof,
    )
    .unwrap();
    let (slot, value, nodes) = &proof.storage[0];
    assert_eq!(*value, U256::from(42));
    verify_proof(
        proof.storage_root,
        Nibbles::unpack(keccak256(B256::from(*slot))),
        Some(alloy_rlp::encode(value)),
        nodes,
    )
    .unwrap();
    let (slot, _, nodes) = &proof.storage[1];
    verify_proof(
        proof.storage_root,
        Nibbles::unpack(keccak256(B256::from(*slot))),
        None,
        nodes,
    )
    .unwrap();
    // Absence of an account.
    let nobody = Address::repeat_byte(0x99);
    let absent = state.account_proof(&nobody, &[]).unwrap();
    assert!(absent.account.is_none());
    verify_proof(
        root,
        Nibbles::unpack(keccak256(nobody)),
        None,
        &absent.proof,
    )
    .unwrap();
}

#[test]
fn same_transactions_give_the_same_root() {
    let alice = key(1);
    let txs: Vec<EthTx> = (0..20)
        .map(|n| {
            decode(&transfer(
                &alice,
                n,
                Address::with_last_byte(n as u8 + 1),
                1 + n,
            ))
        })
        .collect();
    let run = || {
        let mut state = funded(&alice);
        let mut exec = BlockExecutor::new(ctx(), &());
        for tx in &txs {
            exec.execute(&mut state, tx).unwrap();
        }
        let records = state.changed_records();
        (state.root().unwrap(), records)
    };
    let (a, ra) = run();
    let (b, rb) = run();
    assert_eq!(a, b);
    assert_eq!(ra, rb);
    // A state rebuilt from its records has the same root.
    let rebuilt = State::default().with_accounts(
        ra.accounts
            .iter()
            .filter_map(|(a, acc)| Some((*a, (*acc)?))),
        ra.storage.clone(),
        ra.code.clone(),
    );
    let mut rebuilt = rebuilt;
    assert_eq!(rebuilt.root().unwrap(), a);
}

/// Init code that loops for ever (JUMPDEST; PUSH1 0; JUMP): it only ends out of gas.
fn endless_loop() -> Bytes {
    Bytes::from_static(&[0x5b, 0x60, 0x00, 0x56])
}

#[test]
fn calls_are_held_to_the_gas_cap_the_deadline_and_the_budget() {
    use std::sync::atomic::{AtomicBool, AtomicU64};
    let alice = key(1);
    let state = funded(&alice);
    let looping = CallRequest {
        input: endless_loop(),
        ..Default::default()
    };
    // The gas cap bounds what one execution may burn, whatever the call asks for.
    let capped = CallLimits {
        gas_cap: 1_000_000,
        ..CallLimits::NONE
    };
    let asked = CallRequest {
        gas: Some(25_000_000),
        ..looping.clone()
    };
    assert!(matches!(
        call(&state, &(), &ctx(), &asked, &capped),
        Err(EvmError::Halted(_))
    ));
    // A cancelled call stops at once and says why.
    let cancel = AtomicBool::new(true);
    let timed = CallLimits {
        cancel: Some(&cancel),
        timeout_ms: 5000,
        ..CallLimits::NONE
    };
    assert_eq!(
        call(&state, &(), &ctx(), &looping, &timed),
        Err(EvmError::Timeout(5000))
    );
    assert_eq!(
        estimate_gas(&state, &(), &ctx(), &looping, &timed),
        Err(EvmError::Timeout(5000))
    );
    // The gas budget of a request is shared by its executions: once they used it up, no
    // further execution of the request runs.
    let left = AtomicU64::new(3_000_000);
    let budgeted = CallLimits {
        gas_cap: 1_000_000,
        budget: Some((&left, 3_000_000)),
        ..CallLimits::NONE
    };
    for _ in 0..3 {
        assert!(matches!(
            call(&state, &(), &ctx(), &looping, &budgeted),
            Err(EvmError::Halted(_))
        ));
    }
    assert_eq!(
        call(&state, &(), &ctx(), &looping, &budgeted),
        Err(EvmError::BudgetExhausted(3_000_000))
    );
    assert_eq!(
        estimate_gas(&state, &(), &ctx(), &looping, &budgeted),
        Err(EvmError::BudgetExhausted(3_000_000))
    );
}

#[test]
fn access_lists_name_what_a_call_touches_and_leave_out_sender_and_recipient() {
    use alloy_eips::eip2930::{AccessList, AccessListItem};
    use iotchain_evm::create_access_list;
    let alice = key(1);
    let mut state = funded(&alice);
    let mut exec = BlockExecutor::new(ctx(), &());
    let deploy = decode(&eip1559(
        &alice,
        0,
        TxKind::Create,
        U256::ZERO,
        counter_init(),
        200_000,
    ));
    let contract = exec
        .execute(&mut state, &deploy)
        .unwrap()
        .contract_address
        .unwrap();
    let read = CallRequest {
        from: Some(address(&alice)),
        to: Some(contract),
        ..Default::default()
    };
    // The contract reads slot 1: the contract and that slot, and the gas of the call with
    // them warm.
    let out = create_access_list(&state, &(), &ctx(), &read, &CallLimits::NONE).unwrap();
    let slot1 = B256::from(U256::from(1));
    assert_eq!(
        out.access_list,
        AccessList(vec![AccessListItem {
            address: contract,
            storage_keys: vec![slot1],
        }])
    );
    assert_eq!(out.error, None);
    let with_list = CallRequest {
        access_list: out.access_list.clone(),
        ..read.clone()
    };
    let used = call(&state, &(), &ctx(), &with_list, &CallLimits::NONE)
        .unwrap()
        .gas_used;
    assert_eq!(out.gas_used, used);

    // A plain transfer touches nothing but its sender and recipient, left out.
    let plain = CallRequest {
        from: Some(address(&alice)),
        to: Some(Address::repeat_byte(0x42)),
        value: Some(U256::from(1)),
        ..Default::default()
    };
    let out = create_access_list(&state, &(), &ctx(), &plain, &CallLimits::NONE).unwrap();
    assert_eq!(
        (out.access_list, out.gas_used),
        (AccessList::default(), 21_000)
    );

    // A call that reverts still has its list (here: nothing read), and the revert.
    let reverting = CallRequest {
        input: Bytes::from_static(&[1]),
        ..read.clone()
    };
    let out = create_access_list(&state, &(), &ctx(), &reverting, &CallLimits::NONE).unwrap();
    assert!(matches!(out.error, Some(EvmError::Reverted(_))), "{out:?}");
    assert_eq!(out.access_list, AccessList::default());

    // The request's own list is kept (other accounts and slots), the recipient's entry
    // only with what it touches.
    let other = Address::repeat_byte(0x77);
    let seeded = CallRequest {
        access_list: AccessList(vec![
            AccessListItem {
                address: other,
                storage_keys: vec![B256::ZERO],
            },
            AccessListItem {
                address: contract,
                storage_keys: vec![B256::repeat_byte(9)],
            },
        ]),
        ..read.clone()
    };
    let out = create_access_list(&state, &(), &ctx(), &seeded, &CallLimits::NONE).unwrap();
    let mut want = vec![
        AccessListItem {
            address: contract,
            storage_keys: vec![slot1],
        },
        AccessListItem {
            address: other,
            storage_keys: vec![B256::ZERO],
        },
    ];
    want.sort_by_key(|i| i.address);
    assert_eq!(out.access_list, AccessList(want));

    // Held to the call limits: a cancelled one stops and says why.
    let cancel = std::sync::atomic::AtomicBool::new(true);
    let limits = CallLimits {
        cancel: Some(&cancel),
        timeout_ms: 5,
        ..CallLimits::NONE
    };
    let looping = CallRequest {
        input: endless_loop(),
        ..Default::default()
    };
    assert!(matches!(
        create_access_list(&state, &(), &ctx(), &looping, &limits),
        Err(EvmError::Timeout(5))
    ));
}

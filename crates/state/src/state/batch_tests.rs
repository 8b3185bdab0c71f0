//! Batch registrations: all or none, a refused device named by its index, and manufacturer
//! certificates accepted only from an authorised manufacturer.

use super::*;
use iotchain_block::DeviceCertificate;
use iotchain_crypto::{DeviceSigner, KeyAlg, OwnerKey};

fn signer(i: u32) -> DeviceSigner {
    let mut secret = [5u8; 32];
    secret[..4].copy_from_slice(&i.to_be_bytes());
    DeviceSigner::from_secret(KeyAlg::Ed25519, &secret).unwrap()
}

struct Chain {
    state: State,
    owner: OwnerKey,
    nonce: u64,
}

impl Chain {
    fn new(manufacturers: Vec<Address>) -> Self {
        let owner = OwnerKey::from_secret(&[1; 32]).unwrap();
        let mut genesis =
            Genesis::single_validator(1, 0, B256::repeat_byte(9), vec![owner.address()]);
        genesis.manufacturers = manufacturers;
        Self {
            state: State::genesis(&genesis),
            owner,
            nonce: 0,
        }
    }

    fn apply(&mut self, op: DeviceOp) -> Result<()> {
        let tx = SignedTx::sign(&self.owner, 1, self.nonce, op).unwrap();
        self.state.apply_tx(&tx, 1)?;
        self.nonce += 1;
        Ok(())
    }
}

fn many(devices: Vec<NewDevice>) -> DeviceOp {
    DeviceOp::RegisterMany { devices }
}

#[test]
fn a_batch_registers_all_its_devices_or_none_naming_the_one_refused() {
    let mut chain = Chain::new(vec![]);
    let devices: Vec<NewDevice> = (0..10_000)
        .map(|i| NewDevice::new(signer(i).public_key(), "meter"))
        .collect();
    // Device 5000 is registered already: the batch is refused by that index, nothing changes.
    chain.apply(many(vec![devices[5000].clone()])).unwrap();
    let root = chain.state.root().unwrap();
    let err = chain.apply(many(devices.clone())).unwrap_err();
    assert_eq!(err.code(), "device_exists");
    assert!(
        err.to_string().starts_with("device 5000 of the batch:"),
        "{err}"
    );
    assert!(
        chain
            .state
            .device(&devices[0].public_key.address())
            .is_none()
    );
    assert_eq!(chain.state.root().unwrap(), root);
    assert_eq!(chain.state.owner(&chain.owner.address()).unwrap().nonce, 1);

    // A key listed twice in one batch: refused at its second place.
    let mut twice = devices[..10].to_vec();
    twice.push(devices[3].clone());
    let err = chain.apply(many(twice)).unwrap_err();
    assert!(
        err.to_string().starts_with("device 10 of the batch:"),
        "{err}"
    );

    // Without the registered one, all 9,999 are registered in one transaction.
    let rest: Vec<NewDevice> = devices
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 5000)
        .map(|(_, d)| d.clone())
        .collect();
    chain.apply(many(rest)).unwrap();
    let owner = chain.state.owner(&chain.owner.address()).unwrap();
    assert_eq!((owner.device_count, owner.nonce), (10_000, 2));
    for d in &devices {
        let record = chain.state.device(&d.public_key.address()).unwrap();
        assert_eq!(
            (record.model.as_str(), record.manufacturer),
            ("meter", None)
        );
    }
}

#[test]
fn certified_devices_need_an_authorised_manufacturer() {
    let factory = OwnerKey::from_secret(&[7; 32]).unwrap();
    let rogue = OwnerKey::from_secret(&[8; 32]).unwrap();
    let certified = |i: u32, by: &OwnerKey| {
        let mut d = NewDevice::new(signer(i).public_key(), "meter");
        d.certificate = Some(DeviceCertificate::sign(by, &d.public_key, "meter").unwrap());
        d
    };

    // Authorised chain-wide in genesis: accepted, and the record names the manufacturer.
    let mut chain = Chain::new(vec![factory.address()]);
    chain.apply(many(vec![certified(1, &factory)])).unwrap();
    let record = chain.state.device(&signer(1).address()).unwrap();
    assert_eq!(record.manufacturer, Some(factory.address()));
    // A forged certificate (another key's signature) is refused by its index.
    let err = chain
        .apply(many(vec![certified(2, &factory), certified(3, &rogue)]))
        .unwrap_err();
    assert_eq!(err.code(), "unknown_manufacturer");
    assert!(
        err.to_string().starts_with("device 1 of the batch:"),
        "{err}"
    );
    assert!(chain.state.device(&signer(2).address()).is_none());

    // Not in genesis: refused until the owner authorises the manufacturer, and again after
    // it withdraws it.
    let mut chain = Chain::new(vec![]);
    let err = chain.apply(many(vec![certified(4, &factory)])).unwrap_err();
    assert_eq!(err.code(), "unknown_manufacturer");
    let root = chain.state.root().unwrap();
    chain
        .apply(DeviceOp::Manufacturer {
            manufacturer: factory.address(),
            authorised: true,
        })
        .unwrap();
    assert_ne!(
        chain.state.root().unwrap(),
        root,
        "the authorisation is in the state"
    );
    assert!(
        chain
            .state
            .trusts_manufacturer(&chain.owner.address(), &factory.address())
    );
    chain.apply(many(vec![certified(4, &factory)])).unwrap();
    chain
        .apply(DeviceOp::Manufacturer {
            manufacturer: factory.address(),
            authorised: false,
        })
        .unwrap();
    assert_eq!(
        chain
            .apply(many(vec![certified(5, &factory)]))
            .unwrap_err()
            .code(),
        "unknown_manufacturer"
    );
    // Another owner's authorisation does not count for this one.
    assert!(
        !chain
            .state
            .trusts_manufacturer(&Address::repeat_byte(3), &factory.address())
    );

    // The records survive their encoding, and genesis manufacturers are in the root.
    let record = chain.state.device(&signer(4).address()).unwrap();
    assert_eq!(
        DeviceRecord::decode_rlp(&record.encode_rlp()).unwrap(),
        *record
    );
    let mut with = Chain::new(vec![factory.address()]);
    let mut without = Chain::new(vec![]);
    assert_ne!(with.state.root().unwrap(), without.state.root().unwrap());
}

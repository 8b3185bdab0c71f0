//! Manufacturer certificates of device keys: a factory signs each device key it makes (with
//! its model), and an owner registers the device with the certificate. The chain recovers the
//! manufacturer from the certificate and accepts it only when the manufacturer is authorised
//! (chain-wide in genesis, or by the registering owner), so a fleet can be onboarded from a
//! production run's list of keys and certificates with no trust in whoever forwards it.

use alloy_primitives::{Address, B256, keccak256};
use iotchain_crypto::{DevicePublicKey, OwnerKey, OwnerSignature, recover_owner};
use serde::Serialize;

use crate::Result;

/// Domain separation prefix of the hash a manufacturer signs.
pub const CERT_DOMAIN: &[u8] = b"iotchain/device-certificate/v1";

/// A manufacturer's certificate of one device key and model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DeviceCertificate {
    /// The manufacturer (recovered from the signature).
    pub manufacturer: Address,
    /// 65-byte recoverable secp256k1 signature over [`DeviceCertificate::signing_hash`].
    #[serde(serialize_with = "sig_hex")]
    pub signature: OwnerSignature,
}

fn sig_hex<S: serde::Serializer>(
    sig: &OwnerSignature,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&crate::hex0x(sig))
}

impl DeviceCertificate {
    /// `keccak256(CERT_DOMAIN ‖ alg ‖ key ‖ keccak256(model))`, where `alg` is the negated
    /// COSE algorithm (8 Ed25519, 7 P-256) and `key` the key's bytes as registered. It names
    /// no chain: one certificate serves whichever chain the device joins.
    pub fn signing_hash(public_key: &DevicePublicKey, model: &str) -> B256 {
        let key = public_key.to_bytes();
        let mut buf = Vec::with_capacity(CERT_DOMAIN.len() + 1 + key.len() + 32);
        buf.extend_from_slice(CERT_DOMAIN);
        buf.push((-public_key.alg().cose_value()) as u8);
        buf.extend_from_slice(&key);
        buf.extend_from_slice(keccak256(model.as_bytes()).as_slice());
        keccak256(buf)
    }

    /// Certifies `public_key` of `model` with the manufacturer's key.
    pub fn sign(
        manufacturer: &OwnerKey,
        public_key: &DevicePublicKey,
        model: &str,
    ) -> Result<Self> {
        Ok(Self {
            manufacturer: manufacturer.address(),
            signature: manufacturer.sign_hash(&Self::signing_hash(public_key, model))?,
        })
    }

    /// Recovers the manufacturer of a certificate of `public_key` and `model` (any signature
    /// recovers to some address: the chain then checks that it is an authorised one).
    pub fn recover(
        signature: &OwnerSignature,
        public_key: &DevicePublicKey,
        model: &str,
    ) -> Result<Self> {
        let manufacturer = recover_owner(&Self::signing_hash(public_key, model), signature)?;
        Ok(Self {
            manufacturer,
            signature: *signature,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iotchain_crypto::{DeviceSigner, KeyAlg};

    #[test]
    fn a_certificate_recovers_its_manufacturer_and_binds_key_and_model() {
        let factory = OwnerKey::from_secret(&[7; 32]).unwrap();
        let device = DeviceSigner::from_secret(KeyAlg::Ed25519, &[8; 32]).unwrap();
        let other = DeviceSigner::from_secret(KeyAlg::P256, &[9; 32]).unwrap();
        let cert = DeviceCertificate::sign(&factory, &device.public_key(), "meter-2").unwrap();
        let back = DeviceCertificate::recover(&cert.signature, &device.public_key(), "meter-2");
        assert_eq!(back.unwrap().manufacturer, factory.address());
        // The same signature for another key or another model names someone else.
        for (key, model) in [
            (other.public_key(), "meter-2"),
            (device.public_key(), "meter-3"),
        ] {
            let r = DeviceCertificate::recover(&cert.signature, &key, model);
            assert_ne!(r.map(|c| c.manufacturer).ok(), Some(factory.address()));
        }
    }
}

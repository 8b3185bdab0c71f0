use super::*;

fn key(seed: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
}

fn sign(cert: &Certificate<'_>, k: &ed25519_dalek::SigningKey) -> ValidatorSignature {
    use ed25519_dalek::Signer as _;
    let mut m = [0u8; MAX_SIGNING_BYTES];
    let n = signing_bytes(
        cert.epoch,
        cert.view,
        cert.parent_view,
        &cert.header_hash,
        &mut m,
    );
    ValidatorSignature {
        validator: k.verifying_key().to_bytes(),
        signature: k.sign(&m[..n]).to_bytes(),
    }
}

fn validators() -> ([ed25519_dalek::SigningKey; 4], [Hash; 4]) {
    let keys = [key(1), key(2), key(3), key(4)];
    let set = [
        keys[0].verifying_key().to_bytes(),
        keys[1].verifying_key().to_bytes(),
        keys[2].verifying_key().to_bytes(),
        keys[3].verifying_key().to_bytes(),
    ];
    (keys, set)
}

fn child(parent: &Header) -> Header {
    Header {
        height: parent.height + 1,
        parent_hash: parent.hash(),
        timestamp_ms: parent.timestamp_ms + 200,
        ..*parent
    }
}

#[test]
fn quorum_and_varints() {
    assert_eq!([quorum(1), quorum(3), quorum(4), quorum(7)], [1, 3, 3, 5]);
    let mut out = [0u8; MAX_SIGNING_BYTES];
    let n = signing_bytes(0, 300, 127, &[9; 32], &mut out);
    assert_eq!(
        out[0] as usize,
        SIMPLEX_NAMESPACE.len() + FINALIZE_SUFFIX.len()
    );
    assert_eq!(&out[29..33], &[0x00, 0xac, 0x02, 0x7f]);
    assert_eq!(n, 33 + 32);
}

#[test]
fn certificates_below_quorum_forged_or_repeated_are_refused() {
    let (keys, set) = validators();
    let header = Header {
        chain_id: 5,
        height: 9,
        ..Header::default()
    };
    let mut cert = Certificate {
        height: 9,
        header_hash: header.hash(),
        epoch: 0,
        view: 12,
        parent_view: 11,
        signatures: &[],
    };
    let sigs = [
        sign(&cert, &keys[0]),
        sign(&cert, &keys[1]),
        sign(&cert, &keys[2]),
    ];
    cert.signatures = &sigs[..2];
    assert_eq!(
        verify_certificate(&cert, &set),
        Err(CertificateError::BelowQuorum {
            valid: 2,
            needed: 3,
            validators: 4
        })
    );
    cert.signatures = &sigs;
    verify_certificate(&cert, &set).unwrap();
    verify_header_chain(&header, &[], &cert, &set).unwrap();
    // No validators (a trust anchor that was never filled in): nothing is final, not even a
    // certificate without signatures.
    let unsigned = Certificate {
        signatures: &[],
        ..cert
    };
    assert_eq!(
        verify_certificate(&unsigned, &[]),
        Err(CertificateError::BelowQuorum {
            valid: 0,
            needed: 1,
            validators: 0
        })
    );
    assert!(verify_header_chain(&header, &[], &unsigned, &[]).is_err());
    let twice = [sigs[0], sigs[1], sigs[0]];
    cert.signatures = &twice;
    assert!(matches!(
        verify_certificate(&cert, &set),
        Err(CertificateError::SignedTwice(_))
    ));
    let stranger = [sigs[0], sigs[1], sign(&cert, &key(9))];
    cert.signatures = &stranger;
    assert!(matches!(
        verify_certificate(&cert, &set),
        Err(CertificateError::NotAValidator(_))
    ));
    // A signature over another view does not count for this one.
    cert.signatures = &sigs;
    cert.view = 13;
    assert!(matches!(
        verify_certificate(&cert, &set),
        Err(CertificateError::InvalidSignature(_))
    ));
}

#[test]
fn header_chains_link_without_gaps() {
    let (keys, set) = validators();
    let trusted = Header {
        chain_id: 5,
        height: 10,
        timestamp_ms: 1000,
        ..Header::default()
    };
    let a = child(&trusted);
    let b = child(&a);
    let c = child(&b);
    let mut cert = Certificate {
        height: c.height,
        header_hash: c.hash(),
        epoch: 0,
        view: 20,
        parent_view: 19,
        signatures: &[],
    };
    let sigs = [
        sign(&cert, &keys[0]),
        sign(&cert, &keys[1]),
        sign(&cert, &keys[3]),
    ];
    cert.signatures = &sigs;
    verify_header_chain(&trusted, &[a, b, c], &cert, &set).unwrap();
    // A gap: b is missing.
    assert!(matches!(
        verify_header_chain(&trusted, &[a, c], &cert, &set),
        Err(ChainError::Header(HeaderError::Gap {
            height: 13,
            after: 11
        }))
    ));
    // A header of another chain.
    let mut foreign = b;
    foreign.chain_id = 6;
    assert!(matches!(
        verify_header_chain(&trusted, &[a, foreign, c], &cert, &set),
        Err(ChainError::Header(HeaderError::ChainId { .. }))
    ));
    // The certificate is for c, not for b.
    assert!(matches!(
        verify_header_chain(&trusted, &[a, b], &cert, &set),
        Err(ChainError::Header(HeaderError::NotCertified { .. }))
    ));
    // Below quorum.
    cert.signatures = &sigs[..2];
    assert!(matches!(
        verify_header_chain(&trusted, &[a, b, c], &cert, &set),
        Err(ChainError::Certificate(
            CertificateError::BelowQuorum { .. }
        ))
    ));
}

proptest::proptest! {
    /// Any change to any header field changes the hash, and the encoding is the RLP list
    /// the node writes (checked against the node's header type in iotchain-block's tests).
    #[test]
    fn every_header_field_is_hashed(
        a in proptest::prelude::any::<[u64; 5]>(),
        h in proptest::prelude::any::<[[u8; 32]; 5]>(),
        field in 0usize..10,
    ) {
        let header = Header {
            chain_id: a[0], height: a[1], parent_hash: h[0], timestamp_ms: a[2],
            proposer: h[1], readings_root: h[2], reading_count: a[3],
            transactions_root: h[3], transaction_count: a[4], state_root: h[4],
        };
        let mut changed = header;
        match field {
            0 => changed.chain_id ^= 1,
            1 => changed.height ^= 1,
            2 => changed.parent_hash[0] ^= 1,
            3 => changed.timestamp_ms ^= 1,
            4 => changed.proposer[31] ^= 1,
            5 => changed.readings_root[7] ^= 1,
            6 => changed.reading_count ^= 1,
            7 => changed.transactions_root[3] ^= 1,
            8 => changed.transaction_count ^= 1,
            _ => changed.state_root[0] ^= 1,
        }
        proptest::prop_assert_ne!(header.hash(), changed.hash());
    }
}

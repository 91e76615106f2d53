//! Key life cycle (ENC-1, DES-1): rotation, minimum decryption version, disable, destroy
//! (crypto-shredding), convergent and derived encryption, blind indexes, signatures, persistence.

use cf_core::Timestamp;
use cf_crypto::SeededRng;
use cf_kms::keyring::{KeyRing, KeyType, Policy, verify_detached};
use cf_kms::seal::Kek;
use cf_kms::{Envelope, HashAlg, KeyState, KmsError, Mode};

fn t0() -> Timestamp {
    Timestamp::from_unix_secs(1_764_000_000)
}

fn key(t: KeyType, policy: Policy) -> KeyRing {
    KeyRing::generate("citizens", "city-hall", t, policy, t0(), &SeededRng::new(1)).unwrap()
}

#[test]
fn every_aead_key_type_encrypts_and_names_itself_in_the_envelope() {
    let rng = SeededRng::new(2);
    for t in [
        KeyType::Aes256Gcm,
        KeyType::Sm4Gcm,
        KeyType::ChaCha20Poly1305,
    ] {
        let k = key(t, Policy::default());
        let env = k.encrypt(b"110101199003074578", b"", false, &rng).unwrap();
        assert_eq!(
            (env.key.as_str(), env.version, env.alg, env.mode),
            ("citizens", 1, t.aead().unwrap(), Mode::Random)
        );
        let back = Envelope::from_text(&env.to_text()).unwrap();
        assert_eq!(&k.decrypt(&back, b"").unwrap()[..], b"110101199003074578");
        // Random nonces: the same plaintext twice gives different ciphertext.
        assert_ne!(
            k.encrypt(b"110101199003074578", b"", false, &rng).unwrap(),
            env
        );
    }
}

#[test]
fn relabelling_an_envelope_or_changing_its_context_is_detected() {
    let rng = SeededRng::new(3);
    let mut k = key(KeyType::Aes256Gcm, Policy::default());
    k.rotate(t0(), &rng).unwrap();
    let env = k.encrypt(b"secret", b"table=people", false, &rng).unwrap();
    let mut older = env.clone();
    older.version = 1;
    assert_eq!(
        k.decrypt(&older, b"table=people").unwrap_err(),
        KmsError::Tampered("tag mismatch")
    );
    assert!(k.decrypt(&env, b"table=cars").is_err());
    let other = KeyRing::generate(
        "other",
        "city-hall",
        KeyType::Aes256Gcm,
        Policy::default(),
        t0(),
        &rng,
    )
    .unwrap();
    assert!(matches!(
        other.decrypt(&env, b"table=people"),
        Err(KmsError::WrongKey { .. })
    ));
    let mut sm4 = env.clone();
    sm4.alg = cf_kms::Algorithm::Sm4Gcm;
    assert!(k.decrypt(&sm4, b"table=people").is_err());
}

#[test]
fn rotation_min_decryption_version_and_rewrap() {
    let rng = SeededRng::new(4);
    let mut k = key(KeyType::Sm4Gcm, Policy::default());
    let v1 = k.encrypt(b"old record", b"", false, &rng).unwrap();
    assert_eq!(k.rotate(t0(), &rng).unwrap(), 2);
    let v2 = k.rewrap(&v1, b"", &rng).unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(&k.decrypt(&v2, b"").unwrap()[..], b"old record");
    k.set_min_decryption_version(2).unwrap();
    let e = k.decrypt(&v1, b"").unwrap_err();
    assert_eq!(
        e.to_string(),
        "key `citizens` version 1: below the minimum decryption version"
    );
    assert!(k.set_min_decryption_version(3).is_err());
}

#[test]
fn disable_and_destroy_shred_exactly_what_they_name() {
    let rng = SeededRng::new(5);
    let mut k = key(KeyType::ChaCha20Poly1305, Policy::default());
    let v1 = k.encrypt(b"a", b"", false, &rng).unwrap();
    k.rotate(t0(), &rng).unwrap();
    let v2 = k.encrypt(b"b", b"", false, &rng).unwrap();
    assert!(
        k.set_enabled(2, false).is_err(),
        "latest version stays enabled"
    );
    k.set_enabled(1, false).unwrap();
    assert!(
        k.decrypt(&v1, b"")
            .unwrap_err()
            .to_string()
            .contains("disabled")
    );
    k.set_enabled(1, true).unwrap();
    assert!(
        k.destroy(Some(1))
            .unwrap_err()
            .to_string()
            .contains("deletion_allowed")
    );
    k.policy.deletion_allowed = true;
    assert_eq!(k.destroy(Some(1)).unwrap(), vec![1]);
    assert!(
        k.decrypt(&v1, b"")
            .unwrap_err()
            .to_string()
            .contains("destroyed")
    );
    assert_eq!(&k.decrypt(&v2, b"").unwrap()[..], b"b");
    assert!(k.set_enabled(1, true).is_err());
    // Persisted form keeps no trace of destroyed material.
    let kek = Kek::generate(&rng).unwrap();
    let stored = k.to_stored(&kek, &rng).unwrap();
    let json: serde_json::Value = serde_json::from_str(&stored).unwrap();
    assert!(json["versions"][0].get("wrapped").is_none());
    assert_eq!(k.destroy(None).unwrap(), vec![2]);
    assert!(k.decrypt(&v2, b"").is_err());
    assert!(
        k.rotate(t0(), &rng).is_err(),
        "a destroyed key does not come back"
    );
    assert!(
        k.info()
            .versions
            .iter()
            .all(|v| v.state == KeyState::Destroyed)
    );
}

#[test]
fn convergent_encryption_is_equal_for_equal_input_and_opt_in() {
    let rng = SeededRng::new(6);
    let plain = key(KeyType::Aes256Gcm, Policy::default());
    assert!(plain.encrypt(b"x", b"", true, &rng).is_err());
    let k = key(
        KeyType::Aes256Gcm,
        Policy {
            convergent: true,
            ..Policy::default()
        },
    );
    let a = k
        .encrypt(b"13800138000", b"people.phone", true, &rng)
        .unwrap();
    let b = k
        .encrypt(b"13800138000", b"people.phone", true, &rng)
        .unwrap();
    let c = k
        .encrypt(b"13800138001", b"people.phone", true, &rng)
        .unwrap();
    let d = k
        .encrypt(b"13800138000", b"staff.phone", true, &rng)
        .unwrap();
    assert_eq!(a, b);
    assert_ne!(a.nonce, c.nonce);
    assert_ne!(a.body, d.body);
    assert_eq!(a.mode, Mode::Deterministic);
    assert_eq!(&k.decrypt(&a, b"people.phone").unwrap()[..], b"13800138000");
}

#[test]
fn derived_keys_separate_contexts() {
    let rng = SeededRng::new(7);
    let k = key(
        KeyType::Sm4Gcm,
        Policy {
            derived: true,
            ..Policy::default()
        },
    );
    assert!(
        k.encrypt(b"x", b"", false, &rng)
            .unwrap_err()
            .to_string()
            .contains("needs a context")
    );
    let e = k.encrypt(b"x", b"tenant-a", false, &rng).unwrap();
    assert!(k.decrypt(&e, b"tenant-b").is_err());
    assert_eq!(&k.decrypt(&e, b"tenant-a").unwrap()[..], b"x");
}

#[test]
fn blind_indexes_match_equal_values_only_within_a_context() {
    let k = key(KeyType::Aes256Gcm, Policy::default());
    for alg in [HashAlg::Sha256, HashAlg::Sm3] {
        let a = k
            .blind_index(alg, b"people.sfzh", b"110101199003074578", 16)
            .unwrap();
        assert_eq!(
            a,
            k.blind_index(alg, b"people.sfzh", b"110101199003074578", 16)
                .unwrap()
        );
        assert_ne!(
            a,
            k.blind_index(alg, b"people.sfzh", b"110101199003074579", 16)
                .unwrap()
        );
        assert_ne!(
            a,
            k.blind_index(alg, b"staff.sfzh", b"110101199003074578", 16)
                .unwrap()
        );
        assert_eq!(a.len(), 16);
    }
    assert!(k.blind_index(HashAlg::Sm3, b"c", b"v", 4).is_err());
}

#[test]
fn signatures_verify_offline_and_across_rotation() {
    let rng = SeededRng::new(8);
    for t in [KeyType::Ed25519, KeyType::Sm2] {
        let mut k = key(t, Policy::default());
        let (v, sig) = k.sign(b"export-2026-11.csv").unwrap();
        let pk = k.public_key(v).unwrap();
        verify_detached(t, &pk, b"export-2026-11.csv", &sig).unwrap();
        assert!(verify_detached(t, &pk, b"export-2026-12.csv", &sig).is_err());
        k.rotate(t0(), &rng).unwrap();
        k.verify(1, b"export-2026-11.csv", &sig).unwrap();
        assert!(k.verify(2, b"export-2026-11.csv", &sig).is_err());
        assert!(
            k.encrypt(b"x", b"", false, &rng).is_err(),
            "signing keys do not encrypt"
        );
        assert!(k.info().versions[0].public_key.is_some());
    }
    let aes = key(KeyType::Aes256Gcm, Policy::default());
    assert!(aes.sign(b"x").is_err());
}

#[test]
fn sm2_keys_encrypt_to_themselves() {
    let rng = SeededRng::new(9);
    let k = key(KeyType::Sm2, Policy::default());
    let (v, ct) = k.sm2_encrypt(b"field", &rng).unwrap();
    assert_eq!(&k.sm2_decrypt(v, &ct).unwrap()[..], b"field");
}

#[test]
fn stored_form_round_trips_and_is_bound_to_its_kek_and_name() {
    let rng = SeededRng::new(10);
    let mut k = key(
        KeyType::Sm4Gcm,
        Policy {
            convergent: true,
            ..Policy::default()
        },
    );
    k.rotate(t0(), &rng).unwrap();
    let env = k.encrypt(b"payload", b"", false, &rng).unwrap();
    let kek = Kek::generate(&rng).unwrap();
    let stored = k.to_stored(&kek, &rng).unwrap();
    let back = KeyRing::from_stored(&kek, &stored).unwrap();
    assert_eq!(back.info(), k.info());
    assert_eq!(&back.decrypt(&env, b"").unwrap()[..], b"payload");
    assert!(KeyRing::from_stored(&Kek::generate(&rng).unwrap(), &stored).is_err());
    // Renaming the stored key does not let its material open under the new name.
    let renamed = stored.replacen("\"name\":\"citizens\"", "\"name\":\"citizens2\"", 1);
    assert!(KeyRing::from_stored(&kek, &renamed).is_err());
}

#[test]
fn debug_and_errors_never_show_material() {
    let rng = SeededRng::new(11);
    let k = KeyRing::import(
        "byok",
        "org",
        KeyType::Aes256Gcm,
        Policy::default(),
        t0(),
        zeroize::Zeroizing::new(vec![0xAB; 32]),
    )
    .unwrap();
    let dbg = format!("{k:?} {:?}", k.info());
    assert!(!dbg.to_lowercase().contains("abab"), "{dbg}");
    let e = KeyRing::import(
        "byok",
        "org",
        KeyType::Aes256Gcm,
        Policy::default(),
        t0(),
        zeroize::Zeroizing::new(vec![0xAB; 31]),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid request: aes256-gcm key material must be 32 bytes, got 31"
    );
    assert!(
        KeyRing::generate(
            "bad name!",
            "org",
            KeyType::Sm2,
            Policy::default(),
            t0(),
            &rng
        )
        .is_err()
    );
    let stored = k.to_stored(&Kek::generate(&rng).unwrap(), &rng).unwrap();
    assert!(!stored.to_lowercase().contains("abababab"));
}

//! The ledger engine against published vectors (RFC 6962/9162 reference trees, the
//! transparency-dev proof probes, C2SP signed-note examples) and against a naive model.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use cf_ledger::note::{self, NoteSigner, NoteVerifier};
use cf_ledger::{
    Checkpoint, LedgerError, MerkleTree, leaf_hash, node_hash, verify_consistency, verify_inclusion,
};
use proptest::prelude::*;
use serde_json::Value;

fn hx(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("hex")
}

fn b64(v: &Value) -> Vec<u8> {
    v.as_str()
        .map(|s| B64.decode(s).unwrap_or_default())
        .unwrap_or_default()
}

fn load(rel: &str) -> Option<Value> {
    let dir = cf_testkit::datasets()?;
    let text = std::fs::read_to_string(dir.join(rel)).expect("read vector file");
    Some(serde_json::from_str(&text).expect("vector json"))
}

#[test]
fn rfc6962_reference_tree_roots_and_proofs() {
    let Some(v) = load("vectors/tlog/rfc6962-reference.json") else {
        return;
    };
    for kat in v["hasher_vectors"].as_array().unwrap() {
        let got = match kat["kind"].as_str().unwrap() {
            "empty_root" => MerkleTree::new().root(),
            "leaf" => leaf_hash(&hx(&kat["input_hex"])),
            "node" => node_hash(&hx(&kat["left_hex"]), &hx(&kat["right_hex"])),
            k => panic!("unknown kind {k}"),
        };
        assert_eq!(got.to_vec(), hx(&kat["want"]), "{}", kat["desc"]);
    }
    let mut tree = MerkleTree::new();
    let roots = v["roots_by_size"].as_array().unwrap();
    assert_eq!(tree.root().to_vec(), hx(&roots[0]));
    for (i, leaf) in v["leaf_inputs_hex"].as_array().unwrap().iter().enumerate() {
        tree.push(leaf_hash(&hx(leaf)));
        assert_eq!(
            tree.root().to_vec(),
            hx(&roots[i + 1]),
            "root at size {}",
            i + 1
        );
    }
    let mut checked = 0;
    for p in v["inclusion_proofs"].as_array().unwrap() {
        let (idx, size) = (
            p["leafIndex"].as_u64().unwrap(),
            p["treeSize"].as_u64().unwrap(),
        );
        let want: Vec<Vec<u8>> = p["proof"].as_array().unwrap().iter().map(hx).collect();
        let got = tree.inclusion_proof(idx, size).unwrap();
        assert_eq!(
            got.iter().map(|h| h.to_vec()).collect::<Vec<_>>(),
            want,
            "inclusion {idx}@{size}"
        );
        verify_inclusion(
            idx,
            size,
            &hx(&p["leafHash"]),
            &want,
            &hx(&roots[size as usize]),
        )
        .unwrap();
        checked += 1;
    }
    for p in v["consistency_proofs"].as_array().unwrap() {
        let (s1, s2) = (p["size1"].as_u64().unwrap(), p["size2"].as_u64().unwrap());
        let want: Vec<Vec<u8>> = p["proof"].as_array().unwrap().iter().map(hx).collect();
        let got = tree.consistency_proof(s1, s2).unwrap();
        assert_eq!(
            got.iter().map(|h| h.to_vec()).collect::<Vec<_>>(),
            want,
            "consistency {s1}->{s2}"
        );
        verify_consistency(s1, s2, &hx(&p["root1"]), &hx(&p["root2"]), &want).unwrap();
        checked += 1;
    }
    assert!(checked > 60, "too few proofs checked: {checked}");
}

fn probes(kind: &str) -> Vec<(String, Value)> {
    let Some(dir) = cf_testkit::datasets() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut stack = vec![
        dir.join("vectors/tlog/transparency-dev-merkle/testdata")
            .join(kind),
    ];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("probe dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
                out.push((p.display().to_string(), v));
            }
        }
    }
    out
}

#[test]
fn transparency_dev_inclusion_probes() {
    let all = probes("inclusion");
    if cf_testkit::datasets().is_none() {
        return;
    }
    assert!(all.len() > 50, "found {} probes", all.len());
    for (path, p) in all {
        let proof: Vec<Vec<u8>> = p["proof"]
            .as_array()
            .map(|a| a.iter().map(b64).collect())
            .unwrap_or_default();
        let r = verify_inclusion(
            p["leafIdx"].as_u64().unwrap(),
            p["treeSize"].as_u64().unwrap(),
            &b64(&p["leafHash"]),
            &proof,
            &b64(&p["root"]),
        );
        assert_eq!(r.is_err(), p["wantErr"].as_bool().unwrap(), "{path}: {r:?}");
    }
}

#[test]
fn transparency_dev_consistency_probes() {
    let all = probes("consistency");
    if cf_testkit::datasets().is_none() {
        return;
    }
    assert!(all.len() > 50, "found {} probes", all.len());
    for (path, p) in all {
        let proof: Vec<Vec<u8>> = p["proof"]
            .as_array()
            .map(|a| a.iter().map(b64).collect())
            .unwrap_or_default();
        let r = verify_consistency(
            p["size1"].as_u64().unwrap(),
            p["size2"].as_u64().unwrap(),
            &b64(&p["root1"]),
            &b64(&p["root2"]),
            &proof,
        );
        assert_eq!(r.is_err(), p["wantErr"].as_bool().unwrap(), "{path}: {r:?}");
    }
}

#[test]
fn c2sp_signed_note_vectors() {
    let Some(v) = load("vectors/tlog/signed-note.json") else {
        return;
    };
    let mut valid = 0;
    let mut invalid = 0;
    for t in v["vectors"].as_array().unwrap() {
        let desc = format!("{} {}", t["source"], t["desc"]);
        if let Some(skey) = t["skey"].as_str() {
            let signer = NoteSigner::from_skey(skey).unwrap();
            assert_eq!(signer.verifier_key(), t["vkey"].as_str().unwrap(), "{desc}");
            let signed = note::sign(t["text"].as_str().unwrap(), &[&signer]).unwrap();
            assert_eq!(
                signed,
                t["expected_signed_note"].as_str().unwrap(),
                "{desc}"
            );
            valid += 1;
            continue;
        }
        let mut keys: Vec<&str> = t["vkeys"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(k) = t["vkey"].as_str() {
            keys.push(k);
        }
        let parsed: Vec<Result<NoteVerifier, LedgerError>> =
            keys.iter().map(|k| NoteVerifier::from_vkey(k)).collect();
        let Some(note_text) = t["note"].as_str() else {
            // A vector about keys alone: every key must be rejected when marked invalid.
            let want_valid = t["valid"].as_bool().unwrap_or(true);
            assert_eq!(
                parsed.iter().all(Result::is_ok),
                want_valid,
                "{desc}: {parsed:?}"
            );
            if want_valid {
                valid += 1
            } else {
                invalid += 1
            }
            continue;
        };
        let verifiers: Vec<NoteVerifier> = parsed.into_iter().filter_map(Result::ok).collect();
        let r = note::open(note_text, &verifiers);
        if t["valid"].as_bool().unwrap() {
            let opened = r.unwrap_or_else(|e| panic!("{desc}: {e}"));
            if let Some(want) = t["verified_by_vk_only"].as_array() {
                let only: Vec<NoteVerifier> = verifiers
                    .iter()
                    .filter(|v| want.iter().any(|w| w == v.name()))
                    .cloned()
                    .collect();
                let o = note::open(note_text, &only).unwrap();
                assert_eq!(o.verified_by.len(), want.len(), "{desc}");
                assert_eq!(o.unverified.len(), 1, "{desc}");
            }
            assert!(!opened.verified_by.is_empty());
            valid += 1;
        } else {
            assert!(r.is_err(), "{desc} should fail");
            invalid += 1;
        }
    }
    assert!(
        valid >= 3 && invalid >= 5,
        "valid {valid} invalid {invalid}"
    );
}

#[test]
fn checkpoint_round_trip_and_origin_check() {
    let signer = NoteSigner::new(
        "city.example/audit",
        cf_crypto::Ed25519SigningKey::from_seed(&[7; 32]),
    )
    .unwrap();
    let cp = Checkpoint {
        origin: "city.example/audit".into(),
        size: 42,
        root: [9; 32],
        extensions: vec!["time 1700000000000".into()],
    };
    let note_text = cp.sign(&[&signer]).unwrap();
    assert_eq!(
        Checkpoint::open(&note_text, "city.example/audit", &[signer.verifier()]).unwrap(),
        cp
    );
    assert!(Checkpoint::open(&note_text, "other/log", &[signer.verifier()]).is_err());
    for bad in [
        "",
        "o\n",
        "o\n01\nAAAA\n",
        "o\n1\nnot-base64\n",
        "o\n1\nAAAA\n",
        "o\n-1\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n",
    ] {
        assert!(Checkpoint::parse_text(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn sm2_co_signature_in_the_same_note() {
    let signer = NoteSigner::new(
        "city.example/audit",
        cf_crypto::Ed25519SigningKey::from_seed(&[7; 32]),
    )
    .unwrap()
    .with_sm2(cf_crypto::Sm2SigningKey::from_seed(&[9; 32]).unwrap());
    let cp = Checkpoint {
        origin: "city.example/audit".into(),
        size: 3,
        root: [1; 32],
        extensions: vec![],
    };
    let text = cp.sign(&[&signer]).unwrap();
    assert_eq!(text.matches('\u{2014}').count(), 2, "{text}");
    let vs = signer.verifiers();
    assert_eq!(vs.len(), 2);
    // Both trusted: both verify. Only Ed25519 trusted: the SM2 line is kept unverified.
    assert_eq!(
        note::open(&text, &vs).unwrap().verified_by.len(),
        1,
        "one name, two keys"
    );
    let only_ed = note::open(&text, &vs[..1]).unwrap();
    assert_eq!(only_ed.unverified.len(), 1);
    let only_sm2 = note::open(&text, &vs[1..]).unwrap();
    assert_eq!(only_sm2.unverified.len(), 1);
    // A corrupted SM2 signature fails when its key is trusted.
    let lines: Vec<&str> = text.lines().collect();
    let last = lines.last().unwrap();
    let (prefix, b64) = last.rsplit_once(' ').unwrap();
    let mut raw = B64.decode(b64).unwrap();
    raw[10] ^= 1;
    let bad = text.replace(last, &format!("{prefix} {}", B64.encode(raw)));
    assert!(note::open(&bad, &vs[1..]).is_err());
    // Private keys round-trip.
    let keys = signer.private_keys();
    let again = NoteSigner::from_skey(keys[0].expose())
        .unwrap()
        .with_sm2_skey(keys[1].expose())
        .unwrap();
    assert_eq!(again.verifier_keys(), signer.verifier_keys());
}

fn model_tree(n: usize) -> (MerkleTree, Vec<[u8; 32]>) {
    let mut t = MerkleTree::new();
    let mut leaves = Vec::new();
    for i in 0..n {
        let h = leaf_hash(format!("record {i}").as_bytes());
        t.push(h);
        leaves.push(h);
    }
    (t, leaves)
}

fn flip(v: &mut [u8], bit: usize) {
    v[bit / 8 % v.len()] ^= 1 << (bit % 8);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]

    #[test]
    fn every_inclusion_proof_verifies_and_any_bit_flip_fails(n in 1usize..300, idx_seed in any::<u64>(), bit in any::<usize>()) {
        let (t, leaves) = model_tree(n);
        let size = 1 + (idx_seed as usize % n) as u64;
        let idx = idx_seed % size;
        let root = t.root_at(size).unwrap();
        let proof = t.inclusion_proof(idx, size).unwrap();
        prop_assert!(verify_inclusion(idx, size, &leaves[idx as usize], &proof, &root).is_ok());
        let mut bad_leaf = leaves[idx as usize];
        flip(&mut bad_leaf, bit);
        prop_assert!(verify_inclusion(idx, size, &bad_leaf, &proof, &root).is_err());
        let mut bad_root = root;
        flip(&mut bad_root, bit);
        prop_assert!(verify_inclusion(idx, size, &leaves[idx as usize], &proof, &bad_root).is_err());
        if !proof.is_empty() {
            let mut bad = proof.clone();
            let k = bit % bad.len();
            flip(&mut bad[k], bit / 7);
            prop_assert!(verify_inclusion(idx, size, &leaves[idx as usize], &bad, &root).is_err());
        }
    }

    #[test]
    fn every_consistency_proof_verifies_and_any_bit_flip_fails(n in 1usize..300, a in any::<u64>(), b in any::<u64>(), bit in any::<usize>()) {
        let (t, _) = model_tree(n);
        let s2 = 1 + b % n as u64;
        let s1 = 1 + a % s2;
        let (r1, r2) = (t.root_at(s1).unwrap(), t.root_at(s2).unwrap());
        let proof = t.consistency_proof(s1, s2).unwrap();
        prop_assert!(verify_consistency(s1, s2, &r1, &r2, &proof).is_ok());
        let mut bad1 = r1;
        flip(&mut bad1, bit);
        prop_assert!(verify_consistency(s1, s2, &bad1, &r2, &proof).is_err());
        let mut bad2 = r2;
        flip(&mut bad2, bit);
        prop_assert!(verify_consistency(s1, s2, &r1, &bad2, &proof).is_err());
        if !proof.is_empty() {
            let mut bad = proof.clone();
            let k = bit % bad.len();
            flip(&mut bad[k], bit / 7);
            prop_assert!(verify_consistency(s1, s2, &r1, &r2, &bad).is_err());
        }
    }

    #[test]
    fn any_bit_flip_in_a_signed_checkpoint_is_rejected(size in any::<u64>(), root in any::<[u8; 32]>(), bit in any::<usize>()) {
        let signer = NoteSigner::new("city.example/audit", cf_crypto::Ed25519SigningKey::from_seed(&[3; 32])).unwrap();
        let cp = Checkpoint { origin: "city.example/audit".into(), size, root, extensions: vec![] };
        let text = cp.sign(&[&signer]).unwrap();
        prop_assert_eq!(Checkpoint::open(&text, "city.example/audit", &[signer.verifier()]).unwrap(), cp);
        let mut bytes = text.into_bytes();
        flip(&mut bytes, bit);
        if let Ok(s) = String::from_utf8(bytes) {
            prop_assert!(Checkpoint::open(&s, "city.example/audit", &[signer.verifier()]).is_err());
        }
    }

    #[test]
    fn note_parser_never_panics(s in ".{0,400}") {
        let v = NoteSigner::new("k", cf_crypto::Ed25519SigningKey::from_seed(&[1; 32])).unwrap().verifier();
        let _ = note::open(&s, &[v]);
        let _ = Checkpoint::parse_text(&s);
    }
}

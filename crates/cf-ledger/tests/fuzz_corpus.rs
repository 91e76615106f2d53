//! Replays the cargo-fuzz seed corpora (fuzz/corpus/<target>/*) through the same entry points
//! the fuzz targets use, so every saved input stays a regression test on stable Rust.

use std::path::PathBuf;

use cf_ledger::{Checkpoint, MerkleTree, NoteSigner, fuzzing, leaf_hash};

fn corpus(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

fn replay(target: &str, f: fn(&[u8])) {
    let dir = corpus(target);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        f(&data);
        n += 1;
    }
    assert!(n >= 3, "{target}: only {n} seeds");
}

#[test]
fn replay_checkpoint_corpus() {
    replay("checkpoint", fuzzing::checkpoint);
}

#[test]
fn replay_signed_note_corpus() {
    replay("signed_note", fuzzing::signed_note);
}

#[test]
fn replay_proof_corpus() {
    replay("proof", fuzzing::proof);
}

/// Writes the seed corpora; run with `cargo test -p cf-ledger --test fuzz_corpus -- --ignored`.
#[test]
#[ignore]
fn regenerate_seed_corpora() {
    let signer = NoteSigner::new(
        "fuzz.chengfang/audit",
        cf_crypto::Ed25519SigningKey::from_seed(&[42; 32]),
    )
    .unwrap();
    let mut tree = MerkleTree::new();
    for i in 0..13u32 {
        tree.push(leaf_hash(&i.to_be_bytes()));
    }
    let cp = Checkpoint {
        origin: "fuzz.chengfang/audit".into(),
        size: 13,
        root: tree.root(),
        extensions: vec!["time 1790000000000".into()],
    };
    let signed = cp.sign(&[&signer]).unwrap();
    let write = |t: &str, name: &str, data: &[u8]| {
        std::fs::create_dir_all(corpus(t)).unwrap();
        std::fs::write(corpus(t).join(name), data).unwrap();
    };
    write("checkpoint", "valid", signed.as_bytes());
    write("checkpoint", "body-only", cp.to_text().as_bytes());
    write(
        "checkpoint",
        "bad-size",
        signed.replace("\n13\n", "\n013\n").as_bytes(),
    );
    write("signed_note", "valid", signed.as_bytes());
    write("signed_note", "vkey", signer.verifier_key().as_bytes());
    write(
        "signed_note",
        "two-sigs",
        format!("{}\u{2014} other AAAAAAAA\n", signed).as_bytes(),
    );
    write("signed_note", "no-sigs", b"hello\n\n");
    let mut proof = Vec::new();
    proof.extend_from_slice(&5u64.to_le_bytes());
    proof.extend_from_slice(&13u64.to_le_bytes());
    proof.extend_from_slice(&tree.leaf(5).unwrap());
    proof.extend_from_slice(&tree.root());
    for h in tree.inclusion_proof(5, 13).unwrap() {
        proof.extend_from_slice(&h);
    }
    write("proof", "inclusion-5-of-13", &proof);
    let mut cons = Vec::new();
    cons.extend_from_slice(&7u64.to_le_bytes());
    cons.extend_from_slice(&13u64.to_le_bytes());
    cons.extend_from_slice(&tree.root_at(7).unwrap());
    cons.extend_from_slice(&tree.root());
    for h in tree.consistency_proof(7, 13).unwrap() {
        cons.extend_from_slice(&h);
    }
    write("proof", "consistency-7-to-13", &cons);
    write("proof", "huge-index", &[0xff; 112]);
}

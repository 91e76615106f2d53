//! Replays the committed cargo-fuzz corpora (`fuzz/corpus/envelope`, `fuzz/corpus/stream`) on
//! stable Rust, and checks that the seed files still match what the engine produces.

use std::path::PathBuf;

fn corpus(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(name)
}

#[test]
fn corpora_replay_without_panics() {
    for (target, f) in [
        ("envelope", cf_kms::fuzzing::envelope as fn(&[u8])),
        ("stream", cf_kms::fuzzing::stream),
    ] {
        let mut n = 0;
        for e in std::fs::read_dir(corpus(target)).unwrap() {
            let data = std::fs::read(e.unwrap().path()).unwrap();
            f(&data);
            for cut in [0, 1, data.len() / 2, data.len().saturating_sub(1)] {
                f(&data[..cut]);
            }
            n += 1;
        }
        assert!(n >= 1, "{target} corpus is empty");
    }
}

#[test]
fn seeds_are_committed() {
    for (name, bytes) in cf_kms::fuzzing::seeds() {
        let target = if name.starts_with("envelope") {
            "envelope"
        } else {
            "stream"
        };
        let p = corpus(target).join(&name);
        if std::env::var_os("CHENGFANG_WRITE_SEEDS").is_some() {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, &bytes).unwrap();
        }
        assert_eq!(
            std::fs::read(&p).unwrap_or_default(),
            bytes,
            "seed {name} is stale; rerun with CHENGFANG_WRITE_SEEDS=1"
        );
    }
}

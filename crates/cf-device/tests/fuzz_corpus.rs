//! Replays the committed cargo-fuzz corpora of the device parsers (`fuzz/corpus/telemetry`,
//! `fuzz/corpus/registry_csv`) on stable Rust, and checks that the seeds are current.

use std::path::PathBuf;

fn corpus(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(name)
}

fn target_of(seed: &str) -> &'static str {
    if seed.starts_with("telemetry") {
        "telemetry"
    } else {
        "registry_csv"
    }
}

#[test]
fn seeds_are_committed_and_corpora_replay_without_panics() {
    for (name, bytes) in cf_device::fuzzing::seeds() {
        let p = corpus(target_of(&name)).join(&name);
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
    for (target, f) in [
        ("telemetry", cf_device::fuzzing::telemetry as fn(&[u8])),
        ("registry_csv", cf_device::fuzzing::registry_csv),
    ] {
        let mut n = 0;
        for e in std::fs::read_dir(corpus(target)).unwrap() {
            let data = std::fs::read(e.unwrap().path()).unwrap();
            for cut in [
                data.len(),
                0,
                1,
                data.len() / 2,
                data.len().saturating_sub(1),
            ] {
                f(&data[..cut]);
            }
            n += 1;
        }
        assert!(n >= 1, "{target} corpus is empty");
    }
}

#[test]
fn the_reading_seed_verifies() {
    // The seed is a genuine envelope, so the fuzzer starts from the verified path.
    let data = std::fs::read(corpus("telemetry").join("telemetry-reading")).unwrap();
    let e = cf_device::telemetry::Envelope::decode(&data).unwrap();
    assert_eq!((e.device.as_str(), e.boot, e.seq), ("fuzz-dev", 3, 17));
}

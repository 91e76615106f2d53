//! Replays the committed cargo-fuzz corpora (`fuzz/corpus/envelope`, `fuzz/corpus/stream`) on
//! stable Rust, and checks that the seed files still match what the engine produces.

#[test]
fn corpora_replay_without_panics() {
    for (target, f) in [
        ("envelope", cf_kms::fuzzing::envelope as fn(&[u8])),
        ("stream", cf_kms::fuzzing::stream),
    ] {
        let n = cf_testkit::replay_corpus(target, f);
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
        cf_testkit::check_seed(target, &name, &bytes);
    }
}

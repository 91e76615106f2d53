//! Replays the committed cargo-fuzz corpora of the device parsers (`fuzz/corpus/telemetry`,
//! `fuzz/corpus/registry_csv`) on stable Rust, and checks that the seeds are current.

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
        cf_testkit::check_seed(target_of(&name), &name, &bytes);
    }
    for (target, f) in [
        ("telemetry", cf_device::fuzzing::telemetry as fn(&[u8])),
        ("registry_csv", cf_device::fuzzing::registry_csv),
    ] {
        let n = cf_testkit::replay_corpus(target, f);
        assert!(n >= 1, "{target} corpus is empty");
    }
}

#[test]
fn the_reading_seed_verifies() {
    // The seed is a genuine envelope, so the fuzzer starts from the verified path.
    let data =
        std::fs::read(cf_testkit::fuzz_corpus("telemetry").join("telemetry-reading")).unwrap();
    let e = cf_device::telemetry::Envelope::decode(&data).unwrap();
    assert_eq!((e.device.as_str(), e.boot, e.seq), ("fuzz-dev", 3, 17));
}

//! Replays the committed cargo-fuzz corpora of the discovery parsers (`fuzz/corpus/discover_csv`,
//! `fuzz/corpus/discover_json`) on stable Rust, whole and cut at several points.

#[test]
fn discovery_parsers_survive_their_corpora() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    for (dir, f) in [
        (
            "discover_csv",
            cf_classify::tabular::fuzzing::csv as fn(&[u8]),
        ),
        ("discover_json", cf_classify::tabular::fuzzing::json),
    ] {
        let mut n = 0;
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let data = std::fs::read(e.unwrap().path()).unwrap();
            for cut in [data.len(), data.len() / 2, data.len() / 3, 1, 0] {
                f(&data[..cut]);
            }
            n += 1;
        }
        assert!(n >= 3, "{dir}: corpus too small");
    }
}

//! The shipped DGA model is exactly what `chengfang analyze train-dga` makes from the dataset
//! (training is deterministic), so the data file in the repository can be rebuilt and checked.

#[test]
fn the_shipped_model_is_reproducible_from_the_data() {
    let Some(root) = cf_testkit::datasets() else {
        return;
    };
    let text = cf_testkit::read_gz(&root.join("soc/domains/dga_vs_benign.csv.gz"));
    let rows: Vec<(String, bool)> = text
        .lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            (c[0].to_string(), c[1] == "1")
        })
        .collect();
    // Debian's wamerican (installed by .ci/run), as `train-dga` reads it by default.
    let (words, list) = match std::fs::read_to_string("/usr/share/dict/american-english") {
        Ok(t) => (cf_detect::dga::Words::parse(&t), t),
        Err(e) => {
            assert!(
                !cf_testkit::in_ci(),
                "the word list of Debian's wamerican is needed in CI: {e}"
            );
            eprintln!(
                "*** SKIPPED: /usr/share/dict/american-english missing (apt-get install wamerican) ***"
            );
            return;
        }
    };
    let mut rows = rows;
    cf_detect::dga::add_generic_dgas(&mut rows, &list);
    let m = cf_detect::dga::train(&rows, &words, cf_detect::dga::TrainConfig::default());
    let shipped = cf_detect::dga::DgaModel::builtin().unwrap();
    assert_eq!(m.threshold, shipped.threshold);
    assert!(
        m.to_bytes() == shipped.to_bytes(),
        "models/dga.bin is stale: rerun `chengfang analyze train-dga`"
    );
}

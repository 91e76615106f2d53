//! The shipped public-suffix file is exactly what `chengfang analyze public-suffixes` makes from
//! Debian's Public Suffix List, so it can be rebuilt and checked.

#[test]
fn the_shipped_suffixes_are_the_public_suffix_list() {
    let text = match std::fs::read_to_string("/usr/share/publicsuffix/public_suffix_list.dat") {
        Ok(t) => t,
        Err(e) => {
            assert!(
                !cf_testkit::in_ci(),
                "Debian's publicsuffix is needed in CI: {e}"
            );
            eprintln!(
                "*** SKIPPED: /usr/share/publicsuffix missing (apt-get install publicsuffix) ***"
            );
            return;
        }
    };
    let built = cf_detect::dga::Suffixes::parse_psl(&text);
    assert!(
        &built == cf_detect::dga::Suffixes::builtin(),
        "models/public_suffixes.bin is stale: rerun `chengfang analyze public-suffixes --out crates/cf-detect/models/public_suffixes.txt`"
    );
}

//! Masking on the PII development corpus (shared/datasets/pii): after the standard policy no
//! checksum-bearing identifier can be found again in any table; the analytics policy keeps
//! identifiers valid and consistent (joins survive) while no original value remains.

use std::collections::{HashMap, HashSet};

use cf_mask::{EntityType, Masker, Policy, mask_table};

fn table(name: &str) -> Option<(Vec<String>, Vec<Vec<String>>)> {
    let dir = cf_testkit::datasets()?.join("pii");
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(dir.join(name))
        .unwrap();
    let header = r.headers().unwrap().iter().map(str::to_string).collect();
    let rows = r
        .records()
        .map(|x| x.unwrap().iter().map(str::to_string).collect())
        .collect();
    Some((header, rows))
}

const CHECKED: [EntityType; 4] = [
    EntityType::CnResidentId,
    EntityType::BankCard,
    EntityType::CnUscc,
    EntityType::CnMobile,
];

fn findings(header: &[String], rows: &[Vec<String>]) -> HashMap<EntityType, Vec<String>> {
    let mut out: HashMap<EntityType, Vec<String>> = HashMap::new();
    for r in rows {
        for (c, cell) in r.iter().enumerate() {
            for s in cf_classify::scan(cell, header.get(c).map(String::as_str)) {
                if CHECKED.contains(&s.kind) {
                    out.entry(s.kind)
                        .or_default()
                        .push(cell[s.start..s.end].to_string());
                }
            }
        }
    }
    out
}

#[test]
fn standard_policy_leaves_no_identifier_behind() {
    let m = Masker::new([42; 32]);
    let mut before_total = 0;
    for name in [
        "residents.csv",
        "transactions.csv",
        "vehicles.csv",
        "devices.csv",
    ] {
        let Some((header, mut rows)) = table(name) else {
            return;
        };
        let before: usize = findings(&header, &rows).values().map(Vec::len).sum();
        before_total += before;
        mask_table(&m, &Policy::standard(), &header, &mut rows);
        let after = findings(&header, &rows);
        assert!(
            after.is_empty(),
            "{name}: identifiers still found after masking: {after:?}"
        );
    }
    assert!(
        before_total > 3000,
        "the corpus holds identifiers to mask ({before_total})"
    );
}

#[test]
fn analytics_policy_keeps_identifiers_valid_consistent_and_new() {
    let Some((header, rows)) = table("residents.csv") else {
        return;
    };
    let m = Masker::new([42; 32]);
    let originals: HashSet<String> = findings(&header, &rows).into_values().flatten().collect();
    let mut a = rows.clone();
    mask_table(&m, &Policy::analytics(), &header, &mut a);
    let mut b = rows.clone();
    mask_table(&m, &Policy::analytics(), &header, &mut b);
    assert_eq!(
        a, b,
        "same key, same output: pseudonyms join across exports"
    );
    let id_col = header.iter().position(|h| h == "公民身份号码").unwrap();
    let mut valid = 0;
    for (orig, masked) in rows.iter().zip(&a) {
        let (o, s) = (&orig[id_col], &masked[id_col]);
        assert!(
            !originals.contains(s),
            "an original identifier survived: {s}"
        );
        if cf_classify::checks::resident_id(s) {
            valid += 1;
            assert_eq!(&o[..6], &s[..6], "region kept");
        }
    }
    assert!(
        valid >= rows.len() * 99 / 100,
        "surrogate IDs stay valid: {valid}/{}",
        rows.len()
    );
    // A different key gives unlinkable output.
    let mut c = rows.clone();
    mask_table(
        &Masker::new([43; 32]),
        &Policy::analytics(),
        &header,
        &mut c,
    );
    assert_ne!(a[0][id_col], c[0][id_col]);
}

//! Column classification against the corpus's ground truth (`shared/datasets/pii/columns.json`):
//! every column's majority type, including the opaque `c01`…`c10` columns of `devices.csv`
//! that must be classified by content alone.

use cf_classify::columns::{ColumnProfiler, GradeScheme};

#[test]
fn every_csv_column_gets_its_ground_truth_type() {
    let Some(dir) = cf_testkit::datasets().map(|d| d.join("pii")) else {
        return;
    };
    let truth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("columns.json")).unwrap()).unwrap();
    let scheme = GradeScheme::default();
    let (mut right, mut total, mut wrong) = (0, 0, Vec::new());
    for table in ["residents", "transactions", "vehicles", "devices"] {
        let mut r = csv::ReaderBuilder::new()
            .flexible(true)
            .from_path(dir.join(format!("{table}.csv")))
            .unwrap();
        let header: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
        let mut profs: Vec<ColumnProfiler> =
            header.iter().map(|h| ColumnProfiler::new(h)).collect();
        for rec in r.records() {
            for (p, v) in profs.iter_mut().zip(rec.unwrap().iter()) {
                p.add(v);
            }
        }
        let mut levels = Vec::new();
        for p in profs {
            let c = p.finish(&scheme);
            let want = truth[table][&c.name]["type"].as_str();
            total += 1;
            if c.majority == want {
                right += 1;
            } else {
                wrong.push(format!(
                    "{table}.{}: got {:?} want {want:?}",
                    c.name, c.majority
                ));
            }
            levels.push(c.level);
        }
        let refs: Vec<&str> = levels.iter().map(String::as_str).collect();
        let t = scheme.table_level(&refs, 1500);
        assert!(
            matches!(t.as_str(), "personal" | "sensitive_personal"),
            "{table}: {t}"
        );
    }
    println!("columns right: {right}/{total}; wrong: {wrong:?}");
    assert_eq!(right, total, "{wrong:?}");
}

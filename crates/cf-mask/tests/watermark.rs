//! PRV-1 robustness matrix on a real export: the residents table of the PII corpus, masked with the
//! analytics policy, watermarked per recipient, then damaged — rows kept, rows shuffled, columns
//! reordered, converted to JSON and back, values altered — and traced among 20 candidates.

use cf_mask::watermark::{Table, embed, trace};
use cf_mask::{Masker, Policy, mask_table};

fn export() -> Option<Table> {
    let dir = cf_testkit::datasets()?.join("pii");
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(dir.join("residents.csv"))
        .unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
    let mut rows: Vec<Vec<String>> = r
        .records()
        .map(|x| x.unwrap().iter().map(str::to_string).collect())
        .collect();
    mask_table(
        &Masker::new([11; 32]),
        &Policy::analytics(),
        &header,
        &mut rows,
    );
    Some(Table { header, rows })
}

/// A small deterministic generator for the attacks (xorshift).
struct Gen(u64);
impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn attack(
    t: &Table,
    g: &mut Gen,
    keep_pct: usize,
    alter_pct: usize,
    reorder: bool,
    via_json: bool,
) -> Table {
    let mut rows: Vec<Vec<String>> = t
        .rows
        .iter()
        .filter(|_| g.below(100) < keep_pct)
        .cloned()
        .collect();
    let mut header = t.header.clone();
    if reorder {
        for i in (1..rows.len()).rev() {
            let j = g.below(i + 1);
            rows.swap(i, j);
        }
        let perm: Vec<usize> = (0..header.len()).rev().collect();
        header = perm.iter().map(|&c| header[c].clone()).collect();
        rows = rows
            .into_iter()
            .map(|r| {
                perm.iter()
                    .map(|&c| r.get(c).cloned().unwrap_or_default())
                    .collect()
            })
            .collect();
    }
    for r in rows.iter_mut() {
        for cell in r.iter_mut() {
            if g.below(100) < alter_pct {
                *cell = match cell.parse::<i64>() {
                    Ok(n) => (n + 1 + g.below(97) as i64).to_string(),
                    Err(_) => format!("改{}", g.below(1000)),
                };
            }
        }
    }
    let mut out = Table { header, rows };
    if via_json {
        // CSV → JSON (numbers become numbers) → table again, as a leaker's converter would do.
        let arr: Vec<serde_json::Value> = out
            .rows
            .iter()
            .map(|r| {
                let obj: serde_json::Map<String, serde_json::Value> = out
                    .header
                    .iter()
                    .zip(r)
                    .map(|(h, v)| {
                        (
                            h.clone(),
                            v.parse::<i64>()
                                .map(serde_json::Value::from)
                                .unwrap_or_else(|_| serde_json::Value::String(v.clone())),
                        )
                    })
                    .collect();
                serde_json::Value::Object(obj)
            })
            .collect();
        let text = serde_json::to_string(&arr).unwrap();
        let back: Vec<serde_json::Map<String, serde_json::Value>> =
            serde_json::from_str(&text).unwrap();
        out.rows = back
            .iter()
            .map(|o| {
                out.header
                    .iter()
                    .map(|h| match &o[h] {
                        serde_json::Value::String(s) => s.clone(),
                        v => v.to_string(),
                    })
                    .collect()
            })
            .collect();
    }
    out
}

#[test]
fn robustness_matrix_and_false_attribution() {
    let Some(base) = export() else { return };
    let m = Masker::new([99; 32]);
    let cands: Vec<String> = (0..20).map(|i| format!("recipient-{i:02}")).collect();
    let mut g = Gen(0x9E37_79B9_7F4A_7C15);
    let mut false_attr = 0;
    let mut trials = 0;
    let mut table = Vec::new();
    for keep in [100, 50, 20] {
        for alter in [0, 5, 10] {
            for (reorder, json) in [(false, false), (true, true)] {
                let mut found = 0;
                let n = 3;
                for t in 0..n {
                    let who = &cands[(keep + alter + t) % cands.len()];
                    let mut copy = base.clone();
                    embed(&m, who, "序号", &mut copy).unwrap();
                    let leaked = attack(&copy, &mut g, keep, alter, reorder, json);
                    let tr = trace(&m, &cands, "序号", &leaked, 1e-6).unwrap();
                    trials += 1;
                    match tr.attributed.as_deref() {
                        Some(a) if a == who => found += 1,
                        Some(_) => false_attr += 1,
                        None => {}
                    }
                }
                table.push(format!(
                    "keep {keep:>3}% alter {alter:>2}% reorder+json {reorder:<5}: {found}/{n}"
                ));
                assert_eq!(
                    found, n,
                    "missed at keep {keep}% alter {alter}% reorder {reorder}: {table:?}"
                );
            }
        }
    }
    // Unmarked copies and copies for someone outside the candidate list are never attributed.
    for t in 0..20 {
        let mut copy = base.clone();
        if t % 2 == 0 {
            embed(&m, "not-a-candidate", "序号", &mut copy).unwrap();
        }
        let leaked = attack(&copy, &mut g, 20 + t, 10, true, t % 3 == 0);
        trials += 1;
        if trace(&m, &cands, "序号", &leaked, 1e-6)
            .unwrap()
            .attributed
            .is_some()
        {
            false_attr += 1;
        }
    }
    println!("{}", table.join("\n"));
    assert_eq!(false_attr, 0, "false attributions in {trials} trials");
}

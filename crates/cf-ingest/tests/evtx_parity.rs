//! EVTX parity (SA-1): every one of the 225 real EVTX files of the detection dataset converts to
//! exactly the JSON records that `evtx_dump -o jsonl --separate-json-attributes` produced for the
//! dataset's events file, record by record, in order.

use std::collections::BTreeMap;

use cf_testkit::read_zstd as unzstd;

#[test]
fn every_evtx_file_converts_like_evtx_dump() {
    let Some(root) = cf_testkit::datasets() else {
        return;
    };
    let d = root.join("detection");
    let events = String::from_utf8(unzstd(&d.join("events.jsonl.zst"))).unwrap();
    let lines: Vec<&str> = events.lines().collect();
    let index = String::from_utf8(unzstd(&d.join("events.index.tsv.zst"))).unwrap();
    let mut by_file: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for row in index.lines() {
        let cols: Vec<&str> = row.split('\t').collect();
        if let (Some(line), Some(file)) = (cols.first(), cols.get(1))
            && let Ok(n) = line.parse::<usize>()
        {
            by_file.entry(file.to_string()).or_default().push(n);
        }
    }
    let files = cf_testkit::tar_files(&unzstd(&d.join("evtx.tar.zst")));
    let evtx: Vec<&(String, Vec<u8>)> =
        files.iter().filter(|(n, _)| n.ends_with(".evtx")).collect();
    assert_eq!(evtx.len(), 225, "{}", files.len());
    let (mut records, mut mismatched) = (0, Vec::new());
    for (name, bytes) in evtx {
        let want = by_file.get(name).cloned().unwrap_or_default();
        let got = cf_ingest::evtx::records(bytes.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        if got.len() != want.len() {
            mismatched.push(format!(
                "{name}: {} records, evtx_dump {}",
                got.len(),
                want.len()
            ));
            continue;
        }
        for (g, line) in got.iter().zip(&want) {
            let expected: serde_json::Value = serde_json::from_str(lines[line - 1]).unwrap();
            match g {
                Ok(v) if *v == expected => records += 1,
                Ok(_) => mismatched.push(format!("{name}: line {line} differs")),
                Err(e) => mismatched.push(format!("{name}: line {line}: {e}")),
            }
        }
    }
    assert!(
        mismatched.is_empty(),
        "{} mismatches: {:?}",
        mismatched.len(),
        &mismatched[..mismatched.len().min(10)]
    );
    assert_eq!(records, lines.len());
}

/// Damaged EVTX files (truncated, bit-flipped real files) are refused or read in part, never a
/// panic; and the committed fuzz seeds replay.
#[test]
fn damaged_evtx_files_do_not_panic() {
    assert!(cf_testkit::replay_corpus("evtx", cf_ingest::fuzzing::evtx) >= 1);
    let Some(root) = cf_testkit::datasets() else {
        return;
    };
    let files = cf_testkit::tar_files(&unzstd(&root.join("detection/evtx.tar.zst")));
    for (_, bytes) in files
        .iter()
        .filter(|(n, _)| n.ends_with(".evtx"))
        .step_by(25)
    {
        for cut in [4096, 4096 + 512, bytes.len() / 2] {
            cf_ingest::fuzzing::evtx(&bytes[..cut.min(bytes.len())]);
        }
        let mut flipped = bytes.clone();
        for b in flipped.iter_mut().skip(4096).step_by(997) {
            *b ^= 0xa5;
        }
        cf_ingest::fuzzing::evtx(&flipped);
    }
}

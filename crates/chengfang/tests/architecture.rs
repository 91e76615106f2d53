//! docs/ARCHITECTURE.md's dependency table must match `cargo metadata`, and arrows must point
//! down the tiers (design.md).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn dependency_table_matches_cargo_metadata_and_tiers_point_down() {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata json");
    let mut actual: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in meta["packages"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap().to_string();
        let deps = p["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["path"].is_string() && d["kind"].is_null())
            .map(|d| d["name"].as_str().unwrap().to_string())
            .collect();
        actual.insert(name, deps);
    }
    let doc =
        std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let table = doc
        .split("## Dependency table")
        .nth(1)
        .expect("a '## Dependency table' section");
    let mut documented: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut tiers: BTreeMap<String, String> = BTreeMap::new();
    for line in table
        .lines()
        .skip_while(|l| !l.starts_with("| crate"))
        .skip(2)
    {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let deps = cells[2]
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        tiers.insert(cells[0].to_string(), cells[1].to_string());
        documented.insert(cells[0].to_string(), deps);
    }
    assert_eq!(
        documented, actual,
        "docs/ARCHITECTURE.md's dependency table is out of date"
    );
    // Arrows point down: a crate depends only on lower tiers; within a tier only the pairs
    // design.md allows (vocabulary on cf-core, the binary on the simulated city, and tier 1's three).
    let allowed_same_tier = [
        ("cf-crypto", "cf-core"),
        ("cf-event", "cf-core"),
        ("chengfang", "cf-sim"),
        ("cf-identity", "cf-authz"),
        ("cf-mask", "cf-classify"),
        ("cf-detect", "cf-sigma"),
        ("cf-dashboard", "cf-api"),
    ];
    for (krate, deps) in &actual {
        let t = &tiers[krate];
        if t == "dev" {
            continue;
        }
        for d in deps {
            let td = &tiers[d];
            assert_ne!(td, "dev", "{krate} must not depend on the test kit");
            let ok =
                td < t || (td == t && allowed_same_tier.contains(&(krate.as_str(), d.as_str())));
            assert!(
                ok,
                "{krate} (tier {t}) depends on {d} (tier {td}): arrows must point down"
            );
        }
    }
}

//! DNS tunnelling on real data (../shared/datasets/soc): the shipped model is what
//! `chengfang analyze train-dns-tunnel` makes from netrack's labelled names and the benign DNS
//! logs; each tool left out of training is still caught per domain; the dns2tcp capture's domain
//! is judged a tunnel and the benign logs' domains are not.

use std::path::Path;

use cf_detect::dnstunnel::{self, TunnelModel};

/// The benign sources, as docs/analytics.md lists them for the training command.
pub const BENIGN: [&str; 4] = [
    "soc/zeek/wrccdc2018/dns.log.gz",
    "soc/zeek/apt29_day1/NASHUA_dns.log.gz",
    "soc/zeek/apt29_day1/SCRANTON_dns.log.gz",
    "soc/domains/dga_vs_benign.csv.gz",
];

fn corpus(root: &Path) -> (Vec<(String, String)>, Vec<String>) {
    let (tunnel, mut benign) = dnstunnel::netrack(&cf_testkit::read_gz(
        &root.join("soc/dns_tunnel/netrack_qnames.csv.gz"),
    ));
    for b in BENIGN {
        benign.extend(dnstunnel::names_from_dns_log(&cf_testkit::read_gz(
            &root.join(b),
        )));
    }
    (tunnel, benign)
}

fn lm() -> cf_detect::dga::CharLm {
    cf_detect::dga::DgaModel::builtin()
        .expect("built-in DGA model")
        .lm
}

#[test]
fn the_shipped_model_is_reproducible_and_tools_left_out_are_caught() {
    let Some(root) = cf_testkit::datasets() else {
        return;
    };
    let (tunnel, benign) = corpus(&root);
    let tools: std::collections::BTreeSet<&str> = tunnel.iter().map(|t| t.0.as_str()).collect();
    assert_eq!(
        tools.into_iter().collect::<Vec<_>>(),
        ["dns2tcp", "dnscapy", "iodine", "tuns"]
    );
    let lm = lm();
    let t: Vec<&str> = tunnel.iter().map(|t| t.1.as_str()).collect();
    let b: Vec<&str> = benign.iter().map(String::as_str).collect();
    let m = dnstunnel::train(&t, &b, &lm, 20, 0.01);
    let shipped = TunnelModel::builtin().unwrap();
    // Debug and release builds may round the last bit of a weight differently.
    let close = m
        .weights
        .iter()
        .zip(&shipped.weights)
        .all(|(a, b)| (a - b).abs() <= 1e-5 * a.abs().max(1.0));
    assert!(
        close && m.threshold == shipped.threshold,
        "models/dns_tunnel.txt is stale: rerun `chengfang analyze train-dns-tunnel`\n{}",
        m.to_text()
    );
    let ev = dnstunnel::leave_one_tool_out(&tunnel, &benign, &lm, 20, 0.01);
    eprintln!("{}", serde_json::to_string_pretty(&ev).unwrap());
    for r in &ev.tools {
        assert!(
            r.windows_detected * 100 >= r.windows * 90,
            "{} unseen: {}/{} windows",
            r.tool,
            r.windows_detected,
            r.windows
        );
    }
    assert!(
        ev.benign_false_positives * 100 <= ev.benign_windows * ev.tools.len(),
        "{ev:?}"
    );
}

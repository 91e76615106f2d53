//! The demo's network act (issue 6, SA-2/SA-3): a city workstation infected with DGA malware
//! tunnels a file out over DNS, scans a server, beacons to its controller, moves to a colleague's
//! workstation over WinRM and SMB and uploads an archive to a new outside host; the DNS and flow
//! analytics name it, and its alerts form one incident spanning the whole attack chain.

use anyhow::Result;

use crate::demo::{call, say};
use crate::demo_data::Ctx;

const HOST: &str = "10.20.3.17";

/// A deterministic stand-in for a malware DGA: consonant-heavy random labels per day.
fn dga_domains(seed: u64, n: usize) -> Vec<String> {
    let mut x = seed;
    (0..n)
        .map(|i| {
            let mut s = String::new();
            for _ in 0..12 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                s.push(char::from(b"bcdfghjklmnpqrstvwxz"[(x % 20) as usize]));
            }
            format!("{s}.{}", ["com", "net", "info", "biz"][i % 4])
        })
        .collect()
}

/// The stolen file as base64 chunks in query names, the way DNS tunnels carry data.
fn tunnel_names(domain: &str, n: usize) -> Vec<String> {
    let secret =
        b"district-7 water plant SCADA credentials: operator / Wt!8823-ops; VPN seed 4411 ";
    let data: Vec<u8> = secret.iter().cycle().take(n * 30).copied().collect();
    data.chunks(30)
        .enumerate()
        .map(|(i, c)| {
            format!(
                "{}.{i:04x}.{domain}",
                base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, c)
            )
        })
        .collect()
}

fn dns_line(t_ms: i64, name: &str) -> String {
    let d = cf_ingest::dns::DnsRecord {
        time: cf_core::Timestamp::from_unix_nanos(t_ms * 1_000_000),
        client: HOST.parse().ok(),
        client_port: Some(53_000),
        server: "10.20.0.53".parse().ok(),
        server_port: Some(53),
        transport: "udp",
        id: (t_ms % 65_536) as u16,
        response: false,
        qname: name.to_string(),
        qtype: 16,
        qtype_name: "TXT".into(),
        rcode: None,
        rcode_name: None,
        answers: Vec::new(),
    };
    cf_ingest::dns::to_ocsf(&d, "resolver-log").to_string()
}

fn flow_line(t_ms: i64, dst: &str, port: u16, bytes: u64, packets: u64) -> String {
    let t = cf_core::Timestamp::from_unix_nanos(t_ms * 1_000_000);
    let f = cf_ingest::pcap::CaptureFlow {
        flow: cf_ingest::netflow::Flow {
            src: HOST.parse().ok(),
            dst: dst.parse().ok(),
            src_port: Some(49_152 + (t_ms % 1000) as u16),
            dst_port: Some(port),
            protocol: Some(6),
            bytes: Some(bytes),
            packets: Some(packets),
            tcp_flags: Some(if packets == 1 { 0x02 } else { 0x1b }),
            ..Default::default()
        },
        first: t,
        last: t,
    };
    cf_ingest::pcap::flow_to_ocsf(&f, "edge-tap").to_string()
}

/// Run the act against the served platform.
pub async fn run(c: &Ctx<'_>) -> Result<()> {
    let url = c.url;
    let api = |p: &str| format!("{url}{p}");
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut lines = Vec::new();
    for (i, d) in dga_domains(t0 as u64 / 86_400_000 + 7, 6)
        .iter()
        .enumerate()
    {
        lines.push(dns_line(t0 + i as i64 * 400, d));
    }
    for (i, n) in tunnel_names("cdn-sync.example-updates.net", 60)
        .iter()
        .enumerate()
    {
        lines.push(dns_line(t0 + 3_000 + i as i64 * 150, n));
    }
    for p in 0..80u16 {
        lines.push(flow_line(
            t0 + 20_000 + i64::from(p) * 20,
            "10.20.0.5",
            1 + p * 13,
            44,
            1,
        ));
    }
    for i in 0..10i64 {
        lines.push(flow_line(
            t0 + 30_000 + i * 60_000,
            "203.0.113.50",
            443,
            1_840,
            7,
        ));
    }
    // Lateral movement: WinRM, then an SMB copy, to another workstation.
    for (i, port) in [5985u16, 445, 445].iter().enumerate() {
        lines.push(flow_line(
            t0 + 40_000 + i as i64 * 15_000,
            "10.20.3.41",
            *port,
            250_000,
            180,
        ));
    }
    // Exfiltration: a 24 MB upload to a host it never talked to.
    lines.push(flow_line(
        t0 + 90_000,
        "198.51.100.23",
        443,
        24_000_000,
        16_500,
    ));
    let resp = c
        .http
        .post(api("/api/v1/ingest/ndjson"))
        .bearer_auth(c.admin)
        .header("content-type", "application/x-ndjson")
        .body(lines.join("\n"))
        .send()
        .await?;
    let counts: serde_json::Value = resp.json().await?;
    say(
        "network",
        format!(
            "workstation {HOST}: {} resolver and flow records (DGA lookups, a DNS tunnel, a port scan, 60 s callbacks, WinRM and SMB to a colleague, a large upload) ingested, {} parsed",
            counts["received"], counts["parsed"]
        ),
    );
    let want = [
        "dns.dga",
        "dns.tunnel",
        "net.port_scan",
        "net.beacon",
        "net.lateral_movement",
        "net.exfil_upload",
    ];
    let book = crate::demo::open_alerts_with(c.http, url, c.admin, &want, 50).await?;
    for a in book
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| want.contains(&a["kind"].as_str().unwrap_or("")))
    {
        let l = &a["latest"];
        let detail = match a["kind"].as_str().unwrap_or("") {
            "dns.tunnel" => format!("{} distinct names under {}", l["distinct"], l["domain"]),
            "dns.dga" => format!("{} DGA-like domains, e.g. {}", l["distinct"], l["domain"]),
            "net.port_scan" => format!("{} ports of {}", l["count"], l["target"]),
            "net.lateral_movement" => format!("admin services on {}", l["target"]),
            "net.exfil_upload" => format!(
                "{} MB to first-contact {}",
                l["bytes"].as_u64().unwrap_or(0) / 1_000_000,
                l["target"]
            ),
            "net.beacon" => format!(
                "every {} s to {}",
                l["period_ms"].as_i64().unwrap_or(0) / 1000,
                l["target"]
            ),
            _ => String::new(),
        };
        say(
            "alert",
            format!(
                "{} {} ({detail})",
                a["kind"].as_str().unwrap_or(""),
                a["entity"].as_str().unwrap_or("")
            ),
        );
    }
    let inc = call(
        c.http,
        reqwest::Method::GET,
        &api("/api/v1/incidents"),
        c.admin,
        None,
    )
    .await?;
    if let Some(i) = inc
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["entity"] == HOST)
    {
        say(
            "incident",
            format!(
                "{HOST}: {} alerts on stages {} (severity {})",
                i["alerts"].as_array().map_or(0, Vec::len),
                i["stages"],
                i["severity"]
            ),
        );
    }
    Ok(())
}

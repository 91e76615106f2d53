//! `chengfang ingest FILE…`: send log files (syslog lines, NDJSON, Windows EVTX or packet captures) to a running platform in
//! batches over HTTPS, with a progress bar and a per-file summary of parsed and malformed lines.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::crypt::Remote;

/// Arguments.
#[derive(Args, Debug)]
pub struct IngestArgs {
    #[command(flatten)]
    remote: Remote,
    /// Format: syslog, ndjson, evtx or pcap (default: by extension, .jsonl/.ndjson/.json →
    /// ndjson, .evtx → Windows event log records sent as JSON lines, .pcap/.pcapng/.cap → DNS
    /// messages and flows sent as OCSF JSON lines).
    #[arg(long)]
    format: Option<String>,
    /// Batch size in bytes; lowered to the server's body limit when the server says it is
    /// smaller (`GET /api/v1/ingest/limits`).
    #[arg(long, default_value_t = 512 * 1024)]
    batch_bytes: usize,
    /// Summary as JSON.
    #[arg(long)]
    json: bool,
    /// Files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// Run; `Ok(false)` when some lines were malformed (they are kept on the platform as
/// `log.malformed`, but the exit status tells scripts).
pub async fn run(a: IngestArgs) -> Result<bool> {
    let crate::crypt::Session { http, token, url } = a.remote.session()?;
    // Batches must fit the server's body limit: ask for it (an older server without the route
    // leaves --batch-bytes as given).
    let mut batch_bytes = a.batch_bytes.max(1024);
    if let Ok(r) = http
        .get(format!("{url}/api/v1/ingest/limits"))
        .bearer_auth(&token)
        .send()
        .await
        && r.status().is_success()
        && let Ok(v) = r.json::<serde_json::Value>().await
        && let Some(limit) = v["body_limit_bytes"].as_u64()
    {
        batch_bytes = batch_bytes.min(usize::try_from(limit).unwrap_or(usize::MAX).max(1024));
    }
    let total: u64 = a
        .files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut all_ok = true;
    let mut summary = Vec::new();
    for f in &a.files {
        let mut data = std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?;
        let ext = f
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let fmt = match a.format.as_deref() {
            Some("syslog") => "syslog",
            Some("ndjson") => "ndjson",
            Some("evtx") => "evtx",
            Some("pcap") => "pcap",
            Some(o) => bail!("--format: `{o}` is not syslog, ndjson, evtx or pcap"),
            None => match ext.as_deref() {
                Some("jsonl" | "ndjson" | "json") => "ndjson",
                Some("evtx") => "evtx",
                Some("pcap" | "pcapng" | "cap") => "pcap",
                _ => "syslog",
            },
        };
        // Captures and EVTX files go as JSON lines: OCSF DNS Activity per DNS message and Network
        // Activity per flow, or one evtx_dump-shaped record per event. What cannot be decoded
        // goes as its reason, which the platform keeps as `log.malformed`.
        let file_len = data.len() as u64;
        // Summaries name captures as such; EVTX files are reported as the NDJSON they became.
        let label = if fmt == "evtx" { "ndjson" } else { fmt };
        let lines: Option<Vec<String>> = match fmt {
            "pcap" => {
                let name = f.display().to_string();
                let mut lines = Vec::new();
                cf_ingest::pcap::read(&data, |o| {
                    lines.push(match o {
                        cf_ingest::pcap::Output::Dns(d) => {
                            cf_ingest::dns::to_ocsf(&d, "pcap").to_string()
                        }
                        cf_ingest::pcap::Output::Flow(fl) => {
                            cf_ingest::pcap::flow_to_ocsf(&fl, &name).to_string()
                        }
                        cf_ingest::pcap::Output::Undecodable { packet, reason } => {
                            format!("undecodable packet {packet} of {name}: {reason}")
                        }
                    })
                })
                .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
                Some(lines)
            }
            "evtx" => Some(
                cf_ingest::evtx::records(std::mem::take(&mut data))
                    .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?
                    .into_iter()
                    .map(|r| match r {
                        Ok(v) => v.to_string(),
                        Err(e) => format!("undecodable EVTX record: {e}"),
                    })
                    .collect(),
            ),
            _ => None,
        };
        let fmt = match lines {
            Some(lines) => {
                data = (lines.join("\n") + "\n").into_bytes();
                // The bar counts what is sent: the JSON lines, not the file.
                bar.inc_length((data.len() as u64).saturating_sub(file_len));
                "ndjson"
            }
            None => fmt,
        };
        bar.set_message(f.display().to_string());
        let (mut received, mut parsed, mut malformed) = (0u64, 0u64, 0u64);
        let mut rest: &[u8] = &data;
        while !rest.is_empty() {
            // Cut at a line boundary at or before the batch size (a longer line goes alone).
            let mut cut = rest.len().min(batch_bytes);
            if cut < rest.len() {
                cut = rest[..cut]
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map(|i| i + 1)
                    .unwrap_or_else(|| {
                        rest.iter()
                            .position(|b| *b == b'\n')
                            .map_or(rest.len(), |i| i + 1)
                    });
            }
            let (chunk, tail) = rest.split_at(cut);
            // 503 means the platform did not take the batch (its bus refused): nothing of it
            // was acknowledged, so it is sent again, with growing pauses.
            let mut wait = std::time::Duration::from_millis(500);
            let (status, text) = loop {
                let (status, text) = crate::devices_cmd::post_raw(
                    &http,
                    &format!("{url}/api/v1/ingest/{fmt}"),
                    Some(&token),
                    "text/plain",
                    chunk.to_vec(),
                )
                .await?;
                if status != reqwest::StatusCode::SERVICE_UNAVAILABLE || wait.as_secs() >= 16 {
                    break (status, text);
                }
                bar.println(format!(
                    "{}: the platform did not take a batch ({text}); sending it again in {:.1} s",
                    f.display(),
                    wait.as_secs_f64()
                ));
                tokio::time::sleep(wait).await;
                wait *= 2;
            };
            if status == reqwest::StatusCode::PAYLOAD_TOO_LARGE {
                bail!(
                    "{}: a line of {} bytes is larger than the server accepts in one request ({status})",
                    f.display(),
                    chunk.len()
                );
            }
            if !status.is_success() {
                bail!("{}: {status}: {text}", f.display());
            }
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            received += v["received"].as_u64().unwrap_or(0);
            parsed += v["parsed"].as_u64().unwrap_or(0);
            malformed += v["malformed"].as_u64().unwrap_or(0);
            bar.inc(chunk.len() as u64);
            rest = tail;
        }
        all_ok &= malformed == 0;
        summary.push(serde_json::json!({"file": f.display().to_string(), "format": label, "received": received, "parsed": parsed, "malformed": malformed}));
    }
    bar.finish_and_clear();
    for s in &summary {
        if a.json {
            println!("{s}");
        } else {
            println!(
                "{:<50} {:>7} {:>9} lines, {} parsed, {} malformed (kept as log.malformed)",
                s["file"].as_str().unwrap_or(""),
                s["format"].as_str().unwrap_or(""),
                s["received"],
                s["parsed"],
                s["malformed"]
            );
        }
    }
    Ok(all_ok)
}

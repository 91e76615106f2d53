//! `chengfang simulate devices`: a fleet of simulated devices that enroll over EST, connect to the
//! broker over MQTT/TLS with their own certificates and send signed telemetry; a fraction misbehave
//! (tampering, spoofing, replay, impossible values, flooding, silence). Used by the demo and the
//! device benchmarks (docs/benchmarks.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cf_crypto::devkey::{DeviceSigner, KeyAlg};
use cf_device::telemetry::Envelope;
use clap::{Args, Subcommand};

use crate::crypt::Remote;

/// Simulations.
#[derive(Subcommand, Debug)]
pub enum SimulateCmd {
    /// Register, enroll and run N devices against a running platform and its broker.
    Devices(DevicesArgs),
}

/// Fleet parameters.
#[derive(Args, Debug)]
pub struct DevicesArgs {
    #[command(flatten)]
    remote: Remote,
    /// The broker, mqtts://HOST:PORT (as in `broker.url`).
    #[arg(long)]
    broker: String,
    /// Devices.
    #[arg(long, default_value_t = 100)]
    count: usize,
    /// How long the devices report.
    #[arg(long, default_value = "30s")]
    duration: String,
    /// Interval between readings of one device.
    #[arg(long, default_value = "1s")]
    interval: String,
    /// Fraction of devices that misbehave.
    #[arg(long, default_value_t = 0.06)]
    misbehave: f64,
    /// Id prefix of the simulated devices.
    #[arg(long, default_value = "sim")]
    prefix: String,
    /// Parallel enrollments and connection set-ups.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Summary as JSON.
    #[arg(long)]
    json: bool,
}

/// How a simulated device behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Behaviour {
    /// Signed, fresh, plausible readings.
    Honest,
    /// Every 5th message altered after signing (tampering on the path).
    Tamper,
    /// Claims to be another device in its envelopes.
    Spoof,
    /// Re-sends its first message (captured-and-replayed traffic).
    Replay,
    /// Physically impossible values.
    OutOfRange,
    /// Ten times its profile's rate.
    Flood,
    /// Stops reporting after the first third.
    Silent,
}

impl Behaviour {
    const BAD: [Behaviour; 6] = [
        Behaviour::Tamper,
        Behaviour::Spoof,
        Behaviour::Replay,
        Behaviour::OutOfRange,
        Behaviour::Flood,
        Behaviour::Silent,
    ];
    fn name(self) -> &'static str {
        match self {
            Behaviour::Honest => "honest",
            Behaviour::Tamper => "tamper",
            Behaviour::Spoof => "spoof",
            Behaviour::Replay => "replay",
            Behaviour::OutOfRange => "out-of-range",
            Behaviour::Flood => "flood",
            Behaviour::Silent => "silent",
        }
    }
}

/// The behaviour of device `i` of `n`: misbehavers spread evenly, cycling through the kinds.
pub fn behaviour(i: usize, n: usize, fraction: f64) -> Behaviour {
    let bad = ((n as f64) * fraction.clamp(0.0, 1.0)).round() as usize;
    if bad == 0 {
        return Behaviour::Honest;
    }
    let step = n / bad;
    if step > 0 && i.is_multiple_of(step) && i / step < bad {
        Behaviour::BAD[(i / step) % Behaviour::BAD.len()]
    } else {
        Behaviour::Honest
    }
}

fn parse_broker(u: &str) -> Result<(String, u16)> {
    let hp = u
        .strip_prefix("mqtts://")
        .ok_or_else(|| anyhow::anyhow!("--broker: use mqtts://HOST:PORT"))?;
    let (h, p) = hp
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("--broker: use mqtts://HOST:PORT"))?;
    Ok((h.to_string(), p.parse().context("--broker port")?))
}

struct Counters {
    sent: AtomicU64,
    connected: AtomicU64,
    refused: AtomicU64,
}

/// Run the fleet.
pub async fn run(cmd: SimulateCmd) -> Result<bool> {
    let SimulateCmd::Devices(a) = cmd;
    let duration =
        cf_core::parse_duration(&a.duration).map_err(|e| anyhow::anyhow!("--duration: {e}"))?;
    let interval =
        cf_core::parse_duration(&a.interval).map_err(|e| anyhow::anyhow!("--interval: {e}"))?;
    let (host, port) = parse_broker(&a.broker)?;
    if a.count == 0 || a.count > 100_000 {
        bail!("--count: 1 to 100000");
    }
    let ca_pem = std::fs::read_to_string(&a.remote.ca)
        .with_context(|| format!("cannot read {}", a.remote.ca.display()))?;
    let crate::crypt::Session { http, token, url } = a.remote.session()?;

    // 1. Registry.
    let districts = 6;
    let mut csv = String::from("id,kind,layer,district,lat,lon,owner_org,vendor,model,firmware\n");
    let kinds = [
        "environment-sensor",
        "parking-sensor",
        "smart-meter",
        "street-light",
    ];
    for i in 0..a.count {
        csv.push_str(&format!(
            "{p}-{i:05},{k},terminal,{p}-d{d},{lat:.5},{lon:.5},city-iot,Acme,SIM-1,1.0\n",
            p = a.prefix,
            k = kinds[i % kinds.len()],
            d = i % districts,
            lat = 39.8 + (i % 100) as f64 * 0.002,
            lon = 116.2 + (i / 100 % 100) as f64 * 0.002,
        ));
    }
    let (status, text) = crate::devices_cmd::post_raw(
        &http,
        &format!("{url}/api/v1/devices/import"),
        Some(&token),
        "text/csv",
        csv,
    )
    .await?;
    if !status.is_success() {
        bail!("registry import: {status} {text}");
    }

    // 2. Enrollment over EST, `concurrency` at a time.
    let bar = indicatif::ProgressBar::new(a.count as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("enrolling {bar:40} {pos}/{len} {per_sec}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let t0 = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(a.concurrency.max(1)));
    let mut jobs = tokio::task::JoinSet::new();
    for i in 0..a.count {
        let (http, url, token, sem, bar) = (
            http.clone(),
            url.clone(),
            token.clone(),
            sem.clone(),
            bar.clone(),
        );
        let id = format!("{}-{i:05}", a.prefix);
        jobs.spawn(async move {
            let _permit = sem.acquire_owned().await?;
            let (tok, _) = crate::devices_cmd::enrollment_token(&http, &url, &token, &id).await?;
            let alg = if i % 2 == 0 {
                KeyAlg::EcdsaP256
            } else {
                KeyAlg::Ed25519
            };
            let creds = crate::devices_cmd::enroll(&http, &url, &tok, &id, alg).await?;
            bar.inc(1);
            anyhow::Ok((i, id, alg, creds))
        });
    }
    let mut fleet = Vec::with_capacity(a.count);
    while let Some(r) = jobs.join_next().await {
        fleet.push(r??);
    }
    bar.finish_and_clear();
    let enroll_secs = t0.elapsed().as_secs_f64();
    fleet.sort_by_key(|f| f.0);

    let before = crate::demo::call(
        &http,
        reqwest::Method::GET,
        &format!("{url}/api/v1/devices/stats"),
        &token,
        None,
    )
    .await?;

    // 3. Connect and report.
    let counters = Arc::new(Counters {
        sent: AtomicU64::new(0),
        connected: AtomicU64::new(0),
        refused: AtomicU64::new(0),
    });
    let t_run = Instant::now();
    let deadline = tokio::time::Instant::now() + duration;
    let mut tasks = tokio::task::JoinSet::new();
    let ramp = Arc::new(tokio::sync::Semaphore::new(a.concurrency.max(1)));
    let mut plan: std::collections::BTreeMap<&'static str, usize> = Default::default();
    for (i, id, alg, creds) in fleet {
        let b = behaviour(i, a.count, a.misbehave);
        *plan.entry(b.name()).or_default() += 1;
        let signer = DeviceSigner::from_pkcs8(alg, &creds.pkcs8)?;
        let tls = cf_mqtt::client_tls(&ca_pem, &creds.chain_pem, creds.key_pem.expose())?;
        let opts = cf_mqtt::options(&id, &host, port, tls);
        let district = format!("{}-d{}", a.prefix, i % districts);
        let victim = format!("{}-{:05}", a.prefix, (i + 1) % a.count);
        let (counters, ramp) = (counters.clone(), ramp.clone());
        tasks.spawn(device_loop(
            id, district, victim, b, signer, opts, interval, deadline, duration, counters, ramp,
        ));
    }
    while tasks.join_next().await.is_some() {}
    let run_secs = t_run.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = crate::demo::call(
        &http,
        reqwest::Method::GET,
        &format!("{url}/api/v1/devices/stats"),
        &token,
        None,
    )
    .await?;
    let delta = |k: &str| {
        after[k]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(before[k].as_u64().unwrap_or(0))
    };
    let rejected: u64 = after["rejected"]
        .as_object()
        .map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum::<u64>())
        - before["rejected"]
            .as_object()
            .map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum::<u64>());
    let processed = delta("accepted") + delta("late") + delta("duplicates") + rejected;
    let summary = serde_json::json!({
        "devices": a.count,
        "behaviours": plan,
        "enroll_seconds": enroll_secs,
        "enrollments_per_second": a.count as f64 / enroll_secs,
        "connected": counters.connected.load(Ordering::Relaxed),
        "refused": counters.refused.load(Ordering::Relaxed),
        "sent": counters.sent.load(Ordering::Relaxed),
        "run_seconds": run_secs,
        "platform": {
            "accepted": delta("accepted"),
            "duplicates": delta("duplicates"),
            "rejected": rejected,
            "processed_per_second": processed as f64 / run_secs,
            "rejected_by_reason": after["rejected"],
            "alerts_by_kind": after["alerts"],
        },
    });
    if a.json {
        println!("{summary}");
    } else {
        println!(
            "devices        {} ({})",
            a.count,
            plan.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!(
            "enrollment     {:.1} s, {:.0} enrollments/s (EST, key made on the device)",
            enroll_secs,
            a.count as f64 / enroll_secs
        );
        println!(
            "connections    {} up, {} refused",
            summary["connected"], summary["refused"]
        );
        println!(
            "sent           {} signed messages in {:.1} s",
            summary["sent"], run_secs
        );
        println!(
            "platform       {} accepted, {} duplicates dropped, {} refused; {:.0} messages/s verified",
            delta("accepted"),
            delta("duplicates"),
            rejected,
            processed as f64 / run_secs
        );
        println!("refused by     {}", after["rejected"]);
        println!("alerts         {}", after["alerts"]);
    }
    Ok(true)
}

#[allow(clippy::too_many_arguments)]
async fn device_loop(
    id: String,
    district: String,
    victim: String,
    b: Behaviour,
    signer: DeviceSigner,
    opts: rumqttc::MqttOptions,
    interval: Duration,
    deadline: tokio::time::Instant,
    duration: Duration,
    counters: Arc<Counters>,
    ramp: Arc<tokio::sync::Semaphore>,
) {
    let (client, mut ev) = rumqttc::AsyncClient::new(opts, 64);
    // Connection set-up (TLS handshakes) is rate-limited by the ramp semaphore.
    {
        let _p = ramp.acquire().await;
        loop {
            match tokio::time::timeout(Duration::from_secs(10), ev.poll()).await {
                Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)))) => {
                    counters.connected.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ok(Ok(_)) => {}
                _ => {
                    counters.refused.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    }
    let poller = tokio::spawn(async move { while ev.poll().await.is_ok() {} });
    let topic = format!("city/{district}/{id}/telemetry");
    let every = if b == Behaviour::Flood {
        interval / 10
    } else {
        interval
    };
    let silent_from = tokio::time::Instant::now() + duration / 3;
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(1)));
    let mut seq = 0u64;
    let mut first: Option<Vec<u8>> = None;
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    };
    while tokio::time::Instant::now() < deadline {
        tick.tick().await;
        if b == Behaviour::Silent && tokio::time::Instant::now() > silent_from {
            continue;
        }
        seq += 1;
        let value = if b == Behaviour::OutOfRange {
            9_999.0
        } else {
            20.0 + (seq % 10) as f64 * 0.5
        };
        let body = format!(
            r#"{{"type":"reading","metrics":{{"battery_pct":{}, "temp_c":{value}}}}}"#,
            80 - (seq % 20)
        );
        let claimed = if b == Behaviour::Spoof && seq.is_multiple_of(3) {
            victim.as_str()
        } else {
            id.as_str()
        };
        let Ok(mut msg) = Envelope::seal(&signer, claimed, 1, seq, now_ms(), body.as_bytes())
        else {
            continue;
        };
        if b == Behaviour::Tamper && seq.is_multiple_of(5) {
            let n = msg.len();
            msg[n - 70] ^= 0x20;
        }
        if b == Behaviour::Replay {
            match &first {
                Some(f) => msg = f.clone(),
                None => first = Some(msg.clone()),
            }
        }
        if client
            .publish(topic.clone(), rumqttc::QoS::AtLeastOnce, false, msg)
            .await
            .is_ok()
        {
            counters.sent.fetch_add(1, Ordering::Relaxed);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = client.disconnect().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    poller.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misbehavers_are_the_requested_fraction_and_cover_every_kind() {
        let n = 1000;
        let bad: Vec<Behaviour> = (0..n)
            .map(|i| behaviour(i, n, 0.06))
            .filter(|b| *b != Behaviour::Honest)
            .collect();
        assert_eq!(bad.len(), 60);
        for k in Behaviour::BAD {
            assert_eq!(bad.iter().filter(|b| **b == k).count(), 10, "{k:?}");
        }
        assert!((0..10).all(|i| behaviour(i, 10, 0.0) == Behaviour::Honest));
    }
}

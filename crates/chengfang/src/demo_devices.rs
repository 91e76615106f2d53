//! The demo's device act (issue 5): sensors of the simulated city enroll over EST with their own
//! keys, report signed readings over HTTPS with their client certificates, and a tampered
//! message, a cloned identity, a replay, an impossible reading and a backdoored firmware image are
//! each caught — the last one quarantined automatically.

use anyhow::Result;
use cf_crypto::devkey::{DeviceSigner, KeyAlg};
use cf_device::telemetry::Envelope;

use crate::demo::{call, say};
use crate::demo_data::Ctx;

struct Dev {
    id: String,
    signer: DeviceSigner,
    http: reqwest::Client,
    seq: u64,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Dev {
    fn reading(&mut self, claimed: Option<&str>, metrics: &str) -> Result<Vec<u8>> {
        self.seq += 1;
        Ok(Envelope::seal(
            &self.signer,
            claimed.unwrap_or(&self.id),
            1,
            self.seq,
            now_ms(),
            format!(r#"{{"type":"reading","metrics":{metrics}}}"#).as_bytes(),
        )?)
    }
    async fn send(&self, url: &str, msg: Vec<u8>) -> Result<(u16, String)> {
        let r = self
            .http
            .post(format!("{url}/api/v1/devices/telemetry"))
            .body(msg)
            .send()
            .await?;
        let s = r.status().as_u16();
        let v: serde_json::Value = r.json().await.unwrap_or_default();
        let what = v["result"]
            .as_str()
            .map(str::to_string)
            .or_else(|| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or_default();
        Ok((s, what))
    }
}

/// Run the act against the served platform.
pub async fn run(c: &Ctx<'_>, ca_pem: &str, districts: &[String]) -> Result<()> {
    let url = c.url;
    let api = |p: &str| format!("{url}{p}");
    let kinds = [
        "environment-sensor",
        "parking-sensor",
        "smart-meter",
        "camera",
    ];
    let mut csv = String::from("id,kind,layer,district,lat,lon,owner_org,vendor,model,firmware\n");
    let mut ids = Vec::new();
    for i in 0..12 {
        let d = &districts[i % districts.len()];
        let id = format!(
            "{}-{}-{:02}",
            kinds[i % 4].split('-').next().unwrap_or("dev"),
            d,
            i
        );
        csv.push_str(&format!(
            "{id},{},terminal,{d},{:.4},{:.4},city-iot,Acme,M{},1.0\n",
            kinds[i % 4],
            39.9 + i as f64 * 0.01,
            116.3 + i as f64 * 0.01,
            i % 4
        ));
        ids.push(id);
    }
    let (_, text) = crate::devices_cmd::post_raw(
        c.http,
        &api("/api/v1/devices/import"),
        Some(c.admin),
        "text/csv",
        csv,
    )
    .await?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    say(
        "devices",
        format!(
            "{} devices registered in {} districts (DEV-1)",
            v["registered"].as_array().map_or(0, Vec::len),
            districts.len()
        ),
    );
    let mut devs = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let (tok, _) = crate::devices_cmd::enrollment_token(c.http, url, c.admin, id).await?;
        let tok = tok.as_str();
        // SM2 devices authenticate their TLS 1.3 handshake with sm2sig_sm3 (RFC 8998).
        let alg = [KeyAlg::EcdsaP256, KeyAlg::Ed25519, KeyAlg::Sm2][i % 3];
        let creds = crate::devices_cmd::enroll(c.http, url, tok, id, alg).await?;
        let tls = cf_mqtt::client_tls(ca_pem, &creds.chain_pem, creds.key_pem.expose())?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            .build()?;
        devs.push(Dev {
            id: id.clone(),
            signer: DeviceSigner::from_pkcs8(alg, &creds.pkcs8)?,
            http,
            seq: 0,
        });
        if i == 0 {
            // The token was consumed: a second use is refused.
            let again = crate::devices_cmd::enroll(c.http, url, tok, id, alg).await;
            say(
                "devices",
                format!(
                    "enrollment token reused -> {}",
                    if again.is_err() {
                        "refused"
                    } else {
                        "ACCEPTED (bug)"
                    }
                ),
            );
        }
    }
    say(
        "devices",
        format!(
            "{} devices enrolled over EST: each made its own key and CSR ({} P-256, {} Ed25519, {} SM2); certificates name the device and last 72 h",
            devs.len(),
            devs.iter()
                .filter(|d| d.signer.public().alg() == KeyAlg::EcdsaP256)
                .count(),
            devs.iter()
                .filter(|d| d.signer.public().alg() == KeyAlg::Ed25519)
                .count(),
            devs.iter()
                .filter(|d| d.signer.public().alg() == KeyAlg::Sm2)
                .count(),
        ),
    );
    let mut ok = 0;
    for d in devs.iter_mut() {
        let m = d.reading(None, r#"{"temp_c":21.5,"battery_pct":88}"#)?;
        if d.send(url, m).await?.0 == 202 {
            ok += 1;
        }
    }
    say(
        "devices",
        format!("{ok} signed readings accepted over HTTPS with client certificates (INT-1)"),
    );

    // Attacks on the terminal layer (§3.2.1).
    let mut m = devs[1].reading(None, r#"{"temp_c":21.0}"#)?;
    let n = m.len();
    m[n - 70] ^= 0x01;
    let (s, w) = devs[1].send(url, m).await?;
    say("attack", format!("reading altered in transit -> {s} {w}"));
    let victim = devs[3].id.clone();
    let forged = devs[2].reading(Some(&victim), r#"{"temp_c":19.0}"#)?;
    let (s, w) = devs[2].send(url, forged).await?;
    say(
        "attack",
        format!(
            "{} sends as {} (cloned identity) -> {s} {w}",
            devs[2].id, victim
        ),
    );
    let honest = devs[4].reading(None, r#"{"temp_c":20.0}"#)?;
    devs[4].send(url, honest.clone()).await?;
    let (s, w) = devs[4].send(url, honest).await?;
    say(
        "attack",
        format!(
            "captured reading replayed -> {s} {w} (dropped; after the freshness horizon it would raise telemetry.replay)"
        ),
    );
    let hot = devs[0].reading(None, r#"{"temp_c":480.0}"#)?;
    let (s, _) = devs[0].send(url, hot).await?;
    say(
        "attack",
        format!(
            "{} reports 480 °C -> {s}, flagged device.out_of_range",
            devs[0].id
        ),
    );

    // Firmware integrity: the vendor signs its release; a device running something else is
    // quarantined automatically.
    let vendor = DeviceSigner::sm2(cf_crypto::Sm2SigningKey::generate(&cf_crypto::OsRng)?)?;
    call(c.http, reqwest::Method::POST, &api("/api/v1/devices/vendor-keys"), c.admin, Some(serde_json::json!({"vendor": "Acme", "alg": "sm2", "public_key": hex::encode(vendor.public().raw())}))).await?;
    let good = hex::encode(cf_crypto::sha256(b"Acme M1 firmware 1.0"));
    let m = cf_device::firmware::Manifest {
        vendor: "Acme".into(),
        model: "M1".into(),
        version: "1.0".into(),
        sha256: good.clone(),
    }
    .sign(&vendor)?;
    call(
        c.http,
        reqwest::Method::POST,
        &api("/api/v1/devices/firmware"),
        c.admin,
        Some(serde_json::to_value(&m)?),
    )
    .await?;
    let d = &mut devs[5];
    d.seq += 1;
    let hello = |sha: &str, seq| {
        Envelope::seal(
            &d.signer,
            &d.id,
            1,
            seq,
            now_ms(),
            format!(r#"{{"type":"hello","firmware_sha256":"{sha}"}}"#).as_bytes(),
        )
    };
    let (s1, _) = d.send(url, hello(&good, d.seq)?).await?;
    let evil = hex::encode(cf_crypto::sha256(b"Acme M1 firmware 1.0 + implant"));
    let (s2, _) = d.send(url, hello(&evil, d.seq + 1)?).await?;
    d.seq += 2;
    let after = d.reading(None, r#"{"temp_c":20.0}"#)?;
    let (s3, w3) = d.send(url, after).await?;
    say(
        "firmware",
        format!(
            "{} signed release -> {s1}; unapproved image -> {s2}, device quarantined; its next reading -> {s3} {w3}",
            d.id
        ),
    );
    let dev = call(
        c.http,
        reqwest::Method::GET,
        &api(&format!("/api/v1/devices/{}", d.id)),
        c.admin,
        None,
    )
    .await?;
    say(
        "devices",
        format!(
            "{} is now {} ({}); its certificate is on the CRL",
            d.id,
            dev["status"].as_str().unwrap_or("?"),
            dev["quarantine_reason"].as_str().unwrap_or("")
        ),
    );
    let stats = call(
        c.http,
        reqwest::Method::GET,
        &api("/api/v1/devices/stats"),
        c.admin,
        None,
    )
    .await?;
    say(
        "devices",
        format!(
            "ingest: {} accepted, {} duplicates dropped, refused {}; alerts {}",
            stats["accepted"], stats["duplicates"], stats["rejected"], stats["alerts"]
        ),
    );
    Ok(())
}

//! The demo's data-protection act (issue 4): the city's citizen register is discovered and
//! graded, its identifiers encrypted through the KMS, shown masked per role, exported with a
//! watermark and a signature, "leaked" and traced, and finally crypto-shredded.

use anyhow::{Context, Result};
use base64::Engine;
use cf_classify::columns::{ColumnProfiler, GradeScheme};
use cf_mask::watermark::Table;
use cf_mask::{Masker, PolicySet};

use crate::demo::{call, say};

/// Everything the act needs from the running demo.
pub struct Ctx<'a> {
    /// HTTPS client trusting the platform CA.
    pub http: &'a reqwest::Client,
    /// Base URL.
    pub url: &'a str,
    /// Administrator token.
    pub admin: &'a str,
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn key32(v: &serde_json::Value) -> Result<[u8; 32]> {
    let raw = base64::engine::general_purpose::STANDARD.decode(
        v["plaintext"]
            .as_str()
            .context("data key without plaintext")?,
    )?;
    raw.get(..32)
        .and_then(|s| s.try_into().ok())
        .context("data key shorter than 32 bytes")
}

/// Run the act; returns the ciphertexts whose key is destroyed at the end of the demo.
pub async fn run(c: &Ctx<'_>, register: &[cf_sim::Citizen]) -> Result<()> {
    use reqwest::Method;
    let api = |p: &str| format!("{}{p}", c.url);
    let table = Table {
        header: ["序号", "姓名", "公民身份号码", "手机号码", "户籍地址"]
            .map(String::from)
            .to_vec(),
        rows: register
            .iter()
            .enumerate()
            .map(|(i, p)| {
                vec![
                    (i + 1).to_string(),
                    p.name.clone(),
                    p.resident_id.clone(),
                    p.mobile.clone(),
                    p.address.clone(),
                ]
            })
            .collect(),
    };

    // Discovery and grading (DAT-1, DAT-2).
    let scheme = GradeScheme::default();
    let mut profs: Vec<ColumnProfiler> = table
        .header
        .iter()
        .map(|h| ColumnProfiler::new(h))
        .collect();
    for r in &table.rows {
        for (p, v) in profs.iter_mut().zip(r) {
            p.add(v);
        }
    }
    let cols: Vec<_> = profs.into_iter().map(|p| p.finish(&scheme)).collect();
    let levels: Vec<&str> = cols.iter().map(|c| c.level.as_str()).collect();
    let grade = scheme.table_level(&levels, table.rows.len() as u64);
    let found: Vec<String> = cols
        .iter()
        .filter_map(|c| c.majority.map(|t| format!("{}={t}", c.name)))
        .collect();
    say(
        "discover",
        format!(
            "citizen register, {} rows: {} -> graded {grade}",
            table.rows.len(),
            found.join(", ")
        ),
    );

    // Keys (ENC-1): the administrator manages them, the data application uses them.
    let key = call(c.http, Method::POST, &api("/api/v1/kms/keys"), c.admin, Some(serde_json::json!({"name": "citizen-register", "type": "sm4-gcm", "convergent": true, "deletion_allowed": true}))).await?;
    call(
        c.http,
        Method::POST,
        &api("/api/v1/kms/keys"),
        c.admin,
        Some(serde_json::json!({"name": "export-signer", "type": "sm2"})),
    )
    .await?;
    let app = call(
        c.http,
        Method::POST,
        &api("/api/v1/tokens"),
        c.admin,
        Some(serde_json::json!({"name": "citizen data app", "roles": ["service"], "ttl": "1d"})),
    )
    .await?;
    let app = app["token"]
        .as_str()
        .context("no service token")?
        .to_string();
    say(
        "kms",
        format!(
            "SM4-GCM key `citizen-register` and SM2 key `export-signer` created (audit #{}); admins manage keys, only services use them",
            key["audit_seq"]
        ),
    );
    let items: Vec<serde_json::Value> = table.rows.iter().map(|r| serde_json::json!({"plaintext": b64(r[2].as_bytes()), "context": b64(b"citizen.sfzh"), "deterministic": true})).collect();
    let enc = call(
        c.http,
        Method::POST,
        &api("/api/v1/kms/keys/citizen-register/encrypt"),
        &app,
        Some(serde_json::json!({"items": items})),
    )
    .await?;
    let cts: Vec<String> = enc["ciphertexts"]
        .as_array()
        .context("no ciphertexts")?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let admin_try = c.http.post(api("/api/v1/kms/keys/citizen-register/decrypt")).bearer_auth(c.admin).json(&serde_json::json!({"items": [{"ciphertext": cts[0], "context": b64(b"citizen.sfzh")}]})).send().await?.status();
    say(
        "kms",
        format!(
            "{} resident IDs encrypted in one batch (deterministic, so equal IDs stay searchable): {}…; admin decrypting -> {admin_try}",
            cts.len(),
            &cts[0][..28.min(cts[0].len())]
        ),
    );

    // Masking per role (MSK-2, MSK-3) with a masking key drawn from the KMS.
    // A fresh KMS data key each for masking and for the watermark.
    let data_key = || async {
        let v = call(
            c.http,
            Method::POST,
            &api("/api/v1/kms/keys/citizen-register/datakey"),
            &app,
            Some(serde_json::json!({})),
        )
        .await?;
        key32(&v)
    };
    let masker = Masker::new(data_key().await?);
    let set = PolicySet::default();
    for role in ["operator", "analyst", "case-officer"] {
        let p = set.for_roles(&[role]);
        let mut one = vec![table.rows[0].clone()];
        cf_mask::mask_table(&masker, p, &table.header, &mut one);
        say(
            "mask",
            format!("{role:<12} sees [{}]: {}", p.name, one[0].join(" ")),
        );
    }

    // Export for a recipient: analytics policy, watermark, SM2 signature (MSK-4, PRV-1, SIG-1).
    let mut export = table.clone();
    cf_mask::mask_table(
        &masker,
        set.for_roles(&["analyst"]),
        &export.header.clone(),
        &mut export.rows,
    );
    let wm = Masker::new(data_key().await?);
    let recipients: Vec<String> = [
        "health-bureau",
        "transport-bureau",
        "police-district-3",
        "university-lab",
    ]
    .map(String::from)
    .to_vec();
    cf_mask::watermark::embed(&wm, "transport-bureau", "序号", &mut export)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let bytes: Vec<u8> = export
        .rows
        .iter()
        .flat_map(|r| (r.join(",") + "\n").into_bytes())
        .collect();
    let digest = cf_kms::HashAlg::Sm3.digest(&bytes);
    let sig = call(
        c.http,
        Method::POST,
        &api("/api/v1/kms/keys/export-signer/sign"),
        &app,
        Some(serde_json::json!({"message": b64(&digest)})),
    )
    .await?;
    say(
        "export",
        format!(
            "{} rows to transport-bureau: masked for analysts, watermarked, signed with SM2 v{} (audit #{})",
            export.rows.len(),
            sig["version"],
            sig["audit_seq"]
        ),
    );

    // The leak: a fifth of the rows, columns reversed.
    let mut leaked = Table {
        header: export.header.iter().rev().cloned().collect(),
        rows: Vec::new(),
    };
    for r in export.rows.iter().step_by(5) {
        leaked.rows.push(r.iter().rev().cloned().collect());
    }
    let tr = cf_mask::watermark::trace(&wm, &recipients, "序号", &leaked, 1e-6)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let best = &tr.candidates[0];
    say(
        "trace",
        format!(
            "a leaked copy ({} rows, columns reordered) -> {} ({} of {} rows agree; false-attribution bound 1e-6)",
            leaked.rows.len(),
            tr.attributed.as_deref().unwrap_or("nobody"),
            best.matches,
            best.rows
        ),
    );

    // Crypto-shredding (DES-1): the register's key is destroyed; its ciphertext is gone for good.
    let d = call(
        c.http,
        Method::POST,
        &api("/api/v1/kms/keys/citizen-register/destroy"),
        c.admin,
        Some(serde_json::json!({})),
    )
    .await?;
    let after = c.http.post(api("/api/v1/kms/keys/citizen-register/decrypt")).bearer_auth(&app).json(&serde_json::json!({"items": [{"ciphertext": cts[0], "context": b64(b"citizen.sfzh")}]})).send().await?.status();
    say(
        "shred",
        format!(
            "key `citizen-register` destroyed (destruction record #{}); decrypting its {} ciphertexts -> {after}",
            d["audit_seq"],
            cts.len()
        ),
    );
    Ok(())
}

//! `chengfang device …` (the registry through the API, and a device's own enrollment over EST)
//! and `chengfang broker config` (Mosquitto's files from the platform CA and registry).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use base64::Engine;
use clap::{Args, Subcommand};

use crate::crypt::Remote;

/// Registry commands.
#[derive(Subcommand, Debug)]
pub enum DeviceCmd {
    /// List devices (table, or JSON with --json).
    List {
        #[command(flatten)]
        remote: Remote,
        /// Only this district.
        #[arg(long)]
        district: Option<String>,
        /// Only this status (registered, active, quarantined, retired).
        #[arg(long)]
        status: Option<String>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Show one device as JSON.
    Show {
        #[command(flatten)]
        remote: Remote,
        /// Device id.
        id: String,
    },
    /// Register one device.
    Register {
        #[command(flatten)]
        remote: Remote,
        #[command(flatten)]
        spec: Spec,
    },
    /// Register every row of a CSV (columns id,kind,layer,district,lat,lon,owner_org,vendor,model,firmware).
    Import {
        #[command(flatten)]
        remote: Remote,
        /// CSV file.
        file: PathBuf,
    },
    /// Issue a one-time enrollment token for a device (printed once).
    Token {
        #[command(flatten)]
        remote: Remote,
        /// Device id.
        id: String,
    },
    /// Revoke a device's certificate (the CRL is pushed to the broker).
    Revoke {
        #[command(flatten)]
        remote: Remote,
        /// Device id.
        id: String,
        /// Reason, recorded in the ledger.
        #[arg(long)]
        reason: String,
    },
    /// Quarantine a device: certificate revoked, broker reloaded, ingest blocked, command sent.
    Quarantine {
        #[command(flatten)]
        remote: Remote,
        /// Device id.
        id: String,
        /// Reason, recorded in the ledger.
        #[arg(long)]
        reason: String,
    },
    /// Release a quarantined device (it must enroll again).
    Release {
        #[command(flatten)]
        remote: Remote,
        /// Device id.
        id: String,
    },
    /// On the device: make a key pair and CSR, enroll with a one-time token over EST, and write
    /// key.pem, cert.pem and ca.pem to --out.
    Enroll {
        /// Platform URL.
        #[arg(long, env = "CHENGFANG_URL")]
        url: String,
        /// CA certificate that issued the platform's server certificate.
        #[arg(long, env = "CHENGFANG_CA")]
        ca: PathBuf,
        /// The one-time enrollment token.
        #[arg(long)]
        token: String,
        /// Device id (the certificate will name it whatever the CSR says).
        #[arg(long)]
        id: String,
        /// Key type: ecdsa-p256, ed25519 or sm2 (an SM2 device reports over HTTPS: Mosquitto on
        /// OpenSSL 3.0 does not accept SM2 certificates).
        #[arg(long, default_value = "ecdsa-p256")]
        alg: String,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// On the device: renew its certificate over EST `simplereenroll`, authenticated by the
    /// current certificate, with a new key; rewrites key.pem and cert.pem in --dir. With
    /// --within, only when the certificate expires within that time (for a cron job).
    Renew {
        /// Platform URL.
        #[arg(long, env = "CHENGFANG_URL")]
        url: String,
        /// Directory written by `device enroll` (key.pem, cert.pem, ca.pem).
        #[arg(long)]
        dir: PathBuf,
        /// Renew only if the certificate expires within this long (e.g. 24h).
        #[arg(long)]
        within: Option<String>,
    },
}

/// A device's registration fields.
#[derive(Args, Debug)]
pub struct Spec {
    /// Id (a-z, 0-9, '-').
    #[arg(long)]
    id: String,
    /// Kind, e.g. camera, environment-sensor, traffic-light, smart-meter, edge-gateway.
    #[arg(long)]
    kind: String,
    /// terminal, edge or network.
    #[arg(long, default_value = "terminal")]
    layer: String,
    /// District.
    #[arg(long)]
    district: String,
    /// Latitude.
    #[arg(long)]
    lat: f64,
    /// Longitude.
    #[arg(long)]
    lon: f64,
    /// Owning organisation.
    #[arg(long)]
    owner_org: String,
    /// Vendor.
    #[arg(long)]
    vendor: String,
    /// Model.
    #[arg(long)]
    model: String,
    /// Firmware version.
    #[arg(long, default_value = "")]
    firmware: String,
}

/// Broker commands.
#[derive(Subcommand, Debug)]
pub enum BrokerCmd {
    /// Write mosquitto.conf (mutual TLS only, identity from the certificate, CRL, per-device ACL),
    /// the broker's server certificate from the platform CA, and the current CRL and ACL.
    Config {
        /// TLS port.
        #[arg(long, default_value_t = 8883)]
        port: u16,
        /// Address to bind.
        #[arg(long, default_value = "127.0.0.1")]
        bind: String,
        /// Names and addresses for the broker's certificate (comma-separated).
        #[arg(long, default_value = "localhost,127.0.0.1")]
        hostnames: String,
        /// OS user Mosquitto runs as (default: Mosquitto's own default, `mosquitto`).
        #[arg(long)]
        user: Option<String>,
    },
}

async fn api_call(
    r: &Remote,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<serde_json::Value> {
    let (c, url, token) = remote(r)?;
    crate::demo::call(&c, method, &format!("{url}{path}"), &token, body).await
}

fn remote(r: &Remote) -> Result<(reqwest::Client, String, String)> {
    let ca = std::fs::read_to_string(&r.ca)
        .with_context(|| format!("cannot read the CA certificate {}", r.ca.display()))?;
    let token = std::fs::read_to_string(&r.token_file)
        .with_context(|| format!("cannot read the token file {}", r.token_file.display()))?;
    Ok((
        crate::demo::client(&ca)?,
        r.url.trim_end_matches('/').to_string(),
        token.trim().to_string(),
    ))
}

fn print_table(devices: &[serde_json::Value]) {
    println!(
        "{:<20} {:<20} {:<12} {:<12} {:<16} VENDOR/MODEL",
        "ID", "KIND", "DISTRICT", "STATUS", "CERT EXPIRES"
    );
    for d in devices {
        let s = |k: &str| d[k].as_str().unwrap_or("-").to_string();
        let exp = d["cert_not_after"]
            .as_str()
            .map(|x| x.chars().take(16).collect::<String>())
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<20} {:<20} {:<12} {:<12} {:<16} {}/{}",
            s("id"),
            s("kind"),
            s("district"),
            s("status"),
            exp,
            s("vendor"),
            s("model")
        );
    }
}

/// Run a device command; `Ok(true)` on success.
pub async fn run(cmd: DeviceCmd) -> Result<bool> {
    use reqwest::Method;
    match cmd {
        DeviceCmd::List {
            remote,
            district,
            status,
            json,
        } => {
            let mut q = Vec::new();
            if let Some(d) = district {
                q.push(format!("district={d}"));
            }
            if let Some(s) = status {
                q.push(format!("status={s}"));
            }
            let path = if q.is_empty() {
                "/api/v1/devices".to_string()
            } else {
                format!("/api/v1/devices?{}", q.join("&"))
            };
            let v = api_call(&remote, Method::GET, &path, None).await?;
            let list = v.as_array().cloned().unwrap_or_default();
            if json {
                for d in &list {
                    println!("{d}");
                }
            } else {
                print_table(&list);
            }
        }
        DeviceCmd::Show { remote, id } => {
            let v = api_call(&remote, Method::GET, &format!("/api/v1/devices/{id}"), None).await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        DeviceCmd::Register { remote, spec } => {
            let layer = cf_device::registry::parse_layer(&spec.layer)
                .ok_or_else(|| anyhow::anyhow!("--layer: use terminal, edge or network"))?;
            let body = serde_json::json!({
                "id": spec.id, "kind": spec.kind, "layer": layer, "district": spec.district,
                "lat": spec.lat, "lon": spec.lon, "owner_org": spec.owner_org,
                "vendor": spec.vendor, "model": spec.model, "firmware": spec.firmware,
            });
            let v = api_call(&remote, Method::POST, "/api/v1/devices", Some(body)).await?;
            println!("registered {}", v["id"].as_str().unwrap_or("?"));
        }
        DeviceCmd::Import { remote, file } => {
            let csv =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let (c, url, token) = self::remote(&remote)?;
            let (status, text) = post_raw(
                &c,
                &format!("{url}/api/v1/devices/import"),
                Some(&token),
                "text/csv",
                csv,
            )
            .await?;
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            if !status.is_success() {
                bail!(
                    "import: {status}: {}",
                    v["error"]["message"].as_str().unwrap_or("failed")
                );
            }
            let reg = v["registered"].as_array().map_or(0, Vec::len);
            println!("registered {reg} device(s)");
            for e in v["errors"].as_array().cloned().unwrap_or_default() {
                let line = e["line"].as_u64().unwrap_or(0);
                let reason = e["reason"].as_str().unwrap_or("");
                if line > 0 {
                    eprintln!("{}:{line}: {reason}", file.display());
                } else {
                    eprintln!("{}: {reason}", file.display());
                }
            }
            return Ok(v["errors"].as_array().is_none_or(Vec::is_empty));
        }
        DeviceCmd::Token { remote, id } => {
            let (c, url, admin) = self::remote(&remote)?;
            let (token, expires) = enrollment_token(&c, &url, &admin, &id).await?;
            println!("{token}");
            eprintln!("one-time enrollment token for {id}, valid until {expires}");
        }
        DeviceCmd::Revoke { remote, id, reason } => {
            api_call(
                &remote,
                Method::POST,
                &format!("/api/v1/devices/{id}/revoke"),
                Some(serde_json::json!({"reason": reason})),
            )
            .await?;
            println!("revoked the certificate of {id}");
        }
        DeviceCmd::Quarantine { remote, id, reason } => {
            let v = api_call(
                &remote,
                Method::POST,
                &format!("/api/v1/devices/{id}/quarantine"),
                Some(serde_json::json!({"reason": reason})),
            )
            .await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        DeviceCmd::Release { remote, id } => {
            api_call(
                &remote,
                Method::POST,
                &format!("/api/v1/devices/{id}/release"),
                None,
            )
            .await?;
            println!("released {id}; issue a new enrollment token to bring it back");
        }
        DeviceCmd::Enroll {
            url,
            ca,
            token,
            id,
            alg,
            out,
        } => {
            let alg = cf_crypto::devkey::KeyAlg::parse(&alg)
                .ok_or_else(|| anyhow::anyhow!("--alg: use ecdsa-p256, ed25519 or sm2"))?;
            let ca_pem = std::fs::read_to_string(&ca)
                .with_context(|| format!("cannot read {}", ca.display()))?;
            let e = enroll(
                &crate::demo::client(&ca_pem)?,
                url.trim_end_matches('/'),
                &token,
                &id,
                alg,
            )
            .await?;
            std::fs::create_dir_all(&out)?;
            crate::datadir::write_private(&out.join("key.pem"), e.key_pem.expose())?;
            std::fs::write(out.join("cert.pem"), &e.chain_pem)?;
            std::fs::write(out.join("ca.pem"), &e.ca_pem)?;
            println!(
                "enrolled {id}: {}/cert.pem (key in key.pem, never sent)",
                out.display()
            );
        }
        DeviceCmd::Renew { url, dir, within } => renew(&url, &dir, within.as_deref()).await?,
    }
    Ok(true)
}

/// A one-time enrollment token for device `id` (administrator token): `(token, expiry)`.
pub async fn enrollment_token(
    c: &reqwest::Client,
    url: &str,
    admin: &str,
    id: &str,
) -> Result<(String, String)> {
    let v = crate::demo::call(
        c,
        reqwest::Method::POST,
        &format!("{url}/api/v1/devices/{id}/enrollment-token"),
        admin,
        None,
    )
    .await?;
    let token = v["token"]
        .as_str()
        .context("the platform returned no enrollment token")?;
    Ok((
        token.to_string(),
        v["expires"].as_str().unwrap_or("?").to_string(),
    ))
}

/// POST a raw body (CSV, base64 PKCS#10) and return the status and the answer's text.
pub async fn post_raw(
    c: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> Result<(reqwest::StatusCode, String)> {
    let mut req = c.post(url).header("content-type", content_type).body(body);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = resp.status();
    Ok((status, resp.text().await.unwrap_or_default()))
}

/// What a device holds after enrollment.
pub struct DeviceCredentials {
    /// Private key, PEM.
    pub key_pem: cf_core::Secret<String>,
    /// PKCS#8 DER private key (for telemetry signing).
    pub pkcs8: cf_core::Secret<Vec<u8>>,
    /// Leaf + CA, PEM.
    pub chain_pem: String,
    /// CA, PEM.
    pub ca_pem: String,
}

/// Enroll over EST (RFC 7030 `simpleenroll`): key pair and CSR made here, base64 DER body.
pub async fn enroll(
    c: &reqwest::Client,
    url: &str,
    token: &str,
    id: &str,
    alg: cf_crypto::devkey::KeyAlg,
) -> Result<DeviceCredentials> {
    let k = cf_pki::device::device_key(alg, id)?;
    let body = base64::engine::general_purpose::STANDARD.encode(&k.csr_der);
    let (status, text) = post_raw(
        c,
        &format!("{url}/.well-known/est/simpleenroll"),
        Some(token),
        "application/pkcs10",
        body,
    )
    .await?;
    if !status.is_success() {
        bail!("enrollment of {id} refused: {status}: {text}");
    }
    let ca_pem = text
        .find("-----END CERTIFICATE-----")
        .map(|i| {
            text[i + "-----END CERTIFICATE-----".len()..]
                .trim_start()
                .to_string()
        })
        .unwrap_or_default();
    Ok(DeviceCredentials {
        key_pem: k.key_pem,
        pkcs8: k.pkcs8,
        chain_pem: text,
        ca_pem,
    })
}

/// `chengfang broker config`.
pub async fn broker(cmd: BrokerCmd, cfg: crate::config::Config) -> Result<bool> {
    let BrokerCmd::Config {
        port,
        bind,
        hostnames,
        user,
    } = cmd;
    let p = crate::platform::Platform::open(&cfg).await?;
    let now = p.clock.now();
    let (ca_pem, ca_key) = p.dir.ca(now)?;
    let names: Vec<String> = hostnames
        .split(',')
        .map(|x| x.trim().to_string())
        .filter(|x| !x.is_empty())
        .collect();
    let server = cf_pki::issue_server_cert(&ca_pem, &ca_key, &names, now, 365)?;
    let mut layout = crate::platform::broker_layout(&cfg, port);
    layout.bind = bind;
    layout.user = user;
    let policy = p.devices.broker_policy().await?;
    cf_mqtt::broker::write_files(
        &layout,
        &ca_pem,
        &server.cert_pem,
        server.key_pem.expose(),
        &policy,
    )?;
    p.audit_system(
        "device.broker_config",
        "configure",
        serde_json::json!({"dir": layout.dir.display().to_string(), "port": port, "devices": policy.grants.len()}),
    )
    .await?;
    p.close().await;
    println!("wrote {}", layout.conf().display());
    println!(
        "  start the broker:   mosquitto -c {}",
        layout.conf().display()
    );
    println!(
        "  then set            broker.url = \"mqtts://{}:{port}\"  (CHENGFANG_BROKER__URL)",
        names.first().map_or("127.0.0.1", String::as_str)
    );
    println!(
        "  {} device grant(s) in {}",
        policy.grants.len(),
        layout.acl().display()
    );
    Ok(true)
}

/// `chengfang device renew`.
async fn renew(url: &str, dir: &std::path::Path, within: Option<&str>) -> Result<()> {
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .with_context(|| format!("cannot read {}", dir.join(f).display()))
    };
    let (cert, key, ca) = (read("cert.pem")?, read("key.pem")?, read("ca.pem")?);
    let info = cf_pki::device::cert_info(&cert)?;
    let id = info.common_name.clone().unwrap_or_default();
    if let Some(w) = within {
        let w = cf_core::parse_duration(w).map_err(|e| anyhow::anyhow!("--within: {e}"))?;
        let now = cf_core::Timestamp::from_unix_secs(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
        );
        if info.not_after > now.plus(w) {
            println!(
                "{id}: certificate valid until {}; not renewed",
                info.not_after
            );
            return Ok(());
        }
    }
    let alg = info.alg.unwrap_or(cf_crypto::devkey::KeyAlg::EcdsaP256);
    let k = cf_pki::device::device_key(alg, &id)?;
    let tls = cf_mqtt::client_tls(&ca, &cert, &key)?;
    let c = reqwest::Client::builder()
        .tls_backend_preconfigured((*tls).clone())
        .timeout(std::time::Duration::from_secs(20))
        .build()?;
    let url = url.trim_end_matches('/');
    let (status, text) = post_raw(
        &c,
        &format!("{url}/.well-known/est/simplereenroll"),
        None,
        "application/pkcs10",
        base64::engine::general_purpose::STANDARD.encode(&k.csr_der),
    )
    .await?;
    if !status.is_success() {
        bail!("renewal of {id} refused: {status}: {text}");
    }
    // Key first, then certificate: a crash in between leaves a pair that fails loudly rather
    // than a silently mismatched one.
    crate::datadir::write_private(&dir.join("key.pem"), k.key_pem.expose())?;
    std::fs::write(dir.join("cert.pem"), &text)?;
    let new = cf_pki::device::cert_info(&text)?;
    println!(
        "{id}: renewed, new key; certificate valid until {}",
        new.not_after
    );
    Ok(())
}

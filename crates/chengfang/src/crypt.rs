//! Client-side file protection against a running platform (ENC-2, DES-1, SIG-1): envelope
//! encryption of files with a KMS data key, detached signatures, offline verification, shredding.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use cf_kms::Algorithm;
use cf_kms::keyring::{KeyType, verify_detached};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};

/// Where the platform is and who we are.
#[derive(Args, Debug, Clone)]
pub struct Remote {
    /// Platform URL, e.g. https://127.0.0.1:8443.
    #[arg(long, env = "CHENGFANG_URL")]
    pub url: String,
    /// File holding the API token (a token with the service or operator role).
    #[arg(long, env = "CHENGFANG_TOKEN_FILE")]
    pub token_file: PathBuf,
    /// CA certificate (PEM) that issued the platform's certificate (the data directory's ca/ca.pem).
    #[arg(long, env = "CHENGFANG_CA")]
    pub ca: PathBuf,
}

/// The platform's JSON answer, or an error carrying its typed message when it refused.
pub async fn answer(resp: reqwest::Response, what: &str) -> anyhow::Result<serde_json::Value> {
    use anyhow::Context;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        let msg = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or(text);
        anyhow::bail!("{what} refused ({status}): {msg}");
    }
    serde_json::from_str(&text).context("the platform's answer is not JSON")
}

/// A platform client: HTTPS trusting the platform's CA, the bearer token, the base URL.
pub struct Session {
    /// HTTPS client.
    pub http: reqwest::Client,
    /// Bearer token.
    pub token: String,
    /// Base URL without a trailing slash.
    pub url: String,
}

impl Remote {
    /// One JSON call to the platform: the answer, or an error with its typed message.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let Session { http, token, url } = self.session()?;
        let mut req = http
            .request(method, format!("{url}{path}"))
            .bearer_auth(&token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        answer(resp, path).await
    }

    /// Read the CA and the token file and make the client.
    pub fn session(&self) -> Result<Session> {
        let ca = std::fs::read_to_string(&self.ca)
            .with_context(|| format!("cannot read {}", self.ca.display()))?;
        let token = std::fs::read_to_string(&self.token_file)
            .with_context(|| format!("cannot read {}", self.token_file.display()))?
            .trim()
            .to_string();
        Ok(Session {
            http: crate::demo::client(&ca)?,
            token,
            url: self.url.trim_end_matches('/').to_string(),
        })
    }
}

/// File commands.
#[derive(Subcommand, Debug)]
pub enum KmsCmd {
    /// Encrypt a file (any size) under a fresh data key wrapped by KEY; streaming, authenticated chunks.
    EncryptFile {
        #[command(flatten)]
        remote: Remote,
        /// KMS key that wraps the data key.
        #[arg(long)]
        key: String,
        /// Chunk AEAD: aes256-gcm, sm4-gcm or chacha20-poly1305.
        #[arg(long, default_value = "sm4-gcm")]
        algorithm: String,
        /// Plaintext file.
        input: PathBuf,
        /// Encrypted output.
        output: PathBuf,
    },
    /// Decrypt a file made by encrypt-file; the output appears only if every chunk authenticates.
    DecryptFile {
        #[command(flatten)]
        remote: Remote,
        /// KMS key that wrapped the data key.
        #[arg(long)]
        key: String,
        /// Encrypted file.
        input: PathBuf,
        /// Plaintext output.
        output: PathBuf,
    },
    /// Overwrite a local file with random bytes, flush it to disk, and remove it.
    Shred {
        /// Files.
        files: Vec<PathBuf>,
    },
}

struct Api {
    c: reqwest::Client,
    url: String,
    token: String,
}

impl Api {
    fn new(r: &Remote) -> Result<Self> {
        let ca = std::fs::read_to_string(&r.ca)
            .with_context(|| format!("cannot read the CA certificate {}", r.ca.display()))?;
        let token = std::fs::read_to_string(&r.token_file)
            .with_context(|| format!("cannot read the token file {}", r.token_file.display()))?;
        Ok(Api {
            c: crate::demo::client(&ca)?,
            url: r.url.trim_end_matches('/').to_string(),
            token: token.trim().to_string(),
        })
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> Result<serde_json::Value> {
        let r = self
            .c
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.url))?;
        let status = r.status();
        let v: serde_json::Value = r.json().await.unwrap_or_default();
        if !status.is_success() {
            bail!(
                "{path}: {} {}",
                status.as_u16(),
                v["error"]["message"].as_str().unwrap_or("request failed")
            );
        }
        Ok(v)
    }
}

fn tmp_beside(out: &Path) -> PathBuf {
    let mut name = out
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".partial");
    out.with_file_name(name)
}

/// Run a file command.
pub async fn run(cmd: KmsCmd) -> Result<bool> {
    match cmd {
        KmsCmd::EncryptFile {
            remote,
            key,
            algorithm,
            input,
            output,
        } => {
            let alg = Algorithm::parse(&algorithm)
                .ok_or_else(|| anyhow::anyhow!("--algorithm: unknown `{algorithm}`"))?;
            let api = Api::new(&remote)?;
            let v = api
                .post(
                    &format!("/api/v1/kms/keys/{key}/datakey"),
                    serde_json::json!({"algorithm": alg.as_str()}),
                )
                .await?;
            let dk = zeroize::Zeroizing::new(
                B64.decode(v["plaintext"].as_str().unwrap_or_default())
                    .context("data key")?,
            );
            let wrapped = v["ciphertext"].as_str().unwrap_or_default().to_string();
            let mut r = BufReader::new(
                std::fs::File::open(&input)
                    .with_context(|| format!("cannot open {}", input.display()))?,
            );
            let tmp = tmp_beside(&output);
            let mut w = BufWriter::new(
                std::fs::File::create(&tmp)
                    .with_context(|| format!("cannot create {}", tmp.display()))?,
            );
            let n = cf_kms::stream::encrypt(
                alg,
                &dk,
                &wrapped,
                cf_kms::stream::DEFAULT_CHUNK_LOG2,
                &mut r,
                &mut w,
                &cf_crypto::OsRng,
            )?;
            w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            std::fs::rename(&tmp, &output)?;
            println!(
                "encrypted {n} bytes to {} ({} under key {key}, audit record {})",
                output.display(),
                alg.as_str(),
                v["audit_seq"]
            );
            Ok(true)
        }
        KmsCmd::DecryptFile {
            remote,
            key,
            input,
            output,
        } => {
            let api = Api::new(&remote)?;
            let mut r = BufReader::new(
                std::fs::File::open(&input)
                    .with_context(|| format!("cannot open {}", input.display()))?,
            );
            let h = cf_kms::stream::StreamHeader::read(&mut r)
                .with_context(|| format!("{}", input.display()))?;
            let v = api
                .post(
                    &format!("/api/v1/kms/keys/{key}/decrypt"),
                    serde_json::json!({"items": [{"ciphertext": h.wrapped_key}]}),
                )
                .await?;
            let dk = zeroize::Zeroizing::new(
                B64.decode(v["plaintexts"][0].as_str().unwrap_or_default())
                    .context("data key")?,
            );
            let tmp = tmp_beside(&output);
            let mut w = BufWriter::new(
                std::fs::File::create(&tmp)
                    .with_context(|| format!("cannot create {}", tmp.display()))?,
            );
            match cf_kms::stream::decrypt(&h, &dk, &mut r, &mut w) {
                Ok(n) => {
                    w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                    std::fs::rename(&tmp, &output)?;
                    println!("decrypted {n} bytes to {}", output.display());
                    Ok(true)
                }
                Err(e) => {
                    drop(w);
                    let _ = std::fs::remove_file(&tmp);
                    bail!("{}: {e}; nothing was written", input.display())
                }
            }
        }
        KmsCmd::Shred { files } => {
            for f in &files {
                shred(f)?;
                println!("shredded {}", f.display());
            }
            Ok(true)
        }
    }
}

/// Overwrite with random bytes, sync, truncate, remove. On copy-on-write or journaling file systems
/// and SSDs old blocks may survive; crypto-shredding (destroying the key) is the guarantee.
pub fn shred(path: &Path) -> Result<()> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("cannot stat {}", path.display()))?
        .len();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {} for writing", path.display()))?;
    let mut buf = vec![0u8; 1 << 16];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        cf_crypto::OsRng.fill_bytes_checked(&mut buf[..n])?;
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.sync_all()?;
    f.set_len(0)?;
    f.sync_all()?;
    drop(f);
    std::fs::remove_file(path)?;
    Ok(())
}

trait FillChecked {
    fn fill_bytes_checked(&self, b: &mut [u8]) -> Result<()>;
}
impl FillChecked for cf_crypto::OsRng {
    fn fill_bytes_checked(&self, b: &mut [u8]) -> Result<()> {
        cf_crypto::Rng::fill(self, b).map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// A detached signature file (`FILE.sig`).
#[derive(Debug, Serialize, Deserialize)]
pub struct SigFile {
    /// `chengfang-signature/1`.
    pub format: String,
    /// `ed25519` or `sm2`.
    pub algorithm: String,
    /// KMS key and version that signed.
    pub key: String,
    /// Version.
    pub version: u32,
    /// Public key, hex.
    pub public_key: String,
    /// Digest of the file that was signed: `sha256` or `sm3`.
    pub digest_algorithm: String,
    /// Hex digest.
    pub digest: String,
    /// Base64 signature over the digest bytes.
    pub signature: String,
}

fn file_digest(path: &Path, alg: cf_kms::HashAlg) -> Result<[u8; 32]> {
    let mut r = BufReader::new(
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
    );
    let mut h = alg.hasher();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish())
}

/// `chengfang sign`.
pub async fn sign(
    remote: &Remote,
    key: &str,
    file: &Path,
    out: Option<PathBuf>,
    alg: cf_kms::HashAlg,
) -> Result<bool> {
    let digest = file_digest(file, alg)?;
    let api = Api::new(remote)?;
    let v = api
        .post(
            &format!("/api/v1/kms/keys/{key}/sign"),
            serde_json::json!({"message": B64.encode(digest)}),
        )
        .await?;
    let sig = SigFile {
        format: "chengfang-signature/1".into(),
        algorithm: v["algorithm"].as_str().unwrap_or_default().into(),
        key: key.into(),
        version: v["version"].as_u64().unwrap_or_default() as u32,
        public_key: v["public_key"].as_str().unwrap_or_default().into(),
        digest_algorithm: alg.as_str().into(),
        digest: hex::encode(digest),
        signature: v["signature"].as_str().unwrap_or_default().into(),
    };
    let out = out.unwrap_or_else(|| {
        let mut n = file.as_os_str().to_os_string();
        n.push(".sig");
        PathBuf::from(n)
    });
    std::fs::write(&out, serde_json::to_string_pretty(&sig)? + "\n")?;
    println!(
        "signed {} with {key} v{} ({}); signature in {}",
        file.display(),
        sig.version,
        sig.algorithm,
        out.display()
    );
    Ok(true)
}

/// `chengfang verify` (offline). With `pinned`, the signature must be by that public key.
pub fn verify(file: &Path, sig_path: &Path, pinned: Option<&str>) -> Result<bool> {
    let text = std::fs::read_to_string(sig_path)
        .with_context(|| format!("cannot read {}", sig_path.display()))?;
    let sig: SigFile = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a Chengfang signature file", sig_path.display()))?;
    if sig.format != "chengfang-signature/1" {
        bail!(
            "{}: unknown signature format `{}`",
            sig_path.display(),
            sig.format
        );
    }
    let t = KeyType::parse(&sig.algorithm)
        .filter(|t| matches!(t, KeyType::Ed25519 | KeyType::Sm2))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{}: unknown algorithm `{}`",
                sig_path.display(),
                sig.algorithm
            )
        })?;
    let alg = cf_kms::HashAlg::parse(&sig.digest_algorithm)
        .ok_or_else(|| anyhow::anyhow!("unknown digest `{}`", sig.digest_algorithm))?;
    if let Some(p) = pinned
        && !p.eq_ignore_ascii_case(&sig.public_key)
    {
        println!(
            "INVALID: signed by {} but the pinned key is {p}",
            sig.public_key
        );
        return Ok(false);
    }
    let digest = file_digest(file, alg)?;
    if hex::encode(digest) != sig.digest.to_lowercase() {
        println!(
            "INVALID: {} does not match the signed digest (the file changed)",
            file.display()
        );
        return Ok(false);
    }
    let pk = hex::decode(&sig.public_key).context("public_key is not hex")?;
    let s = B64
        .decode(&sig.signature)
        .context("signature is not base64")?;
    match verify_detached(t, &pk, &digest, &s) {
        Ok(()) => {
            println!(
                "valid: {} signed by {} v{} ({}){}",
                file.display(),
                sig.key,
                sig.version,
                sig.algorithm,
                if pinned.is_some() {
                    ", pinned key"
                } else {
                    "; pin the public key with --public-key to trust the signer"
                }
            );
            Ok(true)
        }
        Err(e) => {
            println!("INVALID: {e}");
            Ok(false)
        }
    }
}

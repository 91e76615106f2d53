//! The data directory: where the embedded platform keeps its state database, the ledger's
//! signing key, the platform CA and the API's TLS material — created owner-only at first start.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cf_core::{Secret, Timestamp};
use cf_ledger::NoteSigner;

/// A data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

/// Write a file readable by the owner only, atomically (temp file + rename).
pub fn write_private(path: &Path, content: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    // A stale temp file from a crash may have other permissions: start from nothing.
    let _ = std::fs::remove_file(&tmp);
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(content.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    // The rename itself must survive a crash: a key that signed checkpoints must not vanish.
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot sync {}", dir.display()))?;
    }
    Ok(())
}

impl DataDir {
    /// Open (creating if needed) the directory.
    pub fn open(root: &Path) -> Result<Self> {
        for sub in ["", "keys", "ca", "tls"] {
            let p = root.join(sub);
            std::fs::create_dir_all(&p)
                .with_context(|| format!("cannot create data directory {}", p.display()))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700))
                    .with_context(|| format!("cannot restrict permissions of {}", p.display()))?;
            }
        }
        Ok(DataDir {
            root: root.to_path_buf(),
        })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of the embedded state database.
    pub fn state_db(&self) -> PathBuf {
        self.root.join("state.db")
    }

    /// The ledger's signing key (C2SP private key format), made on first use. The public
    /// verifier key and origin are written beside it for `chengfang audit verify`.
    pub fn ledger_signer(&self, origin: &str) -> Result<NoteSigner> {
        let key_path = self.root.join("keys/ledger.key");
        let signer = if key_path.exists() {
            let text = std::fs::read_to_string(&key_path)
                .with_context(|| format!("cannot read {}", key_path.display()))?;
            let s = NoteSigner::from_skey(text.trim())
                .map_err(|e| anyhow::anyhow!("{}: {e}", key_path.display()))?;
            if s.name() != origin {
                anyhow::bail!(
                    "the ledger key in {} is for origin `{}` but ledger.origin is `{origin}`; a ledger's origin cannot change",
                    key_path.display(),
                    s.name()
                );
            }
            s
        } else {
            let key = cf_crypto::Ed25519SigningKey::generate(&cf_crypto::OsRng)?;
            let s = NoteSigner::new(origin, key)?;
            write_private(&key_path, s.private_keys()[0].expose())?;
            s
        };
        // SIG-1: checkpoints are co-signed with SM2 (GB/T 32918) beside Ed25519.
        let sm2_path = self.root.join("keys/ledger-sm2.key");
        let signer = if sm2_path.exists() {
            let text = std::fs::read_to_string(&sm2_path)
                .with_context(|| format!("cannot read {}", sm2_path.display()))?;
            signer
                .with_sm2_skey(text.trim())
                .map_err(|e| anyhow::anyhow!("{}: {e}", sm2_path.display()))?
        } else {
            let s = signer.with_sm2(cf_crypto::Sm2SigningKey::generate(&cf_crypto::OsRng)?);
            write_private(&sm2_path, s.private_keys()[1].expose())?;
            s
        };
        std::fs::write(
            self.root.join("ledger.vkey"),
            format!("{}\n", signer.verifier_keys().join("\n")),
        )?;
        std::fs::write(self.root.join("ledger.origin"), format!("{origin}\n"))?;
        Ok(signer)
    }

    /// Certificate chain and key for the API: the supplied pair, or one issued by the platform
    /// CA (made on first start), renewed when older than 60 days.
    pub fn tls_material(
        &self,
        hostnames: &[String],
        now: Timestamp,
    ) -> Result<(String, Secret<String>)> {
        let (ca_cert, ca_key) = (self.root.join("ca/ca.pem"), self.root.join("ca/ca.key"));
        if !ca_cert.exists() {
            let ca = cf_pki::new_ca("Chengfang Platform CA", now, 10)?;
            write_private(&ca_key, ca.key_pem.expose())?;
            std::fs::write(&ca_cert, &ca.cert_pem)?;
        }
        let (srv_cert, srv_key, issued) = (
            self.root.join("tls/server.pem"),
            self.root.join("tls/server.key"),
            self.root.join("tls/issued"),
        );
        let stamp = format!("{} {}", now.unix_millis() / 1000, hostnames.join(","));
        let fresh = std::fs::read_to_string(&issued).ok().and_then(|s| {
            let (t, names) = s.trim().split_once(' ')?;
            let t: i64 = t.parse().ok()?;
            (names == hostnames.join(",") && now.unix_millis() / 1000 - t < 60 * 86_400)
                .then_some(())
        });
        if fresh.is_none() || !srv_cert.exists() || !srv_key.exists() {
            let ca_pem = std::fs::read_to_string(&ca_cert)?;
            let ca_key_pem = Secret::new(std::fs::read_to_string(&ca_key)?);
            let c = cf_pki::issue_server_cert(&ca_pem, &ca_key_pem, hostnames, now, 90)?;
            write_private(&srv_key, c.key_pem.expose())?;
            std::fs::write(&srv_cert, format!("{}{}", c.cert_pem, ca_pem))?;
            std::fs::write(&issued, stamp)?;
        }
        Ok((
            std::fs::read_to_string(&srv_cert)?,
            Secret::new(std::fs::read_to_string(&srv_key)?),
        ))
    }

    /// The platform CA certificate path (clients trust this).
    pub fn ca_cert(&self) -> PathBuf {
        self.root.join("ca/ca.pem")
    }
}

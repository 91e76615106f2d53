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

    /// The KMS root key: unsealed from `keys/kms-root.sealed`, or made and sealed on first start
    /// (ENC-1). The passphrase or key file never enters the data directory's other files or logs.
    pub fn kms_root(
        &self,
        seal: &crate::config::KmsSeal,
    ) -> Result<std::sync::Arc<dyn cf_kms::seal::RootWrap>> {
        use crate::config::KmsSeal;
        if let KmsSeal::Pkcs11 {
            module,
            token,
            pin_file,
            key_label,
        } = seal
        {
            let pin_file = pin_file.as_ref().ok_or_else(|| {
                anyhow::anyhow!("kms.seal = \"pkcs11\" needs kms.pkcs11_pin_file")
            })?;
            let pin = std::fs::read_to_string(pin_file)
                .with_context(|| format!("cannot read the PIN file {}", pin_file.display()))?;
            let cfg = cf_hsm::HsmConfig {
                module: module.clone(),
                token: token.clone(),
                pin: zeroize::Zeroizing::new(pin.trim().to_string()),
                key_label: key_label.clone(),
            };
            return Ok(std::sync::Arc::new(cf_hsm::HsmRoot::open(&cfg)?));
        }
        Ok(std::sync::Arc::new(self.software_root(seal)?))
    }

    fn software_root(&self, seal: &crate::config::KmsSeal) -> Result<cf_kms::seal::Kek> {
        use crate::config::KmsSeal;
        use cf_kms::seal::{Argon2Params, Kek, SealedRoot};
        let sealed_path = self.root.join("keys/kms-root.sealed");
        let read_secret = |p: &Path, what: &str| -> Result<zeroize::Zeroizing<Vec<u8>>> {
            let b = std::fs::read(p)
                .with_context(|| format!("cannot read the KMS {what} {}", p.display()))?;
            Ok(zeroize::Zeroizing::new(b))
        };
        let passphrase = |p: &Option<PathBuf>| -> Result<zeroize::Zeroizing<Vec<u8>>> {
            let p = p.as_ref().ok_or_else(|| {
                anyhow::anyhow!("kms.seal = \"passphrase\" needs kms.passphrase_file")
            })?;
            let mut b = read_secret(p, "passphrase file")?;
            while b.last().is_some_and(|c| *c == b'\n' || *c == b'\r') {
                b.pop();
            }
            Ok(b)
        };
        let default_kf = self.root.join("keys/kms-root.keyfile");
        if sealed_path.exists() {
            let text = std::fs::read_to_string(&sealed_path)
                .with_context(|| format!("cannot read {}", sealed_path.display()))?;
            let sealed = SealedRoot::parse(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", sealed_path.display()))?;
            let root = match seal {
                KmsSeal::Pkcs11 { .. } => {
                    anyhow::bail!("internal: an HSM root is not unsealed from files")
                }
                KmsSeal::KeyFile(p) => sealed
                    .unseal_keyfile(&read_secret(p.as_ref().unwrap_or(&default_kf), "key file")?),
                KmsSeal::Passphrase(p) => sealed.unseal_passphrase(&passphrase(p)?),
            };
            return root.map_err(|e| anyhow::anyhow!("{}: {e}", sealed_path.display()));
        }
        let root = Kek::generate(&cf_crypto::OsRng)?;
        let sealed = match seal {
            KmsSeal::Pkcs11 { .. } => anyhow::bail!("internal: an HSM root is not sealed to files"),
            KmsSeal::KeyFile(p) => {
                let kf_path = p.clone().unwrap_or(default_kf);
                if !kf_path.exists() {
                    let kf = cf_crypto::random_bytes(&cf_crypto::OsRng, 32)?;
                    write_private(&kf_path, &hex::encode(&kf))?;
                }
                root.seal_with_keyfile(&read_secret(&kf_path, "key file")?, &cf_crypto::OsRng)?
            }
            KmsSeal::Passphrase(p) => root.seal_with_passphrase(
                &passphrase(p)?,
                Argon2Params::default(),
                &cf_crypto::OsRng,
            )?,
        };
        write_private(&sealed_path, &sealed.to_json())?;
        Ok(root)
    }

    /// Certificate chain and key for the API: the supplied pair, or one issued by the platform
    /// CA (made on first start), renewed when older than 60 days.
    pub fn tls_material(
        &self,
        hostnames: &[String],
        now: Timestamp,
    ) -> Result<(String, Secret<String>)> {
        let (ca_cert, ca_key) = (self.root.join("ca/ca.pem"), self.root.join("ca/ca.key"));
        self.ca(now)?;
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

    /// The platform CA (made on first use): certificate and key, PEM. It issues the API's
    /// server certificate, the broker's, and every device certificate (DEV-1).
    pub fn ca(&self, now: Timestamp) -> Result<(String, Secret<String>)> {
        let (ca_cert, ca_key) = (self.root.join("ca/ca.pem"), self.root.join("ca/ca.key"));
        if !ca_cert.exists() {
            let ca = cf_pki::new_ca("Chengfang Platform CA", now, 10)?;
            write_private(&ca_key, ca.key_pem.expose())?;
            std::fs::write(&ca_cert, &ca.cert_pem)?;
        }
        Ok((
            std::fs::read_to_string(&ca_cert)?,
            Secret::new(std::fs::read_to_string(&ca_key)?),
        ))
    }

    /// The platform CA certificate path (clients trust this).
    pub fn ca_cert(&self) -> PathBuf {
        self.root.join("ca/ca.pem")
    }
}

//! Device trust service (DEV-1, AVL-2, INT-1, MGT-5): the registry, one-time enrollment tokens,
//! certificates from the platform CA, revocation and CRLs, quarantine, firmware manifests, and
//! verified telemetry ingest that raises spoofing, tampering and misuse alerts on the bus.
//! Every change is audited before it takes effect; enrollment is audited under the device's name.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cf_core::{Secret, SharedClock, Timestamp};
use cf_device::firmware::{Catalog, FirmwareCheck, SignedManifest};
use cf_device::monitor::{Alert, Monitor, MonitorConfig};
use cf_device::registry::{Device, DeviceStatus, EnrolledKey, NewDevice};
use cf_device::telemetry::{Body, Envelope, Freshness, Reject, Verdict, Verifier};
use cf_event::{AuditRecord, Event, Outcome, Severity};
use serde::{Deserialize, Serialize};

use crate::PlatformError;
use crate::audit::{AuditLedger, Receipt};
use crate::authz::{Action, Authorized};
use crate::ports::{BrokerPolicy, DeviceGateway, Document, EventBus, StateStore, TopicGrant};
use crate::tokens::RequestContext;

/// The CA that signs device certificates.
pub struct DeviceCa {
    /// CA certificate, PEM.
    pub cert_pem: String,
    /// CA key, PEM.
    pub key_pem: Secret<String>,
}

/// Tunables (the `[devices]` configuration section).
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    /// Lifetime of device certificates, hours (short-lived: devices renew, RFC 7030 `simplereenroll`).
    pub cert_hours: u32,
    /// Lifetime of enrollment tokens, seconds.
    pub token_ttl_s: u64,
    /// CRL validity, hours.
    pub crl_hours: u32,
    /// Quarantine a device automatically when it reports unapproved firmware.
    pub quarantine_on_firmware_mismatch: bool,
    /// Replay and clock tolerances.
    pub freshness: Freshness,
    /// Misuse detector thresholds.
    pub monitor: MonitorConfig,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        DeviceConfig {
            cert_hours: 72,
            token_ttl_s: 7 * 86_400,
            crl_hours: 24,
            quarantine_on_firmware_mismatch: true,
            freshness: Freshness::default(),
            monitor: MonitorConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TokenDoc {
    device: String,
    expires: Timestamp,
    used: Option<Timestamp>,
    created_by: String,
}

/// A certificate the CA issued to a device.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceCert {
    /// Device.
    pub device: String,
    /// Serial, hex.
    pub serial: String,
    /// Expiry.
    pub not_after: Timestamp,
    /// When revoked.
    pub revoked: Option<Timestamp>,
    /// Revoked for compromise or quarantine (else superseded or retired).
    pub compromised: bool,
    /// PEM.
    pub pem: String,
}

/// What enrollment returns to the device.
#[derive(Debug, Clone, Serialize)]
pub struct Enrolled {
    /// Device id.
    pub device: String,
    /// Leaf certificate, PEM.
    pub cert_pem: String,
    /// The CA certificate, PEM (trust anchor for the broker's and the API's server certificates).
    pub ca_pem: String,
    /// Serial.
    pub serial: String,
    /// Expiry.
    pub not_after: Timestamp,
}

/// Counters of the ingest path.
#[derive(Debug, Default, Clone, Serialize)]
pub struct IngestStats {
    /// Verified and new.
    pub accepted: u64,
    /// Verified, new, but sent before the freshness horizon.
    pub late: u64,
    /// Redelivered copies dropped.
    pub duplicates: u64,
    /// Refused, by reason.
    pub rejected: HashMap<String, u64>,
    /// Alerts raised, by kind.
    pub alerts: HashMap<String, u64>,
}

/// The outcome of one ingested message.
#[derive(Debug, Clone, PartialEq)]
pub struct Ingested {
    /// Verdict.
    pub verdict: Verdict,
    /// Device named in the envelope, if it decoded.
    pub device: Option<String>,
    /// Alerts raised by this message.
    pub alerts: Vec<Alert>,
}

/// The service.
#[derive(Clone)]
pub struct DeviceService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DeviceService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceService")
    }
}

struct Inner {
    store: Arc<dyn StateStore>,
    ledger: AuditLedger,
    clock: SharedClock,
    rng: Arc<dyn cf_crypto::Rng>,
    bus: Arc<dyn EventBus>,
    gateway: Option<Arc<dyn DeviceGateway>>,
    ca: DeviceCa,
    cfg: DeviceConfig,
    live: Mutex<Live>,
    alert_ids: std::sync::atomic::AtomicU64,
    // Coalesces broker policy pushes: enrollments in bursts share one rewrite and reload.
    push_running: std::sync::atomic::AtomicBool,
    push_dirty: std::sync::atomic::AtomicBool,
    push_wanted: std::sync::atomic::AtomicU64,
    push_done: tokio::sync::watch::Sender<u64>,
}

struct Live {
    verifier: Verifier,
    monitor: Monitor,
    catalog: Catalog,
    stats: IngestStats,
    // Devices whose replay state changed since the last save.
    dirty: std::collections::HashSet<String>,
    // Device records for the ingest path (kind, vendor, model, district).
    devices: HashMap<String, Device>,
}

fn parse<T: serde::de::DeserializeOwned>(d: &Document) -> Result<T, PlatformError> {
    serde_json::from_str(&d.body)
        .map_err(|e| PlatformError::Internal(format!("stored {} `{}`: {e}", d.kind, d.id)))
}

fn to_json<T: Serialize>(v: &T) -> Result<String, PlatformError> {
    serde_json::to_string(v).map_err(|e| PlatformError::Internal(e.to_string()))
}

fn invalid(e: impl std::fmt::Display) -> PlatformError {
    PlatformError::InvalidInput(e.to_string())
}

fn token_id(token: &str) -> String {
    hex::encode(cf_crypto::sha256(token.as_bytes()))
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CrlState {
    number: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct VendorKeyDoc {
    vendor: String,
    alg: cf_crypto::devkey::KeyAlg,
    public_key: String,
}

impl DeviceService {
    /// Open the service and load the registry, keys, replay state and firmware catalogue.
    #[allow(clippy::too_many_arguments)]
    pub async fn open(
        store: Arc<dyn StateStore>,
        ledger: AuditLedger,
        clock: SharedClock,
        rng: Arc<dyn cf_crypto::Rng>,
        bus: Arc<dyn EventBus>,
        gateway: Option<Arc<dyn DeviceGateway>>,
        ca: DeviceCa,
        cfg: DeviceConfig,
    ) -> Result<Self, PlatformError> {
        let mut live = Live {
            verifier: Verifier::new(cfg.freshness),
            monitor: Monitor::new(cfg.monitor.clone()),
            catalog: Catalog::default(),
            stats: IngestStats::default(),
            dirty: Default::default(),
            devices: HashMap::new(),
        };
        for d in store.doc_list("device").await? {
            let dev: Device = parse(&d)?;
            load_device(&mut live, &dev)?;
        }
        for d in store.doc_list("device_replay").await? {
            live.verifier.restore(&d.id, parse(&d)?);
        }
        for d in store.doc_list("vendor_key").await? {
            let k: VendorKeyDoc = parse(&d)?;
            let raw = hex::decode(&k.public_key).map_err(invalid)?;
            let pk = cf_crypto::devkey::DevicePublicKey::parse(k.alg, &raw).map_err(invalid)?;
            live.catalog.trust_vendor(&k.vendor, pk);
        }
        for d in store.doc_list("firmware").await? {
            let m: SignedManifest = parse(&d)?;
            live.catalog.add(&m).map_err(invalid)?;
        }
        Ok(DeviceService {
            inner: Arc::new(Inner {
                store,
                ledger,
                clock,
                rng,
                bus,
                gateway,
                ca,
                cfg,
                live: Mutex::new(live),
                alert_ids: Default::default(),
                push_running: Default::default(),
                push_wanted: Default::default(),
                push_done: tokio::sync::watch::channel(0).0,
                push_dirty: Default::default(),
            }),
        })
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        // A panic while holding the lock cannot leave the verifier half-updated in a way that
        // weakens it (state only advances after a signature verified), so poisoning is ignored.
        self.inner
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        subject: &str,
        ctx: &RequestContext,
        event: &str,
        object: String,
        outcome: Outcome,
        detail: serde_json::Value,
        privileged: bool,
    ) -> AuditRecord {
        let r = AuditRecord::new(
            event,
            self.inner.clock.now(),
            &ctx.source_addr,
            "chengfang-devices",
            subject,
            object,
            event.rsplit('.').next().unwrap_or(event),
            outcome,
            &ctx.request_id,
        )
        .with_detail(detail);
        if privileged { r.privileged() } else { r }
    }

    async fn audit(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        event: &str,
        device: &str,
        detail: serde_json::Value,
    ) -> Result<Receipt, PlatformError> {
        let privileged = auth.action() == Action::ManageDevices;
        self.inner
            .ledger
            .append(self.record(
                &auth.principal().id,
                ctx,
                event,
                format!("device:{device}"),
                Outcome::Success,
                detail,
                privileged,
            ))
            .await
    }

    async fn doc(&self, kind: &str, id: &str) -> Result<Option<Document>, PlatformError> {
        Ok(self.inner.store.doc_get(kind, id).await?)
    }

    /// A device and its stored revision.
    async fn device_doc(&self, id: &str) -> Result<(Device, Document), PlatformError> {
        let d = self
            .doc("device", id)
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("no device `{id}`")))?;
        Ok((parse(&d)?, d))
    }

    /// A device within the caller's reach: an organisation's people and tokens reach only the
    /// devices it owns, and another's is "not found" (IDM-1).
    async fn device_for(
        &self,
        auth: &Authorized,
        id: &str,
    ) -> Result<(Device, Document), PlatformError> {
        let (dev, d) = self.device_doc(id).await?;
        if !auth.reaches(&dev.spec.owner_org) {
            return Err(PlatformError::NotFound(format!("no device `{id}`")));
        }
        Ok((dev, d))
    }

    async fn save_device(&self, dev: &Device, prev: &Document) -> Result<(), PlatformError> {
        self.inner
            .store
            .doc_update(&Document {
                kind: "device".into(),
                id: dev.id().to_string(),
                body: to_json(dev)?,
                revision: prev.revision + 1,
                updated: self.inner.clock.now(),
            })
            .await?;
        let mut live = self.live();
        load_device(&mut live, dev)?;
        Ok(())
    }

    /// Register one device.
    pub async fn register(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        spec: NewDevice,
    ) -> Result<(Device, Receipt), PlatformError> {
        auth.require(Action::ManageDevices)?;
        if !auth.reaches(&spec.owner_org) {
            return Err(PlatformError::Forbidden(format!(
                "owner_org: devices are registered to the caller's own organisation `{}`",
                auth.org().unwrap_or_default()
            )));
        }
        let dev = Device::new(spec, self.inner.clock.now()).map_err(invalid)?;
        if self.doc("device", dev.id()).await?.is_some() {
            return Err(PlatformError::Conflict(format!(
                "device `{}` is already registered",
                dev.id()
            )));
        }
        let r = self
            .audit(
                auth,
                ctx,
                "device.register",
                dev.id(),
                serde_json::json!({"kind": dev.spec.kind, "district": dev.spec.district, "owner_org": dev.spec.owner_org, "vendor": dev.spec.vendor, "model": dev.spec.model}),
            )
            .await?;
        self.inner
            .store
            .doc_insert(&Document {
                kind: "device".into(),
                id: dev.id().to_string(),
                body: to_json(&dev)?,
                revision: 1,
                updated: dev.created,
            })
            .await?;
        load_device(&mut self.live(), &dev)?;
        Ok((dev, r))
    }

    /// Register every valid row of a CSV file; rows that fail (bad values, ids already
    /// registered) are reported with their line and never stop the rest.
    pub async fn import_csv(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        csv: &[u8],
    ) -> Result<ImportReport, PlatformError> {
        auth.require(Action::ManageDevices)?;
        let parsed = cf_device::registry::import_csv(csv).map_err(invalid)?;
        let mut rep = ImportReport {
            registered: Vec::new(),
            errors: parsed
                .errors
                .into_iter()
                .map(|(line, reason)| ImportError { line, reason })
                .collect(),
        };
        // Line numbers of good rows are not kept by the parser; report ids instead.
        for d in parsed.devices {
            let id = d.id.clone();
            match self.register(auth, ctx, d).await {
                Ok(_) => rep.registered.push(id),
                Err(PlatformError::Conflict(m))
                | Err(PlatformError::InvalidInput(m))
                | Err(PlatformError::Forbidden(m)) => rep.errors.push(ImportError {
                    line: 0,
                    reason: format!("{id}: {m}"),
                }),
                Err(e) => return Err(e),
            }
        }
        Ok(rep)
    }

    /// One device.
    pub async fn get(&self, auth: &Authorized, id: &str) -> Result<Device, PlatformError> {
        require_read(auth)?;
        Ok(self.device_for(auth, id).await?.0)
    }

    /// Every device, optionally of one district or status.
    pub async fn list(
        &self,
        auth: &Authorized,
        district: Option<&str>,
        status: Option<DeviceStatus>,
    ) -> Result<Vec<Device>, PlatformError> {
        require_read(auth)?;
        let mut out = Vec::new();
        for d in self.inner.store.doc_list("device").await? {
            let dev: Device = parse(&d)?;
            if district.is_none_or(|x| dev.spec.district == x)
                && status.is_none_or(|s| dev.status == s)
                && auth.reaches(&dev.spec.owner_org)
            {
                out.push(dev);
            }
        }
        out.sort_by(|a, b| a.spec.id.cmp(&b.spec.id));
        Ok(out)
    }

    /// A one-time enrollment token for `device` (shown once; stored as its hash).
    pub async fn enrollment_token(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        device: &str,
    ) -> Result<(String, Timestamp, Receipt), PlatformError> {
        auth.require(Action::ManageDevices)?;
        let (dev, _) = self.device_for(auth, device).await?;
        if matches!(
            dev.status,
            DeviceStatus::Quarantined | DeviceStatus::Retired
        ) {
            return Err(PlatformError::Conflict(format!(
                "device `{device}` is {}; release it first",
                dev.status.as_str()
            )));
        }
        let token = format!(
            "cfe_{}",
            cf_crypto::random_token(self.inner.rng.as_ref(), 24)
                .map_err(|e| PlatformError::Internal(e.to_string()))?
        );
        let expires = self
            .inner
            .clock
            .now()
            .plus(std::time::Duration::from_secs(self.inner.cfg.token_ttl_s));
        let r = self
            .audit(
                auth,
                ctx,
                "device.enrollment_token",
                device,
                serde_json::json!({"expires": expires, "token_id": &token_id(&token)[..16]}),
            )
            .await?;
        self.inner
            .store
            .doc_insert(&Document {
                kind: "enroll_token".into(),
                id: token_id(&token),
                body: to_json(&TokenDoc {
                    device: device.into(),
                    expires,
                    used: None,
                    created_by: auth.principal().id.clone(),
                })?,
                revision: 1,
                updated: self.inner.clock.now(),
            })
            .await?;
        Ok((token, expires, r))
    }

    /// Enroll with a one-time token and the device's own CSR (DER). The token is consumed
    /// atomically: of two parallel uses, one wins and the other gets a conflict.
    pub async fn enroll(
        &self,
        ctx: &RequestContext,
        token: &str,
        csr_der: &[u8],
    ) -> Result<Enrolled, PlatformError> {
        let refuse =
            |why: &str| PlatformError::Unauthenticated(format!("enrollment refused: {why}"));
        // Refusals are audited by the edge through the summarised denial path, so a flood of
        // made-up tokens cannot fill the ledger.
        let Some(tdoc) = self.doc("enroll_token", &token_id(token)).await? else {
            return Err(refuse("unknown or already used token"));
        };
        let mut t: TokenDoc = parse(&tdoc)?;
        let now = self.inner.clock.now();
        if t.used.is_some() || now > t.expires {
            return Err(refuse("unknown or already used token"));
        }
        let csr = cf_pki::device::verify_csr_der(csr_der).map_err(invalid)?;
        let (mut dev, ddoc) = self.device_doc(&t.device).await?;
        if matches!(
            dev.status,
            DeviceStatus::Quarantined | DeviceStatus::Retired
        ) {
            return Err(refuse("device is quarantined or retired"));
        }
        // Consume the token first: the optimistic revision makes a second, parallel use fail.
        t.used = Some(now);
        self.inner
            .store
            .doc_update(&Document {
                body: to_json(&t)?,
                revision: tdoc.revision + 1,
                updated: now,
                ..tdoc.clone()
            })
            .await
            .map_err(|_| refuse("token already used"))?;
        self.issue(ctx, &mut dev, &ddoc, &csr, csr_der, "device.enroll", None)
            .await
    }

    /// A client certificate from the platform CA for a person (X.509 sign-in, IDM-5) over the
    /// key of `csr_der`; the caller records and audits it.
    pub fn issue_person_cert(
        &self,
        username: &str,
        csr_der: &[u8],
        hours: u32,
    ) -> Result<(String, cf_pki::device::CertInfo), PlatformError> {
        let mut serial = [0u8; 16];
        self.inner
            .rng
            .fill(&mut serial)
            .map_err(|e| PlatformError::Internal(e.to_string()))?;
        let pem = cf_pki::device::issue_person_cert(
            &self.inner.ca.cert_pem,
            &self.inner.ca.key_pem,
            csr_der,
            username,
            &serial,
            self.inner.clock.now(),
            hours,
        )
        .map_err(invalid)?;
        let info =
            cf_pki::device::cert_info(&pem).map_err(|e| PlatformError::Internal(e.to_string()))?;
        Ok((pem, info))
    }

    #[allow(clippy::too_many_arguments)]
    async fn issue(
        &self,
        ctx: &RequestContext,
        dev: &mut Device,
        ddoc: &Document,
        csr: &cf_pki::device::CsrInfo,
        csr_der: &[u8],
        event: &str,
        superseded: Option<String>,
    ) -> Result<Enrolled, PlatformError> {
        let now = self.inner.clock.now();
        let mut serial = [0u8; 16];
        self.inner
            .rng
            .fill(&mut serial)
            .map_err(|e| PlatformError::Internal(e.to_string()))?;
        let pem = cf_pki::device::issue_device_cert(
            &self.inner.ca.cert_pem,
            &self.inner.ca.key_pem,
            csr_der,
            dev.id(),
            &serial,
            now,
            self.inner.cfg.cert_hours,
        )
        .map_err(invalid)?;
        let info =
            cf_pki::device::cert_info(&pem).map_err(|e| PlatformError::Internal(e.to_string()))?;
        let key = EnrolledKey {
            alg: csr.alg,
            public_key: hex::encode(&csr.public_key),
        };
        self.inner
            .ledger
            .append(self.record(
                &format!("device:{}", dev.id()),
                ctx,
                event,
                format!("device:{}", dev.id()),
                Outcome::Success,
                serde_json::json!({"serial": info.serial, "not_after": info.not_after, "alg": csr.alg, "key_sha256": hex::encode(cf_crypto::sha256(&csr.public_key)), "supersedes": superseded}),
                false,
            ))
            .await?;
        self.inner
            .store
            .doc_insert(&Document {
                kind: "device_cert".into(),
                id: info.serial.clone(),
                body: to_json(&DeviceCert {
                    device: dev.id().to_string(),
                    serial: info.serial.clone(),
                    not_after: info.not_after,
                    revoked: None,
                    compromised: false,
                    pem: pem.clone(),
                })?,
                revision: 1,
                updated: now,
            })
            .await?;
        dev.status = DeviceStatus::Active;
        dev.cert_serial = Some(info.serial.clone());
        dev.cert_not_after = Some(info.not_after);
        dev.key = Some(key);
        self.save_device(dev, ddoc).await?;
        if let Some(old) = superseded {
            self.mark_revoked(&old, false).await?;
        }
        // New grants (and, on renewal, the superseded serial on the CRL) reach the broker;
        // coalesced, because devices enroll in bursts and each push rewrites every grant.
        let generation = self.push_soon();
        self.pushed(generation).await;
        Ok(Enrolled {
            device: dev.id().to_string(),
            cert_pem: pem,
            ca_pem: self.inner.ca.cert_pem.clone(),
            serial: info.serial,
            not_after: info.not_after,
        })
    }

    /// Authenticate a device by the certificate it presented (DER): issued by the device CA,
    /// within validity, and the device's current certificate (so revoked or superseded ones fail
    /// even before the CRL reaches every relying party). Returns the device id.
    pub async fn authenticate_cert(&self, der: &[u8]) -> Result<String, PlatformError> {
        let now = self.inner.clock.now();
        let refuse = |why: String| {
            PlatformError::Unauthenticated(format!("device certificate refused: {why}"))
        };
        let info = cf_pki::device::verify_issued_by_der(der, &self.inner.ca.cert_pem, now)
            .map_err(|e| refuse(e.to_string()))?;
        let id = info
            .common_name
            .ok_or_else(|| refuse("no device id".into()))?;
        let (dev, _) = self
            .device_doc(&id)
            .await
            .map_err(|_| refuse(format!("`{id}` is not registered")))?;
        if dev.status != DeviceStatus::Active || dev.cert_serial.as_deref() != Some(&info.serial) {
            return Err(refuse(format!(
                "not the current certificate of an active device `{id}`"
            )));
        }
        Ok(id)
    }

    /// The device CA certificate, PEM (RFC 7030 `cacerts`).
    pub fn ca_pem(&self) -> &str {
        &self.inner.ca.cert_pem
    }

    /// Renew (RFC 7030 `simplereenroll`): the caller proved possession of the current, unrevoked
    /// certificate (`presented_pem`, from the TLS handshake); a new key is allowed.
    pub async fn renew(
        &self,
        ctx: &RequestContext,
        presented_pem: &str,
        csr_der: &[u8],
    ) -> Result<Enrolled, PlatformError> {
        let der = cf_pki::device::pem_to_der(presented_pem)
            .map_err(|e| PlatformError::Unauthenticated(format!("renewal refused: {e}")))?;
        self.renew_der(ctx, &der, csr_der).await
    }

    /// As [`DeviceService::renew`], with the presented certificate as DER (from the handshake).
    pub async fn renew_der(
        &self,
        ctx: &RequestContext,
        presented_der: &[u8],
        csr_der: &[u8],
    ) -> Result<Enrolled, PlatformError> {
        let now = self.inner.clock.now();
        let info =
            cf_pki::device::verify_issued_by_der(presented_der, &self.inner.ca.cert_pem, now)
                .map_err(|e| PlatformError::Unauthenticated(format!("renewal refused: {e}")))?;
        let id = info.common_name.ok_or_else(|| {
            PlatformError::Unauthenticated("renewal refused: no device id".into())
        })?;
        let (mut dev, ddoc) = self.device_doc(&id).await?;
        if dev.status != DeviceStatus::Active || dev.cert_serial.as_deref() != Some(&info.serial) {
            return Err(PlatformError::Unauthenticated(
                "renewal refused: not the device's current certificate".into(),
            ));
        }
        let csr = cf_pki::device::verify_csr_der(csr_der).map_err(invalid)?;
        self.issue(
            ctx,
            &mut dev,
            &ddoc,
            &csr,
            csr_der,
            "device.renew",
            Some(info.serial),
        )
        .await
    }

    async fn mark_revoked(&self, serial: &str, compromised: bool) -> Result<bool, PlatformError> {
        let Some(d) = self.doc("device_cert", serial).await? else {
            return Ok(false);
        };
        let mut c: DeviceCert = parse(&d)?;
        if c.revoked.is_some() {
            return Ok(false);
        }
        c.revoked = Some(self.inner.clock.now());
        c.compromised = compromised;
        self.inner
            .store
            .doc_update(&Document {
                body: to_json(&c)?,
                revision: d.revision + 1,
                updated: self.inner.clock.now(),
                ..d
            })
            .await?;
        // Every revocation changes the CRL, so its number moves (RFC 5280 §5.2.3).
        let st = self.doc("pki", "crl").await?;
        let mut n: CrlState = st.as_ref().map(parse).transpose()?.unwrap_or_default();
        n.number += 1;
        match st {
            Some(prev) => {
                self.inner
                    .store
                    .doc_update(&Document {
                        body: to_json(&n)?,
                        revision: prev.revision + 1,
                        updated: self.inner.clock.now(),
                        ..prev
                    })
                    .await?
            }
            None => {
                self.inner
                    .store
                    .doc_insert(&Document {
                        kind: "pki".into(),
                        id: "crl".into(),
                        body: to_json(&n)?,
                        revision: 1,
                        updated: self.inner.clock.now(),
                    })
                    .await?
            }
        }
        Ok(true)
    }

    /// The current CRL, PEM: every revoked certificate that has not yet expired.
    pub async fn crl(&self) -> Result<String, PlatformError> {
        let now = self.inner.clock.now();
        let mut revoked = Vec::new();
        for d in self.inner.store.doc_list("device_cert").await? {
            let c: DeviceCert = parse(&d)?;
            if let Some(at) = c.revoked
                && c.not_after > now
            {
                revoked.push(cf_pki::device::Revoked {
                    serial: c.serial,
                    at,
                    compromised: c.compromised,
                });
            }
        }
        revoked.sort_by(|a, b| a.serial.cmp(&b.serial));
        let n: CrlState = self
            .doc("pki", "crl")
            .await?
            .as_ref()
            .map(parse)
            .transpose()?
            .unwrap_or_default();
        cf_pki::device::crl(
            &self.inner.ca.cert_pem,
            &self.inner.ca.key_pem,
            &revoked,
            n.number + 1,
            now,
            self.inner.cfg.crl_hours,
        )
        .map_err(|e| PlatformError::Internal(e.to_string()))
    }

    /// What the broker must enforce now: the CRL and every device's topics. Active devices
    /// publish under their prefix and read their control topic; quarantined devices keep only the
    /// control topic, so the quarantine command still reaches them while their publishes stop.
    pub async fn broker_policy(&self) -> Result<BrokerPolicy, PlatformError> {
        let crl_pem = self.crl().await?;
        let mut grants = Vec::new();
        for d in self.inner.store.doc_list("device").await? {
            let dev: Device = parse(&d)?;
            let prefix = dev.topic_prefix();
            let control = format!("{prefix}control");
            match dev.status {
                DeviceStatus::Active => grants.push(TopicGrant {
                    username: dev.id().to_string(),
                    read: vec![control],
                    write: vec![
                        format!("{prefix}telemetry"),
                        format!("{prefix}events"),
                        format!("{prefix}log"),
                    ],
                }),
                DeviceStatus::Quarantined => grants.push(TopicGrant {
                    username: dev.id().to_string(),
                    read: vec![control],
                    write: Vec::new(),
                }),
                DeviceStatus::Registered | DeviceStatus::Retired => {}
            }
        }
        grants.sort_by(|a, b| a.username.cmp(&b.username));
        Ok(BrokerPolicy { crl_pem, grants })
    }

    /// Push the broker policy; returns whether a broker took it.
    async fn push_crl(&self) -> bool {
        let Some(g) = &self.inner.gateway else {
            return false;
        };
        match self.broker_policy().await {
            Ok(p) => match g.apply(&p).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!(error = %e, "broker policy push failed");
                    false
                }
            },
            Err(e) => {
                tracing::error!(error = %e, "broker policy could not be built");
                false
            }
        }
    }

    /// Push the broker policy soon, in the background, coalescing bursts: one task pushes while
    /// changes keep arriving. Returns the generation to wait for with [`Self::pushed`] (0 when
    /// there is no broker). Used for grants; revocations push synchronously.
    fn push_soon(&self) -> u64 {
        use std::sync::atomic::Ordering;
        if self.inner.gateway.is_none() {
            return 0;
        }
        let generation = self.inner.push_wanted.fetch_add(1, Ordering::SeqCst) + 1;
        self.inner.push_dirty.store(true, Ordering::SeqCst);
        if self.inner.push_running.swap(true, Ordering::SeqCst) {
            return generation;
        }
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                // Let a burst of enrollments accumulate into one rewrite and reload.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                while me.inner.push_dirty.swap(false, Ordering::SeqCst) {
                    let target = me.inner.push_wanted.load(Ordering::SeqCst);
                    me.push_crl().await;
                    me.inner.push_done.send_modify(|g| *g = (*g).max(target));
                }
                me.inner.push_running.store(false, Ordering::SeqCst);
                // A change that arrived after the last swap restarts the loop unless another
                // task has taken over.
                if !me.inner.push_dirty.load(Ordering::SeqCst)
                    || me.inner.push_running.swap(true, Ordering::SeqCst)
                {
                    return;
                }
            }
        });
        generation
    }

    /// Wait (at most 5 s) until the broker has the policy of `generation`, so an enrolled device
    /// can publish as soon as it has its certificate.
    async fn pushed(&self, generation: u64) {
        if generation == 0 {
            return;
        }
        let mut rx = self.inner.push_done.subscribe();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            rx.wait_for(|g| *g >= generation),
        )
        .await;
    }

    /// A connection by `device` from `addr` seen by the transport (broker connection log,
    /// HTTPS client address): feeds the two-places detector and publishes its alerts.
    pub async fn seen_from(&self, device: &str, addr: &str) -> Vec<Alert> {
        let now = self.inner.clock.now();
        let alerts = self.live().monitor.seen_from(device, addr, now);
        for a in &alerts {
            *self
                .live()
                .stats
                .alerts
                .entry(a.kind.to_string())
                .or_default() += 1;
            self.publish_alert(a).await;
        }
        alerts
    }

    /// Revoke a device's certificate (it must enroll again with a new token).
    pub async fn revoke(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        id: &str,
        reason: &str,
    ) -> Result<Receipt, PlatformError> {
        auth.require(Action::ManageDevices)?;
        let (mut dev, ddoc) = self.device_for(auth, id).await?;
        let Some(serial) = dev.cert_serial.clone() else {
            return Err(PlatformError::Conflict(format!(
                "device `{id}` holds no certificate"
            )));
        };
        let r = self
            .audit(
                auth,
                ctx,
                "device.revoke",
                id,
                serde_json::json!({"serial": serial, "reason": reason}),
            )
            .await?;
        self.mark_revoked(&serial, true).await?;
        if dev.status == DeviceStatus::Active {
            dev.status = DeviceStatus::Registered;
        }
        dev.cert_serial = None;
        dev.cert_not_after = None;
        dev.key = None;
        self.save_device(&dev, &ddoc).await?;
        let pushed = self.push_crl().await;
        self.audit(
            auth,
            ctx,
            "device.crl_push",
            id,
            serde_json::json!({"pushed": pushed}),
        )
        .await?;
        Ok(r)
    }

    /// Isolate a device (AVL-2): audited first, then certificate revoked, ingest blocked, CRL
    /// pushed and the broker reloaded, and a quarantine command published on its control topic.
    pub async fn quarantine(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        id: &str,
        reason: &str,
    ) -> Result<QuarantineReport, PlatformError> {
        auth.require(Action::QuarantineDevices)?;
        let (dev, ddoc) = self.device_for(auth, id).await?;
        self.quarantine_inner(&auth.principal().id, ctx, dev, ddoc, reason)
            .await
    }

    async fn quarantine_inner(
        &self,
        subject: &str,
        ctx: &RequestContext,
        mut dev: Device,
        ddoc: Document,
        reason: &str,
    ) -> Result<QuarantineReport, PlatformError> {
        let id = dev.id().to_string();
        if dev.status == DeviceStatus::Quarantined {
            return Err(PlatformError::Conflict(format!(
                "device `{id}` is already quarantined"
            )));
        }
        let append = |event: &str, detail: serde_json::Value| {
            self.inner.ledger.append(self.record(
                subject,
                ctx,
                event,
                format!("device:{id}"),
                Outcome::Success,
                detail,
                true,
            ))
        };
        let receipt = append(
            "device.quarantine",
            serde_json::json!({"reason": reason, "serial": dev.cert_serial}),
        )
        .await?;
        let revoked = match dev.cert_serial.take() {
            Some(s) => self.mark_revoked(&s, true).await?,
            None => false,
        };
        dev.status = DeviceStatus::Quarantined;
        dev.quarantine_reason = Some(reason.to_string());
        dev.cert_not_after = None;
        dev.key = None;
        self.save_device(&dev, &ddoc).await?;
        let crl_pushed = self.push_crl().await;
        let topic = format!("{}control", dev.topic_prefix());
        let command_sent = match &self.inner.gateway {
            Some(g) => g
                .command(
                    &topic,
                    serde_json::json!({"command": "quarantine", "reason": reason})
                        .to_string()
                        .as_bytes(),
                )
                .await
                .map_err(|e| tracing::error!(error = %e, "quarantine command not delivered"))
                .is_ok(),
            None => false,
        };
        append(
            "device.quarantine.applied",
            serde_json::json!({"certificate_revoked": revoked, "ingest_blocked": true, "crl_pushed": crl_pushed, "command_topic": topic, "command_sent": command_sent}),
        )
        .await?;
        self.publish_alert(&Alert {
            kind: "device.quarantined",
            severity: "high",
            device: Some(id.clone()),
            district: Some(dev.spec.district.clone()),
            detail: reason.to_string(),
            at: self.inner.clock.now(),
        })
        .await;
        Ok(QuarantineReport {
            device: id,
            receipt,
            certificate_revoked: revoked,
            ingest_blocked: true,
            crl_pushed,
            command_sent,
        })
    }

    /// Release a quarantined device: it returns to `registered` and needs a new enrollment token.
    pub async fn release(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        id: &str,
    ) -> Result<Receipt, PlatformError> {
        auth.require(Action::QuarantineDevices)?;
        let (mut dev, ddoc) = self.device_for(auth, id).await?;
        if dev.status != DeviceStatus::Quarantined {
            return Err(PlatformError::Conflict(format!(
                "device `{id}` is not quarantined"
            )));
        }
        let r = self
            .inner
            .ledger
            .append(self.record(
                &auth.principal().id,
                ctx,
                "device.release",
                format!("device:{id}"),
                Outcome::Success,
                serde_json::json!({}),
                true,
            ))
            .await?;
        dev.status = DeviceStatus::Registered;
        dev.quarantine_reason = None;
        self.save_device(&dev, &ddoc).await?;
        self.push_crl().await;
        if let Some(g) = &self.inner.gateway {
            let topic = format!("{}control", dev.topic_prefix());
            if let Err(e) = g.command(&topic, br#"{"command":"release"}"#).await {
                tracing::error!(error = %e, "release command not delivered");
            }
        }
        Ok(r)
    }

    /// Trust a vendor's firmware signing key (hex raw public key).
    pub async fn trust_vendor(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        vendor: &str,
        alg: cf_crypto::devkey::KeyAlg,
        public_key_hex: &str,
    ) -> Result<Receipt, PlatformError> {
        auth.require(Action::ManageDevices)?;
        auth.city_only("trusting a vendor's firmware key")?;
        let raw = hex::decode(public_key_hex).map_err(|_| invalid("public_key: not hex"))?;
        let pk = cf_crypto::devkey::DevicePublicKey::parse(alg, &raw)
            .map_err(|e| invalid(format!("public_key: {e}")))?;
        if vendor.is_empty() || vendor.len() > 128 {
            return Err(invalid("vendor: 1-128 characters"));
        }
        let id = format!("{}:{}", hex::encode(vendor.as_bytes()), pk.fingerprint());
        let r = self
            .audit(
                auth,
                ctx,
                "device.vendor_key",
                vendor,
                serde_json::json!({"alg": alg, "key_sha256": pk.fingerprint()}),
            )
            .await?;
        if self.doc("vendor_key", &id).await?.is_none() {
            self.inner
                .store
                .doc_insert(&Document {
                    kind: "vendor_key".into(),
                    id,
                    body: to_json(&VendorKeyDoc {
                        vendor: vendor.into(),
                        alg,
                        public_key: public_key_hex.to_ascii_lowercase(),
                    })?,
                    revision: 1,
                    updated: self.inner.clock.now(),
                })
                .await?;
        }
        self.live().catalog.trust_vendor(vendor, pk);
        Ok(r)
    }

    /// Add a vendor-signed firmware manifest (its signature is checked first).
    pub async fn add_firmware(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        m: SignedManifest,
    ) -> Result<Receipt, PlatformError> {
        auth.require(Action::ManageDevices)?;
        auth.city_only("adding a firmware manifest")?;
        // Check against a scratch copy so a bad manifest never reaches the audit trail as accepted.
        {
            let mut live = self.live();
            live.catalog.add(&m).map_err(invalid)?;
        }
        let mm = &m.manifest;
        let r = self.audit(auth, ctx, "device.firmware_manifest", &format!("{}/{}", mm.vendor, mm.model).replace(['/', ' '], "-"), serde_json::json!({"vendor": mm.vendor, "model": mm.model, "version": mm.version, "sha256": mm.sha256})).await?;
        let id = format!(
            "{}:{}",
            hex::encode(format!("{}\n{}", mm.vendor, mm.model)),
            mm.sha256
        );
        if self.doc("firmware", &id).await?.is_none() {
            self.inner
                .store
                .doc_insert(&Document {
                    kind: "firmware".into(),
                    id,
                    body: to_json(&m)?,
                    revision: 1,
                    updated: self.inner.clock.now(),
                })
                .await?;
        }
        Ok(r)
    }

    /// Ingest one telemetry message from the transport: `topic` (empty over HTTPS),
    /// `connected_as` (the certificate identity the transport authenticated) and the client
    /// address. Verified readings feed the misuse detectors; refusals raise integrity alerts.
    pub async fn ingest(
        &self,
        msg: &[u8],
        topic: &str,
        connected_as: Option<&str>,
        source_addr: Option<&str>,
    ) -> Ingested {
        let now = self.inner.clock.now();
        let mut firmware: Option<(Device, String)> = None;
        // Decode and verify the signature outside the lock (the expensive part), so parallel
        // ingest workers only serialise on the replay window and the detectors.
        let env = Envelope::decode(msg);
        let pre: Result<(), Reject> = match &env {
            Err(e) => Err(Reject::Malformed {
                detail: e.to_string(),
            }),
            Ok(e) => {
                let key = self.live().verifier.key_for(e, connected_as);
                key.and_then(|k| e.verify_with(&k))
            }
        };
        let env = env.ok();
        let out = {
            let mut live = self.live();
            let verdict = match (&pre, &env) {
                (Ok(()), Some(e)) => live.verifier.admit(e, now),
                (Err(r), _) => Verdict::Rejected(r.clone()),
                (Ok(()), None) => Verdict::Rejected(Reject::Malformed {
                    detail: "undecodable".into(),
                }),
            };
            let device = env.as_ref().map(|e| e.device.clone());
            let mut alerts = Vec::new();
            match &verdict {
                Verdict::Accepted { late } => {
                    let e = env.as_ref().map(|e| (e.device.clone(), e.body.clone()));
                    if *late {
                        live.stats.late += 1;
                    } else {
                        live.stats.accepted += 1;
                    }
                    if let Some((dev, body)) = e {
                        live.dirty.insert(dev.clone());
                        if let Some(a) = source_addr {
                            alerts.extend(live.monitor.seen_from(&dev, a, now));
                        }
                        match serde_json::from_slice::<Body>(&body) {
                            Ok(Body::Reading { metrics }) => {
                                let m: Vec<(String, f64)> = metrics.into_iter().collect();
                                alerts.extend(live.monitor.message(&dev, topic, &m, now));
                            }
                            Ok(Body::Hello {
                                firmware_sha256, ..
                            }) => {
                                alerts.extend(live.monitor.message(&dev, topic, &[], now));
                                if let Some(d) = live.devices.get(&dev) {
                                    firmware = Some((d.clone(), firmware_sha256));
                                }
                            }
                            Err(_) => alerts.extend(live.monitor.message(&dev, topic, &[], now)),
                        }
                    }
                }
                Verdict::Duplicate => live.stats.duplicates += 1,
                Verdict::Rejected(r) => {
                    *live.stats.rejected.entry(r.kind().to_string()).or_default() += 1;
                    let district = device
                        .as_ref()
                        .and_then(|d| live.devices.get(d))
                        .map(|d| d.spec.district.clone());
                    alerts.push(Alert {
                        kind: r.kind(),
                        severity: match r {
                            Reject::Malformed { .. } | Reject::FromFuture { .. } => "medium",
                            _ => "high",
                        },
                        device: device.clone().or_else(|| connected_as.map(str::to_string)),
                        district,
                        detail: serde_json::to_string(r).unwrap_or_default(),
                        at: now,
                    });
                }
            }
            Ingested {
                verdict,
                device,
                alerts,
            }
        };
        let mut out = out;
        if let Some((dev, sha)) = firmware {
            out.alerts.extend(self.check_firmware(dev, &sha).await);
        }
        for a in &out.alerts {
            *self
                .live()
                .stats
                .alerts
                .entry(a.kind.to_string())
                .or_default() += 1;
            self.publish_alert(a).await;
        }
        out
    }

    async fn check_firmware(&self, dev: Device, sha: &str) -> Vec<Alert> {
        let check = self
            .live()
            .catalog
            .check(&dev.spec.vendor, &dev.spec.model, sha);
        let id = dev.id().to_string();
        // Record what the device runs.
        if let Ok((mut d, doc)) = self.device_doc(&id).await
            && d.reported_firmware.as_deref() != Some(sha)
        {
            d.reported_firmware = Some(sha.to_string());
            if let Err(e) = self.save_device(&d, &doc).await {
                tracing::warn!(error = %e, device = %id, "reported firmware not saved");
            }
        }
        match check {
            FirmwareCheck::Approved { .. } => Vec::new(),
            FirmwareCheck::Unapproved => {
                let alert = Alert {
                    kind: "device.firmware_mismatch",
                    severity: "high",
                    device: Some(id.clone()),
                    district: Some(dev.spec.district.clone()),
                    detail: format!(
                        "firmware {sha} is not a signed release of {} {}",
                        dev.spec.vendor, dev.spec.model
                    ),
                    at: self.inner.clock.now(),
                };
                if self.inner.cfg.quarantine_on_firmware_mismatch
                    && let Ok((d, doc)) = self.device_doc(&id).await
                {
                    let ctx = RequestContext::internal();
                    if let Err(e) = self
                        .quarantine_inner(
                            "system:firmware-integrity",
                            &ctx,
                            d,
                            doc,
                            "unapproved firmware",
                        )
                        .await
                    {
                        tracing::error!(error = %e, device = %id, "automatic quarantine failed");
                    }
                }
                vec![alert]
            }
        }
    }

    /// Periodic work: district silence, and saving replay state so a restart cannot reopen
    /// windows. Returns the alerts raised.
    pub async fn tick(&self) -> Result<Vec<Alert>, PlatformError> {
        let now = self.inner.clock.now();
        let (alerts, states) = {
            let mut live = self.live();
            let alerts = live.monitor.tick(now);
            let dirty: Vec<String> = live.dirty.drain().collect();
            let states: Vec<_> = dirty
                .into_iter()
                .filter_map(|d| live.verifier.state(&d).map(|s| (d, s)))
                .collect();
            (alerts, states)
        };
        for (dev, st) in states {
            let body = to_json(&st)?;
            crate::ports::put_document(self.inner.store.as_ref(), "device_replay", &dev, body, now)
                .await?;
        }
        for a in &alerts {
            self.publish_alert(a).await;
        }
        Ok(alerts)
    }

    /// Ingest counters.
    pub fn stats(&self) -> IngestStats {
        self.live().stats.clone()
    }

    async fn publish_alert(&self, a: &Alert) {
        let n = self
            .inner
            .alert_ids
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ev = Event {
            id: format!("devalert-{}-{n}", a.at.unix_nanos()),
            topic: format!("alert.{}", a.kind),
            time: a.at,
            source: "chengfang/devices".into(),
            severity: match a.severity {
                "high" => Severity::High,
                "medium" => Severity::Medium,
                _ => Severity::Low,
            },
            payload: serde_json::to_value(a).unwrap_or_default(),
        };
        if let Err(e) = self.inner.bus.publish(&ev).await {
            tracing::error!(error = %e, kind = a.kind, "device alert could not be published");
        }
    }
}

fn require_read(auth: &Authorized) -> Result<(), PlatformError> {
    if matches!(
        auth.action(),
        Action::ReadDevices | Action::ManageDevices | Action::QuarantineDevices
    ) {
        Ok(())
    } else {
        Err(PlatformError::Forbidden("devices.read is needed".into()))
    }
}

fn load_device(live: &mut Live, dev: &Device) -> Result<(), PlatformError> {
    live.monitor.track(dev);
    match (&dev.key, dev.status) {
        (Some(k), DeviceStatus::Active) => {
            let pk = k
                .parse()
                .map_err(|e| PlatformError::Internal(e.to_string()))?;
            live.verifier.set_key(dev.id(), pk);
        }
        _ => live.verifier.remove_key(dev.id()),
    }
    live.devices.insert(dev.id().to_string(), dev.clone());
    Ok(())
}

/// A registry import's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    /// Ids registered.
    pub registered: Vec<String>,
    /// Rows refused.
    pub errors: Vec<ImportError>,
}

/// One refused row.
#[derive(Debug, Clone, Serialize)]
pub struct ImportError {
    /// CSV line (0 when the row was valid but the registry refused it; the reason names the id).
    pub line: u64,
    /// Why.
    pub reason: String,
}

/// What a quarantine did.
#[derive(Debug, Clone, Serialize)]
pub struct QuarantineReport {
    /// Device.
    pub device: String,
    /// The audit receipt of the decision.
    #[serde(skip)]
    pub receipt: Receipt,
    /// A certificate was revoked.
    pub certificate_revoked: bool,
    /// Ingest refuses the device from now on.
    pub ingest_blocked: bool,
    /// The broker took the new CRL.
    pub crl_pushed: bool,
    /// The command reached the broker.
    pub command_sent: bool,
}

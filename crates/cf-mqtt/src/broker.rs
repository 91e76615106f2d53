//! Mosquitto as the device broker: the configuration `chengfang broker config` writes (mutual
//! TLS only, identity from the certificate, CRL, generated ACL), and the gateway that updates
//! CRL and ACL atomically and makes the running broker reload them (SIGHUP).

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use cf_platform::ports::{BrokerPolicy, BusError, DeviceGateway, TopicGrant};

use crate::MqttError;

/// The platform's own MQTT identity (certificate CN); device ids can never take this name.
pub const INGEST_IDENTITY: &str = "chengfang-ingest";

/// Where the broker's files live and how it listens.
#[derive(Debug, Clone)]
pub struct BrokerLayout {
    /// Directory holding every file below.
    pub dir: PathBuf,
    /// Address to bind.
    pub bind: String,
    /// TLS port.
    pub port: u16,
    /// OS user Mosquitto runs as (`None`: Mosquitto's default, `mosquitto`, when started as root).
    pub user: Option<String>,
}

impl BrokerLayout {
    /// `mosquitto.conf`.
    pub fn conf(&self) -> PathBuf {
        self.dir.join("mosquitto.conf")
    }
    /// CA certificate the broker trusts for clients.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    /// Broker server certificate.
    pub fn cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }
    /// Broker server key.
    pub fn key(&self) -> PathBuf {
        self.dir.join("server.key")
    }
    /// CRL.
    pub fn crl(&self) -> PathBuf {
        self.dir.join("crl.pem")
    }
    /// ACL.
    pub fn acl(&self) -> PathBuf {
        self.dir.join("acl")
    }
    /// PID file (the gateway signals this process).
    pub fn pid(&self) -> PathBuf {
        self.dir.join("mosquitto.pid")
    }
    /// Broker log.
    pub fn log(&self) -> PathBuf {
        self.dir.join("mosquitto.log")
    }
}

/// The configuration text.
pub fn render_conf(l: &BrokerLayout) -> String {
    let p = |x: PathBuf| x.display().to_string();
    let user = l
        .user
        .as_ref()
        .map(|u| format!("user {u}\n"))
        .unwrap_or_default();
    format!(
        "# Written by `chengfang broker config` (issue 5, DEV-1). Regenerate rather than edit:\n\
# the platform rewrites crl.pem and acl and sends SIGHUP to reload them.\n\
{user}pid_file {pid}\n\
persistence true\n\
persistence_location {dir}/\n\
per_listener_settings false\n\
allow_anonymous false\n\
acl_file {acl}\n\
# Connection log lines feed the platform's two-places detector through $SYS/broker/log.\n\
connection_messages true\n\
log_dest file {log}\n\
log_dest topic\n\
log_type error\n\
log_type warning\n\
log_type notice\n\
log_type information\n\
# The platform's ingest session receives every device's telemetry: a wide in-flight window and a\n\
# deep queue (bounded memory) ride out verification bursts and platform restarts.\n\
max_inflight_messages 1000\n\
max_queued_messages 200000\n\
\n\
listener {port} {bind}\n\
protocol mqtt\n\
cafile {ca}\n\
certfile {cert}\n\
keyfile {key}\n\
tls_version tlsv1.2\n\
require_certificate true\n\
use_identity_as_username true\n\
crlfile {crl}\n",
        pid = p(l.pid()),
        dir = l.dir.display(),
        acl = p(l.acl()),
        log = p(l.log()),
        port = l.port,
        bind = l.bind,
        ca = p(l.ca()),
        cert = p(l.cert()),
        key = p(l.key()),
        crl = p(l.crl()),
    )
}

/// The ACL text: the platform's ingest identity, then one block per device.
pub fn render_acl(grants: &[TopicGrant]) -> String {
    let mut s =
        String::from("# Written by Chengfang from the device registry; changes are overwritten.\n");
    s.push_str(&format!(
        "user {INGEST_IDENTITY}\ntopic read city/#\ntopic write city/+/+/control\ntopic read $SYS/#\n\n"
    ));
    for g in grants {
        // Usernames are device ids (a-z, 0-9, '-'), so they cannot break the file's syntax.
        if !valid_name(&g.username) {
            continue;
        }
        s.push_str(&format!("user {}\n", g.username));
        for t in &g.read {
            s.push_str(&format!("topic read {t}\n"));
        }
        for t in &g.write {
            s.push_str(&format!("topic write {t}\n"));
        }
        s.push('\n');
    }
    s
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Write `data` to `path` atomically (temporary file, fsync, rename), mode 0600 for keys.
pub fn write_atomic(path: &Path, data: &[u8], private: bool) -> Result<(), MqttError> {
    use std::io::Write;
    let io = |err| MqttError::Io {
        path: path.display().to_string(),
        err,
    };
    // A unique temporary name, so concurrent writers never rename each other's files away.
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = path
        .file_name()
        .map(|f| f.to_os_string())
        .unwrap_or_default();
    name.push(format!(".{}.{n}.tmp", std::process::id()));
    let tmp = path.with_file_name(name);
    {
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        let _ = private;
        let mut f = o.open(&tmp).map_err(io)?;
        f.write_all(data).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}

/// Everything `chengfang broker config` writes: conf, CA, server certificate and key, an empty
/// policy (CRL and ACL) until the platform pushes its own.
pub fn write_files(
    l: &BrokerLayout,
    ca_pem: &str,
    server_cert_pem: &str,
    server_key_pem: &str,
    policy: &BrokerPolicy,
) -> Result<(), MqttError> {
    std::fs::create_dir_all(&l.dir).map_err(|err| MqttError::Io {
        path: l.dir.display().to_string(),
        err,
    })?;
    write_atomic(&l.ca(), ca_pem.as_bytes(), false)?;
    write_atomic(&l.cert(), server_cert_pem.as_bytes(), false)?;
    write_atomic(&l.key(), server_key_pem.as_bytes(), true)?;
    write_atomic(&l.crl(), policy.crl_pem.as_bytes(), false)?;
    write_atomic(&l.acl(), render_acl(&policy.grants).as_bytes(), false)?;
    write_atomic(&l.conf(), render_conf(l).as_bytes(), false)?;
    Ok(())
}

/// Drives a Mosquitto on this host: files from [`BrokerLayout`], reload by SIGHUP to its PID,
/// commands published through the platform's MQTT connection.
#[derive(Debug, Clone)]
pub struct MosquittoGateway {
    layout: BrokerLayout,
    client: rumqttc::AsyncClient,
}

impl MosquittoGateway {
    /// A gateway over `layout` publishing with `client`.
    pub fn new(layout: BrokerLayout, client: rumqttc::AsyncClient) -> Self {
        MosquittoGateway { layout, client }
    }

    /// Send SIGHUP to the broker named by the PID file.
    pub fn reload(&self) -> Result<(), MqttError> {
        let pid_path = self.layout.pid();
        let pid = std::fs::read_to_string(&pid_path).map_err(|err| MqttError::Io {
            path: pid_path.display().to_string(),
            err,
        })?;
        let pid = pid.trim();
        if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
            return Err(MqttError::Broker(format!(
                "{}: not a process id",
                pid_path.display()
            )));
        }
        let st = std::process::Command::new("kill")
            .args(["-HUP", pid])
            .status()
            .map_err(|e| MqttError::Broker(format!("kill: {e}")))?;
        if st.success() {
            Ok(())
        } else {
            Err(MqttError::Broker(format!(
                "broker process {pid} is not running"
            )))
        }
    }
}

#[async_trait]
impl DeviceGateway for MosquittoGateway {
    async fn apply(&self, policy: &BrokerPolicy) -> Result<(), BusError> {
        let be = |e: MqttError| BusError::Backend(e.to_string());
        write_atomic(&self.layout.crl(), policy.crl_pem.as_bytes(), false).map_err(be)?;
        write_atomic(
            &self.layout.acl(),
            render_acl(&policy.grants).as_bytes(),
            false,
        )
        .map_err(be)?;
        self.reload().map_err(be)
    }

    async fn command(&self, topic: &str, payload: &[u8]) -> Result<(), BusError> {
        self.client
            .publish(topic, rumqttc::QoS::AtLeastOnce, true, payload.to_vec())
            .await
            .map_err(|e| BusError::Backend(format!("MQTT publish: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_acl_gives_each_device_only_its_own_topics() {
        let acl = render_acl(&[
            TopicGrant {
                username: "cam-1".into(),
                read: vec!["city/d/cam-1/control".into()],
                write: vec!["city/d/cam-1/telemetry".into()],
            },
            TopicGrant {
                username: "bad name\nuser root".into(),
                read: vec!["#".into()],
                write: vec![],
            },
        ]);
        assert!(acl.contains(
            "user cam-1\ntopic read city/d/cam-1/control\ntopic write city/d/cam-1/telemetry\n"
        ));
        assert!(acl.contains("user chengfang-ingest\n"));
        assert!(
            !acl.contains("root"),
            "names that could inject ACL lines are dropped"
        );
    }

    #[test]
    fn the_configuration_requires_certificates_and_names_every_file() {
        let l = BrokerLayout {
            dir: "/srv/cf/broker".into(),
            bind: "0.0.0.0".into(),
            port: 8883,
            user: None,
        };
        let c = render_conf(&l);
        for line in [
            "allow_anonymous false",
            "require_certificate true",
            "use_identity_as_username true",
            "crlfile /srv/cf/broker/crl.pem",
            "acl_file /srv/cf/broker/acl",
            "listener 8883 0.0.0.0",
            "log_dest topic",
        ] {
            assert!(c.lines().any(|x| x == line), "missing `{line}`");
        }
        assert!(!c.contains("\nuser "));
    }
}

//! Configuration: one TOML file plus `CHENGFANG_*` environment overrides, validated as a whole so
//! that `chengfang config check` reports every problem at once with its TOML path. The table of
//! fields below is the single source of the reference page `docs/reference/config.md`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The kind of value a field takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Any string.
    Str,
    /// A socket address `IP:PORT`.
    Addr,
    /// `true` / `false`.
    Bool,
    /// Whole number within bounds.
    Int(i64, i64),
    /// A duration such as `250ms`, `30s`, `7d`.
    Duration,
    /// One of a fixed set.
    OneOf(&'static [&'static str]),
    /// A URL with one of the given schemes.
    Url(&'static [&'static str]),
}

/// One configuration field.
#[derive(Debug)]
pub struct Field {
    /// TOML path.
    pub path: &'static str,
    /// Kind.
    pub kind: Kind,
    /// Default as TOML text (empty: no default / derived).
    pub default: &'static str,
    /// Meaning.
    pub doc: &'static str,
}

/// `Group name=role,role; Other=role` as a map; every problem named.
fn parse_group_roles(v: &str) -> Result<BTreeMap<String, Vec<String>>, String> {
    let mut out = BTreeMap::new();
    for (i, entry) in v.split(';').map(str::trim).enumerate() {
        if entry.is_empty() {
            continue;
        }
        let Some((group, roles)) = entry.split_once('=') else {
            return Err(format!(
                "entry {} `{entry}`: write `Group name=role,role`",
                i + 1
            ));
        };
        let group = group.trim();
        if group.is_empty() {
            return Err(format!(
                "entry {} `{entry}`: the group name is empty",
                i + 1
            ));
        }
        let mut list = Vec::new();
        for r in roles.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            if cf_platform::authz::Role::parse(r).is_none() {
                return Err(format!(
                    "entry {} `{entry}`: `{r}` is not a role (admin, auditor, operator, service)",
                    i + 1
                ));
            }
            list.push(r.to_string());
        }
        if list.is_empty() {
            return Err(format!("entry {} `{entry}`: no roles", i + 1));
        }
        let roles: Vec<&str> = list.iter().map(String::as_str).collect();
        if let Err(v) = cf_authz::rights::check(&roles, &cf_authz::rights::default_rules()) {
            return Err(format!("entry {} `{entry}`: {v}", i + 1));
        }
        if out.insert(group.to_lowercase(), list).is_some() {
            return Err(format!("group `{group}` is named twice"));
        }
    }
    Ok(out)
}

/// Every field Chengfang reads.
pub const FIELDS: &[Field] = &[
    Field {
        path: "data_dir",
        kind: Kind::Str,
        default: "\"./chengfang-data\"",
        doc: "Directory holding the SQLite databases, the ledger key, the platform CA and TLS material. Created with owner-only permissions.",
    },
    Field {
        path: "node_name",
        kind: Kind::Str,
        default: "\"node-1\"",
        doc: "Name of this node in alarms and logs.",
    },
    Field {
        path: "server.listen",
        kind: Kind::Addr,
        default: "\"127.0.0.1:8443\"",
        doc: "Address the HTTPS API binds to. Loopback by default; set `0.0.0.0:8443` to serve the network.",
    },
    Field {
        path: "server.tls",
        kind: Kind::Bool,
        default: "true",
        doc: "Serve HTTPS. Turning it off is only for a TLS-terminating proxy on the same host and is reported by `config check`.",
    },
    Field {
        path: "server.cert_file",
        kind: Kind::Str,
        default: "",
        doc: "PEM certificate chain to serve instead of one issued by the platform CA (with `server.key_file`).",
    },
    Field {
        path: "server.key_file",
        kind: Kind::Str,
        default: "",
        doc: "PEM private key for `server.cert_file`.",
    },
    Field {
        path: "server.hostnames",
        kind: Kind::Str,
        default: "\"localhost,127.0.0.1\"",
        doc: "Comma-separated names and addresses for the certificate the platform CA issues.",
    },
    Field {
        path: "server.public_url",
        kind: Kind::Str,
        default: "",
        doc: "The URL users and applications reach this server at (behind a proxy or a DNS name), e.g. `https://sso.city.gov.cn`. It is the OpenID Connect issuer; by default the address the server binds to.",
    },
    Field {
        path: "server.body_limit_bytes",
        kind: Kind::Int(1024, 1 << 30),
        default: "1048576",
        doc: "Largest accepted request body (API-3).",
    },
    Field {
        path: "server.ingest_concurrency",
        kind: Kind::Int(1, 1024),
        default: "4",
        doc: "Log batches (`/api/v1/ingest/*`) processed at once; further senders wait unread, held back by TCP flow control, up to `server.request_timeout`. Bounds the memory batches hold to about this × `body_limit_bytes` × 6.",
    },
    Field {
        path: "server.request_timeout",
        kind: Kind::Duration,
        default: "\"30s\"",
        doc: "Deadline for one request.",
    },
    Field {
        path: "server.shutdown_grace",
        kind: Kind::Duration,
        default: "\"20s\"",
        doc: "How long in-flight requests may finish after SIGTERM/SIGINT.",
    },
    Field {
        path: "storage.url",
        kind: Kind::Url(&["sqlite", "postgres", "postgresql"]),
        default: "",
        doc: "State store. Default `sqlite://<data_dir>/state.db`; `postgres://user@host/db` for scale-out.",
    },
    Field {
        path: "storage.schema",
        kind: Kind::Str,
        default: "",
        doc: "PostgreSQL schema for this deployment's tables (created if missing); empty uses the search path.",
    },
    Field {
        path: "bus.url",
        kind: Kind::Url(&["journal", "memory", "nats", "tls"]),
        default: "",
        doc: "Event bus. Default `journal://<data_dir>/bus.db` (durable, in process: survives kill -9); `memory://` (tests only: loses unprocessed events on a crash); `nats://host:4222` (JetStream) for scale-out.",
    },
    Field {
        path: "bus.stream",
        kind: Kind::Str,
        default: "\"CHENGFANG\"",
        doc: "JetStream stream name.",
    },
    Field {
        path: "ledger.origin",
        kind: Kind::Str,
        default: "\"chengfang.local/audit\"",
        doc: "Checkpoint origin line; make it unique to the deployment, e.g. `audit.city.example/chengfang`.",
    },
    Field {
        path: "ledger.checkpoint_interval",
        kind: Kind::Duration,
        default: "\"250ms\"",
        doc: "Longest delay from an append to a signed checkpoint that covers it.",
    },
    Field {
        path: "ledger.max_batch",
        kind: Kind::Int(1, 100_000),
        default: "8192",
        doc: "Most records per group commit.",
    },
    Field {
        path: "ledger.capacity_bytes",
        kind: Kind::Int(1, i64::MAX),
        default: "10737418240",
        doc: "Storage set aside for the ledger (AUD-2).",
    },
    Field {
        path: "ledger.fill_alarm_percent",
        kind: Kind::Int(1, 100),
        default: "80",
        doc: "Raise `alarm.audit.storage_filling` when the ledger fills this share of its capacity (AUD-2).",
    },
    Field {
        path: "log.level",
        kind: Kind::OneOf(&["error", "warn", "info", "debug", "trace"]),
        default: "\"info\"",
        doc: "Log level (overridden by `RUST_LOG`).",
    },
    Field {
        path: "log.format",
        kind: Kind::OneOf(&["text", "json"]),
        default: "\"text\"",
        doc: "Log format: human text or one JSON object per line.",
    },
    Field {
        path: "kms.seal",
        kind: Kind::OneOf(&["key-file", "passphrase", "pkcs11"]),
        default: "\"key-file\"",
        doc: "Where the KMS root key lives (ENC-1): sealed by a key file, sealed by an operator passphrase through Argon2id (the platform then needs `kms.passphrase_file` to start), or inside a PKCS#11 HSM token that never releases it (`kms.pkcs11_*`). Chosen when the first key is made.",
    },
    Field {
        path: "kms.pkcs11_module",
        kind: Kind::Str,
        default: "\"/usr/lib/softhsm/libsofthsm2.so\"",
        doc: "PKCS#11 module of the HSM when `kms.seal = \"pkcs11\"`.",
    },
    Field {
        path: "kms.pkcs11_token",
        kind: Kind::Str,
        default: "\"chengfang\"",
        doc: "Label of the HSM token holding the root key.",
    },
    Field {
        path: "kms.pkcs11_pin_file",
        kind: Kind::Str,
        default: "",
        doc: "File holding the token's user PIN (required with `kms.seal = \"pkcs11\"`).",
    },
    Field {
        path: "kms.pkcs11_key_label",
        kind: Kind::Str,
        default: "\"chengfang-root\"",
        doc: "Label of the root key object in the token; an AES-256 key is generated there (sensitive, non-extractable) if none exists.",
    },
    Field {
        path: "kms.key_file",
        kind: Kind::Str,
        default: "",
        doc: "Key file (32+ random bytes) that seals the root key; default `<data_dir>/keys/kms-root.keyfile`, made on first start. Keep it on other storage than the data directory in production.",
    },
    Field {
        path: "kms.passphrase_file",
        kind: Kind::Str,
        default: "",
        doc: "File holding the operator passphrase (12+ characters) when `kms.seal = \"passphrase\"`.",
    },
    Field {
        path: "devices.cert_lifetime",
        kind: Kind::Duration,
        default: "\"72h\"",
        doc: "Lifetime of device certificates (DEV-1). Short-lived by design: devices renew through `/.well-known/est/simplereenroll` before expiry.",
    },
    Field {
        path: "devices.enrollment_token_ttl",
        kind: Kind::Duration,
        default: "\"7d\"",
        doc: "How long a one-time enrollment token stays valid.",
    },
    Field {
        path: "devices.quarantine_on_firmware_mismatch",
        kind: Kind::Bool,
        default: "true",
        doc: "Quarantine a device automatically when it reports firmware that no vendor-signed manifest approves (INT-1, MGT-5).",
    },
    Field {
        path: "devices.freshness_horizon",
        kind: Kind::Duration,
        default: "\"5m\"",
        doc: "Copies of an already-used telemetry counter younger than this are dropped as redeliveries; older ones raise a replay alert.",
    },
    Field {
        path: "devices.max_clock_ahead",
        kind: Kind::Duration,
        default: "\"60s\"",
        doc: "How far a device clock may run ahead of the platform's before its telemetry is refused.",
    },
    Field {
        path: "collect.syslog_udp",
        kind: Kind::Str,
        default: "",
        doc: "Receive syslog (RFC 5424/3164) over UDP on this `IP:PORT`, e.g. `0.0.0.0:514`; empty: off. Messages are published as `log.syslog` events, unparseable ones as `log.malformed` with their raw text.",
    },
    Field {
        path: "collect.syslog_tcp",
        kind: Kind::Str,
        default: "",
        doc: "Receive syslog over TCP (RFC 6587 octet counting or newlines) on this `IP:PORT`; empty: off.",
    },
    Field {
        path: "collect.syslog_tls",
        kind: Kind::Str,
        default: "",
        doc: "Receive syslog over TLS (RFC 5425, octet counting) on this `IP:PORT`, e.g. `0.0.0.0:6514`, with the API's server certificate; empty: off.",
    },
    Field {
        path: "collect.netflow_udp",
        kind: Kind::Str,
        default: "",
        doc: "Receive NetFlow v5/v9 and IPFIX over UDP on this `IP:PORT`, e.g. `0.0.0.0:2055`; empty: off. Templates are kept per exporter; each flow is published as `log.netflow` (OCSF Network Activity 4001), undecodable datagrams as `log.malformed` with their bytes.",
    },
    Field {
        path: "identity.argon2_memory_kib",
        kind: Kind::Int(1024, 4 * 1024 * 1024),
        default: "19456",
        doc: "Argon2id memory cost for user passwords, KiB (OWASP's 19 MiB by default). Raising it slows guessing of a stolen database and logins alike; existing hashes keep their own parameters.",
    },
    Field {
        path: "identity.argon2_passes",
        kind: Kind::Int(1, 100),
        default: "2",
        doc: "Argon2id time cost (passes) for user passwords (OWASP: 2 with 19 MiB).",
    },
    Field {
        path: "identity.argon2_lanes",
        kind: Kind::Int(1, 64),
        default: "1",
        doc: "Argon2id parallelism for user passwords.",
    },
    Field {
        path: "identity.geoip_database",
        kind: Kind::Str,
        default: "",
        doc: "IP-geolocation database (`.mmdb`) for the login risk engine's new-country and impossible-travel factors: the CC0 country file of `npm pack @ip-location-db/geo-whois-asn-country-mmdb`, or DB-IP city data (CC-BY 4.0: show the attribution) for coordinates. Empty: those factors are not assessed.",
    },
    Field {
        path: "identity.risk_step_up_at",
        kind: Kind::Int(1, 100),
        default: "50",
        doc: "Login risk score (0-100) from which a second factor is required; accounts without one are refused. New device 25, new network 15, new country 25, unusual hour 15, impossible travel 60, velocity 20, failed attempts 10/25.",
    },
    Field {
        path: "identity.risk_deny_at",
        kind: Kind::Int(1, 100),
        default: "80",
        doc: "Login risk score from which the sign-in is refused whatever the factors offered.",
    },
    Field {
        path: "identity.scim_group_roles",
        kind: Kind::Str,
        default: "",
        doc: "SCIM groups that grant roles (IDM-3 movers): `Group name=role,role; Other group=role`, e.g. `Security Operations=operator; Audit Office=auditor`. Members of a group named so (case-insensitively) hold its roles beside those administrators gave them, and lose them when the HR system removes them; a change that would break separation of duties is refused. Empty: groups grant nothing.",
    },
    Field {
        path: "detect.internal_networks",
        kind: Kind::Str,
        default: "\"10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10,127.0.0.0/8,169.254.0.0/16,fc00::/7,fe80::/10,::1/128\"",
        doc: "The city's own address space, comma-separated networks: the per-host flow baselines call traffic to anything else \"leaving\" (exfiltration volume, uploads to new outside peers) and judge lateral movement only between these. Set it to the city's address plan.",
    },
    Field {
        path: "detect.sigma_rules",
        kind: Kind::Str,
        default: "",
        doc: "Directory (or file) of Sigma rules and correlation rules run on the bus over every Windows event that arrives as a JSON log (`evtx_dump` shape, e.g. `chengfang ingest events.jsonl`); hits become `alert.sigma.<tactic>.<rule id>` alerts. Rules that cannot be compiled are refused one by one with the reason at start. Empty: off.",
    },
    Field {
        path: "events.retention_days",
        kind: Kind::Int(1, 36_500),
        default: "180",
        doc: "Days the event store keeps archived logs and alerts; whole day partitions older than this are deleted (each deletion audited). 180 days is the minimum the PRC Cybersecurity Law (Art. 21) sets for network logs.",
    },
    Field {
        path: "events.dir",
        kind: Kind::Str,
        default: "",
        doc: "Directory of the event store (one index per UTC day); default `<data_dir>/events`.",
    },
    Field {
        path: "broker.url",
        kind: Kind::Url(&["mqtts"]),
        default: "",
        doc: "The device broker (Mosquitto) the platform ingests from, e.g. `mqtts://127.0.0.1:8883`. Empty: no MQTT ingest (HTTPS telemetry still works). Write the broker's configuration with `chengfang broker config`.",
    },
    Field {
        path: "broker.dir",
        kind: Kind::Str,
        default: "",
        doc: "Directory of the broker's files (configuration, CRL, ACL, PID); default `<data_dir>/broker`. The platform rewrites CRL and ACL there and signals the broker to reload them, so it must run on the same host.",
    },
];

/// A problem with the configuration, located by TOML path.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// TOML path, e.g. `server.listen`.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// Where the value came from (`file`, `env CHENGFANG_…`, `default`).
    pub source: String,
    /// Warnings do not stop the platform.
    pub warning: bool,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Node name.
    pub node_name: String,
    /// Listen address.
    pub listen: SocketAddr,
    /// TLS on.
    pub tls: bool,
    /// Supplied certificate and key.
    pub cert_files: Option<(PathBuf, PathBuf)>,
    /// Names for the issued certificate.
    pub hostnames: Vec<String>,
    /// Public URL (OpenID Connect issuer), when not the bound address.
    pub public_url: Option<String>,
    /// Body limit.
    pub body_limit_bytes: usize,
    /// Request timeout.
    pub request_timeout: Duration,
    /// Log batches processed at once.
    pub ingest_concurrency: usize,
    /// Shutdown grace.
    pub shutdown_grace: Duration,
    /// Storage URL.
    pub storage_url: String,
    /// PostgreSQL schema.
    pub storage_schema: Option<String>,
    /// Bus URL as configured (empty: the journal in the data directory; see [`Config::bus`]).
    pub bus_url: String,
    /// Stream.
    pub bus_stream: String,
    /// Ledger settings.
    pub ledger: cf_platform::LedgerConfig,
    /// Log level.
    pub log_level: String,
    /// JSON logs.
    pub log_json: bool,
    /// KMS root sealing.
    pub kms: KmsSeal,
    /// Device trust.
    pub devices: DeviceSettings,
    /// NetFlow/IPFIX listener (UDP).
    pub netflow: Option<SocketAddr>,
    /// Sigma rules run on the bus.
    pub sigma_rules: Option<PathBuf>,
    /// The city's own address space (per-host flow baselines).
    pub internal_networks: Vec<cf_detect::netbase::IpNet>,
    /// SCIM group name → roles its members hold.
    pub scim_group_roles: BTreeMap<String, Vec<String>>,
    /// Argon2id costs for user passwords.
    pub argon2: cf_identity::password::Costs,
    /// IP-geolocation database for the risk engine.
    pub geoip_database: Option<PathBuf>,
    /// Login risk thresholds.
    pub risk: cf_identity::risk::RiskPolicy,
    /// Event store: directory (`None`: `<data_dir>/events`) and retention in days.
    pub events: (Option<PathBuf>, u32),
    /// Syslog listeners (UDP, TCP).
    pub syslog: (Option<SocketAddr>, Option<SocketAddr>),
    /// Syslog over TLS listener.
    pub syslog_tls: Option<SocketAddr>,
}

/// The `[devices]` and `[broker]` sections.
#[derive(Debug, Clone)]
pub struct DeviceSettings {
    /// Certificate lifetime.
    pub cert_lifetime: Duration,
    /// Enrollment token lifetime.
    pub token_ttl: Duration,
    /// Auto-quarantine on unapproved firmware.
    pub quarantine_on_firmware_mismatch: bool,
    /// Replay horizon.
    pub freshness_horizon: Duration,
    /// Clock lead allowed.
    pub max_clock_ahead: Duration,
    /// Broker host and port, when MQTT ingest is on.
    pub broker: Option<(String, u16)>,
    /// Broker files.
    pub broker_dir: PathBuf,
}

/// How the KMS root key is sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KmsSeal {
    /// By a key file (path; empty for the default in the data directory).
    KeyFile(Option<PathBuf>),
    /// By a passphrase read from this file.
    Passphrase(Option<PathBuf>),
    /// Inside a PKCS#11 token.
    Pkcs11 {
        /// Module path.
        module: String,
        /// Token label.
        token: String,
        /// PIN file.
        pin_file: Option<PathBuf>,
        /// Root key label.
        key_label: String,
    },
}

#[derive(Debug, Clone)]
struct Value {
    v: toml::Value,
    source: String,
}

fn flatten(prefix: &str, t: &toml::Table, out: &mut BTreeMap<String, Value>, source: &str) {
    for (k, v) in t {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(inner) => flatten(&path, inner, out, source),
            other => {
                out.insert(
                    path,
                    Value {
                        v: other.clone(),
                        source: source.to_string(),
                    },
                );
            }
        }
    }
}

fn env_path(var: &str) -> Option<String> {
    let rest = var.strip_prefix("CHENGFANG_")?;
    if rest.is_empty() {
        return None;
    }
    Some(
        rest.split("__")
            .map(str::to_ascii_lowercase)
            .collect::<Vec<_>>()
            .join("."),
    )
}

/// Load `file` (if any) and the environment; return the config if there are no errors, and every problem found.
pub fn load(file: Option<&Path>, env: &[(String, String)]) -> (Option<Config>, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut values: BTreeMap<String, Value> = BTreeMap::new();
    if let Some(f) = file {
        match std::fs::read_to_string(f) {
            Ok(text) => match text.parse::<toml::Table>() {
                Ok(t) => flatten("", &t, &mut values, &format!("file {}", f.display())),
                Err(e) => problems.push(Problem {
                    path: "(file)".into(),
                    message: format!("{} is not valid TOML: {}", f.display(), e.message()),
                    source: format!("file {}", f.display()),
                    warning: false,
                }),
            },
            Err(e) => problems.push(Problem {
                path: "(file)".into(),
                message: format!("cannot read {}: {e}", f.display()),
                source: "command line".into(),
                warning: false,
            }),
        }
    }
    for (k, v) in env {
        // Variables that configure the binary itself rather than the platform.
        if matches!(
            k.as_str(),
            "CHENGFANG_CONFIG" | "CHENGFANG_DATASETS" | "CHENGFANG_BOOTSTRAP_TOKEN_FILE"
        ) || k.starts_with("CHENGFANG_TEST_")
        {
            continue;
        }
        let Some(path) = env_path(k) else { continue };
        // Env values are typed like TOML where they parse as such (numbers, booleans), else strings.
        let parsed = format!("x = {v}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|t| t.get("x").cloned())
            .filter(|x| !x.is_table());
        values.insert(
            path,
            Value {
                v: parsed.unwrap_or_else(|| toml::Value::String(v.clone())),
                source: format!("env {k}"),
            },
        );
    }
    for (path, val) in &values {
        if !FIELDS.iter().any(|f| f.path == path) {
            let hint = FIELDS
                .iter()
                .map(|f| (edit_distance(f.path, path), f.path))
                .filter(|(d, _)| *d <= 3)
                .min()
                .map(|(_, p)| format!(" (did you mean `{p}`?)"))
                .unwrap_or_default();
            problems.push(Problem {
                path: path.clone(),
                message: format!("unknown setting{hint}"),
                source: val.source.clone(),
                warning: false,
            });
        }
    }
    let get = |path: &str| -> (toml::Value, String) {
        match values.get(path) {
            Some(v) => (v.v.clone(), v.source.clone()),
            None => {
                let f = FIELDS
                    .iter()
                    .find(|f| f.path == path)
                    .map_or("", |f| f.default);
                let v = if f.is_empty() {
                    toml::Value::String(String::new())
                } else {
                    format!("x = {f}")
                        .parse::<toml::Table>()
                        .ok()
                        .and_then(|t| t.get("x").cloned())
                        .unwrap_or(toml::Value::String(String::new()))
                };
                (v, "default".into())
            }
        }
    };
    let mut checked: BTreeMap<&'static str, toml::Value> = BTreeMap::new();
    for f in FIELDS {
        let (v, source) = get(f.path);
        let err = |m: String| Problem {
            path: f.path.to_string(),
            message: m,
            source: source.clone(),
            warning: false,
        };
        let ok = match (f.kind, &v) {
            (Kind::Str, toml::Value::String(_)) => Ok(()),
            (Kind::Bool, toml::Value::Boolean(_)) => Ok(()),
            (Kind::Int(lo, hi), toml::Value::Integer(i)) if (lo..=hi).contains(i) => Ok(()),
            (Kind::Int(lo, hi), toml::Value::Integer(i)) => {
                Err(format!("{i} is outside {lo}..={hi}"))
            }
            (Kind::Addr, toml::Value::String(s)) => s
                .parse::<SocketAddr>()
                .map(|_| ())
                .map_err(|_| format!("`{s}` is not an IP:PORT address")),
            (Kind::Duration, toml::Value::String(s)) => match cf_core::parse_duration(s) {
                Ok(d) if d.is_zero() => Err(format!("`{s}` must be longer than zero")),
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            },
            (Kind::OneOf(opts), toml::Value::String(s)) if opts.contains(&s.as_str()) => Ok(()),
            (Kind::OneOf(opts), toml::Value::String(s)) => {
                Err(format!("`{s}` is not one of {}", opts.join(", ")))
            }
            (Kind::Url(_), toml::Value::String(s)) if s.is_empty() => Ok(()),
            (Kind::Url(schemes), toml::Value::String(s)) => match s.split_once("://") {
                Some((scheme, _)) if schemes.contains(&scheme) => Ok(()),
                _ => Err(format!(
                    "`{}` must start with one of {}",
                    cf_store::redact_url(s),
                    schemes
                        .iter()
                        .map(|x| format!("{x}://"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            },
            (kind, other) => Err(format!(
                "expected {}, found {}",
                kind_name(kind),
                other.type_str()
            )),
        };
        match ok {
            Ok(()) => {
                checked.insert(f.path, v);
            }
            Err(m) => problems.push(err(m)),
        }
    }
    let s = |p: &str| {
        checked
            .get(p)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let i = |p: &str| {
        checked
            .get(p)
            .and_then(toml::Value::as_integer)
            .unwrap_or_default()
    };
    let b = |p: &str| {
        checked
            .get(p)
            .and_then(toml::Value::as_bool)
            .unwrap_or(true)
    };
    let d = |p: &str| cf_core::parse_duration(&s(p)).unwrap_or_default();
    let (cert, key) = (s("server.cert_file"), s("server.key_file"));
    if cert.is_empty() != key.is_empty() {
        problems.push(Problem {
            path: "server.cert_file".into(),
            message: "server.cert_file and server.key_file go together: set both or neither".into(),
            source: "file/env".into(),
            warning: false,
        });
    }
    let scim_group_roles = match parse_group_roles(&s("identity.scim_group_roles")) {
        Ok(m) => m,
        Err(m) => {
            problems.push(Problem {
                path: "identity.scim_group_roles".into(),
                message: m,
                source: values
                    .get("identity.scim_group_roles")
                    .map_or("default".into(), |v| v.source.clone()),
                warning: false,
            });
            BTreeMap::new()
        }
    };
    let internal_networks = match cf_detect::netbase::parse_networks(&s("detect.internal_networks"))
    {
        Ok(n) if !n.is_empty() => n,
        Ok(_) => {
            problems.push(Problem {
                path: "detect.internal_networks".into(),
                message: "must name at least one network".into(),
                source: values
                    .get("detect.internal_networks")
                    .map_or("default".into(), |v| v.source.clone()),
                warning: false,
            });
            Vec::new()
        }
        Err(m) => {
            problems.push(Problem {
                path: "detect.internal_networks".into(),
                message: m,
                source: values
                    .get("detect.internal_networks")
                    .map_or("default".into(), |v| v.source.clone()),
                warning: false,
            });
            Vec::new()
        }
    };
    if i("events.retention_days") < 180 {
        problems.push(Problem {
            path: "events.retention_days".into(),
            message: "network logs must be kept at least 180 days (PRC Cybersecurity Law, Art. 21); shorter retention needs a legal basis".into(),
            source: values
                .get("events.retention_days")
                .map_or("default".into(), |v| v.source.clone()),
            warning: true,
        });
    }
    let public = s("server.public_url");
    let public_ok = public.is_empty()
        || public.starts_with("https://")
        || (public.starts_with("http://") && !b("server.tls"));
    if !public_ok {
        problems.push(Problem {
            path: "server.public_url".into(),
            message: format!(
                "`{public}` must be an https:// URL (it is the OpenID Connect issuer)"
            ),
            source: values
                .get("server.public_url")
                .map_or("default".into(), |v| v.source.clone()),
            warning: false,
        });
    }
    if !b("server.tls") {
        problems.push(Problem { path: "server.tls".into(), message: "TLS is off: the API sends tokens in clear text; only acceptable behind a TLS-terminating proxy on this host".into(), source: values.get("server.tls").map_or("default".into(), |v| v.source.clone()), warning: true });
    }
    if let Ok(addr) = s("server.listen").parse::<SocketAddr>()
        && !addr.ip().is_loopback()
        && !b("server.tls")
    {
        problems.push(Problem {
            path: "server.listen".into(),
            message: format!("refusing to serve plain HTTP on the non-loopback address {addr}"),
            source: "file/env".into(),
            warning: false,
        });
    }
    let origin = s("ledger.origin");
    if origin.is_empty()
        || origin.contains(|c: char| c.is_whitespace() || c == '+' || c.is_control())
    {
        problems.push(Problem {
            path: "ledger.origin".into(),
            message: "must be non-empty, without spaces or '+' (it names the signing key)".into(),
            source: values
                .get("ledger.origin")
                .map_or("default".into(), |v| v.source.clone()),
            warning: false,
        });
    }
    let ident = |v: &str| {
        !v.is_empty()
            && v.len() <= 60
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    let schema = s("storage.schema");
    if !schema.is_empty() && (!ident(&schema) || schema.contains('-')) {
        problems.push(Problem {
            path: "storage.schema".into(),
            message: "must be 1-60 characters of A-Z a-z 0-9 _".into(),
            source: values
                .get("storage.schema")
                .map_or("default".into(), |v| v.source.clone()),
            warning: false,
        });
    }
    if !ident(&s("bus.stream")) {
        problems.push(Problem {
            path: "bus.stream".into(),
            message: "must be 1-60 characters of A-Z a-z 0-9 _ -".into(),
            source: values
                .get("bus.stream")
                .map_or("default".into(), |v| v.source.clone()),
            warning: false,
        });
    }
    let broker = match s("broker.url") {
        u if u.is_empty() => None,
        u => {
            let hp = u.trim_start_matches("mqtts://").trim_end_matches('/');
            match hp
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
            {
                Some((h, p)) if !h.is_empty() => Some((h, p)),
                _ => {
                    problems.push(Problem {
                        path: "broker.url".into(),
                        message: format!("`{u}` must be mqtts://HOST:PORT"),
                        source: values
                            .get("broker.url")
                            .map_or("default".into(), |v| v.source.clone()),
                        warning: false,
                    });
                    None
                }
            }
        }
    };
    let mut listen_addr = |path: &str| -> Option<SocketAddr> {
        let v = s(path);
        if v.is_empty() {
            return None;
        }
        match v.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                problems.push(Problem {
                    path: path.into(),
                    message: format!("`{v}` is not an IP:PORT address"),
                    source: values
                        .get(path)
                        .map_or("default".into(), |x| x.source.clone()),
                    warning: false,
                });
                None
            }
        }
    };
    let syslog = (
        listen_addr("collect.syslog_udp"),
        listen_addr("collect.syslog_tcp"),
    );
    let syslog_tls = listen_addr("collect.syslog_tls");
    let netflow = listen_addr("collect.netflow_udp");
    if problems.iter().any(|p| !p.warning) {
        return (None, problems);
    }
    let data_dir = PathBuf::from(s("data_dir"));
    let storage_url = match s("storage.url") {
        u if u.is_empty() => format!("sqlite://{}", data_dir.join("state.db").display()),
        u => u,
    };
    // Empty means the journal in the data directory, resolved when used: `--data-dir` and the
    // demo change the data directory after loading.
    let bus_url = match s("bus.url") {
        u if u == "journal://" => String::new(),
        u => u,
    };
    let cfg = Config {
        node_name: s("node_name"),
        listen: s("server.listen")
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8443))),
        tls: b("server.tls"),
        cert_files: if cert.is_empty() {
            None
        } else {
            Some((cert.into(), key.into()))
        },
        hostnames: s("server.hostnames")
            .split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect(),
        geoip_database: Some(s("identity.geoip_database"))
            .filter(|p| !p.trim().is_empty())
            .map(PathBuf::from),
        risk: cf_identity::risk::RiskPolicy {
            step_up_at: u32::try_from(i("identity.risk_step_up_at")).unwrap_or(50),
            deny_at: u32::try_from(i("identity.risk_deny_at")).unwrap_or(80),
            ..Default::default()
        },
        argon2: cf_identity::password::Costs {
            m_kib: u32::try_from(i("identity.argon2_memory_kib")).unwrap_or(19 * 1024),
            t: u32::try_from(i("identity.argon2_passes")).unwrap_or(2),
            p: u32::try_from(i("identity.argon2_lanes")).unwrap_or(1),
        },
        public_url: Some(s("server.public_url"))
            .map(|u| u.trim().trim_end_matches('/').to_string())
            .filter(|u| !u.is_empty()),
        body_limit_bytes: usize::try_from(i("server.body_limit_bytes")).unwrap_or(1 << 20),
        request_timeout: d("server.request_timeout"),
        ingest_concurrency: usize::try_from(i("server.ingest_concurrency")).unwrap_or(4),
        shutdown_grace: d("server.shutdown_grace"),
        storage_url,
        storage_schema: Some(s("storage.schema")).filter(|x| !x.is_empty()),
        bus_url,
        bus_stream: s("bus.stream"),
        ledger: cf_platform::LedgerConfig {
            origin: s("ledger.origin"),
            checkpoint_interval: d("ledger.checkpoint_interval"),
            max_batch: usize::try_from(i("ledger.max_batch")).unwrap_or(8192),
            capacity_bytes: u64::try_from(i("ledger.capacity_bytes")).unwrap_or(u64::MAX),
            fill_alarm_percent: u8::try_from(i("ledger.fill_alarm_percent")).unwrap_or(80),
        },
        log_level: s("log.level"),
        log_json: s("log.format") == "json",
        kms: {
            let opt = |p: &str| Some(PathBuf::from(s(p))).filter(|p| !p.as_os_str().is_empty());
            if s("kms.seal") == "passphrase" {
                KmsSeal::Passphrase(opt("kms.passphrase_file"))
            } else if s("kms.seal") == "pkcs11" {
                KmsSeal::Pkcs11 {
                    module: s("kms.pkcs11_module"),
                    token: s("kms.pkcs11_token"),
                    pin_file: opt("kms.pkcs11_pin_file"),
                    key_label: s("kms.pkcs11_key_label"),
                }
            } else {
                KmsSeal::KeyFile(opt("kms.key_file"))
            }
        },
        devices: DeviceSettings {
            cert_lifetime: d("devices.cert_lifetime"),
            token_ttl: d("devices.enrollment_token_ttl"),
            quarantine_on_firmware_mismatch: b("devices.quarantine_on_firmware_mismatch"),
            freshness_horizon: d("devices.freshness_horizon"),
            max_clock_ahead: d("devices.max_clock_ahead"),
            broker,
            broker_dir: match s("broker.dir") {
                x if x.is_empty() => data_dir.join("broker"),
                x => PathBuf::from(x),
            },
        },
        syslog,
        syslog_tls,
        netflow,
        internal_networks,
        scim_group_roles,
        sigma_rules: Some(s("detect.sigma_rules"))
            .filter(|x| !x.is_empty())
            .map(PathBuf::from),
        events: (
            Some(s("events.dir"))
                .filter(|x| !x.is_empty())
                .map(PathBuf::from),
            u32::try_from(i("events.retention_days")).unwrap_or(180),
        ),
        data_dir,
    };
    (Some(cfg), problems)
}

impl Config {
    /// The event bus URL; the default journal lives in the data directory (resolved late, so
    /// `--data-dir` and the demo move it too).
    pub fn bus(&self) -> String {
        if self.bus_url.is_empty() {
            format!("journal://{}", self.data_dir.join("bus.db").display())
        } else {
            self.bus_url.clone()
        }
    }

    /// The event store's directory (resolved late, like [`Config::bus`]).
    pub fn events_dir(&self) -> PathBuf {
        self.events
            .0
            .clone()
            .unwrap_or_else(|| self.data_dir.join("events"))
    }
}

/// Levenshtein distance, for "did you mean" hints.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

fn kind_name(k: Kind) -> String {
    match k {
        Kind::Str => "a string".into(),
        Kind::Addr => "an \"IP:PORT\" string".into(),
        Kind::Bool => "true or false".into(),
        Kind::Int(lo, hi) => format!("an integer in {lo}..={hi}"),
        Kind::Duration => "a duration string such as \"30s\"".into(),
        Kind::OneOf(o) => format!("one of {}", o.join(", ")),
        Kind::Url(s) => format!("a URL ({})", s.join(", ")),
    }
}

/// The reference page, generated from [`FIELDS`].
pub fn reference_markdown() -> String {
    let mut s = String::from(
        "# Configuration reference\n\n<!-- Generated by `chengfang config reference`; a test keeps this file current. Do not edit by hand. -->\n\n\
Chengfang reads one TOML file (`chengfang serve --config FILE`, or `$CHENGFANG_CONFIG`) and then environment\n\
variables: `CHENGFANG_` followed by the TOML path in capitals with `__` between sections, e.g.\n\
`CHENGFANG_SERVER__LISTEN=0.0.0.0:8443` or `CHENGFANG_LEDGER__FILL_ALARM_PERCENT=90`. `chengfang config check`\n\
reports every problem at once, each with its TOML path and where the value came from.\n\n\
| path | type | default | meaning |\n|---|---|---|---|\n",
    );
    for f in FIELDS {
        let default = if f.default.is_empty() {
            "(derived)".to_string()
        } else {
            format!("`{}`", f.default)
        };
        s.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            f.path,
            kind_name(f.kind),
            default,
            f.doc
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scim_group_roles_are_parsed_and_checked() {
        let m =
            parse_group_roles(" Security Operations=operator; Audit Office = auditor ,; ").unwrap();
        assert_eq!(m["security operations"], vec!["operator"]);
        assert_eq!(m["audit office"], vec!["auditor"]);
        assert!(parse_group_roles("").unwrap().is_empty());
        for (bad, why) in [
            ("Ops", "write `Group name=role,role`"),
            ("=operator", "group name is empty"),
            ("Ops=root", "`root` is not a role"),
            ("Ops=", "no roles"),
            ("Ops=admin,auditor", "admin"),
            ("Ops=operator; ops=auditor", "named twice"),
        ] {
            let e = parse_group_roles(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn defaults_are_valid_and_secure() {
        let (cfg, problems) = load(None, &[]);
        assert!(problems.is_empty(), "{problems:?}");
        let cfg = cfg.unwrap();
        assert!(cfg.tls);
        assert!(cfg.listen.ip().is_loopback());
        assert!(cfg.storage_url.starts_with("sqlite://"));
        assert!(cfg.bus().starts_with("journal://") && cfg.bus().ends_with("bus.db"));
    }

    #[test]
    fn reports_every_problem_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[server]\nlisten = \"nowhere\"\nbody_limit_bytes = 5\nlistne = 1\n[ledger]\nfill_alarm_percent = \"lots\"\ncheckpoint_interval = \"5 parsecs\"\n[storage]\nurl = \"mysql://x\"\n").unwrap();
        let env = vec![("CHENGFANG_LOG__FORMAT".to_string(), "xml".to_string())];
        let (cfg, problems) = load(Some(&f), &env);
        assert!(cfg.is_none());
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        for want in [
            "server.listen",
            "server.body_limit_bytes",
            "server.listne",
            "ledger.fill_alarm_percent",
            "ledger.checkpoint_interval",
            "storage.url",
            "log.format",
        ] {
            assert!(paths.contains(&want), "{want} missing from {paths:?}");
        }
        let env_problem = problems.iter().find(|p| p.path == "log.format").unwrap();
        assert_eq!(env_problem.source, "env CHENGFANG_LOG__FORMAT");
        assert!(
            problems
                .iter()
                .find(|p| p.path == "server.listne")
                .unwrap()
                .message
                .contains("server.listen")
        );
    }

    #[test]
    fn short_log_retention_is_a_warning_not_an_error() {
        let env = vec![(
            "CHENGFANG_EVENTS__RETENTION_DAYS".to_string(),
            "30".to_string(),
        )];
        let (cfg, problems) = load(None, &env);
        assert_eq!(cfg.map(|c| c.events.1), Some(30));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].warning && problems[0].path == "events.retention_days");
        assert!(problems[0].message.contains("180 days"));
    }

    #[test]
    fn env_overrides_file() {
        let env = vec![
            (
                "CHENGFANG_SERVER__LISTEN".to_string(),
                "127.0.0.1:9999".to_string(),
            ),
            ("CHENGFANG_LEDGER__MAX_BATCH".to_string(), "64".to_string()),
        ];
        let (cfg, problems) = load(None, &env);
        assert!(problems.is_empty(), "{problems:?}");
        let cfg = cfg.unwrap();
        assert_eq!(cfg.listen.port(), 9999);
        assert_eq!(cfg.ledger.max_batch, 64);
    }

    #[test]
    fn plain_http_off_loopback_is_refused() {
        let env = vec![
            ("CHENGFANG_SERVER__TLS".to_string(), "false".to_string()),
            (
                "CHENGFANG_SERVER__LISTEN".to_string(),
                "0.0.0.0:8080".to_string(),
            ),
        ];
        let (cfg, problems) = load(None, &env);
        assert!(cfg.is_none());
        assert!(
            problems
                .iter()
                .any(|p| p.path == "server.listen" && !p.warning)
        );
    }

    #[test]
    fn reference_page_is_current() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/reference/config.md");
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == reference_markdown(),
            "docs/reference/config.md is stale: run `cargo run -p chengfang -- config reference > docs/reference/config.md`"
        );
    }
}

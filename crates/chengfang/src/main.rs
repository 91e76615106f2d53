//! `chengfang`: the one binary. Parses the command line, loads configuration and wires the
//! platform; the only crate that uses `anyhow`.

/// mimalloc instead of glibc's malloc: the event pipeline, hunting and scanning allocate many
/// small, short-lived objects across threads, where glibc's arenas spent 15–20% of the time
/// (`malloc_consolidate`, `unlink_chunk`; docs/benchmarks.md has the before and after).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod analyze;
mod audit_cmd;
mod bench;
mod bench_events;
mod bench_identity;
mod config;
mod crypt;
mod datadir;
mod demo;
mod demo_data;
mod demo_devices;
mod demo_net;
mod demo_soc;
mod demo_sso;
mod devices_cmd;
mod discover;
mod geoip;
mod hunt;
mod identity_cmd;
mod ingest_cmd;
mod lines;
mod mask;
mod platform;
mod rules_cmd;
mod scan;
mod search_cmd;
mod simulate;
mod tables;
mod wm;
mod workers;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "chengfang", version, about = "Chengfang (城防): smart-city security platform", long_about = None)]
struct Cli {
    /// Configuration file (TOML). Environment variables CHENGFANG_* override it.
    #[arg(long, global = true, env = "CHENGFANG_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the platform (embedded SQLite and in-process bus unless configured otherwise).
    Serve {
        /// Data directory (overrides `data_dir`).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Run the platform with a simulated city and scripted attacks.
    Demo {
        /// Data directory (default: a fresh temporary directory).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Stop after this long (e.g. 60s); default runs until Ctrl-C.
        #[arg(long)]
        duration: Option<String>,
        /// Address to serve on (default 127.0.0.1:0, a free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
    /// Check or document the configuration.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Work with the audit ledger offline.
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// Run Sigma rules over events (JSONL in the `evtx_dump` shape); one line per hit.
    Hunt {
        /// Directory (searched recursively) or file of Sigma rules.
        #[arg(long)]
        rules: PathBuf,
        /// Events, one JSON object per line.
        events: PathBuf,
        /// One JSON object per (rule, event) hit: {"rule_id", "line", "title", "level"}.
        #[arg(long)]
        json: bool,
        /// List every refused rule with its reason (on standard error).
        #[arg(long)]
        show_refused: bool,
    },
    /// Find personal and important data. With --units, reads JSONL lines {"key", "text"} and prints
    /// {"key", "spans": [{"start", "end", "type"}]} per line (Unicode code-point offsets).
    Scan {
        /// Units file (JSONL); `-` for standard input.
        #[arg(long)]
        units: PathBuf,
        /// JSON output (the stable contract).
        #[arg(long)]
        json: bool,
    },
    /// Protect files with the platform's keys: envelope encryption, decryption, shredding.
    Kms {
        #[command(subcommand)]
        cmd: crypt::KmsCmd,
    },
    /// Sign a file with a KMS signing key (ed25519 or sm2); writes FILE.sig.
    Sign {
        #[command(flatten)]
        remote: crypt::Remote,
        /// Signing key name.
        #[arg(long)]
        key: String,
        /// Digest of the file that is signed: sha256 or sm3.
        #[arg(long, default_value = "sm3")]
        digest: String,
        /// Signature output (default FILE.sig).
        #[arg(long)]
        out: Option<PathBuf>,
        /// File to sign.
        file: PathBuf,
    },
    /// Verify a detached signature offline; exit 0 if valid, 1 if not.
    Verify {
        /// Signed file.
        file: PathBuf,
        /// Signature file (default FILE.sig).
        #[arg(long)]
        sig: Option<PathBuf>,
        /// Require this signer's public key (hex), as published by the platform.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Find and grade personal and important data in databases and files; per-column reports.
    Discover(discover::DiscoverArgs),
    /// Mask a CSV, JSONL or text file for a recipient role (static masking), optionally
    /// refusing to write it unless it is k-anonymous and l-diverse.
    Mask(mask::MaskArgs),
    /// Mark an export (.csv/.json/.jsonl) with an invisible keyed fingerprint of its recipient.
    Watermark(wm::MarkArgs),
    /// Name the recipient of a leaked copy; exit 0 if one is named, 1 if none.
    Trace(wm::TraceArgs),
    /// The device registry and enrollment (DEV-1): register, import, tokens, revoke, quarantine.
    Device {
        #[command(subcommand)]
        cmd: devices_cmd::DeviceCmd,
    },
    /// The device broker (Mosquitto): write its configuration from the platform's CA and registry.
    Broker {
        #[command(subcommand)]
        cmd: devices_cmd::BrokerCmd,
    },
    /// Analytics: DGA scoring of domains (`analyze domains FILE --json`), model training and
    /// leave-families-out evaluation.
    Analyze {
        #[command(subcommand)]
        cmd: analyze::AnalyzeCmd,
    },
    /// Send log files (syslog lines or NDJSON) to a running platform, with a progress bar.
    Ingest(ingest_cmd::IngestArgs),
    /// Detection rules of a running platform: list, refused, enable, disable, suppress, lift,
    /// and retroactive hunts over the event store.
    Rules {
        #[command(subcommand)]
        cmd: rules_cmd::RulesCmd,
    },
    /// Accounts of a running platform: create, list, disable (leavers), enable, reset.
    User {
        #[command(subcommand)]
        cmd: identity_cmd::UserCmd,
    },
    /// Organisations of a running platform (tenants and city-wide ones): register, list, add
    /// departments.
    Org {
        #[command(subcommand)]
        cmd: identity_cmd::OrgCmd,
    },
    /// Single sign-on: register the city's applications as OpenID Connect relying parties,
    /// list and remove them, rotate the signing keys.
    Sso {
        #[command(subcommand)]
        cmd: identity_cmd::SsoCmd,
    },
    /// Search archived logs and alerts of a running platform by time, fields and free text;
    /// exit 0 when something matched, 1 when nothing did.
    Search(search_cmd::SearchArgs),
    /// Simulations against a running platform (`simulate devices --count N`).
    Simulate {
        #[command(subcommand)]
        cmd: simulate::SimulateCmd,
    },
    /// Benchmarks (see docs/benchmarks.md).
    Bench {
        #[command(subcommand)]
        cmd: bench::BenchCmd,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Report every problem of the configuration at once, with its TOML path.
    Check {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Print the configuration reference (docs/reference/config.md).
    Reference,
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Verify a data directory or an exported ledger; names the first bad record.
    Verify {
        /// Data directory or export file.
        path: PathBuf,
        /// The ledger's verifier key(s) (pin them; repeat for the SM2 co-signing key; default:
        /// the ones stored with the ledger).
        #[arg(long)]
        key: Vec<String>,
        /// Expected checkpoint origin (default: the one stored with the ledger).
        #[arg(long)]
        origin: Option<String>,
        /// Accept records after the latest signed checkpoint (left by a crash; they are signed
        /// at the next start). Without it they fail the check: nothing vouches for them yet.
        #[arg(long)]
        allow_unsigned_tail: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// The weekly review (AUD-4): counts by type, actor and result; failures; privileged actions.
    Report {
        /// Period, e.g. 7d.
        #[arg(long, default_value = "7d")]
        since: String,
        /// Data directory or export file (default: the configured data directory).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Export the ledger to a JSONL file that `audit verify` accepts.
    Export {
        /// Data directory (default: the configured one).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Compute and check an inclusion (--seq) or consistency (--old) proof.
    Proof {
        /// Data directory or export file.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Record for an inclusion proof.
        #[arg(long)]
        seq: Option<u64>,
        /// Older size for a consistency proof.
        #[arg(long)]
        old: Option<u64>,
        /// Tree size (default: all records).
        #[arg(long)]
        size: Option<u64>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

fn env_vars() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("CHENGFANG_"))
        .collect()
}

/// Load the configuration or print every problem and fail.
fn load_config(
    file: Option<&std::path::Path>,
    data_dir: Option<PathBuf>,
) -> Result<config::Config> {
    let (cfg, problems) = config::load(file, &env_vars());
    for p in &problems {
        eprintln!(
            "{}: {}: {} (from {})",
            if p.warning { "warning" } else { "error" },
            p.path,
            p.message,
            p.source
        );
    }
    let mut cfg = cfg.ok_or_else(|| {
        anyhow::anyhow!(
            "the configuration has {} problem(s); see above",
            problems.iter().filter(|p| !p.warning).count()
        )
    })?;
    if let Some(d) = data_dir {
        if cfg.storage_url == format!("sqlite://{}", cfg.data_dir.join("state.db").display()) {
            cfg.storage_url = format!("sqlite://{}", d.join("state.db").display());
        }
        if cfg.devices.broker_dir == cfg.data_dir.join("broker") {
            cfg.devices.broker_dir = d.join("broker");
        }
        cfg.data_dir = d;
    }
    Ok(cfg)
}

fn init_logging(level: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        b.json().try_init()
    } else {
        b.try_init()
    };
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<bool> {
    let file = cli.config.as_deref();
    match cli.cmd {
        Cmd::Serve { data_dir } => {
            let cfg = load_config(file, data_dir)?;
            init_logging(&cfg.log_level, cfg.log_json);
            platform::serve(cfg).await?;
            Ok(true)
        }
        Cmd::Demo {
            data_dir,
            duration,
            listen,
        } => {
            let mut cfg = load_config(file, None)?;
            init_logging("warn", cfg.log_json);
            let tmp;
            let dir = match data_dir {
                Some(d) => d,
                None => {
                    tmp = tempfile::Builder::new()
                        .prefix("chengfang-demo-")
                        .tempdir()?;
                    tmp.path().to_path_buf()
                }
            };
            cfg.storage_url = format!("sqlite://{}", dir.join("state.db").display());
            cfg.data_dir = dir;
            cfg.listen = listen
                .parse()
                .map_err(|_| anyhow::anyhow!("--listen: `{listen}` is not IP:PORT"))?;
            let duration = duration
                .map(|d| cf_core::parse_duration(&d))
                .transpose()
                .map_err(|e| anyhow::anyhow!("--duration: {e}"))?;
            demo::run(cfg, duration).await?;
            Ok(true)
        }
        Cmd::Kms { cmd } => crypt::run(cmd).await,
        Cmd::Mask(a) => mask::run(&a),
        Cmd::Discover(a) => discover::run(&a).await,
        Cmd::Watermark(a) => wm::mark(&a),
        Cmd::Trace(a) => wm::trace(&a),
        Cmd::Sign {
            remote,
            key,
            digest,
            out,
            file,
        } => {
            let alg = cf_kms::HashAlg::parse(&digest)
                .ok_or_else(|| anyhow::anyhow!("--digest: use sha256 or sm3"))?;
            crypt::sign(&remote, &key, &file, out, alg).await
        }
        Cmd::Verify {
            file,
            sig,
            public_key,
        } => {
            let sig = sig.unwrap_or_else(|| {
                let mut n = file.as_os_str().to_os_string();
                n.push(".sig");
                PathBuf::from(n)
            });
            crypt::verify(&file, &sig, public_key.as_deref())
        }
        Cmd::Config {
            cmd: ConfigCmd::Check { json },
        } => {
            let (cfg, problems) = config::load(file, &env_vars());
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "ok": cfg.is_some(), "problems": problems })
                );
            } else if problems.is_empty() {
                println!(
                    "configuration OK{}",
                    file.map(|f| format!(" ({})", f.display()))
                        .unwrap_or_default()
                );
            } else {
                for p in &problems {
                    println!(
                        "{:<7} {:<28} {}  [{}]",
                        if p.warning { "warning" } else { "error" },
                        p.path,
                        p.message,
                        p.source
                    );
                }
            }
            Ok(cfg.is_some())
        }
        Cmd::Config {
            cmd: ConfigCmd::Reference,
        } => {
            print!("{}", config::reference_markdown());
            Ok(true)
        }
        Cmd::Audit { cmd } => match cmd {
            AuditCmd::Verify {
                path,
                key,
                origin,
                allow_unsigned_tail,
                json,
            } => audit_cmd::verify_cmd(&path, key, origin, allow_unsigned_tail, json).await,
            AuditCmd::Report {
                since,
                data_dir,
                json,
            } => {
                let d =
                    cf_core::parse_duration(&since).map_err(|e| anyhow::anyhow!("--since: {e}"))?;
                let dir = match data_dir {
                    Some(d) => d,
                    None => load_config(file, None)?.data_dir,
                };
                audit_cmd::report_cmd(&dir, d, json).await?;
                Ok(true)
            }
            AuditCmd::Export { data_dir, out } => {
                let dir = match data_dir {
                    Some(d) => d,
                    None => load_config(file, None)?.data_dir,
                };
                let n = audit_cmd::export_cmd(&dir, &out).await?;
                eprintln!("exported {n} records to {}", out.display());
                Ok(true)
            }
            AuditCmd::Proof {
                data_dir,
                seq,
                old,
                size,
                json,
            } => {
                let dir = match data_dir {
                    Some(d) => d,
                    None => load_config(file, None)?.data_dir,
                };
                audit_cmd::proof_cmd(&dir, seq, old, size, json).await
            }
        },
        Cmd::Bench { cmd } => bench::run(cmd).await,
        Cmd::Device { cmd } => devices_cmd::run(cmd).await,
        Cmd::Simulate { cmd } => simulate::run(cmd).await,
        Cmd::Ingest(a) => ingest_cmd::run(a).await,
        Cmd::Search(a) => search_cmd::run(a).await,
        Cmd::Rules { cmd } => rules_cmd::run(cmd).await,
        Cmd::User { cmd } => identity_cmd::user(cmd).await,
        Cmd::Sso { cmd } => identity_cmd::sso(cmd).await,
        Cmd::Org { cmd } => identity_cmd::org(cmd).await,
        Cmd::Analyze { cmd } => analyze::run(cmd),
        Cmd::Broker { cmd } => {
            let cfg = load_config(file, None)?;
            init_logging("warn", cfg.log_json);
            devices_cmd::broker(cmd, cfg).await
        }
        Cmd::Scan { units, json } => scan::run(&units, json),
        Cmd::Hunt {
            rules,
            events,
            json,
            show_refused,
        } => hunt::run(&rules, &events, json, show_refused),
    }
}

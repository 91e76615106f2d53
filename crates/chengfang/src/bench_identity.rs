//! `chengfang bench identity`: authorisation decisions (Cedar, in process), OIDC client-credential
//! grants, token introspections and full password logins through the platform services on the
//! embedded SQLite store, each per CPU-second, for the side-by-side table in docs/benchmarks.md.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use cf_core::{SharedClock, SystemClock};
use cf_platform::authz::{self, Action, Principal, Role};
use cf_platform::oidc::{ClientAuth, NewClient, OidcProvider, RiskGrade};
use cf_platform::ports::StateStore;
use cf_platform::tokens::RequestContext;

/// CPU seconds this process has used (user + system), from /proc (Linux; 0 elsewhere).
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the parenthesised command name; utime and stime are 14th and 15th.
            let rest = s.rsplit_once(") ")?.1;
            let f: Vec<&str> = rest.split(' ').collect();
            let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(0.0)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Run `f` on `tasks` concurrent tasks for `seconds`; operations, wall seconds, CPU seconds.
async fn load<F, Fut>(tasks: usize, seconds: f64, f: F) -> Result<(u64, f64, f64)>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let f = Arc::new(f);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let mut hs = Vec::new();
    for t in 0..tasks {
        let (f, stop, done) = (f.clone(), stop.clone(), done.clone());
        hs.push(tokio::spawn(async move {
            let mut i = t as u64;
            while !stop.load(Ordering::Relaxed) {
                f(i).await?;
                done.fetch_add(1, Ordering::Relaxed);
                i += tasks as u64;
            }
            anyhow::Ok(())
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for h in hs {
        h.await??;
    }
    Ok((
        done.load(Ordering::Relaxed),
        t0.elapsed().as_secs_f64(),
        (cpu_seconds() - cpu0).max(1e-9),
    ))
}

/// Run.
pub async fn run(seconds: f64, costs: cf_identity::password::Costs, json: bool) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut out = serde_json::Map::new();
    out.insert("cores".into(), cores.into());

    // 1. Authorisation decisions: the platform's Cedar policies, one thread for latency, then
    // every core for throughput.
    let actions = [
        Action::ReadAudit,
        Action::UseKeys,
        Action::ManageDevices,
        Action::ReadAlerts,
        Action::SearchEvents,
        Action::ManageUsers,
        Action::OwnAccount,
        Action::ReadData,
    ];
    let principals: Vec<Principal> = Role::ALL
        .iter()
        .enumerate()
        .map(|(i, r)| Principal {
            id: format!("user:bench-{i}"),
            roles: vec![*r],
            must_change: false,
            org: None,
            assurance: Default::default(),
        })
        .collect();
    let mut lat = Vec::new();
    let t0 = Instant::now();
    let mut i = 0usize;
    while t0.elapsed().as_secs_f64() < seconds {
        let p = &principals[i % principals.len()];
        let a = actions[(i / principals.len()) % actions.len()];
        let s = Instant::now();
        let _ = std::hint::black_box(authz::authorize(p, a));
        lat.push(s.elapsed().as_secs_f64() * 1e6);
        i += 1;
    }
    lat.sort_by(f64::total_cmp);
    let one = lat.len() as f64 / t0.elapsed().as_secs_f64();
    let counter = Arc::new(AtomicU64::new(0));
    let t1 = Instant::now();
    std::thread::scope(|sc| {
        for c in 0..cores {
            let (principals, counter) = (&principals, counter.clone());
            sc.spawn(move || {
                let mut n = 0u64;
                while t1.elapsed().as_secs_f64() < seconds {
                    let p = &principals[(n as usize + c) % principals.len()];
                    let a = actions[(n as usize / principals.len()) % actions.len()];
                    let _ = std::hint::black_box(authz::authorize(p, a));
                    n += 1;
                }
                counter.fetch_add(n, Ordering::Relaxed);
            });
        }
    });
    let all = counter.load(Ordering::Relaxed) as f64 / t1.elapsed().as_secs_f64();
    // The Cedar evaluation itself, without the platform's memo: entities, context and request
    // built and evaluated on every call.
    let policies = cf_authz::Policies::builtin();
    let mut raw_lat = Vec::new();
    let t2 = Instant::now();
    let mut k = 0usize;
    while t2.elapsed().as_secs_f64() < seconds {
        let p = &principals[k % principals.len()];
        let a = actions[(k / principals.len()) % actions.len()];
        let names: Vec<&str> = p.roles.iter().map(|r| r.as_str()).collect();
        let s = Instant::now();
        let _ = std::hint::black_box(policies.decide(
            &cf_authz::Subject {
                id: &p.id,
                roles: &names,
                must_change: false,
                tenant: false,
                assurance: "normal",
            },
            a.as_str(),
            "platform",
            &cf_authz::AccessContext {
                admin_networks_only: true,
                from_admin_network: !k.is_multiple_of(3),
            },
        ));
        raw_lat.push(s.elapsed().as_secs_f64() * 1e6);
        k += 1;
    }
    raw_lat.sort_by(f64::total_cmp);
    let raw = raw_lat.len() as f64 / t2.elapsed().as_secs_f64();
    out.insert(
        "authz".into(),
        serde_json::json!({"decisions_per_s_one_thread": one, "decisions_per_s_all_cores": all,
            "p50_us": pct(&lat, 0.5), "p99_us": pct(&lat, 0.99), "p999_us": pct(&lat, 0.999),
            "cedar_eval_per_s_one_thread": raw, "cedar_eval_p50_us": pct(&raw_lat, 0.5), "cedar_eval_p99_us": pct(&raw_lat, 0.99)}),
    );
    if !json {
        println!(
            "authorisation (the platform's path: Cedar decisions memoised per role set and action): {one:.0}/s on one thread (p50 {:.2} µs, p99 {:.2} µs, p99.9 {:.2} µs); {all:.0}/s on {cores} cores",
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            pct(&lat, 0.999)
        );
        println!(
            "  Cedar evaluation itself (entities, ABAC context, request built per call): {raw:.0}/s on one thread (p50 {:.1} µs, p99 {:.1} µs)",
            pct(&raw_lat, 0.5),
            pct(&raw_lat, 0.99)
        );
    }

    // 2. The platform's identity and OIDC services on a fresh embedded store.
    let opened = crate::bench::open_sqlite_ledger().await?;
    let store = opened.store.clone() as Arc<dyn StateStore>;
    let clock: SharedClock = Arc::new(SystemClock);
    let rng: Arc<dyn cf_crypto::Rng> = Arc::new(cf_crypto::BufferedOsRng::default());
    let identity = cf_platform::identity::IdentityService::new(
        store.clone(),
        opened.ledger.clone(),
        clock.clone(),
        rng.clone(),
        costs,
        [7u8; 32],
        None,
    )?;
    let oidc = OidcProvider::new(
        store,
        opened.ledger.clone(),
        clock,
        rng,
        identity.clone(),
        [9u8; 32],
        "https://sso.bench.local",
    );
    let admin = authz::authorize(
        &Principal {
            id: "token:bench".into(),
            roles: vec![Role::Admin],
            must_change: false,
            org: None,
            assurance: Default::default(),
        },
        Action::ManageUsers,
    )?;
    let ctx = RequestContext::internal();
    let (_, secret, _) = oidc
        .register_client(
            &admin,
            &ctx,
            NewClient {
                client_id: Some("bench-service".into()),
                name: "Bench service".into(),
                redirect_uris: vec![],
                post_logout_redirect_uris: vec![],
                confidential: true,
                grant_types: vec!["client_credentials".into()],
                service_scopes: vec!["events.read".into()],
                id_token_alg: None,
                risk_grade: RiskGrade::Medium,
                min_real_name_level: 0,
            },
        )
        .await?;
    let auth = ClientAuth {
        client_id: Some("bench-service".into()),
        client_secret: secret,
    };
    let mut form = std::collections::BTreeMap::new();
    form.insert("grant_type".to_string(), "client_credentials".to_string());
    let tasks = 2 * cores;
    let (o2, a2, f2) = (oidc.clone(), auth.clone(), form.clone());
    let (n, wall, cpu) = load(tasks, seconds, move |_| {
        let (o, a, f) = (o2.clone(), a2.clone(), f2.clone());
        async move {
            o.token(&RequestContext::internal(), &a, &f)
                .await
                .map_err(|e| anyhow::anyhow!("{}: {}", e.error, e.description))?;
            Ok(())
        }
    })
    .await?;
    out.insert(
        "client_credentials".into(),
        serde_json::json!({"grants": n, "per_s": n as f64 / wall, "per_cpu_s": n as f64 / cpu}),
    );
    if !json {
        println!(
            "client-credential grants (each audited before it is answered, token row written): {:.0}/s, {:.0} per CPU-second ({n} in {wall:.1} s)",
            n as f64 / wall,
            n as f64 / cpu
        );
    }

    // Introspection of live access tokens.
    let mut tokens = Vec::new();
    for _ in 0..1000 {
        let t = oidc
            .token(&ctx, &auth, &form)
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.description))?;
        tokens.push(t.access_token);
    }
    let tokens = Arc::new(tokens);
    let (o2, a2) = (oidc.clone(), auth.clone());
    let (n, wall, cpu) = load(tasks, seconds, move |i| {
        let (o, a, t) = (o2.clone(), a2.clone(), tokens.clone());
        async move {
            let v = o
                .introspect(&a, &t[i as usize % t.len()])
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.description))?;
            anyhow::ensure!(v["active"] == true, "a live token introspected inactive");
            Ok(())
        }
    })
    .await?;
    // Cold: every token introspected for the first time (nothing cached: the access row is
    // read from the store).
    let mut fresh = Vec::new();
    for _ in 0..3000 {
        let t = oidc
            .token(&ctx, &auth, &form)
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.description))?;
        fresh.push(t.access_token);
    }
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    for t in &fresh {
        let v = oidc
            .introspect(&auth, t)
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.description))?;
        anyhow::ensure!(v["active"] == true, "a live token introspected inactive");
    }
    let cold_wall = t0.elapsed().as_secs_f64();
    let cold_cpu = (cpu_seconds() - cpu0).max(1e-9);
    out.insert(
        "introspection".into(),
        serde_json::json!({"per_s": n as f64 / wall, "per_cpu_s": n as f64 / cpu,
            "cold_per_s_one_task": fresh.len() as f64 / cold_wall, "cold_per_cpu_s": fresh.len() as f64 / cold_cpu}),
    );
    if !json {
        println!(
            "token introspections (client authenticated, token, grant and account checked; 1,000 live tokens introspected repeatedly): {:.0}/s, {:.0} per CPU-second",
            n as f64 / wall,
            n as f64 / cpu
        );
        println!(
            "  first introspection of a token (read from the store): {:.0}/s on one task, {:.0} per CPU-second",
            fresh.len() as f64 / cold_wall,
            fresh.len() as f64 / cold_cpu
        );
    }

    // 3. Full password logins: throttle, Argon2id verify, session written, audited.
    let (_, initial, _) = identity
        .create_user(
            &admin,
            &ctx,
            serde_json::from_value(serde_json::json!({"username": "bench.user", "display_name": "Bench", "domain": "government", "org": "bench", "roles": ["operator"]}))?,
        )
        .await?;
    let pw = Arc::new(initial.expose().clone());
    let id2 = identity.clone();
    let (n, wall, cpu) = load(cores, seconds.max(3.0), move |_| {
        let (id, pw) = (id2.clone(), pw.clone());
        async move {
            id.login(
                &RequestContext::internal(),
                "bench.user",
                &pw,
                None,
                "bench",
            )
            .await?;
            Ok(())
        }
    })
    .await?;
    let raw = {
        let t = Instant::now();
        let mut k = 0;
        while t.elapsed().as_secs_f64() < 1.0 {
            let _ = cf_identity::password::hash("a password", costs, &cf_crypto::OsRng)?;
            k += 1;
        }
        f64::from(k) / t.elapsed().as_secs_f64()
    };
    out.insert(
        "password_login".into(),
        serde_json::json!({"per_s": n as f64 / wall, "per_cpu_s": n as f64 / cpu,
            "argon2id": {"m_kib": costs.m_kib, "t": costs.t, "p": costs.p}, "raw_hashes_per_s_one_core": raw}),
    );
    if !json {
        println!(
            "password logins (Argon2id m={} KiB t={} p={}): {:.1}/s, {:.1} per CPU-second; raw hash rate on one core {raw:.1}/s",
            costs.m_kib,
            costs.t,
            costs.p,
            n as f64 / wall,
            n as f64 / cpu
        );
    }
    if json {
        println!("{}", serde_json::Value::Object(out));
    }
    Ok(())
}

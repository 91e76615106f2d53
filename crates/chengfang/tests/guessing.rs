//! Password guessing against the platform's own sign-in (PWD-3, AUZ-5, IDM-7 evidence): 10,000
//! guesses from 200 addresses — a distributed brute force on one account and password spraying
//! across many — while the real user keeps working. Lockout holds, the detectors raise alerts
//! from the platform's own authentication events, and the real user still gets in.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

mod common;
use common::*;

/// A client whose connections come from `addr` (any 127.0.0.0/8 address is local on Linux), so
/// each simulated attacker has its own source address.
fn client_from(dir: &std::path::Path, addr: IpAddr) -> reqwest::Client {
    client_with(dir, |b| b.local_address(addr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_guesses_lock_out_the_attackers_but_not_the_user() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("data");
    // Cheap hashes keep 10,000 guesses quick; the policy, not the hash, is under test here.
    let srv = start_identity_server(&dir, &[]);
    let c = client(&dir);
    let u = |p: &str| format!("{}{p}", srv.url);
    let admin = rotate_bootstrap(&c, &srv).await;
    let mut accounts = Vec::new();
    for i in 0..12 {
        let name = format!("clerk.{i:02}");
        let (s, v) = post_json(
            &c,
            u("/api/v1/users"),
            &admin,
            &serde_json::json!({"username": name, "display_name": format!("Clerk {i}"), "domain": "government", "org": "housing", "roles": ["operator"]}),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        accounts.push((name, v["initial_password"].as_str().unwrap().to_string()));
    }
    // The victim works from 127.0.0.1 and has signed in from there before.
    let (victim, initial) = accounts[0].clone();
    let login = |c: &reqwest::Client, user: &str, pass: &str| {
        c.post(u("/api/v1/auth/login"))
            .json(&serde_json::json!({"username": user, "password": pass}))
            .send()
    };
    let (s, v) = json(login(&c, &victim, &initial).await.unwrap()).await;
    assert_eq!(s, 200, "{v}");
    let sess = v["session"].as_str().unwrap().to_string();
    let real = "Chun-jiang-hua-yue-ye-4!";
    let (s, v) = post_json(
        &c,
        u("/api/v1/account/password"),
        &sess,
        &serde_json::json!({"old": initial, "new": real}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = json(login(&c, &victim, real).await.unwrap()).await;
    assert_eq!(s, 200);

    // 200 attackers × 50 guesses: 180 hammer the victim, 20 spray the twelve accounts.
    let words = [
        "123456",
        "password",
        "qwerty123",
        "woaini1314",
        "Aa123456",
        "zhang1988",
        "admin@123",
        "1qaz@WSX",
        "P@ssw0rd",
        "iloveyou",
    ];
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for a in 0..200u32 {
        let addr = IpAddr::V4(Ipv4Addr::new(
            127,
            0,
            1 + (a / 250) as u8,
            1 + (a % 250) as u8,
        ));
        let cl = client_from(&dir, addr);
        let url = u("/api/v1/auth/login");
        let names: Vec<String> = accounts.iter().map(|(n, _)| n.clone()).collect();
        tasks.push(tokio::spawn(async move {
            let mut seen: BTreeMap<u16, u32> = BTreeMap::new();
            for g in 0..50usize {
                let user = if a < 180 {
                    names[0].clone()
                } else {
                    names[g % names.len()].clone()
                };
                let pass = format!("{}{}", words[g % words.len()], g / words.len());
                let r = cl
                    .post(&url)
                    .json(&serde_json::json!({"username": user, "password": pass}))
                    .send()
                    .await
                    .unwrap();
                *seen.entry(r.status().as_u16()).or_default() += 1;
            }
            seen
        }));
    }
    let mut statuses: BTreeMap<u16, u32> = BTreeMap::new();
    for t in tasks {
        for (k, v) in t.await.unwrap() {
            *statuses.entry(k).or_default() += v;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let total: u32 = statuses.values().sum();
    assert_eq!(total, 10_000);
    assert_eq!(statuses.get(&200), None, "a guess succeeded: {statuses:?}");
    eprintln!("10,000 guesses in {secs:.1} s: {statuses:?}");
    let checked = statuses.get(&401).copied().unwrap_or(0);
    let refused = statuses.get(&429).copied().unwrap_or(0);
    assert_eq!(checked + refused, 10_000, "only 401 and 429: {statuses:?}");
    // The victim's account takes 3 failures, then one per growing delay (≥ 1 s), and each
    // sprayed account the same: the passwords actually checked stay within what the policy
    // allows in the time the attack took, whatever the number of attackers.
    let allowed = 12 * (3 + secs.ceil() as u32 + 1);
    assert!(
        checked <= allowed,
        "{checked} guesses were checked in {secs:.1} s (policy allows {allowed}): {statuses:?}"
    );
    assert!(refused >= 9_000, "lockout barely engaged: {statuses:?}");

    // The real user still gets in from the address they always use, at once.
    let (s, v) = json(login(&c, &victim, real).await.unwrap()).await;
    assert_eq!(s, 200, "the real user is locked out: {v}");

    // The detectors saw the platform's own authentication events.
    let mut kinds = BTreeMap::new();
    for _ in 0..100 {
        let (_, a) = get_json(&c, u("/api/v1/alerts?status=open"), &admin).await;
        kinds.clear();
        for x in a.as_array().cloned().unwrap_or_default() {
            *kinds
                .entry(x["kind"].as_str().unwrap_or("").to_string())
                .or_insert(0u32) += 1;
        }
        if kinds.contains_key("auth.distributed_brute_force")
            && kinds.contains_key("auth.password_spraying")
            && kinds.contains_key("auth.brute_force")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for k in [
        "auth.distributed_brute_force",
        "auth.password_spraying",
        "auth.brute_force",
    ] {
        assert!(kinds.contains_key(k), "no {k} alert: {kinds:?}");
    }
    // The victim's account is named in the distributed alert.
    let (_, a) = get_json(&c, u("/api/v1/alerts?status=open"), &admin).await;
    assert!(
        a.as_array().unwrap().iter().any(|x| x["kind"] == "auth.distributed_brute_force"
            && x.to_string().contains(&victim)),
        "{a}"
    );
}

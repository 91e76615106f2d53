//! The simulated city behind `chengfang demo` and the benchmarks: districts, assets on the five
//! layers of requirements §1, users of every identity domain, applications, and a steady stream
//! of realistic activity with scripted attacks mixed in.
//!
//! Architecture invariant: produces events and audit records only; it never talks to the
//! platform directly (the binary wires its output to the bus and the ledger). Deterministic for
//! a given seed and clock.

pub mod authenticator;

use cf_core::{Layer, Timestamp};
use cf_crypto::{Rng, SeededRng};
use cf_event::{AuditRecord, Event, Outcome, Severity};
use serde::Serialize;

/// A district of the city.
#[derive(Debug, Clone, Serialize)]
pub struct District {
    /// Code, e.g. `D01`.
    pub code: String,
    /// Name.
    pub name: String,
    /// Centre (lat, lon).
    pub centre: (f64, f64),
    /// Address block of the district's networks (10.N.0.0/16).
    pub net: u8,
}

/// An asset (device, system or application).
#[derive(Debug, Clone, Serialize)]
pub struct Asset {
    /// Id, e.g. `D01-cam-007`.
    pub id: String,
    /// Kind, e.g. `camera`.
    pub kind: &'static str,
    /// Layer.
    pub layer: Layer,
    /// District code.
    pub district: String,
    /// Address.
    pub ip: String,
}

/// A user.
#[derive(Debug, Clone, Serialize)]
pub struct User {
    /// Login name.
    pub id: String,
    /// Identity domain (IDM-2).
    pub domain: &'static str,
    /// Home district.
    pub district: String,
    /// Usual working hours (start, end), local.
    pub hours: (u8, u8),
}

/// The city.
#[derive(Debug, Clone, Serialize)]
pub struct City {
    /// Districts.
    pub districts: Vec<District>,
    /// Assets on all five layers.
    pub assets: Vec<Asset>,
    /// Users.
    pub users: Vec<User>,
    /// Applications (their asset ids).
    pub apps: Vec<String>,
}

const DISTRICTS: [(&str, f64, f64); 6] = [
    ("Dongcheng 东城", 39.93, 116.42),
    ("Xicheng 西城", 39.91, 116.36),
    ("Haidian 海淀", 39.96, 116.30),
    ("Chaoyang 朝阳", 39.92, 116.49),
    ("Fengtai 丰台", 39.86, 116.29),
    ("Tongzhou 通州", 39.90, 116.66),
];

const KINDS: [(&str, Layer, usize); 11] = [
    ("camera", Layer::TerminalPerception, 12),
    ("air_sensor", Layer::TerminalPerception, 6),
    ("traffic_light", Layer::TerminalPerception, 8),
    ("water_meter", Layer::TerminalPerception, 6),
    ("edge_gateway", Layer::EdgeComputing, 3),
    ("router", Layer::NetworkConnection, 2),
    ("5g_cell", Layer::NetworkConnection, 2),
    ("database", Layer::DigitalPlatform, 1),
    ("api_gateway", Layer::DigitalPlatform, 1),
    ("egov_app", Layer::ApplicationService, 1),
    ("emergency_app", Layer::ApplicationService, 1),
];

const DOMAINS: [&str; 7] = [
    "government",
    "enterprise",
    "partner",
    "supplier",
    "contractor",
    "public",
    "legal_person",
];

fn pick(rng: &dyn Rng, n: usize) -> usize {
    let mut b = [0u8; 8];
    let _ = rng.fill(&mut b);
    (u64::from_le_bytes(b) % n.max(1) as u64) as usize
}

fn chance(rng: &dyn Rng, per_mille: u64) -> bool {
    pick(rng, 1000) < per_mille as usize
}

impl City {
    /// Generate the city for `seed`.
    pub fn generate(seed: u64) -> City {
        let rng = SeededRng::new(seed);
        let mut districts = Vec::new();
        let mut assets = Vec::new();
        for (i, (name, lat, lon)) in DISTRICTS.iter().enumerate() {
            let code = format!("D{:02}", i + 1);
            let net = 10 + i as u8;
            for (kind, layer, count) in KINDS {
                for n in 0..count {
                    assets.push(Asset {
                        id: format!("{code}-{kind}-{n:03}"),
                        kind,
                        layer,
                        district: code.clone(),
                        ip: format!("10.{net}.{}.{}", 1 + pick(&rng, 200), 2 + pick(&rng, 250)),
                    });
                }
            }
            districts.push(District {
                code,
                name: name.to_string(),
                centre: (*lat, *lon),
                net,
            });
        }
        let mut users = Vec::new();
        for i in 0..60 {
            let domain = DOMAINS[i % DOMAINS.len()];
            let start = 7 + pick(&rng, 3) as u8;
            users.push(User {
                id: format!("{domain}-user-{i:02}"),
                domain,
                district: format!("D{:02}", 1 + i % DISTRICTS.len()),
                hours: (start, start + 9),
            });
        }
        let apps = assets
            .iter()
            .filter(|a| a.layer == Layer::ApplicationService)
            .map(|a| a.id.clone())
            .collect();
        City {
            districts,
            assets,
            users,
            apps,
        }
    }

    /// Count of assets on a layer.
    pub fn count(&self, layer: Layer) -> usize {
        self.assets.iter().filter(|a| a.layer == layer).count()
    }
}

/// One row of the city's synthetic citizen register (the data the platform must discover and
/// protect): name, resident ID with a valid GB 11643 check character, mobile, address.
#[derive(Debug, Clone, Serialize)]
pub struct Citizen {
    /// Name.
    pub name: String,
    /// 18-character resident ID.
    pub resident_id: String,
    /// Mobile number.
    pub mobile: String,
    /// Registered address.
    pub address: String,
}

const DISTRICT_CODES: [&str; 6] = ["110101", "110102", "110108", "110105", "110106", "110112"];
const SURNAMES: [&str; 12] = [
    "王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙",
];
const GIVEN: [&str; 12] = [
    "伟", "芳", "娜", "敏", "静", "磊", "洋", "艳", "勇", "军", "杰", "婷",
];
const ROADS: [&str; 6] = [
    "东长安街",
    "西单北大街",
    "中关村大街",
    "建国路",
    "丰台路",
    "新华大街",
];

impl City {
    /// `n` register rows, deterministic for the city's seed.
    pub fn citizens(&self, n: usize, seed: u64) -> Vec<Citizen> {
        let rng = SeededRng::new(seed);
        (0..n)
            .map(|_| {
                let d = pick(&rng, DISTRICT_CODES.len());
                let body = format!(
                    "{}{:04}{:02}{:02}{:03}",
                    DISTRICT_CODES[d],
                    1950 + pick(&rng, 55),
                    1 + pick(&rng, 12),
                    1 + pick(&rng, 28),
                    pick(&rng, 1000)
                );
                // GB 11643 check character (ISO 7064 MOD 11-2), so the IDs are valid.
                const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
                let sum: u32 = body
                    .bytes()
                    .zip(W)
                    .map(|(b, w)| u32::from(b - b'0') * w)
                    .sum();
                let check = char::from(b"10X98765432"[(sum % 11) as usize]);
                let district = &self.districts[d];
                Citizen {
                    name: format!(
                        "{}{}",
                        SURNAMES[pick(&rng, SURNAMES.len())],
                        GIVEN[pick(&rng, GIVEN.len())]
                    ),
                    resident_id: format!("{body}{check}"),
                    mobile: format!("1{}{:09}", 3 + pick(&rng, 7), pick(&rng, 1_000_000_000)),
                    address: format!(
                        "北京市{}区{}{}号",
                        district
                            .name
                            .split(' ')
                            .nth(1)
                            .unwrap_or("东城")
                            .trim_end_matches('区'),
                        ROADS[d],
                        1 + pick(&rng, 300)
                    ),
                }
            })
            .collect()
    }
}

/// What one simulation step produced.
#[derive(Debug, Default)]
pub struct Step {
    /// Events for the bus.
    pub events: Vec<Event>,
    /// Records for the audit ledger (logins, administrative actions).
    pub audit: Vec<AuditRecord>,
    /// A one-line story of anything notable, for the demo's console.
    pub notes: Vec<String>,
}

/// The scripted attacks the simulation plays, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Attack {
    /// Password guessing against a government account from abroad.
    BruteForce,
    /// A camera's identity used from a second place at once.
    DeviceSpoofing,
    /// Bulk download from the citizen database by a contractor at night.
    DataExfiltration,
    /// DNS tunnelling from an edge gateway.
    DnsTunnel,
}

/// A running simulation.
#[derive(Debug)]
pub struct Simulation {
    /// The city.
    pub city: City,
    rng: SeededRng,
    step: u64,
    seq: u64,
    /// Run an attack every this many steps (0: never).
    pub attack_every: u64,
}

impl Simulation {
    /// A simulation of `City::generate(seed)`.
    pub fn new(seed: u64, attack_every: u64) -> Self {
        Simulation {
            city: City::generate(seed),
            rng: SeededRng::new(seed ^ 0x5eed),
            step: 0,
            seq: 0,
            attack_every,
        }
    }

    fn event(
        &mut self,
        now: Timestamp,
        topic: &str,
        source: &str,
        severity: Severity,
        payload: serde_json::Value,
    ) -> Event {
        self.seq += 1;
        Event {
            id: format!("sim-{}-{}", now.unix_nanos(), self.seq),
            topic: topic.into(),
            time: now,
            source: source.into(),
            severity,
            payload,
        }
    }

    /// Advance one step (the demo runs about five a second), producing `activity` ordinary events.
    pub fn step(&mut self, now: Timestamp, activity: usize) -> Step {
        self.step += 1;
        let mut out = Step::default();
        for _ in 0..activity {
            let a = self.city.assets[pick(&self.rng, self.city.assets.len())].clone();
            let ev = match a.layer {
                Layer::TerminalPerception => {
                    let value = match a.kind {
                        "air_sensor" => serde_json::json!({ "pm25": 20 + pick(&self.rng, 60), "no2": 10 + pick(&self.rng, 40) }),
                        "water_meter" => serde_json::json!({ "flow_l_min": pick(&self.rng, 120) }),
                        "traffic_light" => serde_json::json!({ "phase": (["red", "green", "amber"][pick(&self.rng, 3)]) }),
                        _ => serde_json::json!({ "fps": 25, "motion": chance(&self.rng, 300) }),
                    };
                    self.event(now, &format!("city.device.{}.telemetry", a.district), &a.id, Severity::Info, serde_json::json!({ "device": a.id, "kind": a.kind, "ip": a.ip, "value": value }))
                }
                Layer::EdgeComputing | Layer::NetworkConnection => {
                    let dst = &self.city.assets[pick(&self.rng, self.city.assets.len())];
                    self.event(now, &format!("city.net.{}.flow", a.district), &a.id, Severity::Info, serde_json::json!({ "src": a.ip, "dst": dst.ip, "dst_port": ([443, 1883, 8883, 53][pick(&self.rng, 4)]), "bytes": 200 + pick(&self.rng, 50_000), "packets": 1 + pick(&self.rng, 60) }))
                }
                Layer::DigitalPlatform => self.event(now, &format!("city.platform.{}.query", a.district), &a.id, Severity::Info, serde_json::json!({ "system": a.id, "rows": pick(&self.rng, 200), "table": (["household", "vehicle", "social_security"][pick(&self.rng, 3)]) })),
                Layer::ApplicationService => {
                    let u = self.city.users[pick(&self.rng, self.city.users.len())].clone();
                    let ip = format!("10.{}.{}.{}", 10 + pick(&self.rng, 6), pick(&self.rng, 250), 2 + pick(&self.rng, 250));
                    let ok = !chance(&self.rng, 30);
                    out.audit.push(AuditRecord::new("auth.login", now, &ip, a.id.clone(), format!("user:{}", u.id), a.id.clone(), "login", if ok { Outcome::Success } else { Outcome::Failure }, format!("sim-{}", self.seq)));
                    self.event(now, "city.auth.login", &a.id, Severity::Info, serde_json::json!({ "user": u.id, "domain": u.domain, "app": a.id, "src_ip": ip, "success": ok }))
                }
            };
            out.events.push(ev);
        }
        if self.attack_every > 0 && self.step.is_multiple_of(self.attack_every) {
            let attack = [
                Attack::BruteForce,
                Attack::DeviceSpoofing,
                Attack::DataExfiltration,
                Attack::DnsTunnel,
            ][((self.step / self.attack_every - 1) % 4) as usize];
            self.attack(now, attack, &mut out);
        }
        out
    }

    fn attack(&mut self, now: Timestamp, attack: Attack, out: &mut Step) {
        match attack {
            Attack::BruteForce => {
                let victim = self
                    .city
                    .users
                    .iter()
                    .find(|u| u.domain == "government")
                    .cloned();
                let app = self.city.apps[0].clone();
                if let Some(v) = victim {
                    for i in 0..20 {
                        let ev = self.event(now, "city.auth.login", &app, Severity::Medium, serde_json::json!({ "user": v.id, "domain": v.domain, "app": app, "src_ip": "203.0.113.77", "success": false, "attempt": i + 1 }));
                        out.events.push(ev);
                        out.audit.push(AuditRecord::new(
                            "auth.login",
                            now,
                            "203.0.113.77",
                            app.clone(),
                            format!("user:{}", v.id),
                            app.clone(),
                            "login",
                            Outcome::Failure,
                            format!("sim-bf-{i}"),
                        ));
                    }
                    out.notes.push(format!(
                        "ATTACK brute force: 20 failed logins on {} from 203.0.113.77",
                        v.id
                    ));
                }
            }
            Attack::DeviceSpoofing => {
                let cam = self
                    .city
                    .assets
                    .iter()
                    .find(|a| a.kind == "camera")
                    .cloned();
                if let Some(c) = cam {
                    let ev = self.event(now, &format!("city.device.{}.telemetry", c.district), &c.id, Severity::High, serde_json::json!({ "device": c.id, "kind": c.kind, "ip": "198.51.100.23", "value": { "fps": 25 }, "note": "same identity connected from a second address" }));
                    out.events.push(ev);
                    out.notes.push(format!(
                        "ATTACK device spoofing: {} also reporting from 198.51.100.23",
                        c.id
                    ));
                }
            }
            Attack::DataExfiltration => {
                let db = self
                    .city
                    .assets
                    .iter()
                    .find(|a| a.kind == "database")
                    .cloned();
                let who = self
                    .city
                    .users
                    .iter()
                    .find(|u| u.domain == "contractor")
                    .cloned();
                if let (Some(db), Some(who)) = (db, who) {
                    let ev = self.event(now, &format!("city.platform.{}.query", db.district), &db.id, Severity::High, serde_json::json!({ "system": db.id, "user": who.id, "rows": 250_000, "table": "household", "hour": 3 }));
                    out.events.push(ev);
                    out.audit.push(
                        AuditRecord::new(
                            "data.export",
                            now,
                            "10.12.9.14",
                            db.id.clone(),
                            format!("user:{}", who.id),
                            "table:household",
                            "read",
                            Outcome::Success,
                            "sim-exfil",
                        )
                        .privileged(),
                    );
                    out.notes.push(format!(
                        "ATTACK data theft: {} read 250,000 household rows from {} at night",
                        who.id, db.id
                    ));
                }
            }
            Attack::DnsTunnel => {
                let gw = self
                    .city
                    .assets
                    .iter()
                    .find(|a| a.kind == "edge_gateway")
                    .cloned();
                if let Some(gw) = gw {
                    for i in 0..10 {
                        let ev = self.event(now, &format!("city.net.{}.dns", gw.district), &gw.id, Severity::Medium, serde_json::json!({ "src": gw.ip, "query": format!("{:x}{:x}.exfil.example", 0xdead_beef_u64.wrapping_mul(i + 1), self.seq), "qtype": "TXT" }));
                        out.events.push(ev);
                    }
                    out.notes.push(format!(
                        "ATTACK DNS tunnel: {} sends encoded TXT queries to exfil.example",
                        gw.id
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn city_has_every_layer_and_domain() {
        let c = City::generate(1);
        for l in Layer::ALL {
            assert!(c.count(l) > 0, "{l:?}");
        }
        for d in DOMAINS {
            assert!(c.users.iter().any(|u| u.domain == d), "{d}");
        }
        assert_eq!(c.districts.len(), 6);
    }

    #[test]
    fn citizen_register_holds_valid_identifiers() {
        let city = City::generate(3);
        let rows = city.citizens(50, 9);
        assert_eq!(rows.len(), 50);
        for c in &rows {
            let kinds: Vec<&str> = cf_classify::scan(&c.resident_id, None)
                .iter()
                .map(|s| s.kind.as_str())
                .collect();
            assert_eq!(kinds, vec!["CN_RESIDENT_ID"], "{}", c.resident_id);
            assert_eq!(cf_classify::scan(&c.mobile, None).len(), 1, "{}", c.mobile);
            assert!(c.address.starts_with("北京市"), "{}", c.address);
        }
    }

    #[test]
    fn simulation_is_deterministic_and_attacks() {
        let t = Timestamp::from_unix_secs(1_790_000_000);
        let mut a = Simulation::new(7, 3);
        let mut b = Simulation::new(7, 3);
        let mut notes = Vec::new();
        for _ in 0..12 {
            let (x, y) = (a.step(t, 20), b.step(t, 20));
            assert_eq!(x.events, y.events);
            notes.extend(x.notes);
        }
        assert_eq!(notes.len(), 4, "{notes:?}");
        assert!(notes.iter().any(|n| n.contains("brute force")));
        assert!(notes.iter().any(|n| n.contains("DNS tunnel")));
    }
}

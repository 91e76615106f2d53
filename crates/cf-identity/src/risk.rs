//! Login risk scoring (AUZ-2, AUZ-5, AUZ-7): each sign-in is compared with the account's own
//! history — new device, new network, new country, an hour the user never works, travel faster
//! than an airliner, a burst of sign-ins from several networks, recent failed guesses — and the
//! score maps to allow, step-up (a second factor) or deny, with every reason named.
//!
//! No I/O: the caller supplies the observation (with its geolocation, if known), the profile and
//! the account's recent failures, and stores the updated profile.

use serde::{Deserialize, Serialize};

/// One sign-in as the engine sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// Unix seconds.
    pub time_s: i64,
    /// The source network (`/24` for IPv4, `/48` for IPv6; see [`network_of`]).
    pub network: String,
    /// A short fingerprint of the client (see [`device_of`]).
    pub device: String,
    /// ISO 3166 country, when the address could be located.
    #[serde(default)]
    pub country: Option<String>,
    /// Latitude and longitude, when the geolocation database has them.
    #[serde(default)]
    pub coords: Option<(f64, f64)>,
}

/// What the engine remembers of an account: its recent successful sign-ins and the hours of day
/// it signs in at.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Successful sign-ins, oldest first, at most [`PROFILE_LOGINS`].
    pub logins: Vec<Observation>,
    /// Successful sign-ins per local hour of day, over the account's whole life.
    pub hours: Vec<u32>,
}

/// Sign-ins a profile keeps.
pub const PROFILE_LOGINS: usize = 50;

/// Thresholds and weights.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RiskPolicy {
    /// A score at or above this needs a second factor.
    pub step_up_at: u32,
    /// A score at or above this is refused.
    pub deny_at: u32,
    /// Sign-ins before devices, networks and countries count as new (a profile must learn).
    pub learning_logins: usize,
    /// Faster than this between two located sign-ins is impossible travel (an airliner ≈ 900).
    pub max_speed_kmh: f64,
    /// Local time offset for the unusual-hour factor (China: +8).
    pub utc_offset_h: i64,
}

impl Default for RiskPolicy {
    fn default() -> Self {
        RiskPolicy {
            step_up_at: 50,
            deny_at: 80,
            learning_logins: 3,
            max_speed_kmh: 900.0,
            utc_offset_h: 8,
        }
    }
}

/// One reason a sign-in scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Factor {
    /// `new_device`, `new_network`, `new_country`, `unusual_hour`, `impossible_travel`,
    /// `velocity`, `failed_attempts`.
    pub name: String,
    /// Points added.
    pub points: u32,
    /// What was seen.
    pub detail: String,
}

/// What the score means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Let it through.
    Allow,
    /// Only with a second factor.
    StepUp,
    /// Refuse.
    Deny,
}

/// A scored sign-in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assessment {
    /// 0–100.
    pub score: u32,
    /// What the policy makes of it.
    pub decision: Decision,
    /// Why.
    pub factors: Vec<Factor>,
}

/// The network an address belongs to: its /24 (IPv4) or /48 (IPv6); anything else as is.
pub fn network_of(ip: &str) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v)) => {
            let o = v.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        Ok(std::net::IpAddr::V6(v)) => {
            let s = v.segments();
            format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
        Err(_) => ip.to_string(),
    }
}

/// A short, stable fingerprint of a client's self-description (the user agent), so profiles
/// do not keep the full string.
pub fn device_of(user_agent: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(user_agent.trim().as_bytes())[..6])
}

/// Great-circle distance in kilometres.
pub fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, lo1, la2, lo2) = (
        a.0.to_radians(),
        a.1.to_radians(),
        b.0.to_radians(),
        b.1.to_radians(),
    );
    let h = ((la2 - la1) / 2.0).sin().powi(2)
        + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().asin()
}

fn hour_of(time_s: i64, offset_h: i64) -> usize {
    usize::try_from((time_s / 3600 + offset_h).rem_euclid(24)).unwrap_or(0)
}

impl Profile {
    /// Remember a successful sign-in.
    pub fn record(&mut self, o: Observation, p: &RiskPolicy) {
        if self.hours.len() != 24 {
            self.hours = vec![0; 24];
        }
        self.hours[hour_of(o.time_s, p.utc_offset_h)] += 1;
        self.logins.push(o);
        if self.logins.len() > PROFILE_LOGINS {
            let extra = self.logins.len() - PROFILE_LOGINS;
            self.logins.drain(..extra);
        }
    }
}

/// Score a sign-in against the account's profile; `recent_failures` are the account's failed
/// attempts in the throttle's window.
pub fn assess(
    profile: &Profile,
    o: &Observation,
    recent_failures: u32,
    p: &RiskPolicy,
) -> Assessment {
    let mut f = Vec::new();
    let mut add = |name: &str, points: u32, detail: String| {
        f.push(Factor {
            name: name.into(),
            points,
            detail,
        });
    };
    let seen = &profile.logins;
    if seen.len() >= p.learning_logins {
        if !seen.iter().any(|s| s.device == o.device) {
            add("new_device", 25, format!("client {} never seen", o.device));
        }
        if !seen.iter().any(|s| s.network == o.network) {
            add("new_network", 15, format!("{} never seen", o.network));
        }
        if let Some(c) = &o.country
            && seen.iter().any(|s| s.country.is_some())
            && !seen.iter().any(|s| s.country.as_ref() == Some(c))
        {
            add("new_country", 25, format!("first sign-in from {c}"));
        }
    }
    let total: u32 = profile.hours.iter().sum();
    if total >= 10 && profile.hours.len() == 24 {
        let h = hour_of(o.time_s, p.utc_offset_h);
        // Under 5 % of the account's sign-ins fall in this hour (and its neighbours).
        let near = profile.hours[(h + 23) % 24] + profile.hours[h] + profile.hours[(h + 1) % 24];
        if near * 20 < total {
            add(
                "unusual_hour",
                15,
                format!("{h:02}:00 local; {near} of {total} sign-ins near that hour"),
            );
        }
    }
    if let (Some(here), Some((last, there))) = (
        o.coords,
        seen.iter()
            .rev()
            .find_map(|s| s.coords.map(|c| (s.time_s, c))),
    ) {
        let km = distance_km(here, there);
        let hours = ((o.time_s - last).max(60) as f64) / 3600.0;
        let speed = km / hours;
        if km > 500.0 && speed > p.max_speed_kmh {
            add(
                "impossible_travel",
                60,
                format!("{km:.0} km in {:.1} h ({speed:.0} km/h)", hours),
            );
        }
    }
    let window: Vec<&Observation> = seen.iter().filter(|s| o.time_s - s.time_s <= 600).collect();
    let mut nets: Vec<&str> = window.iter().map(|s| s.network.as_str()).collect();
    nets.push(&o.network);
    nets.sort_unstable();
    nets.dedup();
    if window.len() + 1 >= 5 && nets.len() >= 3 {
        add(
            "velocity",
            20,
            format!(
                "{} sign-ins from {} networks in 10 minutes",
                window.len() + 1,
                nets.len()
            ),
        );
    }
    if recent_failures >= 10 {
        add(
            "failed_attempts",
            25,
            format!("{recent_failures} failed attempts in the last hour"),
        );
    } else if recent_failures >= 3 {
        add(
            "failed_attempts",
            10,
            format!("{recent_failures} failed attempts in the last hour"),
        );
    }
    let score = f.iter().map(|x| x.points).sum::<u32>().min(100);
    let decision = if score >= p.deny_at {
        Decision::Deny
    } else if score >= p.step_up_at {
        Decision::StepUp
    } else {
        Decision::Allow
    };
    Assessment {
        score,
        decision,
        factors: f,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEIJING: (f64, f64) = (39.9042, 116.4074);
    const SHANGHAI: (f64, f64) = (31.2304, 121.4737);
    const NEW_YORK: (f64, f64) = (40.7128, -74.0060);

    fn obs(t: i64, ip: &str, ua: &str, country: &str, coords: (f64, f64)) -> Observation {
        Observation {
            time_s: t,
            network: network_of(ip),
            device: device_of(ua),
            country: Some(country.into()),
            coords: Some(coords),
        }
    }

    /// A clerk who signs in from the office in Beijing around 09:00 local on weekdays.
    fn clerk() -> (Profile, RiskPolicy, i64) {
        let p = RiskPolicy::default();
        let mut prof = Profile::default();
        // 2026-11-02 01:00 UTC = 09:00 in Beijing.
        let day0 = 1_793_581_200;
        for d in 0..20 {
            prof.record(
                obs(
                    day0 + d * 86_400,
                    "10.20.30.40",
                    "Firefox/140",
                    "CN",
                    BEIJING,
                ),
                &p,
            );
        }
        (prof, p, day0 + 20 * 86_400)
    }

    #[test]
    fn the_usual_sign_in_is_allowed_with_no_factor() {
        let (prof, p, t) = clerk();
        let a = assess(
            &prof,
            &obs(t, "10.20.30.77", "Firefox/140", "CN", BEIJING),
            0,
            &p,
        );
        assert_eq!((a.score, a.decision), (0, Decision::Allow), "{a:?}");
    }

    #[test]
    fn a_new_laptop_on_a_new_network_is_still_allowed() {
        let (prof, p, t) = clerk();
        let a = assess(
            &prof,
            &obs(t, "172.16.5.9", "Edge/141", "CN", SHANGHAI),
            0,
            &p,
        );
        let names: Vec<&str> = a.factors.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["new_device", "new_network"]);
        assert_eq!(a.decision, Decision::Allow, "40 < 50");
    }

    #[test]
    fn new_york_an_hour_after_beijing_is_impossible_travel_and_denied() {
        let (mut prof, p, t) = clerk();
        prof.record(obs(t, "10.20.30.40", "Firefox/140", "CN", BEIJING), &p);
        let a = assess(
            &prof,
            &obs(t + 3600, "203.0.113.8", "curl/8", "US", NEW_YORK),
            0,
            &p,
        );
        let travel = a
            .factors
            .iter()
            .find(|f| f.name == "impossible_travel")
            .expect("impossible travel");
        assert!(travel.detail.contains("km/h"), "{travel:?}");
        assert_eq!(a.decision, Decision::Deny, "{a:?}");
        // The same trip over two days is travel, not an attack.
        let a = assess(
            &prof,
            &obs(t + 2 * 86_400, "10.20.30.40", "Firefox/140", "US", NEW_YORK),
            0,
            &p,
        );
        assert!(
            a.factors.iter().all(|f| f.name != "impossible_travel"),
            "{a:?}"
        );
    }

    #[test]
    fn three_in_the_morning_and_guessing_need_a_second_factor() {
        let (prof, p, t) = clerk();
        // 19:00 UTC = 03:00 in Beijing.
        let night = t + 18 * 3600;
        let a = assess(
            &prof,
            &obs(night, "10.20.30.40", "Firefox/140", "CN", BEIJING),
            12,
            &p,
        );
        let names: Vec<&str> = a.factors.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["unusual_hour", "failed_attempts"]);
        assert_eq!((a.score, a.decision), (40, Decision::Allow));
        let a = assess(
            &prof,
            &obs(night, "10.99.0.1", "Firefox/140", "CN", BEIJING),
            12,
            &p,
        );
        assert_eq!((a.score, a.decision), (55, Decision::StepUp), "{a:?}");
    }

    #[test]
    fn bursts_from_many_networks_count_as_velocity() {
        let (mut prof, p, t) = clerk();
        for i in 0..4 {
            prof.record(
                obs(
                    t + i * 60,
                    &format!("10.{i}.0.1"),
                    "Firefox/140",
                    "CN",
                    BEIJING,
                ),
                &p,
            );
        }
        let a = assess(
            &prof,
            &obs(t + 300, "10.9.0.1", "Firefox/140", "CN", BEIJING),
            0,
            &p,
        );
        assert!(a.factors.iter().any(|f| f.name == "velocity"), "{a:?}");
    }

    #[test]
    fn a_new_account_learns_before_anything_counts_as_new() {
        let p = RiskPolicy::default();
        let a = assess(
            &Profile::default(),
            &obs(0, "198.51.100.1", "Safari", "CN", BEIJING),
            0,
            &p,
        );
        assert_eq!(a.score, 0);
        assert_eq!(network_of("2001:db8:1:2::1"), "2001:db8:1::/48");
        assert!((distance_km(BEIJING, SHANGHAI) - 1067.0).abs() < 20.0);
    }

    #[test]
    fn profiles_stay_bounded() {
        let (mut prof, p, t) = clerk();
        for i in 0..200 {
            prof.record(obs(t + i, "10.1.1.1", "x", "CN", BEIJING), &p);
        }
        assert_eq!(prof.logins.len(), PROFILE_LOGINS);
        assert_eq!(prof.hours.iter().sum::<u32>(), 220);
    }
}

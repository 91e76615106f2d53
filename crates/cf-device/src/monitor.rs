//! Spoofing and misuse detection (DEV-1, §3.2.1): one identity in two places, traffic on
//! another device's topics, rates beyond a kind's profile, physically impossible values, and a
//! district whose devices fall silent together (jamming or a cut link).

use std::collections::{HashMap, VecDeque};

use cf_core::Timestamp;
use serde::Serialize;

use crate::registry::Device;

/// One finding, ready for the bus.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// e.g. `device.two_places`.
    pub kind: &'static str,
    /// `low`, `medium`, `high`.
    pub severity: &'static str,
    /// Device concerned, if one.
    pub device: Option<String>,
    /// District concerned.
    pub district: Option<String>,
    /// Human-readable reason.
    pub detail: String,
    /// When observed.
    pub at: Timestamp,
}

/// Detector thresholds.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// Window in which a switch back to an earlier address means two holders of one identity.
    pub two_places_window_s: i64,
    /// Messages per minute above which a device is flagged, per kind (default for others).
    pub max_per_minute: HashMap<String, u32>,
    /// Default for kinds not listed.
    pub default_max_per_minute: u32,
    /// A device is silent after this long without a message.
    pub silent_after_s: i64,
    /// A district alarm needs at least this many recently active devices…
    pub district_min_devices: usize,
    /// …of which at least this fraction went silent.
    pub district_silent_fraction: f64,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            two_places_window_s: 300,
            max_per_minute: [("camera", 120), ("edge-gateway", 600)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            default_max_per_minute: 60,
            silent_after_s: 180,
            district_min_devices: 5,
            district_silent_fraction: 0.5,
        }
    }
}

/// Physically possible range of a metric on a device kind (or on every kind, `*`).
pub fn physical_range(kind: &str, metric: &str) -> Option<(f64, f64)> {
    let r = match (kind, metric) {
        (_, "battery_pct" | "humidity_pct" | "cpu_pct") => (0.0, 100.0),
        ("environment-sensor", "temperature_c") => (-50.0, 70.0),
        ("environment-sensor", "pm25" | "pm10") => (0.0, 1000.0),
        ("environment-sensor", "noise_db") => (20.0, 140.0),
        ("smart-meter", "power_kw") => (0.0, 1000.0),
        ("smart-meter", "voltage_v") => (0.0, 500.0),
        ("water-meter", "flow_m3h") => (0.0, 500.0),
        ("water-meter", "pressure_bar") => (0.0, 25.0),
        ("parking-sensor", "occupied") => (0.0, 1.0),
        ("traffic-light", "phase") => (0.0, 8.0),
        ("street-light", "lux") => (0.0, 200_000.0),
        ("street-light" | "smart-meter", "power_w") => (0.0, 1_000_000.0),
        ("camera", "fps") => (0.0, 120.0),
        ("camera", "bitrate_kbps") => (0.0, 100_000.0),
        (_, "temp_c") => (-40.0, 110.0),
        _ => return None,
    };
    Some(r)
}

#[derive(Debug, Default)]
struct DevState {
    kind: String,
    district: String,
    topic_prefix: String,
    addrs: VecDeque<(String, i64)>,
    two_places_alerted_at: Option<i64>,
    recent: VecDeque<i64>,
    rate_alerted_at: Option<i64>,
    last_seen: Option<i64>,
}

/// The detectors' state over the whole fleet.
#[derive(Debug, Default)]
pub struct Monitor {
    cfg: MonitorConfig,
    devices: HashMap<String, DevState>,
    silent_districts: HashMap<String, bool>,
}

fn secs(t: Timestamp) -> i64 {
    t.unix_nanos() / 1_000_000_000
}

impl Monitor {
    /// A monitor with `cfg`.
    pub fn new(cfg: MonitorConfig) -> Self {
        Monitor {
            cfg,
            ..Default::default()
        }
    }

    /// Track `d` (registration, import, or a restart of the platform).
    pub fn track(&mut self, d: &Device) {
        let st = self.devices.entry(d.id().to_string()).or_default();
        st.kind = d.spec.kind.clone();
        st.district = d.spec.district.clone();
        st.topic_prefix = d.topic_prefix();
    }

    /// Stop tracking (retired or deleted).
    pub fn untrack(&mut self, id: &str) {
        self.devices.remove(id);
    }

    /// A connection or request by `device` from `addr` (IP without port: NAT ports change).
    pub fn seen_from(&mut self, device: &str, addr: &str, at: Timestamp) -> Vec<Alert> {
        let now = secs(at);
        let w = self.cfg.two_places_window_s;
        let Some(st) = self.devices.get_mut(device) else {
            return Vec::new();
        };
        while st.addrs.front().is_some_and(|(_, t)| now - t > w) {
            st.addrs.pop_front();
        }
        if st.addrs.back().map(|(a, _)| a.as_str()) != Some(addr) {
            st.addrs.push_back((addr.to_string(), now));
        } else if let Some(last) = st.addrs.back_mut() {
            last.1 = now;
        }
        // A → B → A within the window: two holders of one identity keep taking over from each
        // other. A single move A → B (a device changing networks) is not an alert.
        let n = st.addrs.len();
        let flapping = n >= 3 && st.addrs[n - 1].0 == st.addrs[n - 3].0;
        if flapping && st.two_places_alerted_at.is_none_or(|t| now - t > w) {
            st.two_places_alerted_at = Some(now);
            let mut places: Vec<&str> = st.addrs.iter().map(|(a, _)| a.as_str()).collect();
            places.sort_unstable();
            places.dedup();
            return vec![Alert {
                kind: "device.two_places",
                severity: "high",
                device: Some(device.to_string()),
                district: Some(st.district.clone()),
                detail: format!(
                    "identity used from {} alternately within {w} s (cloned credentials)",
                    places.join(" and ")
                ),
                at,
            }];
        }
        Vec::new()
    }

    /// A verified message from `device` on `topic` with its metrics.
    pub fn message(
        &mut self,
        device: &str,
        topic: &str,
        metrics: &[(String, f64)],
        at: Timestamp,
    ) -> Vec<Alert> {
        let now = secs(at);
        let cfg = &self.cfg;
        let Some(st) = self.devices.get_mut(device) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let alert = |kind, severity, detail: String| Alert {
            kind,
            severity,
            device: Some(device.to_string()),
            district: Some(st.district.clone()),
            detail,
            at,
        };
        if !topic.is_empty() && !topic.starts_with(&st.topic_prefix) {
            out.push(alert(
                "device.unexpected_topic",
                "high",
                format!(
                    "published on `{topic}`, outside its own `{}#`",
                    st.topic_prefix
                ),
            ));
        }
        st.last_seen = Some(now);
        st.recent.push_back(now);
        while st.recent.front().is_some_and(|t| now - t >= 60) {
            st.recent.pop_front();
        }
        let max = cfg
            .max_per_minute
            .get(&st.kind)
            .copied()
            .unwrap_or(cfg.default_max_per_minute) as usize;
        if st.recent.len() > max && st.rate_alerted_at.is_none_or(|t| now - t >= 60) {
            st.rate_alerted_at = Some(now);
            out.push(alert(
                "device.rate",
                "medium",
                format!(
                    "{} messages in the last minute, profile allows {max}",
                    st.recent.len()
                ),
            ));
        }
        for (m, v) in metrics {
            if let Some((lo, hi)) = physical_range(&st.kind, m)
                && (!v.is_finite() || *v < lo || *v > hi)
            {
                out.push(alert(
                    "device.out_of_range",
                    "medium",
                    format!(
                        "{m} = {v} outside the physical range {lo}..{hi} of a {}",
                        st.kind
                    ),
                ));
            }
        }
        out
    }

    /// Periodic evaluation: districts whose devices went silent together.
    pub fn tick(&mut self, at: Timestamp) -> Vec<Alert> {
        let now = secs(at);
        // (active recently, silent now) per district; "active" means seen within 10× the silence
        // threshold, so long-dead devices do not count.
        let mut per: HashMap<&str, (usize, usize)> = HashMap::new();
        for st in self.devices.values() {
            let Some(seen) = st.last_seen else { continue };
            let age = now - seen;
            if age > self.cfg.silent_after_s * 10 {
                continue;
            }
            let e = per.entry(st.district.as_str()).or_default();
            e.0 += 1;
            if age > self.cfg.silent_after_s {
                e.1 += 1;
            }
        }
        let mut out = Vec::new();
        let mut states = Vec::new();
        for (d, (active, silent)) in per {
            let is_silent = active >= self.cfg.district_min_devices
                && silent as f64 >= active as f64 * self.cfg.district_silent_fraction;
            states.push((d.to_string(), is_silent));
            if is_silent && !self.silent_districts.get(d).copied().unwrap_or(false) {
                out.push(Alert {
                    kind: "district.silent",
                    severity: "high",
                    device: None,
                    district: Some(d.to_string()),
                    detail: format!(
                        "{silent} of {active} active devices silent for over {} s (jamming or a cut link)",
                        self.cfg.silent_after_s
                    ),
                    at,
                });
            }
        }
        for (d, s) in states {
            self.silent_districts.insert(d, s);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::NewDevice;
    use cf_core::Layer;

    fn dev(id: &str, kind: &str, district: &str) -> Device {
        Device::new(
            NewDevice {
                id: id.into(),
                kind: kind.into(),
                layer: Layer::TerminalPerception,
                district: district.into(),
                lat: 39.9,
                lon: 116.4,
                owner_org: "o".into(),
                vendor: "v".into(),
                model: "m".into(),
                firmware: String::new(),
            },
            t(0),
        )
        .unwrap()
    }
    fn t(s: i64) -> Timestamp {
        Timestamp::from_unix_secs(1_790_000_000 + s)
    }

    #[test]
    fn two_holders_of_one_identity_are_caught_but_a_network_change_is_not() {
        let mut m = Monitor::new(MonitorConfig::default());
        m.track(&dev("cam-1", "camera", "haidian"));
        assert!(m.seen_from("cam-1", "10.0.0.5", t(0)).is_empty());
        assert!(m.seen_from("cam-1", "10.0.0.5", t(10)).is_empty());
        assert!(
            m.seen_from("cam-1", "10.9.9.9", t(20)).is_empty(),
            "one move is fine"
        );
        let a = m.seen_from("cam-1", "10.0.0.5", t(25));
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].kind, "device.two_places");
        assert!(a[0].detail.contains("10.0.0.5 and 10.9.9.9"));
        // Not repeated for every flap within the window.
        assert!(m.seen_from("cam-1", "10.9.9.9", t(30)).is_empty());
        // A device that moved once an hour ago and back is not flagged.
        m.track(&dev("cam-2", "camera", "haidian"));
        m.seen_from("cam-2", "10.0.0.7", t(0));
        m.seen_from("cam-2", "10.0.0.8", t(1000));
        assert!(m.seen_from("cam-2", "10.0.0.7", t(2000)).is_empty());
    }

    #[test]
    fn topics_rates_and_physical_ranges() {
        let mut m = Monitor::new(MonitorConfig::default());
        let d = dev("env-1", "environment-sensor", "chaoyang");
        m.track(&d);
        let ok = m.message(
            "env-1",
            "city/chaoyang/env-1/telemetry",
            &[("temperature_c".into(), 21.0)],
            t(0),
        );
        assert!(ok.is_empty());
        let a = m.message("env-1", "city/chaoyang/env-2/telemetry", &[], t(1));
        assert_eq!(a[0].kind, "device.unexpected_topic");
        let a = m.message(
            "env-1",
            "city/chaoyang/env-1/telemetry",
            &[
                ("temperature_c".into(), 300.0),
                ("humidity_pct".into(), f64::NAN),
            ],
            t(2),
        );
        assert_eq!(
            a.iter().filter(|x| x.kind == "device.out_of_range").count(),
            2
        );
        let mut rate = 0;
        for i in 0..70 {
            rate += m
                .message("env-1", "city/chaoyang/env-1/telemetry", &[], t(3 + i / 10))
                .iter()
                .filter(|x| x.kind == "device.rate")
                .count();
        }
        assert_eq!(rate, 1, "one alert per minute, not per message");
    }

    #[test]
    fn a_district_falling_silent_together_raises_one_alert() {
        let mut m = Monitor::new(MonitorConfig::default());
        for i in 0..10 {
            let d = dev(&format!("s-{i}"), "parking-sensor", "xicheng");
            m.track(&d);
            m.message(d.id(), "", &[], t(0));
        }
        // Another district with a single straggler never alarms.
        m.track(&dev("lone-1", "parking-sensor", "tongzhou"));
        m.message("lone-1", "", &[], t(0));
        // Four keep talking, six go quiet.
        for s in (60..=400).step_by(60) {
            for i in 0..4 {
                m.message(&format!("s-{i}"), "", &[], t(s));
            }
        }
        assert!(m.tick(t(100)).is_empty());
        let a = m.tick(t(400));
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!(a[0].kind, "district.silent");
        assert_eq!(a[0].district.as_deref(), Some("xicheng"));
        assert!(m.tick(t(420)).is_empty(), "raised once until it recovers");
    }
}

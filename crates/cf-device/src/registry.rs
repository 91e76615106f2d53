//! The device registry's model (DEV-1): what the city knows about each camera, sensor, light,
//! meter and gateway, validated field by field, and CSV import that reports every bad row.

use cf_core::{Layer, Timestamp};
use serde::{Deserialize, Serialize};

use crate::DeviceError;

/// Lifecycle of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    /// Registered, never enrolled.
    Registered,
    /// Holds a valid certificate.
    Active,
    /// Isolated: certificate revoked, ingest blocked (AVL-2).
    Quarantined,
    /// Taken out of service.
    Retired,
}

impl DeviceStatus {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Registered => "registered",
            DeviceStatus::Active => "active",
            DeviceStatus::Quarantined => "quarantined",
            DeviceStatus::Retired => "retired",
        }
    }
}

/// Device kinds the city runs; physical-range checks and expected rates key on them.
pub const KINDS: [&str; 9] = [
    "camera",
    "environment-sensor",
    "traffic-light",
    "smart-meter",
    "water-meter",
    "street-light",
    "parking-sensor",
    "edge-gateway",
    "network-switch",
];

/// What an administrator supplies to register a device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDevice {
    /// Unique, immutable id: `[a-z0-9][a-z0-9-]{1,62}` (it becomes the certificate CN and the
    /// MQTT username, so it is kept to characters every broker and topic accepts).
    pub id: String,
    /// One of [`KINDS`].
    pub kind: String,
    /// Terminal, edge or network layer.
    pub layer: Layer,
    /// District name.
    pub district: String,
    /// WGS-84 latitude.
    pub lat: f64,
    /// WGS-84 longitude.
    pub lon: f64,
    /// Owning organisation.
    pub owner_org: String,
    /// Vendor.
    pub vendor: String,
    /// Model.
    pub model: String,
    /// Firmware version as registered.
    #[serde(default)]
    pub firmware: String,
}

/// A registered device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    /// Registration data.
    #[serde(flatten)]
    pub spec: NewDevice,
    /// Status.
    pub status: DeviceStatus,
    /// Serial of the current certificate, if enrolled.
    pub cert_serial: Option<String>,
    /// Its expiry.
    pub cert_not_after: Option<Timestamp>,
    /// The enrolled key (its telemetry is verified with it).
    pub key: Option<EnrolledKey>,
    /// Firmware hash last reported (hex SHA-256).
    pub reported_firmware: Option<String>,
    /// Registered at.
    pub created: Timestamp,
    /// Why quarantined, when it is.
    pub quarantine_reason: Option<String>,
}

impl Device {
    /// A freshly registered device.
    pub fn new(spec: NewDevice, now: Timestamp) -> Result<Device, DeviceError> {
        spec.validate()?;
        Ok(Device {
            spec,
            status: DeviceStatus::Registered,
            cert_serial: None,
            cert_not_after: None,
            key: None,
            reported_firmware: None,
            created: now,
            quarantine_reason: None,
        })
    }
    /// Id.
    pub fn id(&self) -> &str {
        &self.spec.id
    }
    /// MQTT topic prefix the device may publish under: `city/<district>/<id>/`.
    pub fn topic_prefix(&self) -> String {
        format!("city/{}/{}/", self.spec.district, self.spec.id)
    }
}

/// A device's enrolled public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolledKey {
    /// Algorithm.
    pub alg: cf_crypto::devkey::KeyAlg,
    /// Raw public key, hex.
    pub public_key: String,
}

impl EnrolledKey {
    /// Parse for verification.
    pub fn parse(&self) -> Result<cf_crypto::devkey::DevicePublicKey, DeviceError> {
        let raw = hex::decode(&self.public_key)
            .map_err(|_| DeviceError::Crypto("enrolled key: not hex".into()))?;
        cf_crypto::devkey::DevicePublicKey::parse(self.alg, &raw)
            .map_err(|e| DeviceError::Crypto(e.to_string()))
    }
}

/// Check a device id.
pub fn check_id(id: &str) -> Result<(), DeviceError> {
    let ok = (2..=63).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && id.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(DeviceError::Invalid(format!(
            "id `{}`: use 2-63 characters a-z, 0-9 and '-', starting with a letter or digit",
            id.chars().take(70).collect::<String>()
        )))
    }
}

fn check_text(field: &str, v: &str, required: bool) -> Result<(), DeviceError> {
    if required && v.trim().is_empty() {
        return Err(DeviceError::Invalid(format!("{field}: required")));
    }
    if v.chars().count() > 128 || v.chars().any(char::is_control) {
        return Err(DeviceError::Invalid(format!(
            "{field}: at most 128 printable characters"
        )));
    }
    Ok(())
}

impl NewDevice {
    /// Validate every field; the first problem is reported with its field name.
    pub fn validate(&self) -> Result<(), DeviceError> {
        check_id(&self.id)?;
        if self.id.starts_with("chengfang-") {
            return Err(DeviceError::Invalid(format!(
                "id `{}`: ids starting with `chengfang-` are the platform's own",
                self.id
            )));
        }
        if !KINDS.contains(&self.kind.as_str()) {
            return Err(DeviceError::Invalid(format!(
                "kind `{}`: use one of {}",
                self.kind,
                KINDS.join(", ")
            )));
        }
        if !matches!(
            self.layer,
            Layer::TerminalPerception | Layer::EdgeComputing | Layer::NetworkConnection
        ) {
            return Err(DeviceError::Invalid(
                "layer: devices are terminal, edge or network".into(),
            ));
        }
        // The district is a topic level, so the same character rules as the id apply.
        check_id(&self.district).map_err(|_| {
            DeviceError::Invalid(format!(
                "district `{}`: use a-z, 0-9 and '-'",
                self.district
            ))
        })?;
        if !(-90.0..=90.0).contains(&self.lat) || !(-180.0..=180.0).contains(&self.lon) {
            return Err(DeviceError::Invalid(format!(
                "coordinates ({}, {}): latitude -90..90, longitude -180..180",
                self.lat, self.lon
            )));
        }
        check_text("owner_org", &self.owner_org, true)?;
        check_text("vendor", &self.vendor, true)?;
        check_text("model", &self.model, true)?;
        check_text("firmware", &self.firmware, false)?;
        Ok(())
    }
}

/// Parse a layer as written in CSV files: `terminal`, `edge`, `network` or the full names.
pub fn parse_layer(s: &str) -> Option<Layer> {
    match s.trim().to_ascii_lowercase().as_str() {
        "terminal" | "terminal_perception" => Some(Layer::TerminalPerception),
        "edge" | "edge_computing" => Some(Layer::EdgeComputing),
        "network" | "network_connection" => Some(Layer::NetworkConnection),
        _ => None,
    }
}

/// Result of a CSV import: the good rows, and every bad one with its line and reason.
#[derive(Debug, Default)]
pub struct Import {
    /// Valid devices.
    pub devices: Vec<NewDevice>,
    /// `(line, reason)` for each refused row (1-based lines, header is line 1).
    pub errors: Vec<(u64, String)>,
}

/// Columns a registry CSV must have (any order; extra columns are an error so typos show).
pub const CSV_COLUMNS: [&str; 10] = [
    "id",
    "kind",
    "layer",
    "district",
    "lat",
    "lon",
    "owner_org",
    "vendor",
    "model",
    "firmware",
];

/// Parse a registry CSV. Structural problems (missing columns) fail the whole file; row problems
/// are collected so one bad row never hides the others. Duplicate ids within the file are errors.
pub fn import_csv(data: &[u8]) -> Result<Import, DeviceError> {
    let mut rd = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(data);
    let header: Vec<String> = rd
        .headers()
        .map_err(|e| DeviceError::Invalid(format!("line 1: {e}")))?
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    for c in CSV_COLUMNS {
        if c != "firmware" && !header.iter().any(|h| h == c) {
            return Err(DeviceError::Invalid(format!(
                "header: missing column `{c}`"
            )));
        }
    }
    if let Some(extra) = header.iter().find(|h| !CSV_COLUMNS.contains(&h.as_str())) {
        return Err(DeviceError::Invalid(format!(
            "header: unknown column `{extra}` (columns are {})",
            CSV_COLUMNS.join(", ")
        )));
    }
    let col = |name: &str| header.iter().position(|h| h == name);
    let mut out = Import::default();
    let mut seen = std::collections::HashSet::new();
    for (i, rec) in rd.records().enumerate() {
        let line = i as u64 + 2;
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                out.errors.push((line, e.to_string()));
                continue;
            }
        };
        let get = |name: &str| col(name).and_then(|c| rec.get(c)).unwrap_or("").to_string();
        let num = |name: &str| -> Result<f64, String> {
            let v = get(name);
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| format!("{name} `{v}` is not a number"))
        };
        let parsed = (|| -> Result<NewDevice, String> {
            let layer_s = get("layer");
            let d = NewDevice {
                id: get("id"),
                kind: get("kind"),
                layer: parse_layer(&layer_s)
                    .ok_or_else(|| format!("layer `{layer_s}`: use terminal, edge or network"))?,
                district: get("district"),
                lat: num("lat")?,
                lon: num("lon")?,
                owner_org: get("owner_org"),
                vendor: get("vendor"),
                model: get("model"),
                firmware: get("firmware"),
            };
            d.validate().map_err(|e| e.to_string())?;
            Ok(d)
        })();
        match parsed {
            Ok(d) if !seen.insert(d.id.clone()) => {
                out.errors
                    .push((line, format!("id `{}` appears twice in the file", d.id)));
            }
            Ok(d) => out.devices.push(d),
            Err(e) => out.errors.push((line, e)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample(id: &str) -> NewDevice {
        NewDevice {
            id: id.into(),
            kind: "camera".into(),
            layer: Layer::TerminalPerception,
            district: "haidian".into(),
            lat: 39.96,
            lon: 116.30,
            owner_org: "city-traffic".into(),
            vendor: "Acme".into(),
            model: "IPC-200".into(),
            firmware: "1.4.2".into(),
        }
    }

    #[test]
    fn validation_names_the_field() {
        assert!(sample("cam-1").validate().is_ok());
        type Case = (fn(&mut NewDevice), &'static str);
        let cases: [Case; 6] = [
            (|d| d.id = "Cam 1".into(), "id"),
            (|d| d.kind = "toaster".into(), "kind"),
            (|d| d.layer = Layer::DigitalPlatform, "layer"),
            (|d| d.lat = 91.0, "coordinates"),
            (|d| d.vendor = " ".into(), "vendor"),
            (|d| d.district = "../etc".into(), "district"),
        ];
        for (f, field) in cases {
            let mut d = sample("cam-1");
            f(&mut d);
            let e = d.validate().unwrap_err().to_string();
            assert!(e.starts_with(field), "{e}");
        }
    }

    #[test]
    fn csv_import_keeps_good_rows_and_reports_each_bad_one() {
        let csv = "id,kind,layer,district,lat,lon,owner_org,vendor,model,firmware\n\
cam-1,camera,terminal,haidian,39.9,116.3,traffic,Acme,IPC,1.0\n\
gw-1,edge-gateway,edge,haidian,39.9,116.3,traffic,Acme,GW,2.0\n\
bad id,camera,terminal,haidian,39.9,116.3,traffic,Acme,IPC,1.0\n\
cam-2,camera,cloud,haidian,39.9,116.3,traffic,Acme,IPC,1.0\n\
cam-3,camera,terminal,haidian,north,116.3,traffic,Acme,IPC,1.0\n\
cam-1,camera,terminal,haidian,39.9,116.3,traffic,Acme,IPC,1.0\n";
        let r = import_csv(csv.as_bytes()).unwrap();
        assert_eq!(r.devices.len(), 2);
        let lines: Vec<u64> = r.errors.iter().map(|e| e.0).collect();
        assert_eq!(lines, vec![4, 5, 6, 7]);
        assert!(r.errors[2].1.contains("lat `north`"));
        assert!(r.errors[3].1.contains("twice"));
        assert!(
            import_csv(b"id,kind\ncam-1,camera\n")
                .unwrap_err()
                .to_string()
                .contains("missing column")
        );
        assert!(
            import_csv(b"id,kind,layer,district,lat,lon,owner_org,vendor,model,colour\n")
                .unwrap_err()
                .to_string()
                .contains("unknown column `colour`")
        );
    }
}

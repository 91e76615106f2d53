//! IP geolocation for the login risk engine (AUZ-5): any MaxMind-format database (`.mmdb`) —
//! the CC0 country data of the ip-location-db project (`country_code`), its CC-BY DB-IP city data
//! (`latitude`, `longitude`), or a GeoLite2-shaped file (`country.iso_code`, `location`).

use std::path::Path;

use anyhow::{Context, Result};
use cf_platform::ports::{GeoLookup, GeoPoint};

/// A database read into memory.
pub struct MmdbGeo {
    reader: maxminddb::Reader<Vec<u8>>,
}

impl std::fmt::Debug for MmdbGeo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MmdbGeo({})", self.reader.metadata().database_type)
    }
}

impl MmdbGeo {
    /// Open `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let reader = maxminddb::Reader::open_readfile(path)
            .with_context(|| format!("identity.geoip_database: cannot read {}", path.display()))?;
        Ok(MmdbGeo { reader })
    }
}

/// The point a database record describes, whichever of the common layouts it has.
pub fn point_of(v: &serde_json::Value) -> Option<GeoPoint> {
    let country = v["country_code"]
        .as_str()
        .or_else(|| v["country"]["iso_code"].as_str())
        .or_else(|| v["country"].as_str())
        .map(str::to_string);
    let lat = v["latitude"]
        .as_f64()
        .or_else(|| v["location"]["latitude"].as_f64());
    let lon = v["longitude"]
        .as_f64()
        .or_else(|| v["location"]["longitude"].as_f64());
    let coords = lat.zip(lon);
    (country.is_some() || coords.is_some()).then_some(GeoPoint { country, coords })
}

impl GeoLookup for MmdbGeo {
    fn locate(&self, ip: &str) -> Option<GeoPoint> {
        let addr: std::net::IpAddr = ip.parse().ok()?;
        let v: serde_json::Value = self.reader.lookup(addr).ok()?.decode().ok()??;
        point_of(&v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_common_record_layouts_are_understood() {
        let p = point_of(&serde_json::json!({"country_code": "CN"})).unwrap();
        assert_eq!((p.country.as_deref(), p.coords), (Some("CN"), None));
        let p = point_of(&serde_json::json!({"city": "Beijing", "country_code": "CN", "latitude": 39.9, "longitude": 116.4})).unwrap();
        assert_eq!(p.coords, Some((39.9, 116.4)));
        let p = point_of(&serde_json::json!({"country": {"iso_code": "US"}, "location": {"latitude": 40.7, "longitude": -74.0}})).unwrap();
        assert_eq!(
            (p.country.as_deref(), p.coords),
            (Some("US"), Some((40.7, -74.0)))
        );
        assert!(point_of(&serde_json::json!({"asn": 4134})).is_none());
    }

    /// The CC0 country database from the package registry, when the machine has it
    /// (`npm pack @ip-location-db/geo-whois-asn-country-mmdb`; `.ci/run` fetches it).
    #[test]
    fn the_cc0_country_database_locates_real_addresses() {
        let path = std::env::var("CHENGFANG_GEOIP_TEST_DB")
            .unwrap_or_else(|_| "/var/tmp/chengfang-geoip/geo-whois-asn-country.mmdb".into());
        let path = std::path::PathBuf::from(path);
        if !path.exists() {
            assert!(
                !cf_testkit::in_ci(),
                "{} is missing in CI (.ci/run fetches it)",
                path.display()
            );
            eprintln!(
                "\n*** SKIPPED: no GeoIP database at {} ***\n",
                path.display()
            );
            return;
        }
        let g = MmdbGeo::open(&path).unwrap();
        // China Telecom's Beijing resolver, Google's, Cloudflare's in Australia (APNIC's block).
        assert_eq!(
            g.locate("219.141.136.10").unwrap().country.as_deref(),
            Some("CN")
        );
        assert_eq!(g.locate("8.8.8.8").unwrap().country.as_deref(), Some("US"));
        assert!(
            g.locate("10.1.2.3").is_none(),
            "private addresses are nowhere"
        );
        assert!(g.locate("not an address").is_none());
    }
}

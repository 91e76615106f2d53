//! Generalisation (MSK-1): dates to the year or month, numbers to bands, addresses to the city,
//! IP addresses to their network.

use crate::{EntityType, Level, MaskError};

fn na(why: &str) -> MaskError {
    MaskError::NotApplicable {
        rule: "generalize",
        why: why.into(),
    }
}

/// Year and month found in a date written any of the usual ways.
fn year_month(v: &str) -> Option<(u32, Option<u32>)> {
    let digits: Vec<(usize, u32)> = {
        let mut out = Vec::new();
        let mut cur = String::new();
        for ch in v.chars().chain(std::iter::once(' ')) {
            if ch.is_ascii_digit() {
                cur.push(ch);
            } else if !cur.is_empty() {
                out.push((cur.len(), cur.parse().unwrap_or(0)));
                cur.clear();
            }
        }
        out
    };
    let months = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let lower = v.to_lowercase();
    let named = months
        .iter()
        .position(|m| lower.contains(m))
        .map(|i| i as u32 + 1);
    if let Some(&(8, n)) = digits.first() {
        return Some((n / 10000, Some(n / 100 % 100)));
    }
    let yi = digits
        .iter()
        .position(|(l, n)| *l == 4 && (1900..=2100).contains(n))?;
    let year = digits[yi].1;
    let month = named.or_else(|| {
        // ISO / Chinese order puts the month after the year; US order (03/12/1985) before it.
        if yi == 0 {
            digits.get(1).map(|d| d.1)
        } else {
            digits.first().map(|d| d.1)
        }
    });
    Some((year, month.filter(|m| (1..=12).contains(m))))
}

/// Generalise `v`.
pub fn generalize(level: Level, _entity: Option<EntityType>, v: &str) -> Result<String, MaskError> {
    match level {
        Level::Year => year_month(v)
            .map(|(y, _)| y.to_string())
            .ok_or_else(|| na("no year in the value")),
        Level::YearMonth => match year_month(v) {
            Some((y, Some(m))) => Ok(format!("{y}-{m:02}")),
            Some((y, None)) => Ok(y.to_string()),
            None => Err(na("no year in the value")),
        },
        Level::Band(w) => {
            let w = w.max(1);
            let n: u32 = v.trim().parse().map_err(|_| na("not a whole number"))?;
            let lo = n / w * w;
            Ok(format!("{lo}-{}", lo + w - 1))
        }
        Level::City => city(v).ok_or_else(|| na("no city in the address")),
        Level::Network => network(v).ok_or_else(|| na("not an IP address")),
    }
}

fn city(v: &str) -> Option<String> {
    if let Some(i) = v.find('市') {
        return Some(v[..i + '市'.len_utf8()].to_string());
    }
    for mark in ['州', '盟', '省', '区'] {
        if let Some(i) = v.find(mark) {
            return Some(v[..i + mark.len_utf8()].to_string());
        }
    }
    let parts: Vec<&str> = v
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let last = *parts.last()?;
    (parts.len() > 1 && last.chars().all(|c| c.is_alphabetic() || c == ' '))
        .then(|| last.to_string())
}

fn network(v: &str) -> Option<String> {
    match v.trim().parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(a) => {
            let o = a.octets();
            Some(format!("{}.{}.{}.0/24", o[0], o[1], o[2]))
        }
        std::net::IpAddr::V6(a) => {
            let s = a.segments();
            Some(format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_every_corpus_format() {
        for (v, y, ym) in [
            ("1985年3月12日", "1985", "1985-03"),
            ("1985-03-12", "1985", "1985-03"),
            ("1985/3/12", "1985", "1985-03"),
            ("19850312", "1985", "1985-03"),
            ("12 March 1985", "1985", "1985-03"),
            ("March 12, 1985", "1985", "1985-03"),
            ("03/12/1985", "1985", "1985-03"),
        ] {
            assert_eq!(generalize(Level::Year, None, v).unwrap(), y, "{v}");
            assert_eq!(generalize(Level::YearMonth, None, v).unwrap(), ym, "{v}");
        }
    }

    #[test]
    fn bands_cities_networks() {
        assert_eq!(generalize(Level::Band(10), None, "37").unwrap(), "30-39");
        assert_eq!(
            generalize(Level::City, None, "广东省深圳市南山区科技园路88号").unwrap(),
            "广东省深圳市"
        );
        assert_eq!(
            generalize(Level::City, None, "北京市朝阳区建国路88号").unwrap(),
            "北京市"
        );
        assert_eq!(
            generalize(
                Level::City,
                None,
                "Room 1203, Block A, No. 88 Jianguo Road, Chaoyang District, Beijing"
            )
            .unwrap(),
            "Beijing"
        );
        assert_eq!(
            generalize(Level::Network, None, "192.168.10.77").unwrap(),
            "192.168.10.0/24"
        );
        assert_eq!(
            generalize(Level::Network, None, "2001:db8:85a3::8a2e:370:7334").unwrap(),
            "2001:db8:85a3::/48"
        );
        assert!(generalize(Level::Band(10), None, "abc").is_err());
    }
}

//! Syslog messages: RFC 5424, RFC 3164 and what real senders emit — no PRI (file lines), a space
//! before a single-digit day, ISO 8601 timestamps in the BSD layout (rsyslog file format), no
//! hostname, Cisco sequence numbers and `*` clock marks, tags with or without `[pid]`.
//! Year-less timestamps take the year that puts them closest before the receive time.

use cf_core::Timestamp;
use serde::Serialize;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Which grammar matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// RFC 5424.
    Rfc5424,
    /// RFC 3164 (BSD) with its common variants.
    Rfc3164,
}

/// A parsed message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Syslog {
    /// Grammar.
    pub format: Format,
    /// Facility 0–23 (`None` without a PRI, as in log files).
    pub facility: Option<u8>,
    /// Severity 0–7.
    pub severity: Option<u8>,
    /// Event time (UTC); `None` if the message had none (RFC 5424 NILVALUE).
    pub time: Option<Timestamp>,
    /// Host.
    pub hostname: Option<String>,
    /// Application (RFC 3164 tag without the pid).
    pub app: Option<String>,
    /// Process id.
    pub procid: Option<String>,
    /// RFC 5424 MSGID.
    pub msgid: Option<String>,
    /// RFC 5424 structured data: `(SD-ID, [(name, value)])`.
    pub structured: Vec<(String, Vec<(String, String)>)>,
    /// The free-text message.
    pub message: String,
}

/// A message that could not be parsed: what was wrong and at which byte.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("syslog: {what} at byte {at}")]
pub struct SyslogError {
    /// What.
    pub what: String,
    /// Offset.
    pub at: usize,
}

fn err(what: impl Into<String>, at: usize) -> SyslogError {
    SyslogError {
        what: what.into(),
        at,
    }
}

struct Cur<'a> {
    s: &'a str,
    at: usize,
}

impl<'a> Cur<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.at..]
    }
    fn eat(&mut self, c: char) -> bool {
        if self.rest().starts_with(c) {
            self.at += c.len_utf8();
            true
        } else {
            false
        }
    }
    /// Up to the next space (not consuming it).
    fn token(&mut self) -> &'a str {
        let r = self.rest();
        let end = r.find(' ').unwrap_or(r.len());
        self.at += end;
        &r[..end]
    }
    fn space(&mut self) -> bool {
        self.eat(' ')
    }
    fn spaces(&mut self) {
        while self.eat(' ') {}
    }
}

/// Parse one message received at `received` (used to complete year-less timestamps).
pub fn parse(raw: &[u8], received: Timestamp) -> Result<Syslog, SyslogError> {
    // Invalid UTF-8 is replaced, not refused: the raw bytes are kept by the caller.
    let text = String::from_utf8_lossy(raw);
    let line = text.trim_end_matches(['\n', '\r', '\0']);
    let mut c = Cur { s: line, at: 0 };
    let (facility, severity) = match pri(&mut c)? {
        Some(p) => (Some(p / 8), Some(p % 8)),
        None => (None, None),
    };
    if c.rest().starts_with("1 ") {
        c.at += 2;
        return rfc5424(c, facility, severity);
    }
    rfc3164(c, facility, severity, received)
}

fn pri(c: &mut Cur<'_>) -> Result<Option<u8>, SyslogError> {
    if !c.eat('<') {
        return Ok(None);
    }
    let start = c.at;
    let r = c.rest();
    let end = r
        .find('>')
        .ok_or_else(|| err("PRI without closing `>`", start))?;
    let digits = &r[..end];
    if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err("PRI is not a number of 1 to 3 digits", start));
    }
    let v: u16 = digits
        .parse()
        .map_err(|_| err("PRI is not a number", start))?;
    if v > 191 {
        return Err(err(format!("PRI {v} is above 191"), start));
    }
    c.at += end + 1;
    Ok(Some(v as u8))
}

fn nil(s: &str) -> Option<String> {
    (s != "-" && !s.is_empty()).then(|| s.to_string())
}

fn rfc5424(
    mut c: Cur<'_>,
    facility: Option<u8>,
    severity: Option<u8>,
) -> Result<Syslog, SyslogError> {
    let ts_at = c.at;
    let ts = c.token();
    let time = if ts == "-" {
        None
    } else {
        Some(
            Timestamp::parse_rfc3339(ts)
                .map_err(|_| err(format!("timestamp `{ts}` is not RFC 3339"), ts_at))?,
        )
    };
    let mut fields = Vec::with_capacity(4);
    for name in ["HOSTNAME", "APP-NAME", "PROCID", "MSGID"] {
        if !c.space() {
            return Err(err(format!("missing {name}"), c.at));
        }
        let at = c.at;
        let t = c.token();
        if t.is_empty() {
            return Err(err(format!("empty {name}"), at));
        }
        fields.push(nil(t));
    }
    if !c.space() {
        return Err(err("missing STRUCTURED-DATA", c.at));
    }
    let mut structured = Vec::new();
    if !c.eat('-') {
        while c.rest().starts_with('[') {
            structured.push(sd_element(&mut c)?);
        }
        if structured.is_empty() {
            return Err(err("STRUCTURED-DATA must be `-` or `[…]`", c.at));
        }
    }
    c.eat(' ');
    let message = c.rest().trim_start_matches('\u{feff}').to_string();
    let mut f = fields.into_iter();
    Ok(Syslog {
        format: Format::Rfc5424,
        facility,
        severity,
        time,
        hostname: f.next().flatten(),
        app: f.next().flatten(),
        procid: f.next().flatten(),
        msgid: f.next().flatten(),
        structured,
        message,
    })
}

fn sd_element(c: &mut Cur<'_>) -> Result<(String, Vec<(String, String)>), SyslogError> {
    let start = c.at;
    c.eat('[');
    let r = c.rest();
    let end = r
        .find([' ', ']'])
        .ok_or_else(|| err("unterminated SD-ELEMENT", start))?;
    let id = r[..end].to_string();
    if id.is_empty() {
        return Err(err("empty SD-ID", c.at));
    }
    c.at += end;
    let mut params = Vec::new();
    loop {
        if c.eat(']') {
            return Ok((id, params));
        }
        if !c.space() {
            return Err(err("expected ` ` or `]` in SD-ELEMENT", c.at));
        }
        let r = c.rest();
        let eq = r
            .find('=')
            .ok_or_else(|| err("SD-PARAM without `=`", c.at))?;
        let name = r[..eq].to_string();
        c.at += eq + 1;
        if !c.eat('"') {
            return Err(err("SD-PARAM value must be quoted", c.at));
        }
        let mut value = String::new();
        let mut chars = c.rest().char_indices();
        let mut closed = None;
        while let Some((i, ch)) = chars.next() {
            match ch {
                '\\' => match chars.next() {
                    Some((_, e @ ('"' | '\\' | ']'))) => value.push(e),
                    Some((_, other)) => {
                        value.push('\\');
                        value.push(other);
                    }
                    None => break,
                },
                '"' => {
                    closed = Some(i);
                    break;
                }
                other => value.push(other),
            }
        }
        let i = closed.ok_or_else(|| err("unterminated SD-PARAM value", c.at))?;
        c.at += i + 1;
        params.push((name, value));
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `Mmm dd hh:mm:ss[.fff]` (day space-padded or not), completed with the year that puts it at
/// most a month after `received` — so a December message read in January belongs to last year.
fn bsd_time(s: &str, received: Timestamp) -> Option<(Timestamp, usize)> {
    let b = s.as_bytes();
    let m = MONTHS.iter().position(|m| s.get(..3) == Some(*m))? as u8 + 1;
    if b.get(3) != Some(&b' ') {
        return None;
    }
    let mut i = 4;
    if b.get(i) == Some(&b' ') {
        i += 1;
    }
    let day_end = s[i..].find(' ')? + i;
    let day: u8 = s[i..day_end].parse().ok()?;
    let t_start = day_end + 1;
    let hms = s.get(t_start..t_start + 8)?;
    let hb = hms.as_bytes();
    if hb[2] != b':' || hb[5] != b':' {
        return None;
    }
    let (h, mi, se): (u8, u8, u8) = (
        hms[..2].parse().ok()?,
        hms[3..5].parse().ok()?,
        hms[6..8].parse().ok()?,
    );
    let mut end = t_start + 8;
    let mut nanos = 0u32;
    if b.get(end) == Some(&b'.') {
        let frac_end = s[end + 1..]
            .find(|c: char| !c.is_ascii_digit())
            .map_or(s.len(), |j| end + 1 + j);
        let frac = &s[end + 1..frac_end];
        if !frac.is_empty() && frac.len() <= 9 {
            nanos = frac.parse::<u32>().ok()? * 10u32.pow(9 - frac.len() as u32);
        }
        end = frac_end;
    }
    let month = Month::try_from(m).ok()?;
    let time = Time::from_hms_nano(h, mi, se, nanos).ok()?;
    let recv = received.as_offset_date_time();
    let mut best = None;
    for y in [recv.year() + 1, recv.year(), recv.year() - 1] {
        let Ok(date) = Date::from_calendar_date(y, month, day) else {
            continue;
        };
        let t = PrimitiveDateTime::new(date, time).assume_offset(UtcOffset::UTC);
        if t <= recv + time::Duration::days(31) {
            best = Some(t);
            break;
        }
    }
    let t: OffsetDateTime = best?;
    Some((
        Timestamp::from_unix_nanos(i64::try_from(t.unix_timestamp_nanos()).ok()?),
        end,
    ))
}

fn rfc3164(
    mut c: Cur<'_>,
    facility: Option<u8>,
    severity: Option<u8>,
    received: Timestamp,
) -> Result<Syslog, SyslogError> {
    // Cisco: `<189>123: *Mar  1 18:46:11.123: %SYS-5-CONFIG_I: …` (sequence number, clock marks).
    let r = c.rest();
    if let Some(colon) = r.find(": ")
        && colon > 0
        && colon <= 10
        && r[..colon].bytes().all(|b| b.is_ascii_digit())
    {
        c.at += colon + 2;
    }
    if c.rest().starts_with(['*', '.']) {
        c.at += 1;
    }
    let ts_at = c.at;
    let mut time = None;
    if let Some((t, used)) = bsd_time(c.rest(), received) {
        time = Some(t);
        c.at += used;
        c.eat(':');
    } else {
        // rsyslog's file format and many appliances: an RFC 3339 stamp in the BSD position.
        let tok = c.rest().split(' ').next().unwrap_or("");
        if tok.len() >= 19 && tok.as_bytes().get(4) == Some(&b'-') {
            let t = Timestamp::parse_rfc3339(tok)
                .map_err(|_| err(format!("timestamp `{tok}` is not RFC 3339"), ts_at))?;
            time = Some(t);
            c.at += tok.len();
        } else if facility.is_none() {
            return Err(err("neither a PRI nor a timestamp: not syslog", ts_at));
        }
    }
    c.spaces();
    // HOSTNAME is the next token unless that token is already the tag (`tag:` or `tag[pid]:`).
    let first_at = c.at;
    let first = c.token();
    let is_tag = |t: &str| t.ends_with(':') || (t.contains('[') && t.ends_with("]:"));
    let (hostname, tag) = if first.is_empty() {
        (None, None)
    } else if is_tag(first) || time.is_none() && first.starts_with('%') {
        (None, Some(first))
    } else {
        c.spaces();
        let save = c.at;
        let second = c.token();
        if is_tag(second) {
            (Some(first.to_string()), Some(second))
        } else if !second.is_empty() && c.rest().starts_with(' ') && {
            // Two-word tags: sysklogd's `syslogd 1.4.1: restart.` (a version) and login(1)'s
            // `-- root[2421]: ROOT LOGIN` (a `--` prefix).
            let third = c.rest()[1..].split(' ').next().unwrap_or("");
            is_tag(third) && (second == "--" || third.starts_with(|ch: char| ch.is_ascii_digit()))
        } {
            let start = save;
            c.space();
            let third = c.token();
            let _ = third;
            (Some(first.to_string()), Some(&c.s[start..c.at]))
        } else {
            // No tag: everything after the hostname is the message.
            c.at = save;
            (Some(first.to_string()), None)
        }
    };
    let _ = first_at;
    let (app, procid) = match tag {
        Some(t) => {
            let t = t.trim_end_matches(':');
            match (t.find('['), t.ends_with(']')) {
                (Some(i), true) => (
                    Some(t[..i].to_string()),
                    Some(t[i + 1..t.len() - 1].to_string()),
                ),
                _ => (Some(t.to_string()), None),
            }
        }
        None => (None, None),
    };
    c.spaces();
    Ok(Syslog {
        format: Format::Rfc3164,
        facility,
        severity,
        time,
        hostname,
        app: app.filter(|a| !a.is_empty()),
        procid,
        msgid: None,
        structured: Vec::new(),
        message: c.rest().trim_end().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recv() -> Timestamp {
        Timestamp::parse_rfc3339("2026-11-25T12:00:00Z").unwrap()
    }

    #[test]
    fn rfc5424_with_structured_data_and_escapes() {
        let m = parse(
            br#"<165>1 2026-11-25T10:14:15.003+08:00 gw-7.city.cn evntslog 1042 ID47 [exampleSDID@32473 iut="3" eventSource="Application" msg="a \"quoted\" \]"][meta seq="9"] BOMAn application event"#,
            recv(),
        )
        .unwrap();
        assert_eq!(
            (m.format, m.facility, m.severity),
            (Format::Rfc5424, Some(20), Some(5))
        );
        assert_eq!(
            m.time,
            Some(Timestamp::parse_rfc3339("2026-11-25T02:14:15.003Z").unwrap())
        );
        assert_eq!(m.hostname.as_deref(), Some("gw-7.city.cn"));
        assert_eq!(
            (m.app.as_deref(), m.procid.as_deref(), m.msgid.as_deref()),
            (Some("evntslog"), Some("1042"), Some("ID47"))
        );
        assert_eq!(
            m.structured[0].1[2],
            ("msg".to_string(), r#"a "quoted" ]"#.to_string())
        );
        assert_eq!(m.structured[1].0, "meta");
        assert_eq!(m.message, "BOMAn application event");
        let nil = parse(b"<13>1 - - - - - -", recv()).unwrap();
        assert_eq!(
            (nil.time, nil.hostname, nil.message.as_str()),
            (None, None, "")
        );
    }

    #[test]
    fn bsd_variants_seen_in_the_wild() {
        let m = parse(
            b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
            recv(),
        )
        .unwrap();
        assert_eq!((m.facility, m.severity), (Some(4), Some(2)));
        assert_eq!(
            m.time,
            Some(Timestamp::parse_rfc3339("2026-10-11T22:14:15Z").unwrap())
        );
        assert_eq!(
            (m.hostname.as_deref(), m.app.as_deref()),
            (Some("mymachine"), Some("su"))
        );
        // December read in January belongs to the previous year.
        let jan = Timestamp::parse_rfc3339("2027-01-02T00:00:00Z").unwrap();
        let d = parse(b"Dec 31 23:59:59 h cron[1]: x", jan).unwrap();
        assert_eq!(
            d.time,
            Some(Timestamp::parse_rfc3339("2026-12-31T23:59:59Z").unwrap())
        );
        // Space-padded day, no hostname, tag with pid.
        let n = parse(b"<13>Mar  1 08:00:00 sshd[22]: Accepted", recv()).unwrap();
        assert_eq!(
            (n.hostname, n.app.as_deref(), n.procid.as_deref()),
            (None, Some("sshd"), Some("22"))
        );
        // rsyslog file format.
        let r = parse(b"2026-11-25T09:00:01.5+08:00 web-1 nginx[7]: GET /", recv()).unwrap();
        assert_eq!(
            r.time,
            Some(Timestamp::parse_rfc3339("2026-11-25T01:00:01.5Z").unwrap())
        );
        assert_eq!(r.app.as_deref(), Some("nginx"));
        // Cisco IOS.
        let k = parse(
            b"<189>123: *Mar  1 18:46:11.123: %SYS-5-CONFIG_I: Configured from console",
            recv(),
        )
        .unwrap();
        assert_eq!(k.app.as_deref(), Some("%SYS-5-CONFIG_I"));
        assert_eq!(k.message, "Configured from console");
        // Tag with parentheses (pam), as in loghub's Linux sample.
        let p = parse(
            b"Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure; rhost=1.2.3.4 ",
            recv(),
        )
        .unwrap();
        assert_eq!(
            (p.app.as_deref(), p.procid.as_deref()),
            (Some("sshd(pam_unix)"), Some("19939"))
        );
        assert_eq!(p.message, "authentication failure; rhost=1.2.3.4");
    }

    #[test]
    fn malformed_input_says_what_and_where() {
        for (bad, what) in [
            (&b"<999>1 - - - - -"[..], "PRI 999 is above 191"),
            (b"<1x>hello", "PRI is not a number"),
            (
                b"<13>1 yesterday h a p m - x",
                "timestamp `yesterday` is not RFC 3339",
            ),
            (b"<13>1 2026-11-25T10:00:00Z host", "missing APP-NAME"),
            (b"<13>1 - h a p m [x a=b]", "SD-PARAM value must be quoted"),
            (b"just some text", "not syslog"),
        ] {
            let e = parse(bad, recv()).unwrap_err();
            assert!(
                e.what.contains(what),
                "{e} for {:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = parse(&b, recv());
            let mut x = b"<13>1 ".to_vec();
            x.extend_from_slice(&b);
            let _ = parse(&x, recv());
            let mut y = b"<13>Mar  1 ".to_vec();
            y.extend_from_slice(&b);
            let _ = parse(&y, recv());
        }
    }
}

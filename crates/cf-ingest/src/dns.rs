//! DNS activity (SA-1, SA-2): DNS messages from the wire (hickory-proto) and Zeek `dns.log`
//! records become one record shape and OCSF DNS Activity (class 4003), the input of the DGA and
//! DNS-tunnelling analytics.

use std::net::IpAddr;

use cf_core::Timestamp;
use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::Name;
use serde::Serialize;
use serde_json::{Value, json};

/// One answer record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Answer {
    /// Record type name (`A`, `TXT`, `NULL`, `CNAME` …).
    pub rtype: String,
    /// Time to live, seconds.
    pub ttl: Option<u32>,
    /// Record data in presentation form.
    pub rdata: String,
}

/// One DNS query or response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsRecord {
    /// When it was seen.
    pub time: Timestamp,
    /// Client address (the sender of a query, the receiver of a response).
    pub client: Option<IpAddr>,
    /// Client port.
    pub client_port: Option<u16>,
    /// Resolver or server address.
    pub server: Option<IpAddr>,
    /// Server port.
    pub server_port: Option<u16>,
    /// `udp` or `tcp`.
    pub transport: &'static str,
    /// Message id.
    pub id: u16,
    /// Whether this is a response.
    pub response: bool,
    /// Query name without the trailing dot; bytes outside printable ASCII as `\DDD` (RFC 1035
    /// presentation form), everything else verbatim so that encoded payloads keep their shape.
    pub qname: String,
    /// Query type number.
    pub qtype: u16,
    /// Query type name.
    pub qtype_name: String,
    /// Response code number (responses only).
    pub rcode: Option<u16>,
    /// Response code name.
    pub rcode_name: Option<String>,
    /// Answers (responses only).
    pub answers: Vec<Answer>,
}

/// Why a DNS message could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DnsError {
    /// Not a DNS message.
    #[error("not a DNS message: {0}")]
    Decode(String),
    /// A message without a question (nothing to attribute it to).
    #[error("DNS message {0} has no question")]
    NoQuestion(u16),
}

/// A name in presentation form, without the root dot. Labels are joined by `.`; a byte that is
/// a dot, a backslash, a space or outside printable ASCII is written `\DDD`.
pub fn presentation(name: &Name) -> String {
    let mut s = String::with_capacity(name.len());
    for (i, label) in name.iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        for &b in label {
            if b.is_ascii_graphic() && b != b'.' && b != b'\\' {
                s.push(char::from(b));
            } else {
                s.push_str(&format!("\\{b:03}"));
            }
        }
    }
    s
}

/// The endpoints of one packet: source, source port, destination, destination port.
pub type Endpoints = (IpAddr, u16, IpAddr, u16);

/// Decode one DNS message carried between `ends` (as the packet had them) at `time`.
pub fn decode(
    payload: &[u8],
    ends: Endpoints,
    transport: &'static str,
    time: Timestamp,
) -> Result<DnsRecord, DnsError> {
    let m = Message::from_vec(payload).map_err(|e| DnsError::Decode(e.to_string()))?;
    let q = m
        .queries
        .first()
        .ok_or(DnsError::NoQuestion(m.metadata.id))?;
    let response = m.metadata.message_type == MessageType::Response;
    let (src, sport, dst, dport) = ends;
    let ((client, cport), (server, sport2)) = if response {
        ((dst, dport), (src, sport))
    } else {
        ((src, sport), (dst, dport))
    };
    let answers = if response {
        m.answers
            .iter()
            .map(|r| Answer {
                rtype: r.record_type().to_string(),
                ttl: Some(r.ttl),
                rdata: r.data.to_string(),
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(DnsRecord {
        time,
        client: Some(client),
        client_port: Some(cport),
        server: Some(server),
        server_port: Some(sport2),
        transport,
        id: m.metadata.id,
        response,
        qname: presentation(&q.name),
        qtype: u16::from(q.query_type),
        qtype_name: q.query_type.to_string(),
        rcode: response.then(|| u16::from(m.metadata.response_code)),
        rcode_name: response.then(|| m.metadata.response_code.to_str().to_string()),
        answers,
    })
}

/// A Zeek `dns.log` record in JSON (either `id.orig_h` or the flattened `id_orig_h` spelling).
/// Zeek logs one line per transaction, so the record is a response when Zeek saw one.
pub fn from_zeek(v: &Value) -> Option<DnsRecord> {
    let qname = v.get("query")?.as_str()?;
    let f = |a: &str, b: &str| v.get(a).or_else(|| v.get(b));
    let ip = |a, b| f(a, b).and_then(Value::as_str).and_then(|s| s.parse().ok());
    let port = |a, b| {
        f(a, b)
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
    };
    let time = v
        .get("ts")
        .and_then(Value::as_f64)
        .map(|t| Timestamp::from_unix_nanos((t * 1e9) as i64))?;
    let rcode = v
        .get("rcode")
        .and_then(Value::as_u64)
        .and_then(|r| u16::try_from(r).ok());
    let ttls: Vec<Option<u32>> = v
        .get("TTLs")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|t| t.as_f64().map(|x| x as u32)).collect())
        .unwrap_or_default();
    let answers = v
        .get("answers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .enumerate()
                .filter_map(|(i, x)| {
                    Some(Answer {
                        rtype: String::new(),
                        ttl: ttls.get(i).copied().flatten(),
                        rdata: x.as_str()?.to_string(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Some(DnsRecord {
        time,
        client: ip("id.orig_h", "id_orig_h"),
        client_port: port("id.orig_p", "id_orig_p"),
        server: ip("id.resp_h", "id_resp_h"),
        server_port: port("id.resp_p", "id_resp_p"),
        transport: if v.get("proto").and_then(Value::as_str) == Some("tcp") {
            "tcp"
        } else {
            "udp"
        },
        id: v
            .get("trans_id")
            .and_then(Value::as_u64)
            .and_then(|x| u16::try_from(x).ok())
            .unwrap_or(0),
        response: rcode.is_some(),
        qname: qname.trim_end_matches('.').to_string(),
        qtype: v
            .get("qtype")
            .and_then(Value::as_u64)
            .and_then(|x| u16::try_from(x).ok())
            .unwrap_or(0),
        qtype_name: v
            .get("qtype_name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        rcode,
        rcode_name: v
            .get("rcode_name")
            .and_then(Value::as_str)
            .map(str::to_string),
        answers,
    })
}

/// OCSF DNS Activity (4003): activity 1 (Query) or 2 (Response).
pub fn to_ocsf(d: &DnsRecord, product: &str) -> Value {
    let activity = if d.response { 2 } else { 1 };
    let mut v = json!({
        "class_uid": 4003,
        "class_name": "DNS Activity",
        "category_uid": 4,
        "activity_id": activity,
        "type_uid": 400300 + activity,
        "time": d.time.unix_millis(),
        "severity_id": 1,
        "metadata": {"version": crate::ocsf::OCSF_VERSION, "product": {"name": product}},
        "src_endpoint": {"ip": d.client.map(|a| a.to_string()), "port": d.client_port},
        "dst_endpoint": {"ip": d.server.map(|a| a.to_string()), "port": d.server_port},
        "connection_info": {"protocol_name": d.transport},
        "query": {"hostname": d.qname, "type": d.qtype_name, "class": "IN", "packet_uid": d.id},
    });
    if d.response {
        v["rcode_id"] = json!(d.rcode.map(|r| if r <= 10 { r } else { 99 }));
        v["rcode"] = json!(d.rcode_name);
        v["answers"] = d
            .answers
            .iter()
            .map(|a| json!({"rdata": a.rdata, "type": a.rtype, "ttl": a.ttl}))
            .collect();
    }
    v
}

/// The query of an OCSF DNS Activity event: `(client, qname, qtype)`.
pub fn query_of(ocsf: &Value) -> Option<(String, &str, &str)> {
    if ocsf.get("class_uid")?.as_u64()? != 4003 {
        return None;
    }
    let name = ocsf.pointer("/query/hostname")?.as_str()?;
    let qtype = ocsf
        .pointer("/query/type")
        .and_then(Value::as_str)
        .unwrap_or("");
    let client = ocsf
        .pointer("/src_endpoint/ip")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    Some((client, name, qtype))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(id: u16, name: &[&[u8]], qtype: u16) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        for l in name {
            p.push(l.len() as u8);
            p.extend_from_slice(l);
        }
        p.push(0);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&1u16.to_be_bytes());
        p
    }

    fn ends() -> Endpoints {
        (
            "10.0.0.5".parse().unwrap(),
            53000,
            "10.0.0.1".parse().unwrap(),
            53,
        )
    }

    #[test]
    fn encoded_labels_keep_their_shape() {
        let t = Timestamp::from_unix_secs(1_800_000_000);
        let p = query(7, &[b"q+Z8A/wa=", b"\x01\xff", b"example", b"org"], 10);
        let d = decode(&p, ends(), "udp", t).unwrap();
        assert_eq!(d.qname, "q+Z8A/wa=.\\001\\255.example.org");
        assert_eq!((d.qtype, d.qtype_name.as_str()), (10, "NULL"));
        assert!(!d.response);
        let o = to_ocsf(&d, "pcap");
        assert_eq!(o["type_uid"], 400301);
        assert_eq!(o["src_endpoint"]["ip"], "10.0.0.5");
        assert_eq!(
            query_of(&o).unwrap(),
            (
                "10.0.0.5".into(),
                "q+Z8A/wa=.\\001\\255.example.org",
                "NULL"
            )
        );
    }

    #[test]
    fn garbage_is_an_error() {
        let t = Timestamp::from_unix_secs(0);
        for junk in [&b""[..], b"\x00\x01", &[0xff; 40], b"hello world, not dns"] {
            assert!(decode(junk, ends(), "udp", t).is_err(), "{junk:?}");
        }
        // A header that promises a question and carries none.
        let mut p = query(1, &[b"a"], 1);
        p.truncate(12);
        assert!(decode(&p, ends(), "udp", t).is_err());
    }

    #[test]
    fn zeek_json_records_in_both_spellings() {
        let v: Value = serde_json::from_str(r#"{"ts":1588205199.82437,"uid":"C","id_orig_h":"10.0.1.6","id_orig_p":54243,"id_resp_h":"10.0.0.4","id_resp_p":53,"proto":"udp","trans_id":41180,"query":"newyork.dmevals.local","qclass":1,"qtype":1,"qtype_name":"A","rcode":0,"rcode_name":"NOERROR","answers":["10.0.0.4"],"TTLs":[3600.0]}"#).unwrap();
        let d = from_zeek(&v).unwrap();
        assert_eq!(d.qname, "newyork.dmevals.local");
        assert_eq!(d.client, Some("10.0.1.6".parse().unwrap()));
        assert_eq!(d.answers[0].ttl, Some(3600));
        assert!(d.response);
        let v: Value = serde_json::from_str(
            r#"{"ts":1.5,"id.orig_h":"10.0.0.9","query":"x.example.com","qtype":16,"qtype_name":"TXT"}"#,
        )
        .unwrap();
        let d = from_zeek(&v).unwrap();
        assert_eq!(
            (d.client, d.response, d.qtype),
            (Some("10.0.0.9".parse().unwrap()), false, 16)
        );
        assert!(from_zeek(&serde_json::json!({"ts": 1.0})).is_none());
    }
}

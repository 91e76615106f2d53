//! Zeek logs (SA-1): `conn.log` records in JSON (either `id.orig_h` or the flattened `id_orig_h`
//! spelling) become OCSF Network Activity (4001), the originator's side of each connection as a
//! flow, so Zeek sensors feed the same flow analytics as exporters and captures. (`dns.log`
//! records map through [`crate::dns::from_zeek`].)

use serde_json::{Value, json};

/// Whether a JSON record is a Zeek `conn.log` line.
pub fn is_conn(v: &Value) -> bool {
    v.get("conn_state").is_some()
        || (v.get("uid").is_some() && v.get("orig_pkts").is_some() && v.get("proto").is_some())
}

/// OCSF Network Activity for one `conn.log` record; `None` when it is not one.
pub fn conn_to_ocsf(v: &Value) -> Option<Value> {
    if !is_conn(v) {
        return None;
    }
    let g = |a: &str, b: &str| v.get(a).or_else(|| v.get(b));
    let ip = |a, b| g(a, b).and_then(Value::as_str).map(str::to_string);
    let port = |a, b| {
        g(a, b)
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
    };
    let (num, name) = match v.get("proto").and_then(Value::as_str) {
        Some("tcp") => (6, "tcp"),
        Some("udp") => (17, "udp"),
        Some("icmp") => (1, "icmp"),
        _ => (0, "other"),
    };
    // Zeek logs ICMP type and code in the ports; exporters put type × 256 + code in the
    // destination port, and so does this mapping.
    let (sport, dport) = if num == 1 {
        (
            Some(0),
            Some(
                port("id.orig_p", "id_orig_p").unwrap_or(0) << 8
                    | port("id.resp_p", "id_resp_p").unwrap_or(0),
            ),
        )
    } else {
        (
            port("id.orig_p", "id_orig_p"),
            port("id.resp_p", "id_resp_p"),
        )
    };
    // IP bytes as the sensor counted them — unless the TCP payload, known exactly when no
    // bytes were missed, is larger: captures taken with segmentation offload carry IP length
    // fields that understate (the APT29 sensors logged a 2.2 MB upload as 22 KB of IP bytes).
    let missed = v.get("missed_bytes").and_then(Value::as_u64).unwrap_or(0);
    let volume = |side: &str| -> Option<u64> {
        let ip = v.get(format!("{side}_ip_bytes")).and_then(Value::as_u64);
        let payload = v.get(format!("{side}_bytes")).and_then(Value::as_u64);
        match (ip, payload) {
            (Some(i), Some(p)) if missed == 0 => Some(i.max(p)),
            (Some(i), _) => Some(i),
            (None, p) => p,
        }
    };
    // Connections that never got an answer: the RST of a refused port is not a reply.
    let refused = matches!(
        v.get("conn_state").and_then(Value::as_str),
        Some("S0" | "REJ" | "RSTOS0" | "RSTRH" | "SH" | "SHR")
    );
    let start = (v.get("ts")?.as_f64()? * 1000.0) as i64;
    let dur = v.get("duration").and_then(Value::as_f64).unwrap_or(0.0);
    Some(json!({
        "class_uid": 4001,
        "class_name": "Network Activity",
        "category_uid": 4,
        "activity_id": 6,
        "type_uid": 400106,
        "time": start,
        "start_time": start,
        "end_time": start + (dur * 1000.0) as i64,
        "metadata": {"version": crate::ocsf::OCSF_VERSION, "product": {"name": "zeek"},
                      "uid": v.get("uid")},
        "src_endpoint": {"ip": ip("id.orig_h", "id_orig_h"), "port": sport},
        "dst_endpoint": {"ip": ip("id.resp_h", "id_resp_h"), "port": dport},
        "connection_info": {"protocol_num": num, "protocol_name": name},
        "traffic": {"bytes": volume("orig"), "packets": v.get("orig_pkts"),
                     "bytes_in": volume("resp"), "packets_in": v.get("resp_pkts")},
        "status_detail": v.get("conn_state"),
        "status_id": if refused { 2 } else { 1 },
        "app_name": v.get("service"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conn_records_in_both_spellings() {
        let v: Value = serde_json::from_str(r#"{"ts":1588205198.90335,"uid":"CbD9","id_orig_h":"10.0.1.4","id_orig_p":60595,"id_resp_h":"10.0.0.4","id_resp_p":445,"proto":"tcp","service":"krb,smb","duration":10.7,"orig_bytes":4060,"resp_bytes":1681,"conn_state":"RSTO","orig_pkts":12,"orig_ip_bytes":1307,"resp_pkts":11,"resp_ip_bytes":2133}"#).unwrap();
        let o = conn_to_ocsf(&v).unwrap();
        assert_eq!(o["class_uid"], 4001);
        assert_eq!(o["dst_endpoint"]["port"], 445);
        assert_eq!(o["traffic"]["packets"], 12);
        assert_eq!(
            o["end_time"].as_i64().unwrap() - o["start_time"].as_i64().unwrap(),
            10_700
        );
        let icmp: Value = serde_json::from_str(r#"{"ts":1.0,"uid":"C","id.orig_h":"10.0.0.9","id.orig_p":8,"id.resp_h":"10.0.0.1","id.resp_p":0,"proto":"icmp","conn_state":"OTH","orig_pkts":1,"orig_ip_bytes":84}"#).unwrap();
        let o = conn_to_ocsf(&icmp).unwrap();
        assert_eq!(
            (
                o["dst_endpoint"]["port"].as_u64(),
                o["src_endpoint"]["ip"].as_str()
            ),
            (Some(0x0800), Some("10.0.0.9"))
        );
        assert!(conn_to_ocsf(&serde_json::json!({"query": "x.example"})).is_none());
    }
}

//! Windows EVTX files (SA-1): records converted to JSON exactly as `evtx_dump -o jsonl
//! --separate-json-attributes` prints them (XML attributes in sibling `<Element>_attributes`
//! objects), the shape the Sigma engine and the event model read. A record that cannot be
//! decoded is reported with its position, and the rest of the file is still read.

use serde_json::Value;

/// One record's outcome: its JSON, or why it could not be read.
pub type Record = Result<Value, String>;

/// Every record of an EVTX file held in memory, in file order.
pub fn records(bytes: Vec<u8>) -> Result<Vec<Record>, String> {
    let settings = evtx::ParserSettings::default()
        .separate_json_attributes(true)
        .indent(false)
        .num_threads(1);
    let mut parser = evtx::EvtxParser::from_buffer(bytes)
        .map_err(|e| format!("not an EVTX file: {e}"))?
        .with_configuration(settings);
    Ok(parser
        .records_json()
        .map(|r| match r {
            Ok(rec) => serde_json::from_str(&rec.data)
                .map_err(|e| format!("record {}: not JSON: {e}", rec.event_record_id)),
            Err(e) => Err(e.to_string()),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_refused_with_a_reason() {
        assert!(records(Vec::new()).is_err());
        assert!(records(b"ElfFile\0 but not really".to_vec()).is_err());
        let mut fake = b"ElfFile\0".to_vec();
        fake.resize(8192, 0xff);
        match records(fake) {
            Err(e) => assert!(!e.is_empty()),
            Ok(rs) => assert!(rs.iter().all(|r| r.is_err()) || rs.is_empty()),
        }
    }
}

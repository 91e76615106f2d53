//! Windows events of the detection dataset (`evtx_dump` JSON lines, 8,333 events from 225 real
//! EVTX files) into OCSF: every event of a mapped channel and id becomes its class with the
//! fields analysts search by, counted independently of the mapper.

use std::collections::BTreeMap;

use serde_json::Value;

fn id_of(v: &Value) -> (String, String) {
    let s = &v["Event"]["System"];
    let id = s
        .get("EventID")
        .map(|i| i.get("#text").unwrap_or(i))
        .cloned();
    let id = match id {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.trim().to_string(),
        _ => String::new(),
    };
    (s["Channel"].as_str().unwrap_or("").to_string(), id)
}

/// How many events of `ids` the channel or provider `of` holds.
fn count(map: &BTreeMap<(String, String), usize>, of: &str, ids: &[&str]) -> usize {
    ids.iter()
        .map(|id| {
            map.get(&(of.to_string(), id.to_string()))
                .copied()
                .unwrap_or(0)
        })
        .sum()
}

#[test]
fn every_mapped_event_of_the_detection_dataset_becomes_its_class() {
    let Some(root) = cf_testkit::datasets() else {
        return;
    };
    let text = cf_testkit::read_zstd(&root.join("detection/events.jsonl.zst"));
    let text = String::from_utf8(text).unwrap();
    let mut by_key: BTreeMap<(String, String), usize> = BTreeMap::new();
    // The Application log's ids are per provider: counted by provider and id.
    let mut by_provider: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut classes: BTreeMap<u64, usize> = BTreeMap::new();
    let mut events = 0;
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        events += 1;
        assert!(cf_ingest::winevent::is_windows(&v), "{line}");
        *by_key.entry(id_of(&v)).or_default() += 1;
        if v["Event"]["System"]["Channel"] == "Application" {
            let p = v["Event"]["System"]["Provider_attributes"]["Name"]
                .as_str()
                .unwrap_or("")
                .to_string();
            *by_provider.entry((p, id_of(&v).1)).or_default() += 1;
        }
        let Some(o) = cf_ingest::winevent::to_ocsf(&v) else {
            continue;
        };
        let class = o["class_uid"].as_u64().unwrap();
        *classes.entry(class).or_default() += 1;
        assert!(o["time"].is_i64(), "every event keeps its time: {o}");
        assert!(o["device"]["hostname"].is_string(), "{o}");
        let (ch, id) = id_of(&v);
        match (ch.as_str(), id.as_str()) {
            ("Security", "4625") => {
                assert_eq!(o["status_id"], 2);
                assert!(o["status_detail"].is_string(), "{o}");
                assert!(o["user"]["name"].is_string(), "{o}");
            }
            ("Security", "4624") => assert_eq!(o["status_id"], 1),
            ("Microsoft-Windows-Sysmon/Operational", "1") => {
                assert!(o["process"]["file"]["path"].is_string(), "{o}");
                assert!(o["process"]["cmd_line"].is_string(), "{o}");
            }
            ("Security", "4688") => assert!(o["process"]["file"]["path"].is_string(), "{o}"),
            ("Security", "1102") | ("System", "104") => assert!(o["log_name"].is_string()),
            ("Microsoft-Windows-PowerShell/Operational", "4104") => {
                assert_eq!(o["script"]["type_id"], 2, "{o}");
                assert!(o["script"]["script_content"].is_string(), "{o}");
            }
            ("System", "7045") => {
                assert!(o["win_service"]["name"].is_string(), "{o}");
                assert!(o["win_service"]["cmd_line"].is_string(), "{o}");
            }
            ("Microsoft-Windows-Sysmon/Operational", "13") => {
                assert!(o["reg_value"]["path"].is_string(), "{o}");
                assert!(o["actor"]["process"]["file"]["path"].is_string(), "{o}");
            }
            ("Security", "5140") => {
                assert!(o["share"].is_string(), "{o}");
                assert!(o["actor"]["user"]["name"].is_string(), "{o}");
            }
            ("Microsoft-Windows-WMI-Activity/Operational", "5857") => {
                assert!(o["module"]["file"]["path"].is_string(), "{o}");
                assert!(o["actor"]["process"]["pid"].is_u64(), "{o}");
            }
            ("Security", "4703") => {
                assert_eq!(o["activity_id"], 99, "{o}");
                let n = |p: &Value| p.as_array().map_or(0, Vec::len);
                assert!(
                    n(&o["privileges"]) + n(&o["unmapped"]["disabled_privileges"]) > 0,
                    "a privilege enabled or disabled: {o}"
                );
                assert!(o["actor"]["process"]["name"].is_string(), "{o}");
                assert!(o["actor"]["process"]["pid"].is_u64(), "{o}");
                assert!(o["user"]["name"].is_string(), "{o}");
            }
            ("Security", "4672") => {
                assert_eq!(o["activity_id"], 1, "{o}");
                assert!(
                    o["privileges"].as_array().is_some_and(|p| p.len() > 1),
                    "{o}"
                );
                assert!(o["user"]["name"].is_string(), "{o}");
            }
            ("Microsoft-Windows-WMI-Activity/Operational", "5858") => {
                assert_eq!(o["status_id"], 2, "{o}");
                assert!(o["api"]["operation"].is_string(), "{o}");
                assert!(o["api"]["response"]["code"].is_string(), "{o}");
                assert!(o["actor"]["process"]["pid"].is_u64(), "{o}");
            }
            ("Application", _) => {
                assert_eq!(o["class_uid"], 6002, "{o}");
                assert!(o["app"]["name"].is_string(), "{o}");
                assert!(o["status_id"] == 1 || o["status_id"] == 2, "{o}");
            }
            ("Microsoft-Windows-WMI-Activity/Operational", "5861") => {
                assert!(o["job"]["name"].is_string(), "{o}");
                assert!(o["job"]["cmd_line"].is_string(), "{o}");
            }
            _ => {}
        }
    }
    let n = |ch: &str, ids: &[&str]| count(&by_key, ch, ids);
    let sec = "Security";
    let sysmon = "Microsoft-Windows-Sysmon/Operational";
    assert_eq!(events, 8_333);
    assert_eq!(
        classes.get(&3002).copied().unwrap_or(0),
        n(
            sec,
            &[
                "4624", "4625", "4634", "4647", "4648", "4768", "4769", "4771", "4776"
            ]
        )
    );
    assert!(n(sec, &["4625"]) > 3_000, "the dataset's password guessing");
    assert_eq!(
        classes.get(&1007).copied().unwrap_or(0),
        n(sysmon, &["1", "5", "10"]) + n(sec, &["4688", "4689"])
    );
    assert_eq!(
        classes.get(&1008).copied().unwrap_or(0),
        n(sec, &["1102"]) + n("System", &["104"])
    );
    assert_eq!(
        classes.get(&1008),
        Some(&14),
        "11 Security and 3 System log clearings"
    );
    assert_eq!(
        classes.get(&3001).copied().unwrap_or(0) + classes.get(&3006).copied().unwrap_or(0),
        n(
            sec,
            &[
                "4720", "4722", "4723", "4724", "4725", "4726", "4738", "4740", "4767", "4781",
                "4728", "4732", "4756", "4729", "4733", "4757"
            ]
        )
    );
    let wmi = "Microsoft-Windows-WMI-Activity/Operational";
    assert_eq!(
        classes.get(&1009).copied().unwrap_or(0),
        n("Microsoft-Windows-PowerShell/Operational", &["4104"])
    );
    assert!(n("Microsoft-Windows-PowerShell/Operational", &["4104"]) > 300);
    assert_eq!(classes.get(&1005).copied().unwrap_or(0), n(wmi, &["5857"]));
    assert_eq!(
        classes.get(&4006).copied().unwrap_or(0),
        n(sec, &["5140", "5145"])
    );
    assert!(n(sec, &["5140"]) > 200, "share accesses");
    assert!(n(wmi, &["5857"]) > 100, "WMI providers loaded");
    assert_eq!(
        classes.get(&3003).copied().unwrap_or(0),
        n(sec, &["4672", "4703"])
    );
    assert!(n(sec, &["4703"]) > 150, "token privileges adjusted");
    assert_eq!(classes.get(&6003).copied().unwrap_or(0), n(wmi, &["5858"]));
    assert!(n(wmi, &["5858"]) > 700, "WMI operation errors");
    assert_eq!(
        classes.get(&201_004).copied().unwrap_or(0),
        n("System", &["7045"]) + n(sec, &["4697"])
    );
    assert_eq!(
        classes.get(&1006).copied().unwrap_or(0),
        n(wmi, &["5860", "5861"]) + n(sec, &["4698", "4699", "4700", "4701", "4702"])
    );
    // Every Sysmon registry event the dataset holds is a key or value change.
    assert_eq!(
        classes.get(&201_001).copied().unwrap_or(0) + classes.get(&201_002).copied().unwrap_or(0),
        n(sysmon, &["12", "13", "14"])
    );
    assert_eq!(classes.get(&4001).copied().unwrap_or(0), n(sysmon, &["3"]));
    let p = |provider: &str, ids: &[&str]| count(&by_provider, provider, ids);
    let installs = p(
        "MsiInstaller",
        &[
            "1022", "1033", "1034", "1035", "1036", "11707", "11708", "11724", "11725", "11728",
            "11729",
        ],
    );
    assert_eq!(
        classes.get(&6002).copied().unwrap_or(0),
        installs + p("Application Error", &["1000"]) + p("Application Hang", &["1002"])
    );
    assert!(installs > 180, "software installs and updates: {installs}");
    assert_eq!(classes.get(&4003).copied().unwrap_or(0), n(sysmon, &["22"]));
}

mod arbitrary {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            "[ -~]{0,24}".prop_map(Value::from),
            "0x[0-9a-fA-F]{0,20}".prop_map(Value::from),
            Just(json!({"#text": "4625"})),
            Just(json!([1, "x"])),
        ]
    }

    const KEYS: &[&str] = &[
        "TargetUserName",
        "TargetDomainName",
        "SubjectUserName",
        "IpAddress",
        "IpPort",
        "LogonType",
        "Status",
        "SubStatus",
        "ProcessId",
        "NewProcessId",
        "Image",
        "CommandLine",
        "Hashes",
        "TargetFilename",
        "AccessMask",
        "ObjectType",
        "ObjectName",
        "SourceIp",
        "DestinationPort",
        "Initiated",
        "QueryName",
        "QueryResults",
        "QueryStatus",
        "Channel",
    ];

    proptest! {
        /// Whatever a sender puts in a Windows-shaped record, mapping it never panics and
        /// anything it returns is an OCSF object with a class.
        #[test]
        fn any_windows_shaped_record_maps_or_is_left_alone(
            channel in prop_oneof![
                Just("Security".to_string()),
                Just("System".to_string()),
                Just("Microsoft-Windows-Sysmon/Operational".to_string()),
                "[ -~]{0,12}",
            ],
            id in prop_oneof![scalar(), (0u32..6000).prop_map(Value::from)],
            fields in proptest::collection::vec((0..KEYS.len(), scalar()), 0..12),
            user_data in any::<bool>(),
        ) {
            let mut data = serde_json::Map::new();
            for (k, v) in fields {
                data.insert(KEYS[k].to_string(), v);
            }
            let body = if user_data { json!({"UserData": {"X": data}}) } else { json!({"EventData": data}) };
            let mut ev = json!({"Event": {"System": {"Channel": channel, "EventID": id,
                "TimeCreated_attributes": {"SystemTime": "not a time"}}}});
            for (k, v) in body.as_object().unwrap() {
                ev["Event"][k] = v.clone();
            }
            if let Some(o) = cf_ingest::winevent::to_ocsf(&ev) {
                prop_assert!(o["class_uid"].as_u64().is_some());
            }
        }
    }
}

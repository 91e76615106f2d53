//! Windows events into OCSF 1.3 (SA-1): `evtx_dump` JSON records (the shape `chengfang ingest
//! FILE.evtx` sends) routed by channel and event id into Authentication, Account Change, Group
//! Management, Authorize Session, Process, File System, Network, DNS, SMB, Script, Module, Event
//! Log, Scheduled Job, API Activity and Application Lifecycle, and the Windows extension's
//! registry and service classes. Routing is by channel, never by provider alone: the Security log's "log cleared"
//! (1102) is written by the Eventlog provider, and provider routing loses it.

use serde_json::{Value, json};

use crate::ocsf::OCSF_VERSION;

const SECURITY: &str = "Security";
const SYSTEM: &str = "System";
const SYSMON: &str = "Microsoft-Windows-Sysmon/Operational";
const POWERSHELL: &str = "Microsoft-Windows-PowerShell/Operational";
const WMI: &str = "Microsoft-Windows-WMI-Activity/Operational";
const APPLICATION: &str = "Application";

/// OCSF's Windows extension (`win`, uid 2): its registry and service classes (2010xx).
const WIN_EXTENSION: &str = "2";

/// Whether a JSON record is a Windows event in the `evtx_dump` shape.
pub fn is_windows(v: &Value) -> bool {
    v.pointer("/Event/System/Channel").is_some()
}

/// The event id, whether `evtx_dump` wrote it as a number, a string or `{"#text": …}`.
fn event_id(sys: &Value) -> Option<u32> {
    let id = sys.get("EventID")?;
    let id = id.get("#text").unwrap_or(id);
    id.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .or_else(|| id.as_str()?.trim().parse().ok())
}

/// A field of the event's data: `EventData.<k>`, else `UserData.<element>.<k>`.
fn field<'a>(v: &'a Value, k: &str) -> Option<&'a Value> {
    let ev = v.get("Event")?;
    if let Some(x) = ev.get("EventData").and_then(|d| d.get(k)) {
        return Some(x);
    }
    ev.get("UserData")?
        .as_object()?
        .values()
        .find_map(|el| el.get(k))
}

/// A text field; Windows writes `-` (or nothing) for "not applicable".
fn text<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    field(v, k)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty() && *s != "-")
}

/// A number field: decimal, `0x…` hexadecimal (Security log process ids) or a JSON number.
fn number(v: &Value, k: &str) -> Option<u64> {
    let x = field(v, k)?;
    x.as_u64().or_else(|| {
        let s = x.as_str()?.trim();
        match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            Some(h) => u64::from_str_radix(h, 16).ok(),
            None => s.parse().ok(),
        }
    })
}

fn basename(path: &str) -> &str {
    path.rsplit(['\\', '/']).next().unwrap_or(path)
}

/// `DOMAIN\user` or separate user and domain fields, as an OCSF user.
fn user(name: Option<&str>, domain: Option<&str>, sid: Option<&str>) -> Option<Value> {
    let name = name?;
    let (domain, name) = match name.split_once('\\') {
        Some((d, n)) if domain.is_none() => (Some(d), n),
        _ => (domain, name),
    };
    Some(json!({"name": name, "domain": domain, "uid": sid}))
}

fn subject(v: &Value) -> Option<Value> {
    user(
        text(v, "SubjectUserName"),
        text(v, "SubjectDomainName"),
        text(v, "SubjectUserSid"),
    )
}

fn target(v: &Value) -> Option<Value> {
    user(
        text(v, "TargetUserName"),
        text(v, "TargetDomainName"),
        text(v, "TargetUserSid").or_else(|| text(v, "TargetSid")),
    )
}

/// Sysmon's `Hashes` (`SHA256=…,MD5=…,IMPHASH=…`) as OCSF fingerprints.
fn hashes(s: Option<&str>) -> Vec<Value> {
    s.into_iter()
        .flat_map(|s| s.split(','))
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(alg, h)| {
            let id = match alg.trim().to_ascii_uppercase().as_str() {
                "MD5" => 1,
                "SHA1" => 2,
                "SHA256" => 3,
                "SHA512" => 4,
                _ => 99,
            };
            (!h.trim().is_empty())
                .then(|| json!({"algorithm_id": id, "algorithm": alg.trim(), "value": h.trim()}))
        })
        .collect()
}

fn file(path: Option<&str>) -> Option<Value> {
    path.map(|p| json!({"path": p, "name": basename(p)}))
}

/// The process a Sysmon event reports as its actor.
fn sysmon_actor(v: &Value) -> Value {
    json!({
        "process": {"pid": number(v, "ProcessId"), "uid": text(v, "ProcessGuid"), "file": file(text(v, "Image"))},
        "user": user(text(v, "User"), None, None),
    })
}

/// The 4625 / 4771 / 4776 status codes that say why a logon failed.
fn failure_reason(code: u64) -> &'static str {
    match code {
        0xc000_0064 => "unknown user",
        0xc000_006a => "wrong password",
        0xc000_006d => "bad user name or authentication information",
        0xc000_006e => "account restriction",
        0xc000_006f => "outside allowed hours",
        0xc000_0070 => "workstation restriction",
        0xc000_0071 => "password expired",
        0xc000_0072 => "account disabled",
        0xc000_0133 => "clock skew",
        0xc000_015b => "logon type not granted",
        0xc000_0193 => "account expired",
        0xc000_0224 => "password must change",
        0xc000_0234 => "account locked out",
        0x12 => "account disabled, expired or locked out",
        0x17 => "password expired",
        0x18 => "wrong password",
        0x6 => "unknown user",
        _ => "failure",
    }
}

struct Header<'a> {
    channel: &'a str,
    id: u32,
    computer: Option<&'a str>,
    time: Option<i64>,
    provider: Option<&'a str>,
    record: Option<u64>,
    level: Option<u64>,
}

fn header(v: &Value) -> Option<Header<'_>> {
    let sys = v.pointer("/Event/System")?;
    Some(Header {
        channel: sys.get("Channel")?.as_str()?,
        id: event_id(sys)?,
        computer: sys.get("Computer").and_then(Value::as_str),
        time: sys
            .pointer("/TimeCreated_attributes/SystemTime")
            .or_else(|| sys.pointer("/TimeCreated/#attributes/SystemTime"))
            .and_then(Value::as_str)
            .and_then(|t| cf_core::Timestamp::parse_rfc3339(t).ok())
            .map(|t| t.unix_millis()),
        provider: sys
            .pointer("/Provider_attributes/Name")
            .or_else(|| sys.pointer("/Provider/#attributes/Name"))
            .and_then(Value::as_str),
        record: sys.get("EventRecordID").and_then(Value::as_u64),
        level: sys.get("Level").and_then(Value::as_u64),
    })
}

fn base(h: &Header<'_>, class_uid: u32, activity_id: u32) -> Value {
    json!({
        "class_uid": class_uid,
        "category_uid": class_uid / 1000,
        "activity_id": activity_id,
        "type_uid": class_uid * 100 + activity_id,
        "time": h.time,
        "severity_id": match h.level { Some(1) => 5, Some(2) => 4, Some(3) => 3, _ => 1 },
        "device": {"hostname": h.computer, "os": {"type_id": 100, "name": "Windows"}},
        "metadata": {"version": OCSF_VERSION, "log_name": h.channel, "event_code": h.id.to_string(),
                     "uid": h.record.map(|r| r.to_string()),
                     "product": {"name": h.provider, "vendor_name": "Microsoft"}},
    })
}

fn status(o: &mut Value, ok: Option<bool>, detail: Option<&str>) {
    let (id, name) = match ok {
        Some(true) => (1, "Success"),
        Some(false) => (2, "Failure"),
        None => (0, "Unknown"),
    };
    o["status_id"] = json!(id);
    o["status"] = json!(name);
    if let Some(d) = detail {
        o["status_detail"] = json!(d);
    }
}

fn endpoint(ip: Option<&str>, port: Option<u64>, host: Option<&str>) -> Value {
    // Kerberos events write IPv4 clients as `::ffff:a.b.c.d`.
    let ip = ip.map(|i| i.strip_prefix("::ffff:").unwrap_or(i));
    json!({"ip": ip, "port": port, "hostname": host})
}

/// Security-log logons and logoffs, Kerberos and NTLM validation → Authentication (3002).
fn authentication(v: &Value, h: &Header<'_>) -> Option<Value> {
    let (activity, ok, proto): (u32, Option<bool>, Option<&str>) = match h.id {
        4624 => (1, Some(true), text(v, "AuthenticationPackageName")),
        4625 => (1, Some(false), text(v, "AuthenticationPackageName")),
        4648 => (1, None, None),
        4634 | 4647 => (2, Some(true), None),
        4768 | 4769 => (
            if h.id == 4768 { 3 } else { 4 },
            Some(number(v, "Status") == Some(0)),
            Some("Kerberos"),
        ),
        4771 => (3, Some(false), Some("Kerberos")),
        4776 => (1, Some(number(v, "Status") == Some(0)), Some("NTLM")),
        _ => return None,
    };
    let mut o = base(h, 3002, activity);
    let detail = (ok == Some(false)).then(|| {
        let code = number(v, "SubStatus")
            .filter(|c| *c != 0)
            .or_else(|| number(v, "Status"))
            .unwrap_or(0);
        failure_reason(code)
    });
    status(&mut o, ok, detail);
    o["user"] = target(v).unwrap_or(Value::Null);
    o["actor"] = json!({"user": subject(v)});
    o["auth_protocol"] = json!(proto.map(str::trim));
    o["src_endpoint"] = endpoint(
        text(v, "IpAddress"),
        number(v, "IpPort").filter(|p| *p > 0),
        text(v, "WorkstationName").or_else(|| text(v, "Workstation")),
    );
    o["dst_endpoint"] = json!({"hostname": text(v, "TargetServerName").or(h.computer)});
    if let Some(t) = number(v, "LogonType") {
        o["logon_type_id"] = json!(t);
    }
    if let Some(s) = text(v, "ServiceName") {
        o["service"] = json!({"name": s});
    }
    Some(o)
}

/// Account lifecycle → Account Change (3001); group membership → Group Management (3006).
fn account(v: &Value, h: &Header<'_>) -> Option<Value> {
    let (class, activity) = match h.id {
        4720 => (3001, 1),
        4722 => (3001, 2),
        4723 => (3001, 3),
        4724 => (3001, 4),
        4725 => (3001, 5),
        4726 => (3001, 6),
        4740 => (3001, 9),
        4738 | 4767 | 4781 => (3001, 99),
        4728 | 4732 | 4756 => (3006, 3),
        4729 | 4733 | 4757 => (3006, 4),
        _ => return None,
    };
    let mut o = base(h, class, activity);
    o["actor"] = json!({"user": subject(v)});
    if class == 3001 {
        o["user"] = target(v).unwrap_or(Value::Null);
    } else {
        o["group"] = json!({"name": text(v, "TargetUserName"), "domain": text(v, "TargetDomainName"), "uid": text(v, "TargetSid")});
        o["user"] = json!({"name": text(v, "MemberName"), "uid": text(v, "MemberSid")});
    }
    status(&mut o, Some(true), None);
    Some(o)
}

/// Process creation and termination → Process Activity (1007).
fn process(v: &Value, h: &Header<'_>) -> Option<Value> {
    let o = match (h.channel, h.id) {
        (SYSMON, 1) => {
            let mut o = base(h, 1007, 1);
            let mut f = file(text(v, "Image")).unwrap_or(Value::Null);
            let hs = hashes(text(v, "Hashes"));
            if !hs.is_empty() {
                f["hashes"] = json!(hs);
            }
            o["process"] = json!({
                "pid": number(v, "ProcessId"), "uid": text(v, "ProcessGuid"), "file": f,
                "cmd_line": text(v, "CommandLine"), "integrity": text(v, "IntegrityLevel"),
                "user": user(text(v, "User"), None, None),
                "parent_process": {"pid": number(v, "ParentProcessId"), "uid": text(v, "ParentProcessGuid"),
                                   "file": file(text(v, "ParentImage")), "cmd_line": text(v, "ParentCommandLine")},
            });
            o["actor"] = json!({"user": user(text(v, "User"), None, None)});
            o
        }
        (SYSMON, 5) => {
            let mut o = base(h, 1007, 2);
            o["process"] = json!({"pid": number(v, "ProcessId"), "uid": text(v, "ProcessGuid"), "file": file(text(v, "Image"))});
            o["actor"] = json!({"user": user(text(v, "User"), None, None)});
            o
        }
        (SYSMON, 10) => {
            let mut o = base(h, 1007, 3);
            o["process"] =
                json!({"pid": number(v, "TargetProcessId"), "file": file(text(v, "TargetImage"))});
            o["actor"] = json!({"process": {"pid": number(v, "SourceProcessId"), "file": file(text(v, "SourceImage"))}});
            o["granted_access"] = json!(text(v, "GrantedAccess"));
            o
        }
        (SECURITY, 4688) => {
            let mut o = base(h, 1007, 1);
            o["process"] = json!({
                "pid": number(v, "NewProcessId"), "file": file(text(v, "NewProcessName")),
                "cmd_line": text(v, "CommandLine"),
                "parent_process": {"pid": number(v, "ProcessId"), "file": file(text(v, "ParentProcessName"))},
            });
            o["actor"] = json!({"user": subject(v)});
            o
        }
        (SECURITY, 4689) => {
            let mut o = base(h, 1007, 2);
            o["process"] =
                json!({"pid": number(v, "ProcessId"), "file": file(text(v, "ProcessName"))});
            o["actor"] = json!({"user": subject(v)});
            o
        }
        _ => return None,
    };
    Some(o)
}

/// File creation, deletion and timestamp changes (Sysmon) and object access on files (4663)
/// → File System Activity (1001).
fn file_activity(v: &Value, h: &Header<'_>) -> Option<Value> {
    let (activity, path) = match (h.channel, h.id) {
        (SYSMON, 11) => (1, text(v, "TargetFilename")),
        (SYSMON, 2) => (6, text(v, "TargetFilename")),
        (SYSMON, 23 | 26) => (4, text(v, "TargetFilename")),
        (SECURITY, 4663) if text(v, "ObjectType") == Some("File") => {
            let mask = number(v, "AccessMask").unwrap_or(0);
            let a = if mask & 0x1_0000 != 0 {
                4
            } else if mask & 0x2 != 0 || mask & 0x4 != 0 {
                3
            } else if mask & 0x1 != 0 {
                2
            } else {
                14
            };
            (a, text(v, "ObjectName"))
        }
        _ => return None,
    };
    let mut o = base(h, 1001, activity);
    o["file"] = file(path).unwrap_or(Value::Null);
    o["actor"] = if h.channel == SYSMON {
        sysmon_actor(v)
    } else {
        json!({"user": subject(v), "process": {"pid": number(v, "ProcessId"), "file": file(text(v, "ProcessName"))}})
    };
    Some(o)
}

/// Sysmon network connections → Network Activity (4001); Sysmon DNS queries → DNS Activity (4003).
fn network(v: &Value, h: &Header<'_>) -> Option<Value> {
    match (h.channel, h.id) {
        (SYSMON, 3) => {
            let mut o = base(h, 4001, 1);
            let proto = text(v, "Protocol").unwrap_or("");
            let outbound = field(v, "Initiated")
                .map(|x| x.as_bool().unwrap_or(x.as_str() == Some("true")))
                .unwrap_or(true);
            o["src_endpoint"] = endpoint(
                text(v, "SourceIp"),
                number(v, "SourcePort"),
                text(v, "SourceHostname"),
            );
            o["dst_endpoint"] = endpoint(
                text(v, "DestinationIp"),
                number(v, "DestinationPort"),
                text(v, "DestinationHostname"),
            );
            o["connection_info"] = json!({
                "protocol_name": proto,
                "protocol_num": match proto { "tcp" => Some(6), "udp" => Some(17), _ => None },
                "direction_id": if outbound { 2 } else { 1 },
            });
            o["actor"] = sysmon_actor(v);
            Some(o)
        }
        (SYSMON, 22) => {
            let mut o = base(h, 4003, 1);
            o["query"] = json!({"hostname": text(v, "QueryName")});
            let answers: Vec<Value> = text(v, "QueryResults")
                .into_iter()
                .flat_map(|r| r.split(';'))
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(|a| json!({"rdata": a.strip_prefix("::ffff:").unwrap_or(a)}))
                .collect();
            o["answers"] = json!(answers);
            o["rcode_id"] = json!(number(v, "QueryStatus"));
            o["src_endpoint"] = json!({"hostname": h.computer});
            o["actor"] = sysmon_actor(v);
            Some(o)
        }
        _ => None,
    }
}

/// The Security log or another log cleared → Event Log Activity (1008), activity Clear.
fn log_cleared(v: &Value, h: &Header<'_>) -> Option<Value> {
    let cleared = match (h.channel, h.id) {
        (SECURITY, 1102) => SECURITY,
        (SYSTEM, 104) => text(v, "Channel").unwrap_or(SYSTEM),
        _ => return None,
    };
    let mut o = base(h, 1008, 1);
    o["log_name"] = json!(cleared);
    o["actor"] = json!({"user": subject(v)});
    status(&mut o, Some(true), None);
    Some(o)
}

/// The account in the record's `System/Security` element (a SID), for events whose data names
/// no user.
fn system_user(v: &Value) -> Option<Value> {
    let sid = v
        .pointer("/Event/System/Security_attributes/UserID")
        .or_else(|| v.pointer("/Event/System/Security/#attributes/UserID"))
        .and_then(Value::as_str)?;
    Some(json!({"uid": sid}))
}

/// A class of OCSF's Windows extension: the extension is named in the metadata.
fn win_base(h: &Header<'_>, class_uid: u32, activity_id: u32) -> Value {
    let mut o = base(h, class_uid, activity_id);
    o["category_uid"] = json!(1);
    o["metadata"]["extension"] =
        json!({"name": "win", "uid": WIN_EXTENSION, "version": OCSF_VERSION});
    o
}

/// PowerShell script block logging (4104) → Script Activity (1009), activity Execute: the
/// script's text, its block id and file; long scripts arrive in numbered parts.
fn script(v: &Value, h: &Header<'_>) -> Option<Value> {
    if (h.channel, h.id) != (POWERSHELL, 4104) {
        return None;
    }
    let mut o = base(h, 1009, 1);
    let mut sc = json!({
        "type_id": 2, "type": "PowerShell",
        "script_content": text(v, "ScriptBlockText"),
        "uid": text(v, "ScriptBlockId"),
    });
    if let Some(f) = file(text(v, "Path")) {
        sc["file"] = f;
    }
    o["script"] = sc;
    if let (Some(n), Some(t)) = (number(v, "MessageNumber"), number(v, "MessageTotal")) {
        o["unmapped"] = json!({"MessageNumber": n, "MessageTotal": t});
    }
    o["actor"] = json!({"user": system_user(v)});
    Some(o)
}

/// A service installed (System 7045, Security 4697) → Windows Service Activity (201004), Create.
fn service(v: &Value, h: &Header<'_>) -> Option<Value> {
    match (h.channel, h.id) {
        (SYSTEM, 7045) | (SECURITY, 4697) => {}
        _ => return None,
    }
    let mut o = win_base(h, 201_004, 1);
    o["win_service"] = json!({
        "name": text(v, "ServiceName"),
        "cmd_line": text(v, "ImagePath").or_else(|| text(v, "ServiceFileName")),
        "service_start_name": text(v, "AccountName").or_else(|| text(v, "ServiceAccount")),
        "service_type": text(v, "ServiceType"),
        "service_start_type": text(v, "StartType"),
    });
    o["actor"] = json!({"user": subject(v).or_else(|| system_user(v))});
    status(&mut o, Some(true), None);
    Some(o)
}

/// Sysmon registry events (12, 13, 14) → Registry Key Activity (201001) or Registry Value
/// Activity (201002), by the event's `EventType`.
fn registry(v: &Value, h: &Header<'_>) -> Option<Value> {
    if h.channel != SYSMON || !(12..=14).contains(&h.id) {
        return None;
    }
    let path = text(v, "TargetObject")?;
    let (class, activity) = match text(v, "EventType")? {
        "CreateKey" => (201_001, 1),
        "DeleteKey" => (201_001, 4),
        "RenameKey" => (201_001, 5),
        "SetValue" | "CreateValue" => (201_002, 2),
        "DeleteValue" => (201_002, 4),
        _ => return None,
    };
    let mut o = win_base(h, class, activity);
    if class == 201_001 {
        o["reg_key"] = json!({"path": path});
        if let Some(new) = text(v, "NewName") {
            o["reg_key"]["path"] = json!(new);
            o["prev_reg_key"] = json!({"path": path});
        }
    } else {
        let (key, name) = path.rsplit_once('\\').unwrap_or(("", path));
        o["reg_value"] = json!({"path": path, "name": name, "data": text(v, "Details")});
        o["reg_key"] = json!({"path": key});
    }
    o["actor"] = sysmon_actor(v);
    Some(o)
}

/// Scheduled tasks (Security 4698-4702) and WMI event subscriptions (WMI-Activity 5860
/// temporary, 5861 permanent — a common persistence, ATT&CK T1546.003) → Scheduled Job Activity
/// (1006): both run an action when a trigger fires.
fn scheduled_job(v: &Value, h: &Header<'_>) -> Option<Value> {
    let (activity, job) = match (h.channel, h.id) {
        (SECURITY, 4698..=4702) => (
            match h.id {
                4698 => 1,
                4699 => 2,
                4700 => 3,
                4701 => 4,
                _ => 5,
            },
            json!({"name": text(v, "TaskName"), "cmd_line": text(v, "TaskContent"), "type": "Task Scheduler"}),
        ),
        (WMI, 5861) => (
            1,
            json!({"name": text(v, "ESS"), "cmd_line": text(v, "CONSUMER"),
                "type": "WMI permanent event subscription"}),
        ),
        (WMI, 5860) => (
            1,
            json!({"name": text(v, "Query"), "cmd_line": text(v, "Query"),
                "type": "WMI temporary event subscription"}),
        ),
        _ => return None,
    };
    let mut o = base(h, 1006, activity);
    o["job"] = job;
    if h.channel == WMI {
        o["unmapped"] = json!({
            "namespace": text(v, "Namespace").or_else(|| text(v, "NamespaceName")),
            "possible_cause": text(v, "PossibleCause"),
        });
    }
    o["actor"] = match h.channel {
        WMI => json!({"user": user(text(v, "User"), None, None).or_else(|| system_user(v)),
                      "process": {"pid": number(v, "Processid")}}),
        _ => json!({"user": subject(v)}),
    };
    Some(o)
}

/// A WMI provider started in its host process (WMI-Activity 5857) → Module Activity (1005),
/// Load: a provider DLL no other host loads is how WMI persistence and lateral movement show.
fn wmi_provider(v: &Value, h: &Header<'_>) -> Option<Value> {
    if (h.channel, h.id) != (WMI, 5857) {
        return None;
    }
    let mut o = base(h, 1005, 1);
    o["module"] = json!({"file": file(text(v, "ProviderPath")), "type": text(v, "ProviderName")});
    o["actor"] =
        json!({"process": {"pid": number(v, "ProcessID"), "name": text(v, "HostProcess")}});
    status(&mut o, Some(number(v, "Code") == Some(0)), None);
    Some(o)
}

/// A network share reached (Security 5140, 5145) → SMB Activity (4006): the share, the address
/// it was reached from and the account — `ADMIN$`/`C$` from a workstation is how lateral movement
/// looks. 5140 is the connection to the share (Other); 5145 names the file (File Open).
fn share_access(v: &Value, h: &Header<'_>) -> Option<Value> {
    let activity = match (h.channel, h.id) {
        (SECURITY, 5140) => 99,
        (SECURITY, 5145) => 2,
        _ => return None,
    };
    let mut o = base(h, 4006, activity);
    if activity == 99 {
        o["activity_name"] = json!("Share Access");
    }
    let share = text(v, "ShareName");
    o["share"] = json!(share);
    o["share_type_id"] = json!(if share.is_some_and(|s| s.ends_with("IPC$")) {
        2
    } else {
        1
    });
    if let Some(rel) = text(v, "RelativeTargetName") {
        o["file"] = json!({"path": rel, "name": basename(rel)});
    } else {
        o["file"] = json!({"path": text(v, "ShareLocalPath")});
    }
    o["src_endpoint"] = endpoint(text(v, "IpAddress"), number(v, "IpPort"), None);
    o["dst_endpoint"] = json!({"hostname": h.computer});
    o["actor"] = json!({"user": subject(v)});
    status(&mut o, Some(true), None);
    Some(o)
}

/// Privileges given to a new logon (Security 4672, "special privileges": an administrator-class
/// session) or enabled on a process's token (4703) → Authorize Session (3003). 4672 is Assign
/// Privileges (1); 4703 is Other (99, "Adjust Token Privileges"): the process, and the privileges
/// it switched on — SeDebugPrivilege or SeSecurityPrivilege enabled by an unusual program is how
/// credential dumping and log tampering start.
fn privileges(v: &Value, h: &Header<'_>) -> Option<Value> {
    let list = |k: &str| -> Vec<&str> {
        text(v, k)
            .map(|s| s.split_whitespace().collect())
            .unwrap_or_default()
    };
    let mut o = match h.id {
        4672 => {
            let mut o = base(h, 3003, 1);
            o["privileges"] = json!(list("PrivilegeList"));
            o["user"] = json!(subject(v));
            o["session"] = json!({"uid": text(v, "SubjectLogonId")});
            o
        }
        4703 => {
            let mut o = base(h, 3003, 99);
            o["activity_name"] = json!("Adjust Token Privileges");
            o["privileges"] = json!(list("EnabledPrivilegeList"));
            o["unmapped"] = json!({"disabled_privileges": list("DisabledPrivilegeList")});
            o["user"] = json!(target(v));
            o["session"] = json!({"uid": text(v, "TargetLogonId")});
            o["actor"] = json!({"user": subject(v), "process": {
                "pid": number(v, "ProcessId"),
                "file": file(text(v, "ProcessName")),
                "name": text(v, "ProcessName").map(basename),
            }});
            o
        }
        _ => return None,
    };
    status(&mut o, Some(true), None);
    Some(o)
}

/// A WMI operation that failed on the server (WMI-Activity 5858) → API Activity (6003), Other
/// ("WMI Operation"), status Failure with the HRESULT: the operation names the method, namespace
/// and object — `DeleteInstance` of `root\SecurityCenter:AntiVirusProduct` is an attempt to
/// unregister the antivirus.
fn wmi_error(v: &Value, h: &Header<'_>) -> Option<Value> {
    if (h.channel, h.id) != (WMI, 5858) {
        return None;
    }
    let mut o = base(h, 6003, 99);
    o["activity_name"] = json!("WMI Operation");
    let code = text(v, "ResultCode")
        .map(str::to_string)
        .or_else(|| number(v, "ResultCode").map(|n| format!("0x{n:08X}")));
    o["api"] = json!({
        "operation": text(v, "Operation"),
        "service": {"name": "WMI"},
        "response": {"code": code, "error": code, "error_message": text(v, "PossibleCause")},
    });
    o["src_endpoint"] = json!({"hostname": text(v, "ClientMachine")});
    o["actor"] = json!({
        "user": user(text(v, "User"), None, None).or_else(|| system_user(v)),
        "process": {"pid": number(v, "ClientProcessId")},
    });
    o["unmapped"] = json!({"component": text(v, "Component")});
    status(&mut o, Some(false), code.as_deref());
    Some(o)
}

/// The positional values of an event without named data (`EventData.Data` as `#text`, one string
/// or a list, as the Application log's classic providers write them); `(NULL)` and empty are
/// `None`.
fn positional(v: &Value) -> Vec<Option<&str>> {
    let data = v.pointer("/Event/EventData/Data");
    let data = data.map(|d| d.get("#text").unwrap_or(d));
    fn keep(s: &str) -> Option<&str> {
        let s = s.trim();
        (!s.is_empty() && s != "(NULL)").then_some(s)
    }
    match data {
        Some(Value::String(s)) => vec![keep(s)],
        Some(Value::Array(a)) => a.iter().map(|x| x.as_str().and_then(keep)).collect(),
        _ => Vec::new(),
    }
}

/// Software installed, removed, updated or reconfigured by Windows Installer, and applications
/// that crashed or hung, from the Application log → Application Lifecycle (6002). Ids there are
/// per provider, so the provider picks the mapping. MsiInstaller 1033/1034/1035/1036 carry
/// `[product, version, language, (update,) status, manufacturer]` with status 0 for success;
/// 1022 names an update; 11707/11708, 11724/11725 and 11728/11729 are the "Product: NAME --
/// … completed successfully / failed" lines. Application Error 1000 and Application Hang 1002
/// are a Stop that failed: the program, its path and pid, and for a crash the faulting module
/// and exception code — a crash of `lsass.exe` or of an exposed service is how exploitation and
/// credential theft often show. Installer transactions (1040/1042) and other Application log
/// events keep no class.
fn app_lifecycle(v: &Value, h: &Header<'_>) -> Option<Value> {
    let d = positional(v);
    let at = |i: usize| d.get(i).copied().flatten();
    // Process ids there are hexadecimal, with or without `0x`.
    let pid =
        |i: usize| at(i).and_then(|p| u64::from_str_radix(p.trim_start_matches("0x"), 16).ok());
    let product_line = || {
        at(0)
            .and_then(|l| l.strip_prefix("Product: "))
            .and_then(|l| l.split_once(" -- "))
            .map(|(name, _)| name)
    };
    // (activity, activity name for Other, app name, version, vendor, update, success)
    let (activity, other, name, version, vendor, update, ok) = match (h.provider?, h.id) {
        ("MsiInstaller", 1033..=1035) => {
            let activity = match h.id {
                1033 => 1,
                1034 => 2,
                _ => 99,
            };
            let ok = at(3).map(|c| c == "0");
            (activity, "Reconfigure", at(0), at(1), at(4), None, ok)
        }
        ("MsiInstaller", 1036) => (8, "", at(0), at(1), at(5), at(3), at(4).map(|c| c == "0")),
        ("MsiInstaller", 1022) => (8, "", at(0), None, None, at(1), Some(true)),
        ("MsiInstaller", 11707 | 11708) => {
            (1, "", product_line(), None, None, None, Some(h.id == 11707))
        }
        ("MsiInstaller", 11724 | 11725) => {
            (2, "", product_line(), None, None, None, Some(h.id == 11724))
        }
        ("MsiInstaller", 11728 | 11729) => (
            99,
            "Configure",
            product_line(),
            None,
            None,
            None,
            Some(h.id == 11728),
        ),
        ("Application Error", 1000) | ("Application Hang", 1002) => {
            (4, "", at(0), at(1), None, None, Some(false))
        }
        _ => return None,
    };
    let mut o = base(h, 6002, activity);
    if activity == 99 {
        o["activity_name"] = json!(other);
    }
    o["app"] = json!({"name": name, "version": version, "vendor_name": vendor});
    if let Some(kb) = update {
        o["app"]["feature"] = json!({"name": kb});
    }
    let detail = match (h.provider, h.id) {
        (Some("Application Error"), _) => {
            o["actor"] = json!({"process": {"pid": pid(8), "file": file(at(10)), "name": at(0)}});
            o["unmapped"] = json!({"faulting_module": {"name": at(3), "version": at(4), "path": at(11)},
                                   "exception_code": at(6), "fault_offset": at(7), "report_id": at(12)});
            at(6).map(|c| format!("crashed: exception 0x{c} in {}", at(3).unwrap_or("?")))
        }
        (Some("Application Hang"), _) => {
            o["actor"] = json!({"process": {"pid": pid(2), "file": file(at(5)), "name": at(0)}});
            Some("stopped responding".to_string())
        }
        _ => None,
    };
    status(&mut o, ok, detail.as_deref());
    Some(o)
}

/// The OCSF event for a Windows event, when its channel and id have a mapping; `None` for other
/// records (they are kept and searchable as they are).
pub fn to_ocsf(v: &Value) -> Option<Value> {
    let h = header(v)?;
    match h.channel {
        SECURITY => authentication(v, &h)
            .or_else(|| account(v, &h))
            .or_else(|| process(v, &h))
            .or_else(|| file_activity(v, &h))
            .or_else(|| log_cleared(v, &h))
            .or_else(|| service(v, &h))
            .or_else(|| scheduled_job(v, &h))
            .or_else(|| share_access(v, &h))
            .or_else(|| privileges(v, &h)),
        SYSMON => process(v, &h)
            .or_else(|| file_activity(v, &h))
            .or_else(|| network(v, &h))
            .or_else(|| registry(v, &h)),
        SYSTEM => log_cleared(v, &h).or_else(|| service(v, &h)),
        POWERSHELL => script(v, &h),
        WMI => scheduled_job(v, &h)
            .or_else(|| wmi_provider(v, &h))
            .or_else(|| wmi_error(v, &h)),
        APPLICATION => app_lifecycle(v, &h),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(channel: &str, id: Value, data: Value) -> Value {
        json!({"Event": {"System": {"Provider_attributes": {"Name": "P"}, "EventID": id, "Level": 0,
            "TimeCreated_attributes": {"SystemTime": "2023-04-19T17:46:27.0201234Z"},
            "EventRecordID": 7, "Channel": channel, "Computer": "VALKYRIE.galactica.cc"},
            "EventData": data}})
    }

    fn app_event(provider: &str, id: u32, data: Value) -> Value {
        json!({"Event": {"System": {"Provider_attributes": {"Name": provider}, "EventID": id,
            "Level": 4, "TimeCreated_attributes": {"SystemTime": "2016-08-16T10:00:00Z"},
            "Channel": "Application", "Computer": "WIN-7"},
            "EventData": {"Data": {"#text": data}}}})
    }

    #[test]
    fn installs_updates_and_crashes_are_application_lifecycle() {
        let o = to_ocsf(&app_event(
            "MsiInstaller",
            1033,
            json!([
                "VMware Tools",
                "9.6.2",
                "1033",
                "0",
                "VMware, Inc.",
                "(NULL)",
                ""
            ]),
        ))
        .unwrap();
        assert_eq!(
            (o["class_uid"].clone(), o["type_uid"].clone()),
            (json!(6002), json!(600_201))
        );
        assert_eq!(o["app"]["vendor_name"], "VMware, Inc.");
        assert_eq!(o["status_id"], 1);
        let o = to_ocsf(&app_event(
            "MsiInstaller",
            1036,
            json!([
                "NET 4",
                "4.0.30319",
                "0",
                "KB2789642",
                "1603",
                "Microsoft",
                ""
            ]),
        ))
        .unwrap();
        assert_eq!(o["activity_id"], 8);
        assert_eq!(o["app"]["feature"]["name"], "KB2789642");
        assert_eq!(o["status_id"], 2, "a non-zero status is a failed update");
        let o = to_ocsf(&app_event(
            "MsiInstaller",
            11708,
            json!(["Product: EMET 5.51 -- Installation failed.", "(NULL)"]),
        ))
        .unwrap();
        assert_eq!(
            (o["activity_id"].clone(), o["status_id"].clone()),
            (json!(1), json!(2))
        );
        assert_eq!(o["app"]["name"], "EMET 5.51");
        let crash = json!([
            "rundll32.exe",
            "6.1.7600.16385",
            "4a5bc637",
            "KERNELBASE.dll",
            "6.1.7601.23392",
            "56eb2fb9",
            "c0000005",
            "00000003",
            "ffc",
            "01d1f98cb1cb25dd",
            "C:\\Windows\\system32\\rundll32.exe",
            "C:\\Windows\\system32\\KERNELBASE.dll",
            "efc65f51-657f-11e6-8eb4-000c290d8d3a"
        ]);
        let o = to_ocsf(&app_event("Application Error", 1000, crash)).unwrap();
        assert_eq!(
            (o["activity_id"].clone(), o["status_id"].clone()),
            (json!(4), json!(2))
        );
        assert_eq!(o["actor"]["process"]["pid"], 0xffc);
        assert_eq!(
            o["status_detail"],
            "crashed: exception 0xc0000005 in KERNELBASE.dll"
        );
        // Installer transactions and other providers' ids keep no class.
        assert!(
            to_ocsf(&app_event(
                "MsiInstaller",
                1040,
                json!(["C:\\a.msi", "3472"])
            ))
            .is_none()
        );
        assert!(to_ocsf(&app_event("ESENT", 1000, json!(["Windows"]))).is_none());
    }

    #[test]
    fn scripts_services_registry_and_persistence_get_their_classes() {
        let ps = event(
            "Microsoft-Windows-PowerShell/Operational",
            json!(4104),
            json!({"MessageNumber": 1, "MessageTotal": 2, "ScriptBlockText": "IEX (New-Object Net.WebClient)",
                "ScriptBlockId": "5b0f-11", "Path": "C:\\t\\a.ps1"}),
        );
        let o = to_ocsf(&ps).unwrap();
        assert_eq!(
            (o["class_uid"].as_u64(), o["type_uid"].as_u64()),
            (Some(1009), Some(100_901))
        );
        assert_eq!(
            o["script"]["script_content"],
            "IEX (New-Object Net.WebClient)"
        );
        assert_eq!(o["script"]["file"]["name"], "a.ps1");
        assert_eq!(o["unmapped"]["MessageTotal"], 2);

        let svc = event(
            "System",
            json!(7045),
            json!({"ServiceName": "KgX", "ImagePath": "%SYSTEMROOT%\\du.exe", "ServiceType": "user mode service",
                "StartType": "demand start", "AccountName": "LocalSystem"}),
        );
        let o = to_ocsf(&svc).unwrap();
        assert_eq!(o["class_uid"], 201_004);
        assert_eq!(o["category_uid"], 1);
        assert_eq!(o["metadata"]["extension"]["name"], "win");
        assert_eq!(o["win_service"]["service_start_name"], "LocalSystem");

        for (kind, class, activity) in [
            ("SetValue", 201_002, 2),
            ("DeleteValue", 201_002, 4),
            ("CreateKey", 201_001, 1),
            ("DeleteKey", 201_001, 4),
        ] {
            let r = event(
                "Microsoft-Windows-Sysmon/Operational",
                json!(if kind == "SetValue" { 13 } else { 12 }),
                json!({"EventType": kind, "TargetObject": "HKLM\\System\\CurrentControlSet\\Services\\x\\Start",
                    "Details": "DWORD (0x00000003)", "Image": "C:\\Windows\\system32\\services.exe", "ProcessId": 628}),
            );
            let o = to_ocsf(&r).unwrap();
            assert_eq!(
                (o["class_uid"].as_u64(), o["activity_id"].as_u64()),
                (Some(class), Some(activity)),
                "{kind}"
            );
            if class == 201_002 {
                assert_eq!(o["reg_value"]["name"], "Start");
                assert_eq!(
                    o["reg_key"]["path"],
                    "HKLM\\System\\CurrentControlSet\\Services\\x"
                );
            }
        }

        let task = event(
            "Security",
            json!(4698),
            json!({"TaskName": "\\Updater", "TaskContent": "<Task/>", "SubjectUserName": "eve", "SubjectDomainName": "CORP"}),
        );
        let o = to_ocsf(&task).unwrap();
        assert_eq!(
            (o["class_uid"].as_u64(), o["activity_id"].as_u64()),
            (Some(1006), Some(1))
        );
        assert_eq!(o["job"]["name"], "\\Updater");
        assert_eq!(o["actor"]["user"]["name"], "eve");
    }

    #[test]
    fn a_failed_network_logon_names_user_source_and_reason() {
        let v = event(
            "Security",
            json!(4625),
            json!({"SubjectUserName": "-", "TargetUserName": "JcDfcZTc", "TargetDomainName": ".",
                "Status": "0xc000006d", "SubStatus": "0xc0000064", "LogonType": 3,
                "AuthenticationPackageName": "NTLM", "WorkstationName": "6hgtmVlrrFuWtO65",
                "IpAddress": "192.168.198.149", "IpPort": "50249"}),
        );
        let o = to_ocsf(&v).unwrap();
        assert_eq!(
            (o["class_uid"].as_u64(), o["type_uid"].as_u64()),
            (Some(3002), Some(300201))
        );
        assert_eq!(o["status_id"], 2);
        assert_eq!(o["status_detail"], "unknown user");
        assert_eq!(o["user"]["name"], "JcDfcZTc");
        assert_eq!(o["src_endpoint"]["ip"], "192.168.198.149");
        assert_eq!(o["src_endpoint"]["port"], 50249);
        assert_eq!(o["logon_type_id"], 3);
        assert_eq!(o["auth_protocol"], "NTLM");
        assert_eq!(o["time"], 1_681_926_387_020i64);
        assert_eq!(o["metadata"]["event_code"], "4625");
        assert!(o["actor"]["user"].is_null(), "`-` is no user: {o}");
    }

    #[test]
    fn the_event_id_may_be_a_string_or_a_text_node() {
        for id in [
            json!("4624"),
            json!({"#text": 4624}),
            json!({"#text": "4624"}),
        ] {
            let v = event(
                "Security",
                id,
                json!({"TargetUserName": "tbt570", "LogonType": 3}),
            );
            assert_eq!(to_ocsf(&v).unwrap()["status_id"], 1);
        }
    }

    #[test]
    fn processes_from_sysmon_and_the_security_log() {
        let s = event(
            SYSMON,
            json!(1),
            json!({"ProcessId": 9044, "Image": "C:\\Windows\\System32\\wevtutil.exe",
                "CommandLine": "wevtutil.exe cl security", "User": "VALKYRIE\\fgaeta",
                "Hashes": "SHA256=AB12,MD5=CD34", "ParentProcessId": 100,
                "ParentImage": "C:\\Windows\\cmd.exe"}),
        );
        let o = to_ocsf(&s).unwrap();
        assert_eq!(o["type_uid"], 100701);
        assert_eq!(o["process"]["file"]["name"], "wevtutil.exe");
        assert_eq!(o["process"]["cmd_line"], "wevtutil.exe cl security");
        assert_eq!(o["process"]["file"]["hashes"][0]["algorithm_id"], 3);
        assert_eq!(o["process"]["parent_process"]["file"]["name"], "cmd.exe");
        assert_eq!(
            o["actor"]["user"],
            json!({"name": "fgaeta", "domain": "VALKYRIE", "uid": null})
        );
        let w = event(
            "Security",
            json!(4688),
            json!({"SubjectUserName": "IE10WIN7$", "SubjectDomainName": "WORKGROUP",
                "NewProcessId": "0xea0", "NewProcessName": "C:\\Windows\\duKhLYUX.exe",
                "ProcessId": "0x1e8", "CommandLine": ""}),
        );
        let o = to_ocsf(&w).unwrap();
        assert_eq!(
            (
                o["process"]["pid"].as_u64(),
                o["process"]["parent_process"]["pid"].as_u64()
            ),
            (Some(0xea0), Some(0x1e8))
        );
        assert!(o["process"]["cmd_line"].is_null());
    }

    #[test]
    fn log_clearing_is_found_by_channel_whatever_the_provider() {
        let mut v = json!({"Event": {"System": {"Provider_attributes": {"Name": "Microsoft-Windows-Eventlog"},
            "EventID": 1102, "Channel": "Security", "Computer": "SEC504STUDENT"},
            "UserData": {"LogFileCleared": {"SubjectUserName": "Sec504", "SubjectDomainName": "SEC504STUDENT"}}}});
        let o = to_ocsf(&v).unwrap();
        assert_eq!(
            (o["type_uid"].as_u64(), o["log_name"].as_str()),
            (Some(100801), Some("Security"))
        );
        assert_eq!(o["actor"]["user"]["name"], "Sec504");
        v["Event"]["System"]["Channel"] = json!("Application");
        assert!(
            to_ocsf(&v).is_none(),
            "1102 in another channel is something else"
        );
    }

    #[test]
    fn files_connections_and_lookups_from_sysmon() {
        let f = to_ocsf(&event(
            SYSMON,
            json!(11),
            json!({"ProcessId": 4, "Image": "System",
            "TargetFilename": "C:\\Users\\fgaeta\\Music\\hello.exe"}),
        ))
        .unwrap();
        assert_eq!(
            (f["type_uid"].as_u64(), f["file"]["name"].as_str()),
            (Some(100101), Some("hello.exe"))
        );
        let n = to_ocsf(&event(
            SYSMON,
            json!(3),
            json!({"Image": "C:\\hello.exe", "Protocol": "tcp",
            "Initiated": true, "SourceIp": "192.168.37.237", "SourcePort": 62236,
            "DestinationIp": "192.168.37.203", "DestinationPort": 8080}),
        ))
        .unwrap();
        assert_eq!(n["class_uid"], 4001);
        assert_eq!(n["dst_endpoint"]["port"], 8080);
        assert_eq!(n["connection_info"]["protocol_num"], 6);
        let d = to_ocsf(&event(
            SYSMON,
            json!(22),
            json!({"QueryName": "evil.example", "QueryStatus": "0",
            "QueryResults": "type:  5 cdn.example;::ffff:203.0.113.9;", "Image": "C:\\hello.exe"}),
        ))
        .unwrap();
        assert_eq!(d["query"]["hostname"], "evil.example");
        assert_eq!(d["answers"][1]["rdata"], "203.0.113.9");
        assert!(to_ocsf(&event(SYSMON, json!(255), json!({}))).is_none());
        assert!(to_ocsf(&json!({"Event": {"System": {"Channel": "Security"}}})).is_none());
        assert!(to_ocsf(&json!([1, 2])).is_none());
    }
}

//! Field access on events. Sigma names fields flatly (`CommandLine`, `EventID`); events nest them.
//! `EvtxEvent` resolves names the way Windows logs converted by `evtx_dump` are laid out.

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::Value;

/// Something Sigma fields can be looked up in.
pub trait FieldSource {
    /// The value of a Sigma field, if present.
    fn field(&self, name: &str) -> Option<&Value>;
    /// Every string-like leaf value, for keyword (full-text) search.
    fn visit_text(&self, f: &mut dyn FnMut(&str) -> bool) -> bool;

    /// `s` in lower case; sources may cache it, since many rules search the same field.
    fn lower(&self, s: &str) -> Rc<str> {
        Rc::from(s.to_lowercase())
    }
}

/// Visit the string leaves of `v` (and numbers as text when `numbers`) until `f` says stop.
fn walk_text(v: &Value, numbers: bool, f: &mut dyn FnMut(&str) -> bool) -> bool {
    match v {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter().any(|x| walk_text(x, numbers, f)),
        Value::Object(o) => o.values().any(|x| walk_text(x, numbers, f)),
        Value::Number(n) if numbers => f(&n.to_string()),
        _ => false,
    }
}

/// A dotted path (`Event.EventData.X`) from `root`.
fn path<'v>(root: &'v Value, name: &str) -> Option<&'v Value> {
    name.split('.').try_fold(root, |cur, part| cur.get(part))
}

/// An `evtx_dump -o jsonl --separate-json-attributes` event.
#[derive(Debug)]
pub struct EvtxEvent<'a> {
    root: &'a Value,
    system: Option<&'a Value>,
    data: Option<&'a Value>,
    user_data: Option<&'a Value>,
    lowered: RefCell<Vec<(usize, usize, Rc<str>)>>,
}

impl<'a> EvtxEvent<'a> {
    /// Wrap a parsed event.
    pub fn new(root: &'a Value) -> Self {
        let ev = root.get("Event");
        let system = ev.and_then(|e| e.get("System"));
        let data = ev
            .and_then(|e| e.get("EventData"))
            .filter(|d| d.is_object());
        let user_data = ev.and_then(|e| e.get("UserData")).filter(|d| d.is_object());
        EvtxEvent {
            root,
            system,
            data,
            user_data,
            lowered: RefCell::new(Vec::new()),
        }
    }

    /// The channel (`Security`, `Microsoft-Windows-Sysmon/Operational` …).
    pub fn channel(&self) -> Option<&'a str> {
        self.system?.get("Channel")?.as_str()
    }

    /// The provider name.
    pub fn provider(&self) -> Option<&'a str> {
        self.system?
            .get("Provider_attributes")?
            .get("Name")?
            .as_str()
    }

    /// `TimeCreated`'s `SystemTime` (RFC 3339), the event's own time.
    pub fn system_time(&self) -> Option<&'a str> {
        self.system?
            .get("TimeCreated_attributes")?
            .get("SystemTime")?
            .as_str()
    }

    /// The event id as a number (some exports write it as a string).
    pub fn event_id(&self) -> Option<u32> {
        match self.system?.get("EventID")? {
            Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

impl FieldSource for EvtxEvent<'_> {
    fn field(&self, name: &str) -> Option<&Value> {
        let sys = |k: &str| self.system.and_then(|s| s.get(k));
        match name {
            "EventID" => return sys("EventID"),
            "Channel" => return sys("Channel"),
            "Computer" => return sys("Computer"),
            "Provider_Name" | "ProviderName" | "Provider" => {
                return self.system?.get("Provider_attributes")?.get("Name");
            }
            "EventRecordID" => return sys("EventRecordID"),
            "Level" => return sys("Level"),
            "Keywords" => return sys("Keywords"),
            _ => {}
        }
        if let Some(v) = self.data.and_then(|d| d.get(name)) {
            return Some(v);
        }
        // Security 4688 carries process creation under other names than Sysmon's event 1, which
        // the process_creation rules are written for.
        if let Some(alias) = match name {
            "Image" => Some("NewProcessName"),
            "ParentImage" => Some("ParentProcessName"),
            _ => None,
        } && self
            .channel()
            .is_some_and(|c| c.eq_ignore_ascii_case("security"))
            && self.event_id() == Some(4688)
            && let Some(v) = self.data.and_then(|d| d.get(alias))
        {
            return Some(v);
        }
        // Events whose payload is under UserData (e.g. log cleared) keep it one level deeper.
        if let Some(Value::Object(ud)) = self.user_data {
            for inner in ud.values() {
                if let Some(v) = inner.get(name) {
                    return Some(v);
                }
            }
        }
        if let Some(v) = sys(name) {
            return Some(v);
        }
        // Dotted paths address the document directly (`Event.EventData.X`).
        if name.contains('.') {
            return path(self.root, name);
        }
        None
    }

    fn visit_text(&self, f: &mut dyn FnMut(&str) -> bool) -> bool {
        [self.data, self.user_data]
            .into_iter()
            .flatten()
            .any(|v| walk_text(v, true, f))
    }

    fn lower(&self, s: &str) -> Rc<str> {
        let key = (s.as_ptr() as usize, s.len());
        if let Some((_, _, l)) = self
            .lowered
            .borrow()
            .iter()
            .find(|(p, n, _)| (*p, *n) == key)
        {
            return l.clone();
        }
        let l: Rc<str> = Rc::from(s.to_lowercase());
        self.lowered.borrow_mut().push((key.0, key.1, l.clone()));
        l
    }
}

impl FieldSource for Value {
    fn field(&self, name: &str) -> Option<&Value> {
        self.get(name).or_else(|| path(self, name))
    }

    fn visit_text(&self, f: &mut dyn FnMut(&str) -> bool) -> bool {
        walk_text(self, false, f)
    }
}

//! Field access on events. Sigma names fields flatly (`CommandLine`, `EventID`); events nest them.
//! `EvtxEvent` resolves names the way Windows logs converted by `evtx_dump` are laid out.

use std::borrow::Cow;
use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use serde_json::Value;

use crate::json::{Decline, Reader};

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

    /// Every leaf of [`FieldSource::visit_text`] in lower case (ASCII folding on ASCII text,
    /// [`FieldSource::lower`] on other text), each followed by a NUL: a needle without NUL
    /// occurs in it exactly when it occurs in one lower-cased leaf. Sources may cache it, since
    /// every keyword list of an event searches it.
    fn lowered_text(&self) -> Cow<'_, str> {
        let mut all = String::new();
        lowered_leaves(self, &mut all);
        Cow::Owned(all)
    }
}

/// [`FieldSource::lowered_text`], made in `all` (emptied first).
fn lowered_leaves<S: FieldSource + ?Sized>(src: &S, all: &mut String) {
    all.clear();
    src.visit_text(&mut |t| {
        if t.is_ascii() {
            all.push_str(t);
        } else {
            all.push_str(&src.lower(t));
        }
        all.push('\0');
        false
    });
    // Once over everything: Unicode lower case holds no ASCII capital, so this folds only the
    // ASCII leaves.
    all.make_ascii_lowercase();
}

thread_local! {
    /// Buffers of [`FieldSource::lowered_text`] given back by dropped events, so that the next
    /// events of the thread reuse them: allocating a fresh kilobyte-sized text per event (and
    /// growing it) cost more than filling it.
    static SPARE_TEXTS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Spare buffers kept per thread, and the largest kept (a hostile line's text is not).
const SPARE_KEEP: (usize, usize) = (4, 1 << 20);

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

/// An object's members in document order; names and strings borrow from the line they were
/// read from unless they hold escapes.
type Members<'a> = Vec<(Cow<'a, str>, Member<'a>)>;

/// A member's value. Strings stay slices of the line, and objects nested in an event
/// (`Provider_attributes`, `TimeCreated_attributes` … in every `System`) stay member lists: each
/// becomes a `serde_json::Value` only when a matcher asks for it. The prefilter and keyword
/// searches read the text itself; allocating every string and building every nested map was
/// most of the cost of reading an event.
#[derive(Debug, Clone)]
pub(crate) enum Member<'a> {
    /// Numbers, booleans, null and arrays (boxed, as the cells are: a member is moved into
    /// its list and dropped with it, and a `Value` inline made each member 128 bytes).
    Value(Box<Value>),
    Str(Cow<'a, str>, OnceCell<Box<Value>>),
    Object(Members<'a>, OnceCell<Box<Value>>),
}

/// A field's value as the prefilter reads it: a string's text, or another non-object value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum FieldRef<'a> {
    Text(&'a str),
    Value(&'a Value),
}

impl<'a> Member<'a> {
    fn as_value(&self) -> &Value {
        match self {
            Member::Value(v) => v,
            Member::Str(s, whole) => whole.get_or_init(|| Box::new(Value::String(s.to_string()))),
            Member::Object(m, whole) => whole.get_or_init(|| Box::new(to_object(m))),
        }
    }

    /// The value, unless it is an object (which no pattern compares with).
    fn scalar(&self) -> Option<FieldRef<'_>> {
        match self {
            Member::Value(v) => Some(FieldRef::Value(v)),
            Member::Str(s, _) => Some(FieldRef::Text(s)),
            Member::Object(..) => None,
        }
    }

    fn walk_text(&self, f: &mut dyn FnMut(&str) -> bool) -> bool {
        match self {
            Member::Value(v) => walk_text(v, true, f),
            Member::Str(s, _) => f(s),
            Member::Object(m, _) => m.iter().any(|(_, v)| v.walk_text(f)),
        }
    }

    fn read(v: ObjOr<'a, Members<'a>>) -> Self {
        v.into_obj()
            .unwrap_or_else(|o| Member::Object(o, OnceCell::new()))
    }
}

impl PartialEq for Member<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Member::Value(a), Member::Value(b)) => a == b,
            (Member::Str(a, _), Member::Str(b, _)) => a == b,
            (Member::Object(a, _), Member::Object(b, _)) => a == b,
            _ => false,
        }
    }
}

fn to_object(m: &[(Cow<'_, str>, Member<'_>)]) -> Value {
    Value::Object(
        m.iter()
            .map(|(k, v)| (k.to_string(), v.as_value().clone()))
            .collect(),
    )
}

/// The member named `k`.
fn find<'m, 'a>(m: &'m [(Cow<'a, str>, Member<'a>)], k: &str) -> Option<&'m Member<'a>> {
    m.iter().find(|(n, _)| n == k).map(|(_, v)| v)
}

fn member<'m>(m: &'m [(Cow<'_, str>, Member<'_>)], k: &str) -> Option<&'m Value> {
    find(m, k).map(Member::as_value)
}

/// An `evtx_dump` JSON line parsed for matching: the `Event`, `System` and `EventData` objects
/// are kept as member lists instead of `serde_json` maps, whose per-member hashing (SipHash, with
/// the insertion-ordered maps this build uses) was a fifth of a hunt's time. Events have ten to
/// thirty members per object, and a short scan finds a field as fast as a hash would. It borrows
/// from the line it was read from.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FlatEvent<'a> {
    /// The top-level members other than an `Event` object.
    top: Members<'a>,
    /// `Event`, when it is an object: its members other than `System` and `EventData` objects.
    event: Option<Members<'a>>,
    system: Option<Members<'a>>,
    data: Option<Members<'a>>,
}

impl<'a> FlatEvent<'a> {
    /// Read one JSON line (an `evtx_dump` record) as `serde_json::from_str` would, through the
    /// fast reader of [`crate::json`] unless it declines the line; errors are serde_json's.
    pub fn from_line(line: &'a str) -> serde_json::Result<Self> {
        match Self::fast(line) {
            Some(fe) => Ok(fe),
            None => serde_json::from_str(line),
        }
    }

    /// The fast path of [`FlatEvent::from_line`]: the line read straight into member lists,
    /// `System`, `EventData` and `Event` placed as the serde path places them; `None` where the
    /// reader declines (serde_json then reads the line).
    pub(crate) fn fast(line: &'a str) -> Option<Self> {
        let mut r = Reader::new(line);
        let fe = read_flat(&mut r).ok()?;
        r.at_end().then_some(fe)
    }

    /// The same document as a `serde_json::Value` (`System` and `EventData` placed first in
    /// `Event`: member order does not change what a path finds).
    pub fn to_value(&self) -> Value {
        let mut top = serde_json::Map::new();
        for (k, v) in &self.top {
            top.insert(k.to_string(), v.as_value().clone());
        }
        if let Some(ev) = &self.event {
            let mut e = serde_json::Map::new();
            let mut put = |k: &str, m: &Option<Members>| {
                if let Some(m) = m {
                    e.insert(k.to_string(), to_object(m));
                }
            };
            put("System", &self.system);
            put("EventData", &self.data);
            for (k, v) in ev {
                e.insert(k.to_string(), v.as_value().clone());
            }
            top.insert("Event".into(), Value::Object(e));
        }
        Value::Object(top)
    }
}

/// Members beyond which duplicate keys are found through a hash index (a hostile line with
/// many thousands of keys must not cost a quadratic scan).
const SCAN_MEMBERS: usize = 32;

/// A cheap hash of a field name from its length and first and last bytes, for bucket filters
/// that rule most names out before they are compared or hashed in full.
pub(crate) fn name_bucket(name: &str) -> usize {
    let b = name.as_bytes();
    let first = usize::from(b.first().copied().unwrap_or(0));
    let last = usize::from(b.last().copied().unwrap_or(0));
    b.len().wrapping_mul(31) ^ first.wrapping_mul(7) ^ last.wrapping_mul(131)
}

/// Members read one by one (with an index of names for large objects).
#[derive(Default)]
struct MemberList<'a> {
    members: Members<'a>,
    index: HashMap<String, usize>,
    /// A bit per bucket of the names pushed so far (by length, first and last byte): a name
    /// whose bucket is empty cannot be a duplicate, and skips the scan for one (comparing each
    /// name with every earlier one was a seventh of reading an event).
    seen: u64,
}

impl<'a> MemberList<'a> {
    /// Add a member; a duplicate key replaces the earlier member's value in place, as
    /// `serde_json` reads a duplicate into its insertion-ordered map.
    fn push(&mut self, k: Cow<'a, str>, v: Member<'a>) {
        let bit = 1u64 << (name_bucket(&k) & 63);
        let m = &mut self.members;
        let found = if self.seen & bit == 0 {
            None
        } else if m.len() <= SCAN_MEMBERS {
            m.iter().position(|(n, _)| *n == k)
        } else {
            if self.index.is_empty() {
                let names = m.iter().enumerate().map(|(i, (n, _))| (n.to_string(), i));
                self.index.extend(names);
            }
            self.index.get(k.as_ref()).copied()
        };
        self.seen |= bit;
        match found {
            Some(i) => m[i].1 = v,
            None => {
                if !self.index.is_empty() {
                    self.index.insert(k.to_string(), m.len());
                }
                m.push((k, v));
            }
        }
    }

    /// Drop the member named `k`, if any.
    fn remove(&mut self, k: &str) {
        if let Some(i) = self.members.iter().position(|(n, _)| n == k) {
            self.members.remove(i);
            self.index.clear();
        }
    }
}

/// A member name, borrowed from the line unless it holds escapes.
struct Name<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Name<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(s.to_string())))
            }
            fn visit_string<E>(self, s: String) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

/// What a JSON object is read into.
trait FromMap<'de>: Sized {
    fn from_map<A: serde::de::MapAccess<'de>>(a: A) -> Result<Self, A::Error>;
}

/// A JSON value: `T` when it is an object, a string's text, else the value as `serde_json`
/// reads it.
enum ObjOr<'de, T> {
    Obj(T),
    Str(Cow<'de, str>),
    Other(Value),
}

impl<'de, T> ObjOr<'de, T> {
    /// The value as a member unless it is an object (`Err`: the object).
    fn into_obj(self) -> Result<Member<'de>, T> {
        match self {
            ObjOr::Obj(o) => Err(o),
            ObjOr::Str(s) => Ok(Member::Str(s, OnceCell::new())),
            ObjOr::Other(v) => Ok(Member::Value(Box::new(v))),
        }
    }
}

impl<'de, T: FromMap<'de>> serde::Deserialize<'de> for ObjOr<'de, T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: FromMap<'de>> serde::de::Visitor<'de> for V<T> {
            type Value = ObjOr<'de, T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                a: A,
            ) -> Result<ObjOr<'de, T>, A::Error> {
                T::from_map(a).map(ObjOr::Obj)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                a: A,
            ) -> Result<ObjOr<'de, T>, A::Error> {
                let v = serde::Deserialize::deserialize(
                    serde::de::value::SeqAccessDeserializer::new(a),
                )?;
                Ok(ObjOr::Other(v))
            }
            fn visit_bool<E>(self, b: bool) -> Result<ObjOr<'de, T>, E> {
                Ok(ObjOr::Other(Value::Bool(b)))
            }
            fn visit_i64<E>(self, n: i64) -> Result<ObjOr<'de, T>, E> {
                Ok(ObjOr::Other(Value::from(n)))
            }
            fn visit_u64<E>(self, n: u64) -> Result<ObjOr<'de, T>, E> {
                Ok(ObjOr::Other(Value::from(n)))
            }
            fn visit_f64<E>(self, n: f64) -> Result<ObjOr<'de, T>, E> {
                Ok(ObjOr::Other(
                    serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number),
                ))
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<ObjOr<'de, T>, E> {
                Ok(ObjOr::Str(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<ObjOr<'de, T>, E> {
                Ok(ObjOr::Str(Cow::Owned(s.to_string())))
            }
            fn visit_string<E>(self, s: String) -> Result<ObjOr<'de, T>, E> {
                Ok(ObjOr::Str(Cow::Owned(s)))
            }
            fn visit_unit<E>(self) -> Result<ObjOr<'de, T>, E> {
                Ok(ObjOr::Other(Value::Null))
            }
            fn visit_none<E>(self) -> Result<ObjOr<'de, T>, E> {
                Ok(ObjOr::Other(Value::Null))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// Read an object's members into a list first sized for `cap` of them.
fn read_members<'de, A: serde::de::MapAccess<'de>>(
    mut a: A,
    cap: usize,
) -> Result<Members<'de>, A::Error> {
    let mut m = MemberList::default();
    m.members.reserve(a.size_hint().unwrap_or(cap));
    while let Some(Name(k)) = a.next_key::<Name>()? {
        let v = Member::read(a.next_value::<ObjOr<Members>>()?);
        m.push(k, v);
    }
    Ok(m.members)
}

impl<'de> FromMap<'de> for Members<'de> {
    fn from_map<A: serde::de::MapAccess<'de>>(a: A) -> Result<Self, A::Error> {
        // Objects nested in an event hold one to three members.
        read_members(a, 4)
    }
}

/// The members of `System` or `EventData`: a dozen to thirty.
struct Wide<'a>(Members<'a>);

impl<'de> FromMap<'de> for Wide<'de> {
    fn from_map<A: serde::de::MapAccess<'de>>(a: A) -> Result<Self, A::Error> {
        read_members(a, 32).map(Wide)
    }
}

/// `Event`'s members, with `System` and `EventData` taken apart when they are objects.
#[derive(Default)]
struct EventParts<'a> {
    rest: MemberList<'a>,
    system: Option<Members<'a>>,
    data: Option<Members<'a>>,
}

impl<'de> FromMap<'de> for EventParts<'de> {
    fn from_map<A: serde::de::MapAccess<'de>>(mut a: A) -> Result<Self, A::Error> {
        let mut p = EventParts::default();
        while let Some(Name(k)) = a.next_key::<Name>()? {
            // A later duplicate replaces an earlier member of the same name, whatever its kind,
            // as in a map.
            let slot = match k.as_ref() {
                "System" => Some(&mut p.system),
                "EventData" => Some(&mut p.data),
                _ => None,
            };
            match slot {
                Some(slot) => match a.next_value::<ObjOr<Wide>>()?.into_obj() {
                    Err(Wide(m)) => {
                        *slot = Some(m);
                        p.rest.remove(&k);
                    }
                    Ok(v) => {
                        *slot = None;
                        p.rest.push(k, v);
                    }
                },
                None => p.rest.push(k, Member::read(a.next_value()?)),
            }
        }
        Ok(p)
    }
}

impl<'de> FromMap<'de> for FlatEvent<'de> {
    fn from_map<A: serde::de::MapAccess<'de>>(mut a: A) -> Result<Self, A::Error> {
        let mut fe = FlatEvent::default();
        let mut top = MemberList::default();
        while let Some(Name(k)) = a.next_key::<Name>()? {
            if k != "Event" {
                let v = Member::read(a.next_value::<ObjOr<Members>>()?);
                top.push(k, v);
                continue;
            }
            match a.next_value::<ObjOr<EventParts>>()?.into_obj() {
                Err(p) => {
                    top.remove("Event");
                    fe.event = Some(p.rest.members);
                    fe.system = p.system;
                    fe.data = p.data;
                }
                Ok(v) => {
                    (fe.event, fe.system, fe.data) = (None, None, None);
                    top.push(k, v);
                }
            }
        }
        fe.top = top.members;
        Ok(fe)
    }
}

fn read_flat<'a>(r: &mut Reader<'a>) -> Result<FlatEvent<'a>, Decline> {
    let mut fe = FlatEvent::default();
    let mut top = MemberList::default();
    let mut o = r.object()?;
    while let Some(k) = r.key(&mut o)? {
        if k == "Event" && r.peek()? == b'{' {
            let p = read_event_parts(r)?;
            top.remove("Event");
            fe.event = Some(p.rest.members);
            fe.system = p.system;
            fe.data = p.data;
        } else {
            if k == "Event" {
                (fe.event, fe.system, fe.data) = (None, None, None);
            }
            let v = read_member(r)?;
            top.push(k, v);
        }
    }
    fe.top = top.members;
    Ok(fe)
}

fn read_event_parts<'a>(r: &mut Reader<'a>) -> Result<EventParts<'a>, Decline> {
    let mut p = EventParts::default();
    let mut o = r.object()?;
    while let Some(k) = r.key(&mut o)? {
        let slot = match k.as_ref() {
            "System" => Some(&mut p.system),
            "EventData" => Some(&mut p.data),
            _ => None,
        };
        match slot {
            Some(slot) if r.peek()? == b'{' => {
                *slot = Some(read_object(r, 32)?);
                p.rest.remove(&k);
            }
            Some(slot) => {
                *slot = None;
                p.rest.push(k, read_member(r)?);
            }
            None => p.rest.push(k, read_member(r)?),
        }
    }
    Ok(p)
}

/// An object's members, in a list first sized for `cap` of them.
fn read_object<'a>(r: &mut Reader<'a>, cap: usize) -> Result<Members<'a>, Decline> {
    let mut m = MemberList::default();
    m.members.reserve(cap);
    let mut o = r.object()?;
    while let Some(k) = r.key(&mut o)? {
        let v = read_member(r)?;
        m.push(k, v);
    }
    Ok(m.members)
}

fn read_member<'a>(r: &mut Reader<'a>) -> Result<Member<'a>, Decline> {
    Ok(match r.peek()? {
        b'"' => Member::Str(r.string()?, OnceCell::new()),
        // Objects nested in an event hold one to three members.
        b'{' => Member::Object(read_object(r, 4)?, OnceCell::new()),
        _ => Member::Value(Box::new(serde::Deserialize::deserialize(&mut *r)?)),
    })
}

impl<'de> serde::Deserialize<'de> for FlatEvent<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Any other document is an event without fields, as a `Value` root would be.
        Ok(ObjOr::<FlatEvent>::deserialize(d)?
            .into_obj()
            .err()
            .unwrap_or_default())
    }
}

/// An object of the event: a `serde_json` map or a member list.
#[derive(Debug, Clone, Copy)]
enum Obj<'a> {
    Value(&'a Value),
    Members(&'a [(Cow<'a, str>, Member<'a>)]),
}

impl<'a> Obj<'a> {
    fn get(self, k: &str) -> Option<&'a Value> {
        match self {
            Obj::Value(v) => v.get(k),
            Obj::Members(m) => member(m, k),
        }
    }

    /// A string member's text, without making a `Value` of it.
    fn text(self, k: &str) -> Option<&'a str> {
        match self {
            Obj::Value(v) => v.get(k)?.as_str(),
            Obj::Members(m) => match find(m, k)? {
                Member::Str(s, _) => Some(s),
                Member::Value(v) => v.as_str(),
                Member::Object(..) => None,
            },
        }
    }

    /// A member as the prefilter reads it (`Some(None)`: an object).
    fn scalar(self, k: &str) -> Option<Option<FieldRef<'a>>> {
        match self {
            Obj::Value(v) => v
                .get(k)
                .map(|v| (!v.is_object()).then_some(FieldRef::Value(v))),
            Obj::Members(m) => find(m, k).map(Member::scalar),
        }
    }

    /// A member as an object view, without turning a nested member list into a map.
    fn obj(self, k: &str) -> Option<Obj<'a>> {
        match self {
            Obj::Value(v) => v.get(k).map(Obj::Value),
            Obj::Members(m) => find(m, k).and_then(Obj::of),
        }
    }

    /// An object member's view (other members have no members to look up).
    fn of(m: &'a Member<'a>) -> Option<Obj<'a>> {
        match m {
            Member::Object(o, _) => Some(Obj::Members(o)),
            Member::Value(v) if v.is_object() => Some(Obj::Value(v)),
            Member::Value(_) | Member::Str(..) => None,
        }
    }

    fn is_object(self) -> bool {
        matches!(self, Obj::Members(_) | Obj::Value(Value::Object(_)))
    }

    /// Each member's value as an object view, until `f` says stop.
    fn values(self, f: &mut dyn FnMut(Obj<'a>) -> bool) -> bool {
        match self {
            Obj::Value(Value::Object(m)) => m.values().any(|v| f(Obj::Value(v))),
            Obj::Value(_) => false,
            Obj::Members(m) => m.iter().filter_map(|(_, v)| Obj::of(v)).any(f),
        }
    }

    fn walk_text(self, f: &mut dyn FnMut(&str) -> bool) -> bool {
        match self {
            Obj::Value(v) => walk_text(v, true, f),
            Obj::Members(m) => m.iter().any(|(_, v)| v.walk_text(f)),
        }
    }

    /// Every member in order (nothing when the value is not an object), objects as `None`.
    fn each(self, f: &mut dyn FnMut(&str, Option<FieldRef<'a>>)) {
        match self {
            Obj::Value(Value::Object(m)) => m.iter().for_each(|(k, v)| {
                f(k, (!v.is_object()).then_some(FieldRef::Value(v)));
            }),
            Obj::Value(_) => {}
            Obj::Members(m) => m.iter().for_each(|(k, v)| f(k, v.scalar())),
        }
    }
}

/// Names [`FieldSource::field`] answers from `System` before looking anywhere else.
const SYSTEM_NAMES: [&str; 9] = [
    "EventID",
    "Channel",
    "Computer",
    "Provider_Name",
    "ProviderName",
    "Provider",
    "EventRecordID",
    "Level",
    "Keywords",
];

/// Security 4688 carries process creation under other names than Sysmon's event 1, which the
/// process_creation rules are written for: (rule field, 4688 field).
const SECURITY_4688_ALIASES: [(&str, &str); 2] = [
    ("Image", "NewProcessName"),
    ("ParentImage", "ParentProcessName"),
];

/// Whether `field` resolves `name` only through the lookups of
/// [`EvtxEvent::plain_fields`]: no dot, not a `System` name.
pub(crate) fn is_plain_name(name: &str) -> bool {
    !name.contains('.') && !SYSTEM_NAMES.contains(&name)
}

/// What dotted paths are resolved against.
#[derive(Debug)]
enum Root<'a> {
    Value(&'a Value),
    /// Rebuilt as a `Value` the first time a dotted path is asked for (no Windows rule of the
    /// dataset names one).
    Flat(&'a FlatEvent<'a>, std::cell::OnceCell<Value>),
}

/// A lower-cased text: its address, the text, its lower case.
type Lowered = (usize, Box<str>, Rc<str>);

/// An `evtx_dump -o jsonl --separate-json-attributes` event.
#[derive(Debug)]
pub struct EvtxEvent<'a> {
    root: Root<'a>,
    system: Option<Obj<'a>>,
    data: Option<Obj<'a>>,
    user_data: Option<Obj<'a>>,
    lowered: RefCell<Vec<Lowered>>,
    /// [`FieldSource::lowered_text`], once made (its buffer goes back to the thread's spares
    /// when the event is dropped).
    leaves: OnceCell<String>,
}

impl Drop for EvtxEvent<'_> {
    fn drop(&mut self) {
        if let Some(text) = self.leaves.take()
            && text.capacity() <= SPARE_KEEP.1
        {
            SPARE_TEXTS.with_borrow_mut(|spare| {
                if spare.len() < SPARE_KEEP.0 {
                    spare.push(text);
                }
            });
        }
    }
}

impl<'a> EvtxEvent<'a> {
    /// Wrap a parsed event.
    pub fn new(root: &'a Value) -> Self {
        let ev = root.get("Event");
        let system = ev.and_then(|e| e.get("System")).map(Obj::Value);
        let data = ev
            .and_then(|e| e.get("EventData"))
            .filter(|d| d.is_object())
            .map(Obj::Value);
        let user_data = ev
            .and_then(|e| e.get("UserData"))
            .filter(|d| d.is_object())
            .map(Obj::Value);
        EvtxEvent {
            root: Root::Value(root),
            system,
            data,
            user_data,
            lowered: RefCell::new(Vec::new()),
            leaves: OnceCell::new(),
        }
    }

    /// The text leaves keyword lists search, sorted: `serde_json`'s maps are ordered by key or
    /// by insertion depending on the build's features, and a keyword search does not depend on
    /// the order. For tests and the fuzz oracle.
    pub(crate) fn text_leaves(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.visit_text(&mut |t| {
            out.push(t.to_string());
            false
        });
        out.sort();
        out
    }

    /// Wrap an event parsed as a [`FlatEvent`]; it matches as [`EvtxEvent::new`] of the same
    /// document does.
    pub fn flat(fe: &'a FlatEvent<'a>) -> Self {
        let rest = fe.event.as_deref();
        let system = match (&fe.system, rest) {
            (Some(m), _) => Some(Obj::Members(m)),
            (None, Some(r)) => member(r, "System").map(Obj::Value),
            (None, None) => None,
        };
        let user_data = rest
            .and_then(|r| Obj::Members(r).obj("UserData"))
            .filter(|d| d.is_object());
        EvtxEvent {
            root: Root::Flat(fe, std::cell::OnceCell::new()),
            system,
            data: fe.data.as_deref().map(Obj::Members),
            user_data,
            lowered: RefCell::new(Vec::new()),
            leaves: OnceCell::new(),
        }
    }

    /// The channel (`Security`, `Microsoft-Windows-Sysmon/Operational` …).
    pub fn channel(&self) -> Option<&'a str> {
        self.system?.text("Channel")
    }

    /// The provider name.
    pub fn provider(&self) -> Option<&'a str> {
        self.system?.obj("Provider_attributes")?.text("Name")
    }

    /// `TimeCreated`'s `SystemTime` (RFC 3339), the event's own time.
    pub fn system_time(&self) -> Option<&'a str> {
        self.system?
            .obj("TimeCreated_attributes")?
            .text("SystemTime")
    }

    /// The members [`FieldSource::field`] resolves plain names ([`is_plain_name`]) to, in its
    /// order of precedence: `EventData`, the Security 4688 aliases, the inner objects of
    /// `UserData`, `System`. A name may come more than once; its first coming is what `field`
    /// answers (`None`: an object). Lets a caller with many names to look up walk the event once.
    /// Members whose names are not plain come too: the caller looks up plain names only, so it
    /// passes over them without the cost of testing every name here.
    pub(crate) fn plain_fields(&self, f: &mut dyn FnMut(&str, Option<FieldRef<'a>>)) {
        if let Some(d) = self.data {
            d.each(&mut *f);
            if self.is_security_4688() {
                for (name, alias) in SECURITY_4688_ALIASES {
                    if let Some(v) = d.scalar(alias) {
                        f(name, v);
                    }
                }
            }
        }
        if let Some(ud) = self.user_data {
            ud.values(&mut |inner| {
                inner.each(&mut *f);
                false
            });
        }
        if let Some(s) = self.system {
            s.each(f);
        }
    }

    fn is_security_4688(&self) -> bool {
        self.channel()
            .is_some_and(|c| c.eq_ignore_ascii_case("security"))
            && self.event_id() == Some(4688)
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
        if SYSTEM_NAMES.contains(&name) {
            return match name {
                "Provider_Name" | "ProviderName" | "Provider" => {
                    self.system?.obj("Provider_attributes")?.get("Name")
                }
                _ => sys(name),
            };
        }
        if let Some(v) = self.data.and_then(|d| d.get(name)) {
            return Some(v);
        }
        if let Some((_, alias)) = SECURITY_4688_ALIASES.iter().find(|(n, _)| *n == name)
            && self.is_security_4688()
            && let Some(v) = self.data.and_then(|d| d.get(alias))
        {
            return Some(v);
        }
        // Events whose payload is under UserData (e.g. log cleared) keep it one level deeper.
        if let Some(ud) = self.user_data {
            let mut found = None;
            ud.values(&mut |inner| {
                found = inner.get(name);
                found.is_some()
            });
            if found.is_some() {
                return found;
            }
        }
        if let Some(v) = sys(name) {
            return Some(v);
        }
        // Dotted paths address the document directly (`Event.EventData.X`).
        if name.contains('.') {
            return match &self.root {
                Root::Value(v) => path(v, name),
                Root::Flat(fe, whole) => path(whole.get_or_init(|| fe.to_value()), name),
            };
        }
        None
    }

    fn visit_text(&self, f: &mut dyn FnMut(&str) -> bool) -> bool {
        self.data.is_some_and(|d| d.walk_text(f)) || self.user_data.is_some_and(|u| u.walk_text(f))
    }

    fn lowered_text(&self) -> Cow<'_, str> {
        Cow::Borrowed(self.leaves.get_or_init(|| {
            // An event's leaves hold about a kilobyte.
            let mut all = SPARE_TEXTS
                .with_borrow_mut(Vec::pop)
                .unwrap_or_else(|| String::with_capacity(2048));
            lowered_leaves(self, &mut all);
            all
        }))
    }

    fn lower(&self, s: &str) -> Rc<str> {
        // Keyed by address and checked by content: callers also pass short-lived text (a
        // number's digits), whose address a later, different text may reuse.
        let at = s.as_ptr() as usize;
        if let Some((_, _, l)) = self
            .lowered
            .borrow()
            .iter()
            .find(|(p, orig, _)| *p == at && **orig == *s)
        {
            return l.clone();
        }
        let l: Rc<str> = Rc::from(s.to_lowercase());
        self.lowered.borrow_mut().push((at, s.into(), l.clone()));
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A JSON member `"key": value` as text, keys drawn from a few names so that duplicates and
    /// the special members (`Event`, `System`, `EventData`, `UserData`) occur often.
    fn member_text(
        keys: &'static [&'static str],
        value: BoxedStrategy<String>,
    ) -> BoxedStrategy<String> {
        (proptest::sample::select(keys), value)
            .prop_map(|(k, v)| format!("\"{k}\": {v}"))
            .boxed()
    }

    fn object_text(members: BoxedStrategy<String>) -> BoxedStrategy<String> {
        proptest::collection::vec(members, 0..6)
            .prop_map(|m| format!("{{{}}}", m.join(", ")))
            .boxed()
    }

    fn scalar() -> BoxedStrategy<String> {
        prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            (-5i64..5000).prop_map(|n| n.to_string()),
            Just("1.5".to_string()),
            Just("4688".to_string()),
            Just("\"Security\"".to_string()),
            "[a-zA-Z \\\\]{0,6}".prop_map(|s| serde_json::to_string(&s).unwrap_or_default()),
            Just("[1, \"x\", {\"a\": 2}]".to_string()),
        ]
        .boxed()
    }

    fn document() -> BoxedStrategy<String> {
        const LEAF: &[&str] = &[
            "EventID",
            "Channel",
            "Image",
            "Name",
            "x",
            "SystemTime",
            "NewProcessName",
            "Level",
        ];
        const EVENT: &[&str] = &["System", "EventData", "UserData", "Other"];
        const TOP: &[&str] = &["Event", "Other"];
        let flat = object_text(member_text(LEAF, scalar()));
        let nested = object_text(member_text(
            LEAF,
            prop_oneof![scalar(), flat.clone()].boxed(),
        ));
        let event = object_text(member_text(EVENT, prop_oneof![nested, scalar()].boxed()));
        prop_oneof![
            object_text(member_text(TOP, prop_oneof![event, scalar()].boxed())),
            scalar(),
        ]
        .boxed()
    }

    proptest! {
        /// A flat event is the document `serde_json` reads, and an event wrapped from it finds
        /// every field, path and text leaf that one wrapped from the `Value` finds.
        #[test]
        fn flat_events_are_the_documents(doc in document()) {
            let v: Value = serde_json::from_str(&doc).unwrap();
            let fe: FlatEvent = serde_json::from_str(&doc).unwrap();
            if v.is_object() {
                prop_assert_eq!(fe.to_value(), v.clone());
            }
            let (a, b) = (EvtxEvent::new(&v), EvtxEvent::flat(&fe));
            for name in ["EventID", "Channel", "Image", "Name", "x", "Provider_Name", "Other",
                "Event.System.EventID", "Event.EventData", "Event.Other.x", "Other.x"] {
                prop_assert_eq!(a.field(name), b.field(name), "{}", name);
            }
            prop_assert_eq!((a.channel(), a.event_id()), (b.channel(), b.event_id()));
            prop_assert_eq!(a.text_leaves(), b.text_leaves());
            // Walking the plain fields once finds what looking each name up finds.
            for ev in [&a, &b] {
                let mut first: Vec<(String, Option<Value>)> = Vec::new();
                ev.plain_fields(&mut |k, v| {
                    if is_plain_name(k) && !first.iter().any(|(n, _)| n == k) {
                        let v = v.map(|v| match v {
                            FieldRef::Text(t) => Value::String(t.to_string()),
                            FieldRef::Value(v) => v.clone(),
                        });
                        first.push((k.to_string(), v));
                    }
                });
                // What `field` finds, objects as `None`.
                let scalar = |name: &str| {
                    ev.field(name).map(|v| Some(v.clone()).filter(|v| !v.is_object()))
                };
                for (k, v) in &first {
                    prop_assert!(is_plain_name(k));
                    prop_assert_eq!(scalar(k), Some(v.clone()), "{}", k);
                }
                for name in ["Image", "Name", "x", "SystemTime", "NewProcessName", "Other", "Level"] {
                    let walked = first.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
                    if is_plain_name(name) {
                        prop_assert_eq!(scalar(name), walked, "{}", name);
                    }
                }
            }
        }
    }

    #[test]
    fn a_reused_text_buffer_holds_only_its_own_event() {
        let long =
            serde_json::json!({"Event": {"EventData": {"A": "MIMIKATZ ".repeat(400), "B": 7}}});
        let short = serde_json::json!({"Event": {"EventData": {"A": "Übel", "B": "x"}}});
        let first = EvtxEvent::new(&long);
        assert!(first.lowered_text().starts_with("mimikatz mimikatz"));
        drop(first);
        let second = EvtxEvent::new(&short);
        assert_eq!(second.lowered_text(), "übel\0x\0");
        assert_eq!(second.lowered_text(), short.lowered_text());
    }

    #[test]
    fn bad_lines_are_errors_as_before() {
        for bad in ["", "{", "{\"Event\": }", "{} x", "[1,"] {
            let v = serde_json::from_str::<Value>(bad).map_err(|e| e.to_string());
            let f = serde_json::from_str::<FlatEvent>(bad).map_err(|e| e.to_string());
            assert_eq!(v.err(), f.err(), "{bad:?}");
        }
    }
}

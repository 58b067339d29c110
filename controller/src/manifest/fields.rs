//! Reading a Kubernetes object field by field, so that every field is either
//! read, owned by berth (ignored), at its API server default, or refused with
//! its path.
//!
//! Owns: `Problems` (what is wrong, by path, for one manifest) and `Fields`
//! (one mapping being read). Must not touch: what any field means.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

/// Problems with one manifest, each `<Kind>/<name>: <path>: <message>`.
#[derive(Debug, Default)]
pub(super) struct Problems {
    pub(super) list: Vec<String>,
    /// `Deployment/web` of the document being read.
    pub(super) document: String,
}

impl Problems {
    pub(super) fn fail(&mut self, path: &str, message: impl std::fmt::Display) {
        let at = match (self.document.is_empty(), path.is_empty()) {
            (true, true) => String::new(),
            (true, false) => format!("{path}: "),
            (false, true) => format!("{}: ", self.document),
            (false, false) => format!("{}: {path}: ", self.document),
        };
        self.list.push(format!("{at}{message}"));
    }
}

/// `a.b`, or `b` at the top.
pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// One mapping being read: every key must be taken, ignored or at its default
/// by the time `finish` runs, or it is refused.
pub(super) struct Fields<'a> {
    pub(super) path: String,
    map: &'a Map<String, Value>,
    used: BTreeSet<String>,
}

impl<'a> Fields<'a> {
    /// `None` (and a problem) when `v` is not a mapping; a null is an empty one.
    pub(super) fn new(p: &mut Problems, path: &str, v: &'a Value) -> Option<Fields<'a>> {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        let map = match v {
            Value::Object(m) => m,
            Value::Null => EMPTY.get_or_init(Map::new),
            _ => {
                p.fail(path, "must be a mapping");
                return None;
            }
        };
        Some(Fields {
            path: path.to_string(),
            map,
            used: BTreeSet::new(),
        })
    }

    pub(super) fn at(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// The value of `key`, marked as read; a null counts as absent.
    pub(super) fn take(&mut self, key: &str) -> Option<&'a Value> {
        self.used.insert(key.to_string());
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// Keys berth owns or the API server fills in: whatever their value.
    pub(super) fn ignore(&mut self, keys: &[&str]) {
        for k in keys {
            self.used.insert(k.to_string());
        }
    }

    /// A field berth does not model, accepted only at the value berth (or the
    /// API server) gives it anyway.
    pub(super) fn fixed(&mut self, p: &mut Problems, key: &str, expected: Value) {
        if let Some(v) = self.take(key) {
            if *v != expected {
                p.fail(
                    &self.at(key),
                    format!(
                        "berth always uses {}; remove this field",
                        serde_json::to_string(&expected).unwrap_or_default()
                    ),
                );
            }
        }
    }

    /// Refuses every key not read, ignored or fixed.
    pub(super) fn finish(self, p: &mut Problems) {
        for k in self.map.keys() {
            if !self.used.contains(k) {
                p.fail(
                    &join(&self.path, k),
                    "berth does not model this field; remove it (see the list of fields berth \
                     owns or ignores in README)",
                );
            }
        }
    }

    pub(super) fn string(&mut self, p: &mut Problems, key: &str) -> Option<String> {
        let v = self.take(key)?;
        match v.as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                p.fail(&self.at(key), "must be a string");
                None
            }
        }
    }

    pub(super) fn u32(&mut self, p: &mut Problems, key: &str) -> Option<u32> {
        let v = self.take(key)?;
        match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) => Some(n),
            None => {
                p.fail(&self.at(key), "must be a whole number");
                None
            }
        }
    }

    pub(super) fn bool(&mut self, p: &mut Problems, key: &str) -> Option<bool> {
        let v = self.take(key)?;
        match v.as_bool() {
            Some(b) => Some(b),
            None => {
                p.fail(&self.at(key), "must be true or false");
                None
            }
        }
    }

    pub(super) fn strings(&mut self, p: &mut Problems, key: &str) -> Vec<String> {
        let Some(v) = self.take(key) else {
            return Vec::new();
        };
        let at = self.at(key);
        let Some(items) = v.as_array() else {
            p.fail(&at, "must be a list of strings");
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item.as_str() {
                Some(s) => out.push(s.to_string()),
                None => p.fail(&format!("{at}[{i}]"), "must be a string"),
            }
        }
        out
    }

    pub(super) fn string_map(&mut self, p: &mut Problems, key: &str) -> BTreeMap<String, String> {
        let Some(v) = self.take(key) else {
            return BTreeMap::new();
        };
        string_map(p, &self.at(key), v)
    }

    /// The items of a list, with their paths.
    pub(super) fn list(&mut self, p: &mut Problems, key: &str) -> Vec<(String, &'a Value)> {
        let Some(v) = self.take(key) else {
            return Vec::new();
        };
        let at = self.at(key);
        match v.as_array() {
            Some(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| (format!("{at}[{i}]"), item))
                .collect(),
            None => {
                p.fail(&at, "must be a list");
                Vec::new()
            }
        }
    }
}

/// A mapping of strings to strings (labels, data); numbers and booleans are
/// refused, as the API server does.
pub(super) fn string_map(p: &mut Problems, path: &str, v: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match v.as_str() {
                    Some(s) => {
                        out.insert(k.clone(), s.to_string());
                    }
                    None => p.fail(&join(path, k), "must be a string (quote it)"),
                }
            }
        }
        Value::Null => {}
        _ => p.fail(path, "must be a mapping of strings"),
    }
    out
}

//! Config versions: every config that went live (from the file or the admin
//! API) with its time, author and a summary of what changed. The last
//! [`KEPT`] are kept in memory; rollback re-applies one of them. In fleet
//! mode the numbers are the fleet's (etcd holds the durable history) and this
//! list is what this node applied.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;

/// Versions kept for listing and rollback.
pub const KEPT: usize = 100;

/// One config that went live.
#[derive(Debug, Clone, Serialize)]
pub struct Version {
    /// 1 for the config the gateway started with, then +1 per change.
    pub version: u64,
    /// When it went live (RFC 3339).
    pub at: String,
    /// The admin token's name, or `file` for an edit of the file.
    pub author: String,
    /// What changed (`routes: +orders-v2 ~orders; services: -legacy`).
    pub summary: String,
    /// In fleet mode, the etcd revision it was written at.
    #[serde(skip_serializing_if = "is_zero")]
    pub revision: i64,
    /// The document as written (environment references not substituted).
    #[serde(skip)]
    pub document: Value,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl Version {
    /// As the fleet store records it (the base of the next write).
    pub fn record(&self) -> crate::fleet::Record {
        crate::fleet::Record {
            version: self.version,
            revision: self.revision,
            at: self.at.clone(),
            author: self.author.clone(),
            summary: self.summary.clone(),
            document: self.document.clone(),
        }
    }
}

impl From<&crate::fleet::Record> for Version {
    fn from(r: &crate::fleet::Record) -> Self {
        Self {
            version: r.version,
            at: r.at.clone(),
            author: r.author.clone(),
            summary: r.summary.clone(),
            revision: r.revision,
            document: r.document.clone(),
        }
    }
}

/// The history.
#[derive(Debug, Default)]
pub struct Versions(Mutex<VecDeque<Version>>);

impl Versions {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Version>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `document` as the new live version; returns its number.
    pub fn push(&self, document: Value, author: &str) -> u64 {
        let mut list = self.lock();
        let version = list.back().map_or(1, |v| v.version + 1);
        let summary = match list.back() {
            Some(prev) => summarize(&prev.document, &document),
            None => "initial config".into(),
        };
        list.push_back(Version {
            version,
            at: crate::telemetry::access_log::rfc3339(SystemTime::now()),
            author: author.to_string(),
            summary,
            revision: 0,
            document,
        });
        while list.len() > KEPT {
            list.pop_front();
        }
        version
    }

    /// Records a fleet version as the live one, numbered as etcd numbers it.
    pub fn record(&self, rec: &crate::fleet::Record) {
        let mut list = self.lock();
        list.retain(|v| v.version != rec.version);
        list.push_back(rec.into());
        while list.len() > KEPT {
            list.pop_front();
        }
    }

    /// All kept versions, oldest first.
    pub fn list(&self) -> Vec<Version> {
        self.lock().iter().cloned().collect()
    }

    /// Version `n`, if still kept.
    pub fn get(&self, n: u64) -> Option<Version> {
        self.lock().iter().find(|v| v.version == n).cloned()
    }

    /// The live version.
    pub fn current(&self) -> Option<Version> {
        self.lock().back().cloned()
    }
}

/// `routes: +a ~b -c; services: ~s; limits` — items of the keyed lists by
/// id/name, other top-level keys by name.
pub fn summarize(old: &Value, new: &Value) -> String {
    let mut parts = Vec::new();
    for (list, key) in [("services", "name"), ("routes", "id")] {
        let items = |doc: &Value| -> Vec<(String, Value)> {
            doc.get(list)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|v| {
                            (
                                v.get(key)
                                    .and_then(Value::as_str)
                                    .unwrap_or("?")
                                    .to_string(),
                                v.clone(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let (before, after) = (items(old), items(new));
        let mut changes = Vec::new();
        for (id, v) in &after {
            match before.iter().find(|(b, _)| b == id) {
                None => changes.push(format!("+{id}")),
                Some((_, old)) if old != v => changes.push(format!("~{id}")),
                _ => {}
            }
        }
        for (id, _) in &before {
            if !after.iter().any(|(a, _)| a == id) {
                changes.push(format!("-{id}"));
            }
        }
        if !changes.is_empty() {
            parts.push(format!("{list}: {}", changes.join(" ")));
        }
    }
    let keys = |doc: &Value| -> Vec<String> {
        doc.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    let mut others: Vec<String> = keys(old).into_iter().chain(keys(new)).collect();
    others.sort();
    others.dedup();
    for k in others {
        if k != "routes" && k != "services" && old.get(&k) != new.get(&k) {
            parts.push(k);
        }
    }
    if parts.is_empty() {
        "no change".into()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn summaries_name_what_changed() {
        let a = json!({ "routes": [{ "id": "a" }, { "id": "b", "x": 1 }], "services": [{ "name": "s" }], "workers": 1 });
        let b = json!({ "routes": [{ "id": "b", "x": 2 }, { "id": "c" }], "services": [{ "name": "s" }], "workers": 2 });
        assert_eq!(summarize(&a, &b), "routes: ~b +c -a; workers");
        assert_eq!(summarize(&a, &a), "no change");
        let v = Versions::default();
        assert_eq!(v.push(a.clone(), "file"), 1);
        assert_eq!(v.push(b, "ops"), 2);
        assert_eq!(
            v.get(2).map(|v| v.summary),
            Some("routes: ~b +c -a; workers".into())
        );
        assert_eq!(v.get(1).map(|v| v.document), Some(a));
    }
}

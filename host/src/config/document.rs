//! The config file as a JSON document: what the admin API reads and edits.
//! Edits happen on the document as written (environment references stay
//! `${NAME}`), then the whole document is validated like the file.

use std::path::Path;

use serde_json::{Map, Value};

fn is_json(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "json")
}

/// Parses config text (YAML or JSON by extension) into a document.
pub fn parse(path: &Path, text: &str) -> Result<Value, String> {
    let v: Value = if is_json(path) {
        serde_json::from_str(text).map_err(|e| e.to_string())?
    } else {
        serde_yaml::from_str(text).map_err(|e| e.to_string())?
    };
    Ok(match v {
        Value::Null => Value::Object(Map::new()),
        v => v,
    })
}

/// Writes a document in the file's format. YAML comments do not survive an
/// admin edit (the document is the source of truth from then on).
pub fn render(path: &Path, doc: &Value) -> String {
    if is_json(path) {
        serde_json::to_string_pretty(doc).unwrap_or_default() + "\n"
    } else {
        serde_yaml::to_string(doc).unwrap_or_default()
    }
}

/// RFC 7386 JSON merge patch: objects merge, `null` deletes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// A keyed list of the document (`routes` by `id`, `services` by `name`).
#[derive(Debug, Clone, Copy)]
pub struct Collection {
    /// Top-level key.
    pub list: &'static str,
    /// Key field of each item.
    pub key: &'static str,
}

/// Routes, by id.
pub const ROUTES: Collection = Collection {
    list: "routes",
    key: "id",
};
/// Services, by name.
pub const SERVICES: Collection = Collection {
    list: "services",
    key: "name",
};
/// Consumers, by name.
pub const CONSUMERS: Collection = Collection {
    list: "consumers",
    key: "name",
};

impl Collection {
    /// The items (empty when the key is absent).
    pub fn items<'a>(&self, doc: &'a Value) -> &'a [Value] {
        doc.get(self.list)
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }

    fn array<'a>(&self, doc: &'a mut Value) -> &'a mut Vec<Value> {
        if !doc.is_object() {
            *doc = Value::Object(Map::new());
        }
        let slot = &mut doc[self.list];
        if !slot.is_array() {
            *slot = Value::Array(Vec::new());
        }
        match slot {
            Value::Array(a) => a,
            _ => unreachable!("set to an array above"),
        }
    }

    fn position(&self, doc: &Value, id: &str) -> Option<usize> {
        self.items(doc)
            .iter()
            .position(|v| v.get(self.key).and_then(Value::as_str) == Some(id))
    }

    /// The item with key `id`.
    pub fn get<'a>(&self, doc: &'a Value, id: &str) -> Option<&'a Value> {
        self.position(doc, id).map(|i| &self.items(doc)[i])
    }

    /// The item with key `id`, mutable.
    pub fn get_mut<'a>(&self, doc: &'a mut Value, id: &str) -> Option<&'a mut Value> {
        let i = self.position(doc, id)?;
        self.array(doc).get_mut(i)
    }

    /// Inserts `item` (its key field says where); `false` if the key exists.
    pub fn insert(&self, doc: &mut Value, item: Value) -> bool {
        let Some(id) = item
            .get(self.key)
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            return false;
        };
        if self.position(doc, &id).is_some() {
            return false;
        }
        self.array(doc).push(item);
        true
    }

    /// Replaces (or appends) the item with key `id`.
    pub fn put(&self, doc: &mut Value, id: &str, item: Value) {
        match self.position(doc, id) {
            Some(i) => self.array(doc)[i] = item,
            None => self.array(doc).push(item),
        }
    }

    /// Removes the item with key `id`; `false` if there is none.
    pub fn remove(&self, doc: &mut Value, id: &str) -> bool {
        match self.position(doc, id) {
            Some(i) => {
                self.array(doc).remove(i);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut t = json!({ "a": "b", "c": { "d": "e", "f": "g" } });
        merge_patch(&mut t, &json!({ "a": "z", "c": { "f": null } }));
        assert_eq!(t, json!({ "a": "z", "c": { "d": "e" } }));
    }

    #[test]
    fn collections_insert_put_remove_by_key() {
        let mut doc = json!({});
        assert!(ROUTES.insert(&mut doc, json!({ "id": "a" })));
        assert!(
            !ROUTES.insert(&mut doc, json!({ "id": "a" })),
            "duplicate id"
        );
        ROUTES.put(&mut doc, "b", json!({ "id": "b" }));
        ROUTES.put(&mut doc, "a", json!({ "id": "a", "x": 1 }));
        assert_eq!(ROUTES.get(&doc, "a"), Some(&json!({ "id": "a", "x": 1 })));
        assert!(ROUTES.remove(&mut doc, "b"));
        assert!(!ROUTES.remove(&mut doc, "b"));
        assert_eq!(doc, json!({ "routes": [{ "id": "a", "x": 1 }] }));
    }
}

//! One line of the consumer store's journal.

use serde::{Deserialize, Serialize};

/// A key as the journal (and the admin API's import) writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    /// The consumer it belongs to (created with the key when new).
    pub consumer: String,
    /// The key's name, unique within the consumer.
    pub id: String,
    /// `sha256:<64 hex digits>` of the key.
    pub hash: String,
    /// Granted scopes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Rate-limit tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// RFC 3339 instant after which the key is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// A disabled key is refused.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// When it was made (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
}

fn yes() -> bool {
    true
}

/// A change to the store, in the order it happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Record {
    /// A consumer without keys.
    Consumer {
        /// Its name.
        name: String,
        /// When it was made.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        created: Option<String>,
    },
    /// A consumer and all its keys are gone.
    DeleteConsumer {
        /// Its name.
        name: String,
    },
    /// A new key.
    Key(KeyRecord),
    /// A key is refused from now on.
    Disable {
        /// Its consumer.
        consumer: String,
        /// Its id.
        id: String,
    },
    /// A key is gone.
    DeleteKey {
        /// Its consumer.
        consumer: String,
        /// Its id.
        id: String,
    },
    /// A key was last used at `at` (ms since the Unix epoch). A stamp for a
    /// key that is gone is ignored.
    Used {
        /// Its consumer.
        consumer: String,
        /// Its id.
        id: String,
        /// Milliseconds since the Unix epoch.
        at: u64,
    },
}

/// The 32 bytes of a `sha256:<hex>` (or bare hex) hash.
pub fn digest(hash: &str) -> Option<[u8; 32]> {
    let hex_part = hash.strip_prefix("sha256:").unwrap_or(hash);
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut out).ok()?;
    Some(out)
}

/// Milliseconds since the Unix epoch of an RFC 3339 instant.
pub fn instant_ms(text: &str) -> Option<u64> {
    let t = humantime::parse_rfc3339_weak(text).ok()?;
    t.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_millis() as u64)
}

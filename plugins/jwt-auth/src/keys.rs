//! Verification keys: inline secrets and PEM keys, inline JWKS, and a JWKS file
//! that is re-read when it changes (key rotation without a restart).

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::JwkSet;

/// One usable key.
pub struct Key {
    /// The `kid` it answers to, if any.
    pub kid: Option<String>,
    /// The decoding key (knows its family: HMAC, RSA, EC, Ed).
    pub key: DecodingKey,
    /// The one algorithm a JWK's `alg` allows it for (`None`: any of its family).
    pub alg: Option<jsonwebtoken::Algorithm>,
}

/// Parses a PEM public key of any supported family.
pub fn from_pem(pem: &str) -> Result<DecodingKey, String> {
    let bytes = pem.as_bytes();
    DecodingKey::from_rsa_pem(bytes)
        .or_else(|_| DecodingKey::from_ec_pem(bytes))
        .or_else(|_| DecodingKey::from_ed_pem(bytes))
        .map_err(|_| "`public_key` is not an RSA, EC or Ed25519 public key in PEM".to_string())
}

/// Parses a JWKS document; keys of unsupported types are an error, not skipped,
/// so that a typo cannot silently disable a key. Keys published for
/// encryption (`"use": "enc"`, or `key_ops` without `verify`) are left out:
/// they never verify a signature (RFC 7517 §4.2, §4.3). A key's `alg`
/// restricts it to that algorithm (§4.4).
pub fn from_jwks(text: &str) -> Result<Vec<Key>, String> {
    use jsonwebtoken::jwk::{KeyOperations, PublicKeyUse};
    let set: JwkSet =
        serde_json::from_str(text).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut out = Vec::with_capacity(set.keys.len());
    for jwk in &set.keys {
        let kid = jwk.common.key_id.clone();
        let name = || kid.clone().unwrap_or_else(|| "without kid".into());
        let for_signatures = match &jwk.common.public_key_use {
            None | Some(PublicKeyUse::Signature) => true,
            Some(_) => false,
        };
        let verifies = jwk
            .common
            .key_operations
            .as_ref()
            .is_none_or(|ops| ops.iter().any(|o| matches!(o, KeyOperations::Verify)));
        if !for_signatures || !verifies {
            continue;
        }
        let alg = match jwk.common.key_algorithm {
            None => None,
            Some(a) => Some(jsonwebtoken::Algorithm::try_from(a).map_err(|_| {
                format!(
                    "JWKS key {}: `alg` {a} is not a signature algorithm",
                    name()
                )
            })?),
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("JWKS key {}: {e}", name()))?;
        out.push(Key { kid, key, alg });
    }
    Ok(out)
}

/// Keys that can change while the plugin runs: a file, or the provider's.
pub enum KeySource {
    /// `jwks_file`.
    File(JwksFile),
    /// `jwks_uri` or `discovery`.
    Remote(crate::remote::RemoteJwks),
}

impl KeySource {
    /// The current keys; `force` after an unknown `kid`. `Err` only when a
    /// provider's keys cannot be had and none are young enough to keep.
    pub fn keys(
        &self,
        force: bool,
    ) -> Result<std::sync::Arc<Vec<Key>>, crate::remote::Unavailable> {
        match self {
            Self::File(f) => Ok(f.keys(force)),
            Self::Remote(r) => r.keys(force),
        }
    }
}

/// A JWKS file and what was last read from it.
pub struct JwksFile {
    path: String,
    refresh: Duration,
    state: Mutex<FileState>,
}

/// What identifies a version of the file: modification time and length.
type Stamp = Option<(SystemTime, u64)>;

struct FileState {
    keys: std::sync::Arc<Vec<Key>>,
    stamp: Stamp,
    checked: Instant,
}

impl JwksFile {
    /// Reads `path` now; an unreadable or invalid file is a load error.
    pub fn open(path: &str, refresh: Duration) -> Result<Self, String> {
        let (keys, stamp) = read(path)?;
        Ok(Self {
            path: path.to_string(),
            refresh,
            state: Mutex::new(FileState {
                keys: std::sync::Arc::new(keys),
                stamp,
                checked: Instant::now(),
            }),
        })
    }

    /// The current keys, re-reading the file when it changed and the last check
    /// is older than the refresh interval (or `force` after an unknown `kid`).
    /// A broken new version keeps the old keys.
    pub fn keys(&self, force: bool) -> std::sync::Arc<Vec<Key>> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let due = s.checked.elapsed() >= self.refresh
            || (force && s.checked.elapsed() >= Duration::from_millis(500));
        if due {
            s.checked = Instant::now();
            if stamp(&self.path) != s.stamp {
                match read(&self.path) {
                    Ok((keys, stamp)) => {
                        s.keys = std::sync::Arc::new(keys);
                        s.stamp = stamp;
                    }
                    Err(e) => gatehouse_plugin_sdk::host::log(
                        gatehouse_plugin_sdk::Level::Warn,
                        &format!("jwks_file {}: keeping the previous keys: {e}", self.path),
                    ),
                }
            }
        }
        s.keys.clone()
    }
}

fn stamp(path: &str) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

fn read(path: &str) -> Result<(Vec<Key>, Stamp), String> {
    let stamp = stamp(path);
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!("jwks_file {path}: {e} (is its directory granted with `allow_read`?)")
    })?;
    Ok((from_jwks(&text)?, stamp))
}

/// Whether `key` can verify tokens of `alg`: its family, and its JWK `alg`
/// when it has one.
pub fn fits(key: &Key, alg: jsonwebtoken::Algorithm) -> bool {
    key.key.family() == alg.family() && key.alg.is_none_or(|a| a == alg)
}

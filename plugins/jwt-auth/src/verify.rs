//! Token verification with an explicit algorithm allow-list. Every way a token
//! can be wrong maps to one [`Failure`] with a description safe to show the
//! client (never a key, never the token).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation, decode};
use serde_json::{Map, Value};

use std::sync::Arc;

use crate::keys::{Key, KeySource, fits};

/// Why a token was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// No token in the request.
    Missing,
    /// Larger than `max_token_bytes`.
    TooLarge,
    /// Not three base64url JSON segments.
    Malformed(&'static str),
    /// `alg` not in the allow-list (including `none`).
    AlgorithmNotAllowed,
    /// A `crit` header names extensions this verifier does not implement
    /// (it implements none; RFC 7515 §4.1.11).
    UnsupportedCritical,
    /// `kid` names no configured key.
    UnknownKid,
    /// The provider's keys cannot be fetched and none are young enough to
    /// keep using (answered 503, not 401: the token may be fine).
    KeysUnavailable,
    /// No configured key of the token's algorithm family.
    NoKey,
    /// The signature does not verify.
    BadSignature,
    /// `exp` has passed.
    Expired,
    /// `nbf` is in the future.
    NotYetValid,
    /// `iss` is not accepted.
    WrongIssuer,
    /// `aud` is not accepted.
    WrongAudience,
    /// A required claim is absent.
    MissingClaim(String),
    /// A claim has the wrong type.
    BadClaim(String),
}

impl Failure {
    /// The RFC 6750 `error_description` (no quotes or backslashes).
    pub fn description(&self) -> String {
        match self {
            Self::Missing => "missing token".into(),
            Self::TooLarge => "token too large".into(),
            Self::Malformed(why) => format!("malformed token: {why}"),
            Self::AlgorithmNotAllowed => "algorithm not allowed".into(),
            Self::UnsupportedCritical => "unsupported critical header".into(),
            Self::UnknownKid => "unknown key id".into(),
            Self::KeysUnavailable => "signing keys unavailable".into(),
            Self::NoKey => "no key for this algorithm".into(),
            Self::BadSignature => "invalid signature".into(),
            Self::Expired => "token expired".into(),
            Self::NotYetValid => "token not yet valid".into(),
            Self::WrongIssuer => "invalid issuer".into(),
            Self::WrongAudience => "invalid audience".into(),
            Self::MissingClaim(c) => format!("missing required claim {}", sanitize(c)),
            Self::BadClaim(c) => format!("invalid claim {}", sanitize(c)),
        }
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
        .take(64)
        .collect()
}

/// Everything needed to verify a token.
pub struct Verifier {
    /// Accepted algorithms.
    pub algorithms: Vec<Algorithm>,
    /// Keys from `secret`, `public_key`, `keys` and `jwks`.
    pub keys: Vec<Key>,
    /// Keys from `jwks_file`, `jwks_uri` or `discovery`.
    pub source: Option<KeySource>,
    /// Issuer, audience, leeway, required claims (algorithms set per token).
    pub validation: Validation,
    /// Largest token accepted.
    pub max_token_bytes: usize,
}

impl Verifier {
    /// The source's current keys (`None` without a source).
    pub fn current(&self) -> Result<Option<Arc<Vec<Key>>>, Failure> {
        self.source
            .as_ref()
            .map(|s| s.keys(false))
            .transpose()
            .map_err(|_| Failure::KeysUnavailable)
    }

    /// Verifies `token` with the configured keys and `current` ones from the
    /// source, and returns its claims.
    pub fn verify(
        &self,
        token: &str,
        current: Option<&Arc<Vec<Key>>>,
    ) -> Result<Map<String, Value>, Failure> {
        if token.len() > self.max_token_bytes {
            return Err(Failure::TooLarge);
        }
        let mut parts = token.split('.');
        let (Some(head), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Failure::Malformed("expected three segments"));
        };
        // The header is read here, not by jsonwebtoken, so that `alg: none` and
        // unknown algorithms are refused as such rather than as bad JSON.
        let head = URL_SAFE_NO_PAD
            .decode(head)
            .map_err(|_| Failure::Malformed("bad base64"))?;
        let head: Value =
            serde_json::from_slice(&head).map_err(|_| Failure::Malformed("bad JSON"))?;
        let alg = head
            .get("alg")
            .and_then(Value::as_str)
            .ok_or(Failure::Malformed("no alg"))?;
        let alg: Algorithm = alg
            .parse()
            .ok()
            .filter(|a| self.algorithms.contains(a))
            .ok_or(Failure::AlgorithmNotAllowed)?;
        // No extension is implemented, so any `crit` must be refused. `jku`,
        // `x5u`, `jwk` and `x5c` are never read: a key comes only from the
        // config, never from the token that it is supposed to verify.
        if head.get("crit").is_some() {
            return Err(Failure::UnsupportedCritical);
        }
        let kid = head.get("kid").and_then(Value::as_str);

        let mut validation = self.validation.clone();
        validation.algorithms = vec![alg];
        match self.try_keys(token, alg, kid, &validation, current.map(|k| &**k)) {
            // A kid we do not know may be a key just added to the source.
            Err(Failure::UnknownKid) if self.source.is_some() => {
                let fresh = self.source.as_ref().map(|s| s.keys(true));
                match fresh {
                    Some(Ok(keys)) => self.try_keys(token, alg, kid, &validation, Some(&keys)),
                    _ => Err(Failure::UnknownKid),
                }
            }
            other => other,
        }
    }

    fn try_keys(
        &self,
        token: &str,
        alg: Algorithm,
        kid: Option<&str>,
        validation: &Validation,
        file_keys: Option<&Vec<Key>>,
    ) -> Result<Map<String, Value>, Failure> {
        let all = self.keys.iter().chain(file_keys.into_iter().flatten());
        let fitting: Vec<&Key> = all.filter(|k| fits(k, alg)).collect();
        // A token's kid picks the key of that kid; keys configured without a
        // kid (a single `secret` or `public_key`) answer to any kid.
        let candidates: Vec<&Key> = match kid {
            Some(kid) if fitting.iter().any(|k| k.kid.as_deref() == Some(kid)) => fitting
                .into_iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .collect(),
            Some(_) => fitting.into_iter().filter(|k| k.kid.is_none()).collect(),
            None => fitting,
        };
        if candidates.is_empty() {
            return Err(if kid.is_some() {
                Failure::UnknownKid
            } else {
                Failure::NoKey
            });
        }
        for key in candidates {
            match decode::<Map<String, Value>>(token, &key.key, validation) {
                Ok(data) => return Ok(data.claims),
                // Signature first, claims after: a claim error means this key
                // verified the token; a signature or key error means try the next.
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::InvalidSignature
                            | ErrorKind::InvalidEcdsaKey
                            | ErrorKind::InvalidEddsaKey
                            | ErrorKind::InvalidRsaKey(_)
                            | ErrorKind::InvalidKeyFormat
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(classify(e.kind())),
            }
        }
        Err(Failure::BadSignature)
    }
}

fn classify(kind: &ErrorKind) -> Failure {
    match kind {
        ErrorKind::InvalidSignature => Failure::BadSignature,
        ErrorKind::ExpiredSignature => Failure::Expired,
        ErrorKind::ImmatureSignature => Failure::NotYetValid,
        ErrorKind::InvalidIssuer => Failure::WrongIssuer,
        ErrorKind::InvalidAudience => Failure::WrongAudience,
        ErrorKind::MissingRequiredClaim(c) => Failure::MissingClaim(c.clone()),
        ErrorKind::InvalidClaimFormat(c) => Failure::BadClaim(c.clone()),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            Failure::AlgorithmNotAllowed
        }
        ErrorKind::Base64(_) => Failure::Malformed("bad base64"),
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => Failure::Malformed("bad JSON"),
        _ => Failure::BadSignature,
    }
}

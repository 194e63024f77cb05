//! The case file of `gatehouse plugin test`, as written.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;
use serde_json::Value;

/// A whole case file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    /// The plugin's name in logs and metrics (default: the file's stem).
    pub plugin: Option<String>,
    /// The attachment config every case starts from.
    pub config: Option<Value>,
    /// The cases, run in order, each on fresh host state.
    #[serde(default)]
    pub cases: Vec<Case>,
}

/// One request through the plugin and what must come of it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// What the case shows (printed).
    pub name: String,
    /// This case's attachment config (replaces the file's).
    pub config: Option<Value>,
    /// The request as it reaches the plugin.
    #[serde(default)]
    pub request: CaseRequest,
    /// The upstream's answer, when the plugin lets the request through
    /// (default: 200, no headers, empty body).
    #[serde(default)]
    pub response: CaseResponse,
    /// Scripted host state and answers.
    #[serde(default)]
    pub host: CaseHost,
    /// What must happen.
    pub expect: Expect,
}

/// One header value or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Values {
    /// One value.
    One(String),
    /// Several, in order.
    Many(Vec<String>),
}

impl Values {
    /// The values in order.
    pub fn list(&self) -> Vec<&str> {
        match self {
            Values::One(v) => vec![v.as_str()],
            Values::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// The request.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseRequest {
    /// Default `GET`.
    pub method: Option<String>,
    /// Path, with `?query` if any (default `/`).
    pub path: Option<String>,
    /// Request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, Values>,
    /// The body (handed to `on-request-body` when the plugin asks for it).
    pub body: Option<String>,
    /// The client address (default 127.0.0.1).
    pub client_ip: Option<IpAddr>,
    /// `http` (default) or `https`.
    pub scheme: Option<String>,
    /// The host the client asked for (default: the `host` header, else `localhost`).
    pub host: Option<String>,
    /// The matched route's id (default `test`).
    pub route: Option<String>,
    /// Path parameters captured by the route pattern.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Attributes set before the plugin (by an earlier plugin or the listener).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// The upstream's answer.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseResponse {
    /// Default 200.
    pub status: Option<u16>,
    /// Response headers.
    #[serde(default)]
    pub headers: BTreeMap<String, Values>,
    /// The body.
    pub body: Option<String>,
}

/// Scripted host state.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseHost {
    /// The wall clock (RFC 3339) for `now-ms` and the guest's own clock.
    pub now: Option<String>,
    /// The plugin's key-value store before the request (values as text).
    #[serde(default)]
    pub kv: BTreeMap<String, String>,
    /// Rate-limit answers, in order; after the last, a fresh in-process limiter answers.
    #[serde(default)]
    pub rate_limit: Vec<ScriptedLimit>,
    /// Consumers' API keys `find-credential` knows.
    #[serde(default)]
    pub credentials: Vec<ScriptedKey>,
    /// Each service's answer to every callout (by service name).
    #[serde(default)]
    pub callouts: BTreeMap<String, CaseResponse>,
}

/// One scripted rate-limit decision.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedLimit {
    /// Whether the request fits.
    pub allowed: bool,
    /// The limit that applied.
    #[serde(default)]
    pub limit: u32,
    /// Left in the window.
    #[serde(default)]
    pub remaining: u32,
    /// Milliseconds until the window resets.
    #[serde(default)]
    pub reset_ms: u64,
    /// Milliseconds to wait before retrying.
    #[serde(default)]
    pub retry_after_ms: u64,
}

/// A consumer's key, given in the clear (the harness hashes it).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedKey {
    /// The key a client would send.
    pub key: String,
    /// Its consumer.
    pub consumer: String,
    /// Its id (default `k1`).
    pub id: Option<String>,
    /// Granted scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Rate-limit tier.
    pub tier: Option<String>,
    /// RFC 3339 expiry.
    pub expires: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
}

/// What decided the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The request went on to the upstream.
    Continue,
    /// The plugin answered it (request or request-body hook).
    Respond,
}

/// The expectations; each one given is checked, the others are not.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// `init` must refuse the config with an error containing this.
    pub init_error: Option<String>,
    /// A hook must fail (trap, deadline) with an error containing this.
    pub error: Option<String>,
    /// `continue` or `respond`.
    pub outcome: Option<Outcome>,
    /// The client's status.
    pub status: Option<u16>,
    /// The client's headers: a value, or `null` for "absent".
    #[serde(default)]
    pub headers: BTreeMap<String, Option<String>>,
    /// The client's whole body.
    pub body: Option<String>,
    /// Text the client's body must contain.
    pub body_contains: Option<String>,
    /// The client's body, as JSON, must contain these fields with these values.
    pub body_json: Option<Value>,
    /// What the upstream receives (with `outcome: continue`).
    pub upstream: Option<ExpectUpstream>,
    /// Attributes after the request hooks: a value, or `null` for "not set".
    #[serde(default)]
    pub attributes: BTreeMap<String, Option<String>>,
    /// Host calls that must have been made, in this order (each a prefix of
    /// one recorded call, such as `rate-limit key=ip:127.0.0.1`).
    #[serde(default)]
    pub host_calls: Vec<String>,
}

/// The request the upstream gets.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectUpstream {
    /// Its method.
    pub method: Option<String>,
    /// Its path (without the query).
    pub path: Option<String>,
    /// Its query (`null`: none).
    #[serde(default, deserialize_with = "some")]
    pub query: Option<Option<String>>,
    /// Its headers: a value, or `null` for "absent".
    #[serde(default)]
    pub headers: BTreeMap<String, Option<String>>,
    /// Its body.
    pub body: Option<String>,
}

/// Tells `query: null` (must have none) from a missing `query` (not checked).
fn some<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

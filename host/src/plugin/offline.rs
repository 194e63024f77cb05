//! `gatehouse plugin test`: runs a plugin against a file of cases in the
//! gateway's own engine, linker, limits and chain (the code that serves
//! requests), without a gateway, a network or an upstream. Each case gets
//! fresh host state, scripted where it says so (clock, key-value store,
//! rate-limit answers, consumers' keys), so a run is deterministic.

mod case;
mod check;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Uri};

use crate::proxy::request::hooks;
use crate::proxy::respond::{Answer, respond};

pub use case::CaseFile;
use case::{Case, CaseRequest, Values};
use check::Observed;

use super::bindings::host::LimitDecision;
use super::chain::{Attachment, Chain, Flow};
use super::runtime::{Compiled, PluginRuntime};
use super::script::Script;
use crate::body::{Body, collect};
use crate::config::{AttachmentConfig, ConsumerConfig, ConsumerKey};
use crate::credentials::{Credentials, KeyRecord};
use crate::exchange::{Exchange, Trail};

/// Why a run could not start (a case that fails is not an error: see [`Report`]).
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    /// The case file cannot be read or parsed.
    #[error("{path}: {message}")]
    Cases {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The plugin cannot be compiled.
    #[error("{0}")]
    Load(#[from] super::LoadError),
    /// The engine cannot start.
    #[error("{0}")]
    Runtime(#[from] super::RuntimeError),
}

/// One case's result.
#[derive(Debug)]
pub struct CaseResult {
    /// The case's name.
    pub name: String,
    /// Each expectation that was not met, as `what: expected …, got …`.
    pub failures: Vec<String>,
    /// The host calls the plugin made (shown when the case fails).
    pub calls: Vec<String>,
}

/// Every case's result, in file order.
#[derive(Debug)]
pub struct Report {
    /// The results.
    pub cases: Vec<CaseResult>,
}

impl Report {
    /// Whether every case passed (and there was at least one).
    pub fn passed(&self) -> bool {
        !self.cases.is_empty() && self.cases.iter().all(|c| c.failures.is_empty())
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in &self.cases {
            if c.failures.is_empty() {
                writeln!(f, "ok    {}", c.name)?;
                continue;
            }
            writeln!(f, "FAIL  {}", c.name)?;
            for line in &c.failures {
                writeln!(f, "      {line}")?;
            }
            if !c.calls.is_empty() {
                writeln!(f, "      host calls made:")?;
                for call in &c.calls {
                    writeln!(f, "        {call}")?;
                }
            }
        }
        let failed = self.cases.iter().filter(|c| !c.failures.is_empty()).count();
        write!(f, "{} passed, {failed} failed", self.cases.len() - failed)
    }
}

/// Runs the cases in `cases` against the component at `wasm`.
pub async fn run(wasm: &Path, cases: &Path) -> Result<Report, OfflineError> {
    let bad = |message: String| OfflineError::Cases {
        path: cases.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(cases).map_err(|e| bad(e.to_string()))?;
    let file: CaseFile = serde_yaml::from_str(&text).map_err(|e| bad(e.to_string()))?;
    if file.cases.is_empty() {
        return Err(bad("no `cases`".into()));
    }
    let name = file.plugin.clone().unwrap_or_else(|| {
        let stem = wasm
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("plugin");
        stem.to_string()
    });
    let runtime = PluginRuntime::new()?;
    let rt = runtime.clone();
    let (n, path) = (name.clone(), wasm.to_path_buf());
    let compiled = tokio::task::spawn_blocking(move || rt.compile(&n, &path))
        .await
        .map_err(|e| bad(format!("compile task failed: {e}")))??;
    let mut results = Vec::with_capacity(file.cases.len());
    for (i, case) in file.cases.iter().enumerate() {
        let config = case.config.as_ref().or(file.config.as_ref());
        results.push(run_case(&runtime, &compiled, &name, i, case, config).await);
    }
    Ok(Report { cases: results })
}

/// The consumers `find-credential` knows in a case.
fn credentials(case: &Case) -> Result<Arc<Credentials>, String> {
    let mut consumers: Vec<ConsumerConfig> = Vec::new();
    for (i, k) in case.host.credentials.iter().enumerate() {
        let record = KeyRecord {
            consumer: k.consumer.clone(),
            id: k.id.clone().unwrap_or_else(|| format!("k{}", i + 1)),
            hash: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(k.key.as_bytes())),
            scopes: k.scopes.clone(),
            tier: k.tier.clone(),
            expires: k.expires.clone(),
            enabled: k.enabled.unwrap_or(true),
            created: None,
        };
        let (hash, expires_ms) = crate::credentials::parse_key(&record)
            .map_err(|e| format!("host.credentials[{i}]: {e}"))?;
        let key = ConsumerKey {
            hash,
            expires_ms,
            record,
        };
        match consumers.iter_mut().find(|c| c.name == k.consumer) {
            Some(c) => c.keys.push(key),
            None => consumers.push(ConsumerConfig {
                name: k.consumer.clone(),
                keys: vec![key],
            }),
        }
    }
    let creds = Credentials::default();
    creds.use_config(&consumers);
    Ok(Arc::new(creds))
}

fn script(case: &Case) -> Result<Script, String> {
    let now_ms = case
        .host
        .now
        .as_deref()
        .map(|t| {
            crate::credentials::instant_ms(t)
                .ok_or_else(|| format!("host.now: {t:?} is not an RFC 3339 time"))
        })
        .transpose()?;
    let limits = case
        .host
        .rate_limit
        .iter()
        .map(|l| LimitDecision {
            allowed: l.allowed,
            limit: l.limit,
            remaining: l.remaining,
            reset_ms: l.reset_ms,
            retry_after_ms: l.retry_after_ms,
        })
        .collect();
    let mut script = Script::new(now_ms, limits);
    for (service, r) in &case.host.callouts {
        let headers = r
            .headers
            .iter()
            .flat_map(|(k, vs)| vs.list().into_iter().map(|v| (k.clone(), v.to_string())))
            .collect();
        let answer = crate::plugin::script::CalloutAnswer {
            status: r.status.unwrap_or(200),
            headers,
            body: r.body.clone().unwrap_or_default().into_bytes(),
        };
        script.callouts.insert(service.clone(), answer);
    }
    Ok(script)
}

async fn run_case(
    runtime: &Arc<PluginRuntime>,
    compiled: &Compiled,
    name: &str,
    index: usize,
    case: &Case,
    config: Option<&serde_json::Value>,
) -> CaseResult {
    let result = |failures: Vec<String>, calls: Vec<String>| CaseResult {
        name: case.name.clone(),
        failures,
        calls,
    };
    let (script, creds) = match (script(case), credentials(case)) {
        (Ok(s), Ok(c)) => (Arc::new(s), c),
        (Err(e), _) | (_, Err(e)) => return result(vec![e], Vec::new()),
    };
    let mut cfg = AttachmentConfig::named(name);
    if let Some(c) = config {
        cfg.config = c.to_string().into();
    }
    let shared = runtime.scripted(&cfg.name, script.clone(), creds);
    for (k, v) in &case.host.kv {
        shared.kv.set(k.clone(), v.as_bytes().to_vec(), 0);
    }
    let pool = runtime.start_pool_on(compiled, &cfg, shared).await;
    let observed = match pool {
        Err(e) => Observed::init_error(e.to_string()),
        Ok(pool) => {
            let route: Arc<str> = case.request.route.as_deref().unwrap_or("test").into();
            let metrics = runtime.metrics().plugin(&cfg.name, &route);
            let counter: Arc<str> = format!("{route}#{index}").into();
            let attachment = Arc::new(Attachment::new(cfg.clone(), Some(pool)));
            let chain = Chain::new(vec![attachment], vec![metrics], vec![counter], vec![None]);
            match exchange(&case.request, route, &chain) {
                Ok(ex) => through(&chain, ex, case).await,
                Err(e) => return result(vec![e], Vec::new()),
            }
        }
    };
    let calls = script.calls();
    let failures = check::check(&case.expect, &observed, &calls);
    result(failures, calls)
}

fn header_map(
    headers: &std::collections::BTreeMap<String, Values>,
    what: &str,
) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (k, vs) in headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| format!("{what}.headers: `{k}` is not a header name"))?;
        for v in vs.list() {
            let value = HeaderValue::from_str(v)
                .map_err(|_| format!("{what}.headers.{k}: not a header value"))?;
            map.append(name.clone(), value);
        }
    }
    Ok(map)
}

/// The exchange a request of `r` would be when it reaches the chain.
fn exchange(r: &CaseRequest, route: Arc<str>, chain: &Chain) -> Result<Exchange, String> {
    let ip = r.client_ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let mut ex = Exchange::new(
        HeaderValue::from_static("test-request-id"),
        ip,
        Trail::start(),
    );
    let method = r.method.as_deref().unwrap_or("GET");
    ex.view.req.method =
        Method::from_bytes(method.as_bytes()).map_err(|_| format!("request.method: `{method}`"))?;
    let path = r.path.as_deref().unwrap_or("/");
    ex.view.req.uri = path
        .parse::<Uri>()
        .ok()
        .filter(|u| u.path().starts_with('/'))
        .ok_or_else(|| format!("request.path: `{path}` is not an origin-form path"))?;
    ex.view.req.headers = header_map(&r.headers, "request")?;
    ex.view.req.scheme = match r.scheme.as_deref() {
        None | Some("http") => "http",
        Some("https") => "https",
        Some(s) => return Err(format!("request.scheme: `{s}`: expected http or https")),
    };
    let host = r.host.clone().or_else(|| {
        let h = ex.view.req.headers.get(http::header::HOST)?;
        h.to_str().ok().map(str::to_string)
    });
    ex.view.req.host = host.unwrap_or_else(|| "localhost".into()).into();
    ex.view.route_id = route;
    ex.view.params = r
        .params
        .iter()
        .map(|(k, v)| (k.as_str().into(), v.clone()))
        .collect();
    ex.view.attributes = r
        .attributes
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    ex.view.counters = chain.counters();
    if let Some(b) = &r.body {
        ex.body = Body::full(b.clone());
    }
    Ok(ex)
}

/// The request through the chain by the gateway's own stages
/// (`proxy::request::hooks`, `proxy::respond::respond`), the upstream's
/// answer being the case's `response`.
async fn through(chain: &Chain, mut ex: Exchange, case: &Case) -> Observed {
    let mut run = chain.start();
    let mut seen = Observed::default();
    let flow = match hooks(&mut run, &mut ex).await {
        Ok(f) => f,
        Err(e) => return Observed::hook_error(e.to_string()),
    };
    seen.attributes = ex.view.attributes.clone();
    let answer = match flow {
        Flow::Respond(r) => {
            seen.responded = true;
            Answer::Plugin(r)
        }
        Flow::Continue => {
            let head = run.upstream_head(&mut ex.view);
            let body = collect(ex.take_body(), usize::MAX)
                .await
                .unwrap_or_default();
            seen.upstream = Some((head, body));
            match upstream_answer(case) {
                Ok(r) => Answer::Upstream(r),
                Err(e) => return Observed::hook_error(e),
            }
        }
    };
    let resp = match respond(&mut run, &mut ex, answer, None).await {
        Ok(r) => r,
        Err(e) => return Observed::hook_error(e.to_string()),
    };
    let (parts, body) = resp.into_parts();
    let body = collect(body, usize::MAX).await.unwrap_or_default();
    seen.client = Some((parts.status, parts.headers, body));
    seen
}

fn upstream_answer(case: &Case) -> Result<Response<Body>, String> {
    let r = &case.response;
    let body = r.body.clone().unwrap_or_default();
    let mut resp = Response::new(Body::full(body));
    *resp.status_mut() = StatusCode::from_u16(r.status.unwrap_or(200))
        .map_err(|_| "response.status: not a status code".to_string())?;
    *resp.headers_mut() = header_map(&r.headers, "response")?;
    Ok(resp)
}

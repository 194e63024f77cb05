//! A shadow version of a plugin (`shadow: auth-v2.wasm`): after the live
//! version's `on-request`, the shadow runs on a copy of the request, in a
//! task of its own, so it adds nothing to the response's critical path and
//! can change nothing the client or the upstream sees. It has host state of
//! its own (`<name>~shadow`: key-value store, rate-limit counters) and no
//! callouts. Where its decision differs from the live one (continue or
//! respond, status, request edits, attributes) it is counted and sampled.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::Semaphore;

use super::bindings::types::RequestAction;
use super::pool::{Call, Outcome, Pool};
use crate::exchange::PluginView;

/// Shadow calls running at once per attachment; past it a request is not shadowed (counted).
const MAX_CONCURRENT: usize = 16;
/// Differing requests kept per plugin.
const SAMPLES: usize = 20;

/// Shadow comparisons of one plugin (`gatehouse_plugin_shadow_total`).
#[derive(Debug, Default)]
pub struct ShadowStats {
    /// Same decision as the live version.
    pub same: AtomicU64,
    /// A different decision.
    pub differ: AtomicU64,
    /// The shadow failed (trap, deadline) where the live version did not.
    pub error: AtomicU64,
    /// Not shadowed: every shadow slot was busy.
    pub skipped: AtomicU64,
    samples: Mutex<VecDeque<Difference>>,
}

impl ShadowStats {
    /// The last differing requests, oldest first.
    pub fn samples(&self) -> Vec<Difference> {
        self.samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    fn sample(&self, d: Difference) {
        let mut s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        if s.len() == SAMPLES {
            s.pop_front();
        }
        s.push_back(d);
    }
}

/// What one version decided about one request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// `continue`, `respond` or `error`.
    pub outcome: &'static str,
    /// The answer's status (`respond`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The request's path and query after the hook.
    pub uri: String,
    /// The request's headers after the hook (names and values).
    pub headers: Vec<(String, String)>,
    /// The attributes after the hook.
    pub attributes: Vec<(String, String)>,
}

impl Decision {
    /// The decision `outcome` left in `view`.
    pub fn of(outcome: Option<&Outcome>, failed: bool, view: &PluginView) -> Self {
        let (outcome, status) = match outcome {
            _ if failed => ("error", None),
            Some(Outcome::Request(RequestAction::Respond(r))) => ("respond", Some(r.status)),
            _ => ("continue", None),
        };
        let mut headers: Vec<(String, String)> = view
            .req
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        headers.sort();
        let mut attributes = view.attributes.clone();
        attributes.sort();
        Self {
            outcome,
            status,
            uri: view.req.uri.to_string(),
            headers,
            attributes,
        }
    }
}

/// A request on which the versions disagreed.
#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    /// When (RFC 3339).
    pub at: String,
    /// The route.
    pub route: String,
    /// The request id.
    pub request_id: String,
    /// The method and path the request arrived with.
    pub request: String,
    /// What the live version decided.
    pub live: Decision,
    /// What the shadow decided.
    pub shadow: Decision,
}

/// An attachment's shadow version.
#[derive(Debug)]
pub struct Shadow {
    /// The file's stem.
    pub label: Arc<str>,
    /// Its pool (on its own host state).
    pub pool: Arc<Pool>,
    permits: Arc<Semaphore>,
    /// Its comparisons.
    pub stats: Arc<ShadowStats>,
}

impl Shadow {
    /// A shadow running `pool`, counting into `stats`.
    pub fn new(label: Arc<str>, pool: Arc<Pool>, stats: Arc<ShadowStats>) -> Self {
        Self {
            label,
            pool,
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT)),
            stats,
        }
    }

    /// Runs the shadow on `copy` (the request as the live version got it)
    /// in the background and compares with `live`.
    pub fn spawn(&self, mut copy: PluginView, live: Decision) {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            self.stats.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let pool = self.pool.clone();
        let stats = self.stats.clone();
        let request = format!("{} {}", copy.req.method, copy.req.uri);
        tokio::spawn(async move {
            let _permit = permit;
            let result = pool.invoke(&mut copy, Call::Request).await;
            let shadow = Decision::of(result.as_ref().ok(), result.is_err(), &copy);
            if shadow == live {
                stats.same.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let counter = if shadow.outcome == "error" {
                &stats.error
            } else {
                &stats.differ
            };
            counter.fetch_add(1, Ordering::Relaxed);
            stats.sample(Difference {
                at: crate::telemetry::access_log::rfc3339(std::time::SystemTime::now()),
                route: copy.route_id.to_string(),
                request_id: String::from_utf8_lossy(copy.request_id.as_bytes()).into_owned(),
                request,
                live,
                shadow,
            });
        });
    }
}

/// A copy of `view` for the shadow of the attachment at `position`: the
/// request as it is now, no response-time headers, the same rate-limit
/// namespaces (the shadow's counters live in its own host state anyway).
pub fn copy(view: &PluginView, position: usize) -> PluginView {
    PluginView {
        request_id: view.request_id.clone(),
        route_id: view.route_id.clone(),
        client_ip: view.client_ip,
        params: view.params.clone(),
        attributes: view.attributes.clone(),
        req: view.req.clone(),
        counters: view.counters.clone(),
        attachment: position,
        ..PluginView::blank()
    }
}

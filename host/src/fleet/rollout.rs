//! Staged rollout: a new version goes first to the nodes whose labels match
//! a selector (`{prefix}/canary`), while every other node keeps serving
//! `{prefix}/config`. It is then promoted (it becomes the config for all) or
//! rolled back (the canary nodes return to the config). Optionally every
//! node watches the canary nodes' 5xx rate and rolls back automatically when
//! it passes a threshold; whichever node acts first wins the transaction.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, GetOptions, TxnOp};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::store::{encode, next_record};
use super::{FleetError, Link, Record, Store};

/// A version being rolled out to some nodes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Canary {
    /// The version (the live config's next), with its document.
    pub record: Record,
    /// The nodes that take it: every label here must match the node's.
    pub labels: BTreeMap<String, String>,
    /// When the rollout started (RFC 3339).
    pub started_at: String,
    /// Roll back by itself when the canary nodes fail too often.
    #[serde(default)]
    pub auto_rollback: Option<AutoRollback>,
}

/// When a rollout rolls itself back.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AutoRollback {
    /// Largest tolerated share of 5xx answers on the canary nodes (0.05).
    pub max_error_rate: f64,
    /// Over the last this many seconds.
    #[serde(default = "default_window")]
    pub window_seconds: u64,
    /// Fewer requests than this in the window decide nothing.
    #[serde(default = "default_min_requests")]
    pub min_requests: u64,
}

fn default_window() -> u64 {
    60
}

fn default_min_requests() -> u64 {
    100
}

impl Canary {
    /// Whether a node with `labels` takes this version.
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

/// How the last rollout ended (`{prefix}/rollout/last`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Outcome {
    /// The version.
    pub version: u64,
    /// What it changed.
    pub summary: String,
    /// `promoted` or `rolled_back`.
    pub outcome: String,
    /// Who or what decided (an admin token, `cli`, `auto-rollback`).
    pub by: String,
    /// Why, for an automatic rollback.
    pub reason: Option<String>,
    /// When (RFC 3339).
    pub at: String,
}

impl Store {
    /// The rollout under way, with its mod revision.
    pub async fn canary(&self) -> Result<Option<(Canary, i64)>, FleetError> {
        let key = self.key("canary");
        let resp = self.client().get(key.as_str(), None).await?;
        resp.kvs()
            .first()
            .map(|kv| {
                decode_canary(&key, kv.value(), kv.mod_revision()).map(|c| (c, kv.mod_revision()))
            })
            .transpose()
    }

    /// Starts rolling `document` out to the nodes matching `labels`, as the
    /// version after `base` (which must still be the live config).
    pub async fn start_rollout(
        &self,
        document: Value,
        author: &str,
        base: &Record,
        labels: BTreeMap<String, String>,
        auto_rollback: Option<AutoRollback>,
    ) -> Result<Canary, FleetError> {
        let rec = next_record(document, author, Some(base));
        let canary = Canary {
            record: rec,
            labels,
            started_at: crate::telemetry::access_log::rfc3339(std::time::SystemTime::now()),
            auto_rollback,
        };
        let txn = etcd_client::Txn::new()
            .when([self.guard(Some(base)), self.no_canary()])
            .and_then([
                TxnOp::put(self.key("canary"), encode(&canary)?, None),
                TxnOp::put(
                    self.history_key(canary.record.version),
                    encode(&canary.record)?,
                    None,
                ),
            ])
            .or_else(self.reread());
        let resp = self.client().txn(txn).await?;
        if !resp.succeeded() {
            return Err(self.refusal(&resp, Some(base)));
        }
        Ok(canary)
    }

    /// Makes the rollout's version the config of every node.
    pub async fn promote(&self, by: &str) -> Result<Record, FleetError> {
        let (canary, rev) = self.canary().await?.ok_or(FleetError::NoRollout)?;
        let mut rec = canary.record.clone();
        rec.revision = 0;
        let outcome = self.outcome(&canary, "promoted", by, None);
        let put = TxnOp::put(self.key("config"), encode(&rec)?, None);
        let resp = self.end_rollout(rev, &outcome, put).await?;
        rec.revision = resp.header().map_or(0, |h| h.revision());
        Ok(rec)
    }

    /// Ends the rollout: its nodes return to the config. `expected` guards
    /// an automatic rollback against acting on a newer rollout.
    pub async fn roll_back(
        &self,
        by: &str,
        reason: Option<String>,
        expected: Option<i64>,
    ) -> Result<Outcome, FleetError> {
        let (canary, rev) = self.canary().await?.ok_or(FleetError::NoRollout)?;
        if expected.is_some_and(|e| e != rev) {
            return Err(FleetError::NoRollout);
        }
        let outcome = self.outcome(&canary, "rolled_back", by, reason);
        // The version never became the fleet's: it leaves the history (its
        // number goes to the next write) and is remembered in rollout/last.
        let forget = TxnOp::delete(self.history_key(canary.record.version), None);
        self.end_rollout(rev, &outcome, forget).await?;
        Ok(outcome)
    }

    /// One transaction, if the rollout is still the one at `rev`: `op`, the
    /// canary key removed, and `outcome` recorded as the last rollout's.
    async fn end_rollout(
        &self,
        rev: i64,
        outcome: &Outcome,
        op: TxnOp,
    ) -> Result<etcd_client::TxnResponse, FleetError> {
        let txn = etcd_client::Txn::new()
            .when([Compare::mod_revision(
                self.key("canary"),
                CompareOp::Equal,
                rev,
            )])
            .and_then([
                op,
                TxnOp::delete(self.key("canary"), None),
                TxnOp::put(self.key("rollout/last"), encode(outcome)?, None),
            ]);
        let resp = self.client().txn(txn).await?;
        if !resp.succeeded() {
            return Err(FleetError::NoRollout);
        }
        Ok(resp)
    }

    fn outcome(&self, c: &Canary, outcome: &str, by: &str, reason: Option<String>) -> Outcome {
        Outcome {
            version: c.record.version,
            summary: c.record.summary.clone(),
            outcome: outcome.into(),
            by: by.into(),
            reason,
            at: crate::telemetry::access_log::rfc3339(std::time::SystemTime::now()),
        }
    }

    /// The rollout under way and how the last one ended.
    pub async fn rollout_state(&self) -> Result<Value, FleetError> {
        let canary = self.canary().await?.map(|(c, _)| c);
        let key = self.key("rollout/last");
        let resp = self
            .client()
            .get(key.as_str(), Some(GetOptions::new()))
            .await?;
        let last: Option<Value> = resp
            .kvs()
            .first()
            .and_then(|kv| serde_json::from_slice(kv.value()).ok());
        Ok(json!({
            "active": canary.map(|c| json!({
                "version": c.record.version,
                "summary": c.record.summary,
                "author": c.record.author,
                "labels": c.labels,
                "started_at": c.started_at,
                "auto_rollback": c.auto_rollback,
            })),
            "last": last,
        }))
    }
}

fn decode_canary(key: &str, value: &[u8], revision: i64) -> Result<Canary, FleetError> {
    let mut c: Canary = serde_json::from_slice(value).map_err(|e| FleetError::Corrupt {
        key: key.to_string(),
        message: e.to_string(),
    })?;
    // The version's revision, as nodes apply it, is the canary key's.
    c.record.revision = revision;
    Ok(c)
}

/// A canary as the watch delivers it.
pub(super) fn canary_from(kv: &etcd_client::KeyValue) -> Result<Canary, FleetError> {
    decode_canary(
        &String::from_utf8_lossy(kv.key()),
        kv.value(),
        kv.mod_revision(),
    )
}

/// How often the canary's health is sampled.
const SAMPLE: Duration = Duration::from_secs(1);

/// The canary nodes' request and 5xx counts over a sliding window. The
/// counts are each node's since it applied the version, so the window starts
/// from a zero sample: until it slides past that, it covers the rollout whole.
#[derive(Debug)]
pub struct Window {
    span: Duration,
    samples: VecDeque<(Instant, u64, u64)>,
}

impl Window {
    /// A window of `span`, opened at `now`.
    pub fn new(span: Duration, now: Instant) -> Self {
        Self {
            span,
            samples: VecDeque::from([(now, 0, 0)]),
        }
    }

    /// Adds the summed counts seen at `now`; returns the requests and 5xx
    /// within the window.
    pub fn observe(&mut self, now: Instant, requests: u64, errors: u64) -> (u64, u64) {
        // A canary node that restarted counts from zero again: start over.
        if self
            .samples
            .back()
            .is_some_and(|&(_, r, b)| requests < r || errors < b)
        {
            self.samples = VecDeque::from([(now, 0, 0)]);
        }
        self.samples.push_back((now, requests, errors));
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|(t, ..)| now.saturating_duration_since(*t) >= self.span)
        {
            self.samples.pop_front();
        }
        let (_, r0, b0) = self.samples.front().copied().unwrap_or((now, 0, 0));
        (requests - r0, errors - b0)
    }
}

impl AutoRollback {
    /// Why `requests` with `errors` among them call for a rollback, if they do.
    pub fn breached(&self, requests: u64, errors: u64) -> Option<String> {
        if requests < self.min_requests.max(1) {
            return None;
        }
        let rate = errors as f64 / requests as f64;
        (rate > self.max_error_rate).then(|| {
            format!(
                "5xx rate {:.1}% over {requests} requests on the canary nodes passed {:.1}%",
                rate * 100.0,
                self.max_error_rate * 100.0
            )
        })
    }
}

/// Watches an auto-rollback rollout's canary nodes and rolls it back when
/// their 5xx rate over the window passes the threshold. Runs on every node.
pub async fn guard(link: Arc<Link>, mut shutdown: watch::Receiver<bool>) {
    let mut watching: Option<(i64, Window)> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SAMPLE) => {}
            _ = shutdown.changed() => return,
        }
        let Ok(store) = link.store() else { continue };
        let Ok(Some((canary, rev))) = store.canary().await else {
            watching = None;
            continue;
        };
        let Some(auto) = canary.auto_rollback else {
            continue;
        };
        let now = Instant::now();
        if watching.as_ref().is_none_or(|(r, _)| *r != rev) {
            let span = Duration::from_secs(auto.window_seconds);
            watching = Some((rev, Window::new(span, now)));
        }
        let Ok(nodes) = store.nodes().await else {
            continue;
        };
        let (req, bad) = nodes
            .iter()
            .filter(|n| n["config"]["version"].as_u64() == Some(canary.record.version))
            .fold((0, 0), |(r, b), n| {
                (
                    r + n["since_apply"]["requests"].as_u64().unwrap_or(0),
                    b + n["since_apply"]["responses_5xx"].as_u64().unwrap_or(0),
                )
            });
        let Some((_, window)) = watching.as_mut() else {
            continue;
        };
        let (dr, db) = window.observe(now, req, bad);
        if let Some(reason) = auto.breached(dr, db)
            && store
                .roll_back("auto-rollback", Some(reason.clone()), Some(rev))
                .await
                .is_ok()
        {
            tracing::warn!(version = canary.record.version, %reason, "staged rollout rolled back");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_covers_the_rollout_until_it_slides_past_its_start() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut w = Window::new(s(10), t0);
        assert_eq!(w.observe(t0 + s(1), 50, 5), (50, 5));
        assert_eq!(w.observe(t0 + s(5), 100, 5), (100, 5));
        // Past 10 s the oldest samples drop: only what happened since counts.
        assert_eq!(w.observe(t0 + s(12), 200, 5), (150, 0));
        assert_eq!(w.observe(t0 + s(16), 300, 30), (200, 25));
        // A canary node restarted (the sum fell): counting starts over.
        assert_eq!(w.observe(t0 + s(17), 20, 1), (20, 1));
    }

    #[test]
    fn a_rollback_needs_enough_requests_and_a_rate_past_the_threshold() {
        let auto = AutoRollback {
            max_error_rate: 0.05,
            window_seconds: 60,
            min_requests: 100,
        };
        assert_eq!(auto.breached(99, 99), None, "too few requests to decide");
        assert_eq!(auto.breached(100, 5), None, "5 % is not past 5 %");
        let reason = auto.breached(100, 6).expect("6 % is");
        assert!(
            reason.contains("6.0%") && reason.contains("100 requests"),
            "{reason}"
        );
    }
}

//! The `host` interface: log, clocks, custom metrics, identity headers, kv,
//! signature checks, credentials and rate limits.

use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderName;

use crate::plugin::bindings::host;
use crate::plugin::bindings::types::Level;
use crate::plugin::state::PluginState;

impl host::Host for PluginState {
    fn log(&mut self, level: Level, message: String) {
        self.note(|| format!("log {}: {message}", format!("{level:?}").to_lowercase()));
        let plugin = &*self.shared.name;
        let route = self.view().map(|e| e.route_id.clone());
        let route = route.as_deref().unwrap_or("");
        match level {
            Level::Trace => tracing::trace!(plugin, route, "{message}"),
            Level::Debug => tracing::debug!(plugin, route, "{message}"),
            Level::Info => tracing::info!(plugin, route, "{message}"),
            Level::Warn => tracing::warn!(plugin, route, "{message}"),
            Level::Error => tracing::error!(plugin, route, "{message}"),
        }
    }

    fn now_ms(&mut self) -> u64 {
        if let Some(ms) = self.shared.script.as_ref().and_then(|s| s.now_ms) {
            return ms;
        }
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    fn monotonic_ns(&mut self) -> u64 {
        crate::plugin::runtime::monotonic_ns()
    }

    fn counter_add(&mut self, name: String, delta: u64) {
        self.shared.custom.counter_add(&name, delta);
    }

    fn histogram_record(&mut self, name: String, value: f64) {
        self.shared.custom.histogram_record(&name, value);
    }

    fn identity_header(&mut self, name: String) {
        if self.serving {
            return;
        }
        match HeaderName::from_bytes(name.as_bytes()) {
            Ok(n) if !self.identity_headers.contains(&n) => self.identity_headers.push(n),
            Ok(_) => {}
            Err(_) => tracing::warn!(
                plugin = &*self.shared.name,
                header = name,
                "plugin declared an invalid identity header; ignored"
            ),
        }
    }

    fn kv_get(&mut self, key: String) -> Option<Vec<u8>> {
        self.shared.kv.get(&key)
    }

    fn kv_set(&mut self, key: String, value: Vec<u8>, ttl_ms: u64) {
        self.note(|| format!("kv-set key={key} ttl_ms={ttl_ms}"));
        let evicted = self.shared.kv.set(key, value, ttl_ms);
        if evicted > 0 {
            let m = &self.shared.limits.kv_evicted;
            m.fetch_add(evicted as u64, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn kv_delete(&mut self, key: String) {
        self.note(|| format!("kv-delete key={key}"));
        self.shared.kv.delete(&key);
    }

    fn verify_signature(
        &mut self,
        algorithm: host::SignatureAlgorithm,
        key: host::PublicKey,
        message: Vec<u8>,
        signature: Vec<u8>,
    ) -> bool {
        crate::plugin::signature::verify(algorithm, &key, &message, &signature)
    }

    fn find_credential(&mut self, sha256: Vec<u8>) -> Option<host::Credential> {
        self.note(|| format!("find-credential sha256={}", hex::encode(&sha256)));
        let digest: [u8; 32] = sha256.try_into().ok()?;
        let c = self.shared.credentials.lookup(&digest)?;
        Some(host::Credential {
            consumer: c.consumer.to_string(),
            id: c.id.to_string(),
            scopes: c.scopes.clone(),
            tier: c.tier.clone(),
            expires_ms: c.expires_ms,
            enabled: c.enabled,
        })
    }

    async fn rate_limit(
        &mut self,
        mut req: host::LimitRequest,
    ) -> Result<host::LimitDecision, String> {
        self.note(|| {
            format!(
                "rate-limit key={} limit={} window_ms={} cost={}",
                req.key, req.limit, req.window_ms, req.cost
            )
        });
        if let Some(d) = self.shared.script.as_ref().and_then(|s| s.next_limit()) {
            return Ok(d);
        }
        // The attachment's namespace first: a key can only name a counter of
        // the attachment (or shared `counter`) making the call.
        if let Some(ns) = self.view().and_then(|ex| ex.counters.get(ex.attachment)) {
            let mut key = String::with_capacity(ns.len() + 1 + req.key.len());
            key.push_str(ns);
            key.push('|');
            key.push_str(&req.key);
            req.key = key;
        }
        let decision = match req.backend {
            host::Backend::Local => {
                let (decision, evicted) = self.shared.rate.check(&req);
                if evicted > 0 {
                    let m = &self.shared.limits.evicted;
                    m.fetch_add(evicted as u64, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(decision)
            }
            host::Backend::Redis => match self.shared.redis.load_full() {
                None => Err("backend `redis` needs `redis.url` in the gateway config".into()),
                Some(redis) => redis.check(&self.shared.name, &req).await,
            },
        };
        let m = &self.shared.limits;
        let counter = match &decision {
            Ok(d) if d.allowed => &m.allowed,
            Ok(_) => &m.limited,
            Err(_) => &m.backend_errors,
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        decision
    }
}

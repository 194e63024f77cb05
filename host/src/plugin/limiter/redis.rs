//! Counters shared by every gateway node through one Redis: one Lua script per
//! check (EVALSHA, one round trip, atomic), the Redis server's clock, keys that
//! expire once they say nothing a missing key would not.

use std::sync::OnceLock;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, Script};
use sha2::{Digest, Sha256};

use crate::config::RedisConfig;
use crate::plugin::bindings::host::{Algorithm, LimitDecision, LimitRequest};

/// Keys longer than this are hashed: a client-chosen header value must not
/// become a multi-kilobyte Redis key.
const MAX_KEY: usize = 200;

/// A lazily connected, self-reconnecting Redis limiter.
pub struct RedisLimiter {
    config: RedisConfig,
    client: Client,
    /// Created on first use: a gateway that never uses the Redis backend never
    /// connects.
    conn: OnceLock<Result<ConnectionManager, String>>,
    script: Script,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the URL: it may hold a password.
        f.debug_struct("RedisLimiter")
            .field("timeout", &self.config.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisLimiter {
    /// A limiter for `config`; nothing is connected yet.
    pub fn new(config: &RedisConfig) -> Result<Self, String> {
        let client = Client::open(config.url.as_str()).map_err(|e| format!("redis.url: {e}"))?;
        Ok(Self {
            config: config.clone(),
            client,
            conn: OnceLock::new(),
            script: Script::new(include_str!("limit.lua")),
        })
    }

    /// The settings this limiter was built from.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    fn connection(&self) -> Result<ConnectionManager, String> {
        self.conn
            .get_or_init(|| {
                // Reconnects happen in the background after an I/O error; each
                // check still waits at most `timeout`, so an outage costs every
                // request at most that and then `on_backend_error` decides.
                let cfg = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(
                        self.config.timeout.max(Duration::from_millis(250)),
                    ))
                    .set_response_timeout(Some(self.config.timeout))
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(10))
                    .set_max_delay(Duration::from_millis(500));
                ConnectionManager::new_lazy_with_config(self.client.clone(), cfg)
                    .map_err(|e| format!("redis: {e}"))
            })
            .clone()
    }

    /// Checks and counts `req` under `namespace` (the plugin's name).
    pub async fn check(
        &self,
        namespace: &str,
        req: &LimitRequest,
    ) -> Result<LimitDecision, String> {
        let mut conn = self.connection()?;
        let algorithm = match req.algorithm {
            Algorithm::TokenBucket => "tb",
            Algorithm::SlidingWindow => "sw",
        };
        let mut call = self.script.key(redis_key(namespace, &req.key));
        call.arg(algorithm)
            .arg(req.limit)
            .arg(req.window_ms)
            .arg(req.burst)
            .arg(req.cost);
        let reply = tokio::time::timeout(
            self.config.timeout,
            call.invoke_async::<Vec<u64>>(&mut conn),
        )
        .await
        .map_err(|_| format!("redis: no answer within {:?}", self.config.timeout))?
        .map_err(|e| format!("redis: {e}"))?;
        let [allowed, limit, remaining, reset_ms, retry_after_ms] = reply[..] else {
            return Err(format!("redis: unexpected script reply {reply:?}"));
        };
        Ok(LimitDecision {
            allowed: allowed == 1,
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
            remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
            reset_ms,
            retry_after_ms,
        })
    }
}

fn redis_key(namespace: &str, key: &str) -> String {
    if key.len() <= MAX_KEY {
        format!("gatehouse:rl:{namespace}:{key}")
    } else {
        format!(
            "gatehouse:rl:{namespace}:#{}",
            hex::encode(Sha256::digest(key.as_bytes()))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_keys_are_hashed() {
        assert_eq!(redis_key("rl", "ip:1.2.3.4"), "gatehouse:rl:rl:ip:1.2.3.4");
        let long = redis_key("rl", &"x".repeat(5000));
        assert!(long.len() < 100, "{long}");
        assert_ne!(long, redis_key("rl", &"y".repeat(5000)));
    }
}

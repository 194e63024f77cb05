//! Host answers scripted by an offline test case (`gatehouse plugin test`):
//! a fixed clock (the `now-ms` import and the guest's WASI wall clock alike),
//! rate-limit decisions given in order, and a record of the host calls the
//! plugin made. The gateway never sets one: [`super::state::PluginShared`]
//! holds `None` and every host call pays one branch for it.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use super::bindings::callout::{Error, Request, Response};
use super::bindings::host::LimitDecision;
use super::bindings::types::Header;

/// A scripted answer of one service to every callout.
#[derive(Debug, Clone)]
pub struct CalloutAnswer {
    /// Its status.
    pub status: u16,
    /// Its headers.
    pub headers: Vec<(String, String)>,
    /// Its body.
    pub body: Vec<u8>,
}

/// What one case scripts.
#[derive(Debug, Default)]
pub struct Script {
    /// Wall-clock time, milliseconds since the Unix epoch, for the whole case.
    pub now_ms: Option<u64>,
    /// Rate-limit answers, used in order; when none is left, the real
    /// (in-process, fresh per case) limiter answers.
    rate_limits: Mutex<VecDeque<LimitDecision>>,
    /// The host calls made, in order (`rate-limit key=… limit=…`, `kv-set key=…`, `log warn: …`).
    calls: Mutex<Vec<String>>,
    /// Answers by service name; a callout to any other service is `unavailable`.
    pub callouts: std::collections::BTreeMap<String, CalloutAnswer>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Script {
    /// A script with a fixed clock (if any) and these rate-limit answers.
    pub fn new(now_ms: Option<u64>, rate_limits: Vec<LimitDecision>) -> Self {
        Self {
            now_ms,
            rate_limits: Mutex::new(rate_limits.into()),
            calls: Mutex::default(),
            callouts: Default::default(),
        }
    }

    /// The scripted answer to one callout.
    pub fn callout(&self, r: &Request) -> Result<Response, Error> {
        let Some(a) = self.callouts.get(&r.service) else {
            return Err(Error::Unavailable(format!(
                "`{}` has no scripted answer in this case (host.callouts)",
                r.service
            )));
        };
        Ok(Response {
            status: a.status,
            headers: a
                .headers
                .iter()
                .map(|(n, v)| Header {
                    name: n.clone(),
                    value: v.clone().into_bytes(),
                })
                .collect(),
            body: a.body.clone(),
        })
    }

    /// Notes a host call.
    pub fn record(&self, call: String) {
        lock(&self.calls).push(call);
    }

    /// The next scripted rate-limit answer.
    pub fn next_limit(&self) -> Option<LimitDecision> {
        lock(&self.rate_limits).pop_front()
    }

    /// The host calls made so far.
    pub fn calls(&self) -> Vec<String> {
        lock(&self.calls).clone()
    }
}

/// The guest's wall clock, stopped at the script's time.
pub struct FixedClock(pub Duration);

impl wasmtime_wasi::HostWallClock for FixedClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now(&self) -> Duration {
        self.0
    }
}

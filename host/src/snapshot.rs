//! One immutable snapshot of everything a request needs: the route table, each
//! route's chain and target, and the services. A reload builds a complete new
//! snapshot off the request path and swaps it in; nothing mutates a live one.

mod loader;

pub use crate::service::Service;
use loader::Loader;

use std::sync::Arc;

use crate::accept::Ingress;
use crate::balancer::{ip_hash, stable_hash};
use crate::cache::{RouteCache, Store};
use crate::config::{
    AttachmentConfig, Config, ConfigError, Limits, Rewrite, RouteConfig, SplitKey, Target,
};
use crate::metrics::{Metrics, RouteMetrics};
use crate::plugin::{Attachment, Chain, Grants, PluginRuntime};
use crate::router::Router;

/// Where a route sends traffic, resolved to live services.
#[derive(Debug)]
pub enum RouteTarget {
    /// One service.
    Service(Arc<Service>),
    /// A weighted split.
    Split {
        /// Services and their weights.
        arms: Vec<(Arc<Service>, u32)>,
        /// Sum of weights.
        total: u32,
        /// Stickiness.
        key: SplitKey,
    },
}

impl RouteTarget {
    /// Picks the service for a request.
    pub fn service(&self, client_ip: std::net::IpAddr, headers: &http::HeaderMap) -> &Arc<Service> {
        match self {
            Self::Service(s) => s,
            Self::Split { arms, total, key } => {
                let point = match key {
                    SplitKey::ClientIp => ip_hash(client_ip),
                    SplitKey::Header(h) => headers
                        .get(h)
                        .map_or_else(|| fastrand::u64(..), |v| stable_hash(v.as_bytes())),
                    SplitKey::Random => fastrand::u64(..),
                } % u64::from(*total);
                let mut acc = 0u64;
                for (s, w) in arms {
                    acc += u64::from(*w);
                    if point < acc {
                        return s;
                    }
                }
                &arms[arms.len() - 1].0
            }
        }
    }
}

/// A route ready to serve.
#[derive(Debug)]
pub struct Route {
    /// Route id.
    pub id: Arc<str>,
    /// Names of the pattern's parameters, in capture order.
    pub param_names: Vec<Arc<str>>,
    /// Target.
    pub target: RouteTarget,
    /// Path rewrite.
    pub rewrite: Option<Rewrite>,
    /// Global plugins then the route's own.
    pub chain: Chain,
    /// Keep the client's `Host` header.
    pub preserve_host: bool,
    /// Retry non-idempotent methods too.
    pub retry_non_idempotent: bool,
    /// Request counters and latency.
    pub metrics: Arc<RouteMetrics>,
    /// The response cache, on a cached route.
    pub cache: Option<RouteCache>,
    /// The route's own timeouts and retries, over its service's.
    pub terms: crate::dispatch::Terms,
    /// What answers when the upstream cannot: the route's, else none (the
    /// service's is read from the service).
    pub fallback: Option<crate::config::Fallback>,
}

/// Everything one request needs, immutable once built.
#[derive(Debug)]
pub struct Snapshot {
    /// The compiled route table.
    pub router: Router,
    /// Routes by index (as the router returns them).
    pub routes: Vec<Route>,
    /// What `accept` does to every request.
    pub ingress: Ingress,
    /// Listener limits.
    pub limits: Limits,
    /// Services in config order.
    pub services: Vec<Arc<Service>>,
    /// The config this snapshot was built from.
    pub config: Arc<Config>,
    /// The response cache's store, when a route is cached; carried over by
    /// reloads that keep its bound.
    pub cache: Option<Arc<Store>>,
}

impl Snapshot {
    /// Builds a snapshot: compiles the router, creates services, and loads every
    /// plugin attachment (compiling off the runtime and running `init`). Plugin
    /// attachments identical to ones in `previous` (same config, same file) are
    /// reused as they are. Any failure leaves `previous` untouched.
    pub async fn build(
        config: Config,
        runtime: &Arc<PluginRuntime>,
        previous: Option<&Snapshot>,
    ) -> Result<Self, Vec<ConfigError>> {
        let loader = Loader::new(runtime, previous, None);
        Self::build_with(config, runtime, loader, previous).await
    }

    /// The snapshot after plugin `name`'s file changed: this one's config,
    /// with every attachment of `name` loaded again from its file and every
    /// other attachment, service and setting carried over as it is (their
    /// files are not read). The hot swap: nothing in `self` changes.
    pub async fn with_plugin(
        &self,
        name: &str,
        runtime: &Arc<PluginRuntime>,
    ) -> Result<Self, Vec<ConfigError>> {
        let loader = Loader::new(runtime, Some(self), Some(name));
        Self::build_with((*self.config).clone(), runtime, loader, Some(self)).await
    }

    /// How many attachments of plugin `name` here are not in `other` (new
    /// versions, or optional plugins whose file appeared).
    pub fn changed_attachments(&self, other: &Snapshot, name: &str) -> usize {
        let before = other.attachments();
        self.attachments()
            .iter()
            .filter(|a| a.config().uses(name))
            .filter(|a| !before.iter().any(|b| Arc::ptr_eq(a, b)))
            .count()
    }

    /// Versions of every plugin this snapshot runs (what the compile cache keeps).
    pub fn versions(&self) -> Vec<Arc<str>> {
        let mut out = Vec::new();
        for a in self.attachments() {
            out.extend(a.version());
            out.extend(a.variants().iter().map(|v| v.pool.version.clone()));
            out.extend(a.shadow().map(|s| s.pool.version.clone()));
        }
        out
    }

    async fn build_with(
        config: Config,
        runtime: &Arc<PluginRuntime>,
        mut loader: Loader<'_>,
        previous: Option<&Snapshot>,
    ) -> Result<Self, Vec<ConfigError>> {
        let router = Router::build(&config.routes)?;
        let services = services(&config, previous, runtime.metrics())?;
        let mut errors = Vec::new();
        let mut global = Vec::new();
        let mut global_counters = Vec::new();
        let mut global_grants = Vec::new();
        for (i, a) in config.global_plugins.iter().enumerate() {
            match loader.attachment(a, &config).await {
                Ok(att) => {
                    global.push(att);
                    global_counters.push(counter(a, "*", i));
                    global_grants.push(Grants::new(a, &services, runtime));
                }
                Err(e) => errors.push(ConfigError::new(format!("plugins[{i}]"), e.to_string())),
            }
        }
        let store = cache_store(&config, previous);
        let mut routes = Vec::with_capacity(config.routes.len());
        for (ri, r) in config.routes.iter().enumerate() {
            let mut items = global.clone();
            let mut counters = global_counters.clone();
            let mut grants = global_grants.clone();
            for (pi, a) in r.plugins.iter().enumerate() {
                match loader.attachment(a, &config).await {
                    Ok(att) => {
                        items.push(att);
                        counters.push(counter(a, &r.id, pi));
                        grants.push(Grants::new(a, &services, runtime));
                    }
                    Err(e) => {
                        let at = format!("routes[{ri}].plugins[{pi}]");
                        errors.push(ConfigError::new(at, e.to_string()))
                    }
                }
            }
            let metrics = runtime.metrics();
            let plugin_metrics = items
                .iter()
                .map(|a| metrics.plugin(&a.config().name, &r.id))
                .collect();
            let chain = Chain::new(items, plugin_metrics, counters, grants);
            let mut route = route(r, &services, chain, metrics.route(&r.id));
            if let (Some(policy), Some(store)) = (&r.cache, &store) {
                route.cache = Some(RouteCache {
                    policy: Arc::new(policy.clone()),
                    store: store.clone(),
                    metrics: metrics.cache(&r.id),
                });
            }
            routes.push(route);
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        if let Err(e) = runtime.use_redis(config.redis.as_ref()) {
            return Err(vec![ConfigError::new("redis", e)]);
        }
        runtime.use_state_bounds(config.plugin_state);
        runtime.credentials().use_config(&config.consumers);
        let ingress = ingress(&config, &routes);
        Ok(Self {
            router,
            routes,
            ingress,
            limits: config.limits,
            services,
            config: Arc::new(config),
            cache: store,
        })
    }

    /// Every attachment in this snapshot (deduplicated).
    pub fn attachments(&self) -> Vec<Arc<Attachment>> {
        let mut out: Vec<Arc<Attachment>> = Vec::new();
        for r in &self.routes {
            for a in r.chain.items() {
                if !out.iter().any(|x| Arc::ptr_eq(x, a)) {
                    out.push(a.clone());
                }
            }
        }
        out
    }
}

/// Services for a new snapshot. One whose settings did not change is carried
/// over as it is, with its connection pool, health and breaker state.
fn services(
    config: &Config,
    previous: Option<&Snapshot>,
    metrics: &Metrics,
) -> Result<Vec<Arc<Service>>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut out = Vec::with_capacity(config.services.len());
    for (i, s) in config.services.iter().enumerate() {
        let kept = previous.and_then(|p| p.services.iter().find(|old| old.config == *s));
        // Only the instances changed (discovery, or an edit of the list):
        // the instances still listed keep their health and ejection state.
        let same_but_instances = previous.and_then(|p| {
            p.services.iter().find(|old| {
                let mut c = old.config.clone();
                c.instances.clone_from(&s.instances);
                c == *s
            })
        });
        let reuse = same_but_instances.map_or(&[][..], |old| &old.instances[..]);
        match kept {
            Some(old) => out.push(old.clone()),
            None => match Service::build(s, metrics.service(&s.name), reuse) {
                Ok(svc) => out.push(svc),
                Err(e) => errors.push(ConfigError::new(format!("services[{i}]"), e.to_string())),
            },
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn route(
    r: &RouteConfig,
    services: &[Arc<Service>],
    chain: Chain,
    metrics: Arc<RouteMetrics>,
) -> Route {
    let target = match &r.target {
        Target::Service(i) => RouteTarget::Service(services[*i].clone()),
        Target::Split { arms, key } => RouteTarget::Split {
            arms: arms
                .iter()
                .map(|&(i, w)| (services[i].clone(), w))
                .collect(),
            total: arms.iter().map(|&(_, w)| w).sum::<u32>().max(1),
            key: key.clone(),
        },
    };
    Route {
        id: r.id.clone(),
        param_names: r.path.param_names().into_iter().map(Arc::from).collect(),
        target,
        rewrite: r.rewrite.clone(),
        chain,
        preserve_host: r.preserve_host,
        retry_non_idempotent: r.retry_non_idempotent,
        metrics,
        cache: None,
        terms: crate::dispatch::Terms {
            timeout: r.timeout,
            per_try_timeout: r.per_try_timeout,
            retries: r.retries.clone().map(|p| {
                let budget = crate::resilience::retry::RetryBudget::new(p.budget);
                (p, budget)
            }),
        },
        fallback: r.fallback.clone(),
    }
}

/// The store for a snapshot with cached routes: the previous one's while
/// its bound is unchanged (a reload keeps what is cached), a new one else.
fn cache_store(config: &Config, previous: Option<&Snapshot>) -> Option<Arc<Store>> {
    if config.routes.iter().all(|r| r.cache.is_none()) {
        return None;
    }
    let max = config.cache.max_bytes;
    let kept = previous
        .and_then(|p| p.cache.as_ref())
        .filter(|s| s.max_bytes() == max);
    Some(kept.cloned().unwrap_or_else(|| Store::new(max)))
}

/// An attachment's rate-limit namespace: the `counter` it shares on purpose,
/// or its own place in the config (`<route>#<position>`; `*#<i>` for the
/// global chain, one counter across routes as it is one attachment).
fn counter(a: &AttachmentConfig, route: &str, position: usize) -> Arc<str> {
    match &a.counter {
        Some(name) => format!("counter:{name}").into(),
        None => format!("{route}#{position}").into(),
    }
}

/// The ingress rules: the config's, plus every identity header a plugin of
/// this snapshot declared and every listener's client-certificate header.
fn ingress(config: &Config, routes: &[Route]) -> Ingress {
    let mut strip = config.strip_request_headers.clone();
    let tls = config.listeners.iter().filter_map(|l| l.tls.as_ref());
    strip.extend(tls.filter_map(|t| t.client_cert_header.clone()));
    for r in routes {
        for a in r.chain.items() {
            if let Some(pool) = a.pool() {
                strip.extend(pool.identity_headers().iter().cloned());
            }
        }
    }
    strip.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    strip.dedup();
    Ingress {
        escaped_slashes: config.escaped_slashes,
        strip,
    }
}

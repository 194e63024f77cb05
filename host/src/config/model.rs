//! The validated config model. Holding one of these means every reference resolves:
//! routes point at services by index, patterns are parsed, durations are durations.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, Method};

/// A whole validated config file.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where downstream clients connect.
    pub listeners: Vec<ListenerConfig>,
    /// Directory holding `<name>.wasm` plugin files; watched for changes.
    pub plugin_dir: PathBuf,
    /// Redis for plugins that use the distributed rate-limit backend.
    pub redis: Option<RedisConfig>,
    /// Plugins that run before every route's own chain.
    pub global_plugins: Vec<AttachmentConfig>,
    /// Upstream services, referenced by index from routes.
    pub services: Vec<ServiceConfig>,
    /// Routes in config order (order breaks ties between equal matches).
    pub routes: Vec<RouteConfig>,
    /// Runtime worker threads (`None`: one per core).
    pub workers: Option<usize>,
    /// Peers whose `X-Forwarded-For` is believed when working out the client
    /// address (load balancers in front of the gateway). Empty: the peer is the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Listener protection limits.
    pub limits: Limits,
    /// The access log (read at start).
    pub access_log: Option<super::AccessLogConfig>,
    /// Span export (read at start).
    pub tracing: Option<super::TracingConfig>,
    /// The admin listener (read at start).
    pub admin: Option<super::AdminConfig>,
    /// What `%2F`, `%5C` and a backslash in a request path get (`path_normalization.escaped_slashes`).
    pub escaped_slashes: crate::accept::EscapedSlashes,
    /// Headers removed from every request before routing (`strip_request_headers`),
    /// besides those plugins declare and the TLS client-certificate header.
    pub strip_request_headers: Vec<HeaderName>,
    /// Bounds on each plugin's host-side state (`plugin_state`).
    pub plugin_state: PluginStateBounds,
    /// Load `<name>.cwasm` (precompiled native code) from `plugin_dir`. Default false.
    pub allow_precompiled: bool,
    /// The response cache's store (`cache.max_bytes`).
    pub cache: super::CacheStoreConfig,
    /// The config's `consumers:` (keys looked up by plugins through `host.credential`).
    pub consumers: Vec<super::ConsumerConfig>,
    /// Where the admin API keeps consumers on a single gateway (read at start).
    pub consumer_store: super::ConsumerStoreConfig,
}

/// Bounds on what one plugin keeps in the host, per plugin name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginStateBounds {
    /// Local rate-limit keys. Default 100,000.
    pub rate_limit_keys: usize,
    /// Key-value entries. Default 100,000.
    pub kv_keys: usize,
    /// Key-value bytes (keys + values). Default 64 MiB.
    pub kv_bytes: usize,
    /// Bytes of cached callout answers. Default 8 MiB.
    pub callout_cache_bytes: usize,
}

impl Default for PluginStateBounds {
    fn default() -> Self {
        Self {
            rate_limit_keys: DEFAULT_RATE_LIMIT_KEYS,
            kv_keys: DEFAULT_KV_KEYS,
            kv_bytes: DEFAULT_KV_BYTES,
            callout_cache_bytes: DEFAULT_CALLOUT_CACHE_BYTES,
        }
    }
}

/// The Redis server shared by gateway nodes (distributed rate limits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: String,
    /// Longest wait for one answer; past it the plugin's `on_backend_error`
    /// applies. Default 50 ms.
    pub timeout: Duration,
}

/// One listening socket.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Address to bind; port 0 picks a free port.
    pub addr: SocketAddr,
    /// TLS termination; `None` serves cleartext HTTP/1.1 and h2c.
    pub tls: Option<super::ListenerTls>,
}

/// Protection limits applied by every listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time a client has to send a complete request head (slowloris guard). Default 10s.
    pub header_read_timeout: Duration,
    /// Largest request head accepted; larger is answered 431. Default 32 KiB.
    pub max_header_bytes: usize,
    /// Largest request body forwarded; larger is answered 413. Default 1 GiB.
    pub max_body_bytes: u64,
    /// How long in-flight requests may finish after SIGTERM. Default 30s.
    pub drain_timeout: Duration,
    /// How long listeners keep accepting after SIGTERM while `/ready` already
    /// answers 503, so load balancers stop sending first. Default 0s.
    pub drain_delay: Duration,
    /// Longest wait for the next bytes of a request body; past it 408. Default 30s.
    pub body_read_timeout: Duration,
    /// A connection with no request for this long is closed (HTTP/2; HTTP/1.1
    /// idle keep-alive ends at `header_read_timeout`). Default 3m.
    pub idle_timeout: Duration,
    /// HTTP/2 PING interval on idle connections. Default 30s.
    pub h2_keepalive_interval: Duration,
    /// An unanswered HTTP/2 PING closes the connection after this. Default 10s.
    pub h2_keepalive_timeout: Duration,
    /// Open connections per listener; beyond it new ones are closed at
    /// accept. Default 10,000.
    pub max_connections: usize,
    /// Open connections per client address, over all listeners; `None`
    /// (default): no per-address cap (clients behind one NAT share an address).
    pub max_connections_per_ip: Option<usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 32 * 1024,
            max_body_bytes: 1 << 30,
            drain_timeout: Duration::from_secs(30),
            drain_delay: Duration::ZERO,
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(180),
            h2_keepalive_interval: Duration::from_secs(30),
            h2_keepalive_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            max_connections_per_ip: None,
        }
    }
}

/// An upstream service: a set of instances and how to pick among them.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    /// Unique service name.
    pub name: Arc<str>,
    /// Selection algorithm.
    pub load_balancer: LoadBalancerKind,
    /// Instances: at least one, unless `discovery` finds them.
    pub instances: Vec<InstanceConfig>,
    /// Where more instances are found; they join `instances`.
    pub discovery: Option<Discovery>,
    /// Time allowed to open a TCP connection. Default 1s.
    pub connect_timeout: Duration,
    /// Time allowed for a response head, all tries and backoffs included. Default 30s.
    pub timeout: Duration,
    /// Time allowed for one try; `None`: the whole `timeout`.
    pub per_try_timeout: Option<Duration>,
    /// Wire protocol to the instances.
    pub protocol: super::UpstreamProtocol,
    /// TLS settings for `https://` instances.
    pub tls: super::UpstreamTls,
    /// Active health checks.
    pub health_check: Option<super::HealthCheck>,
    /// Passive health checks.
    pub outlier_detection: Option<super::OutlierDetection>,
    /// Circuit breaker.
    pub circuit_breaker: Option<super::CircuitBreaker>,
    /// Retry policy; `None`: one try.
    pub retries: Option<super::Retries>,
    /// Most requests in flight to the service; beyond it 503 at once.
    pub max_concurrent_requests: Option<usize>,
    /// What answers when the service cannot (its routes' own fallback first).
    pub fallback: Option<super::Fallback>,
}

/// How a service picks an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadBalancerKind {
    /// Each instance in turn.
    RoundRobin,
    /// Smooth weighted round robin (nginx's algorithm).
    WeightedRoundRobin,
    /// Fewest requests in flight.
    LeastConnections,
    /// Consistent hash of the client IP.
    IpHash,
    /// Consistent hash of a request header's value.
    HeaderHash(HeaderName),
    /// Power of two random choices.
    Random,
}

/// Where a service's instances are found.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Discovery {
    /// Registrations under an etcd prefix.
    Etcd(EtcdDiscovery),
    /// DNS records, re-resolved as their TTL runs out.
    Dns(DnsDiscovery),
}

/// Instances from DNS: every address of `name` (A/AAAA, on `port`), or every
/// target of its SRV records of the lowest priority (their port and weight).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DnsDiscovery {
    /// The name looked up (`orders.internal`, `_http._tcp.orders.internal`).
    pub name: String,
    /// Which records.
    pub record: DnsRecord,
    /// The instances' port for A/AAAA records (SRV records carry their own).
    pub port: Option<u16>,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The longest time between lookups; a shorter TTL looks up sooner (never
    /// more often than once a second).
    pub refresh: Duration,
    /// Name servers to ask (default: the system's, from /etc/resolv.conf).
    pub servers: Vec<std::net::SocketAddr>,
}

/// A DNS record type discovery reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DnsRecord {
    /// IPv4 addresses.
    A,
    /// IPv6 addresses.
    Aaaa,
    /// Service records: target, port, weight, priority.
    Srv,
}

/// Instances found under an etcd prefix: each key a leased registration
/// whose value is `{"url": "http://10.0.0.5:8080", "weight": 1}` or a bare URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EtcdDiscovery {
    /// The prefix instances register under (`/services/orders/`).
    pub prefix: String,
    /// etcd client URLs; empty on a fleet node means the fleet's etcd.
    pub endpoints: Vec<String>,
}

/// One upstream instance.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceConfig {
    /// `http://host:port`; its scheme and authority are used.
    pub url: http::Uri,
    /// Relative weight (default 1).
    pub weight: u32,
}

impl InstanceConfig {
    /// An instance from its URL (`http(s)://host:port`) and weight (at least 1).
    pub fn parse(url: &str, weight: u32) -> Result<Self, String> {
        if weight == 0 {
            return Err("weight: must be at least 1".into());
        }
        match url.parse::<http::Uri>() {
            Ok(u)
                if matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some() =>
            {
                Ok(Self { url: u, weight })
            }
            _ => Err(format!("`{url}` is not an http(s)://host:port URL")),
        }
    }
}

/// One route, validated.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Unique id, used in logs, metrics and plugin context.
    pub id: Arc<str>,
    /// Methods matched; `None` matches all.
    pub methods: Option<Vec<Method>>,
    /// Hosts matched; empty matches any host.
    pub hosts: Vec<HostPattern>,
    /// The path pattern or regex.
    pub path: super::PathMatch,
    /// Header conditions, all required.
    pub headers: Vec<(HeaderName, super::ValueMatch)>,
    /// Query-parameter conditions (decoded names), all required.
    pub query: Vec<(String, super::ValueMatch)>,
    /// Higher wins among equally specific matches.
    pub priority: i32,
    /// Path rewrite applied before forwarding.
    pub rewrite: Option<Rewrite>,
    /// Where matched requests go.
    pub target: Target,
    /// The route's own plugin chain (runs after the global chain).
    pub plugins: Vec<AttachmentConfig>,
    /// Send the client's `Host` upstream (default) or the instance's authority.
    pub preserve_host: bool,
    /// Retry POST and PATCH too (the upstream must tolerate duplicates).
    pub retry_non_idempotent: bool,
    /// The route's response cache policy; `None`: not cached.
    pub cache: Option<super::CachePolicy>,
    /// `false`: the router skips the route, as if it were not there.
    pub enabled: bool,
    /// Overrides the service's `timeout`.
    pub timeout: Option<Duration>,
    /// Overrides the service's `per_try_timeout`.
    pub per_try_timeout: Option<Duration>,
    /// Replaces the service's retry policy (`attempts: 1`: no retries).
    pub retries: Option<super::Retries>,
    /// What answers when the upstream cannot; before the service's fallback.
    pub fallback: Option<super::Fallback>,
}

/// A host pattern: exact or `*.suffix`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// `api.example.com`
    Exact(String),
    /// `*.example.com` stored as `example.com`; matches any deeper name.
    Wildcard(String),
}

/// A parsed path pattern: `/a/{id}/b`, with an optional `/*` or `/{*rest}` tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    /// The pattern as written.
    pub raw: String,
    /// Segments between `/`.
    pub segments: Vec<Segment>,
    /// Present for prefix patterns; holds the tail's name (`rest` for `/*`).
    pub tail: Option<String>,
}

/// One segment of a path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Literal text.
    Static(String),
    /// `{name}`: any single non-empty segment.
    Param(String),
}

/// Path rewrite before forwarding.
#[derive(Debug, Clone)]
pub enum Rewrite {
    /// Remove this literal prefix (the result always starts with `/`).
    StripPrefix(String),
    /// Replace the path with this template (`/v1/orders/{order_id}`).
    Template(Vec<TemplatePart>),
}

/// A piece of a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    /// Literal text.
    Literal(String),
    /// A path parameter of the route's pattern, by name.
    Param(String),
}

/// Where a route sends traffic.
#[derive(Debug, Clone)]
pub enum Target {
    /// One service, by index into `Config::services`.
    Service(usize),
    /// A weighted split across services.
    Split {
        /// `(service index, weight)`, weights > 0.
        arms: Vec<(usize, u32)>,
        /// How a client is kept on one side.
        key: SplitKey,
    },
}

/// Stickiness of a weighted split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitKey {
    /// Random per request.
    Random,
    /// By client IP.
    ClientIp,
    /// By a request header's value (random when absent).
    Header(HeaderName),
}

/// What to do when a plugin fails (trap, timeout, memory cap, no instance).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OnError {
    /// Fail the request with a 500 (the default).
    Deny,
    /// Skip the plugin and carry on.
    Allow,
}

/// A plugin attached to a route or to the global chain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttachmentConfig {
    /// Plugin name: `plugin_dir/<name>.wasm`.
    pub name: Arc<str>,
    /// Failure policy.
    pub on_error: OnError,
    /// JSON handed to the plugin's `init`.
    pub config: Arc<str>,
    /// Deadline per call. Default 10ms.
    pub timeout: Duration,
    /// Linear memory cap per instance. Default 64 MiB.
    pub memory_limit: usize,
    /// Most instances alive at once for this attachment. Default 64.
    pub max_instances: usize,
    /// Largest body handed to body hooks. Default 1 MiB.
    pub body_limit: usize,
    /// The route serves without the plugin while its file is missing.
    pub optional: bool,
    /// Host directories the plugin may read (read-only, preopened under the same path).
    pub allow_read: Vec<PathBuf>,
    /// The rate-limit counter namespace shared on purpose (`counter:`); `None`:
    /// the attachment counts on its own (route id and position).
    pub counter: Option<Arc<str>>,
    /// The services the plugin may call (`callouts:`); any other is refused.
    pub callouts: Vec<Arc<str>>,
    /// Bound of one callout. Default 1 s.
    pub callout_timeout: Duration,
    /// Bound of all the waiting for callouts within one hook call. Default 3 s.
    pub callout_total_timeout: Duration,
    /// Largest callout answer body. Default 1 MiB.
    pub callout_max_body: usize,
    /// How long answers to the plugin's `GET` callouts are cached, overriding
    /// their `Cache-Control` (`Some(ZERO)`: never). `None`: as the answer says.
    pub callout_cache_ttl: Option<Duration>,
    /// The plugin file must hash to this (lowercase hex SHA-256); any other
    /// file, dropped or pushed, is refused and the pinned one keeps serving.
    pub sha256: Option<Arc<str>>,
    /// Weighted versions of the plugin, each a file in `plugin_dir`, in
    /// place of `<name>.wasm` (`versions:`); empty: the one file.
    pub versions: Vec<PluginVersion>,
    /// How a client is kept on one version (`version_key`).
    pub version_key: VersionKey,
    /// A file in `plugin_dir` run as a shadow of the live version (`shadow:`).
    pub shadow: Option<Arc<str>>,
}

/// One version of a plugin in a weighted rollout.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PluginVersion {
    /// Its file in `plugin_dir` (`auth-v2.wasm`).
    pub file: Arc<str>,
    /// Its share of requests (> 0).
    pub weight: u32,
}

impl PluginVersion {
    /// The file's name without `.wasm`: the version's label in the access
    /// log and metrics, and the name its hot swaps go by.
    pub fn label(&self) -> &str {
        self.file.strip_suffix(".wasm").unwrap_or(&self.file)
    }
}

/// Stickiness of a plugin's versions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum VersionKey {
    /// Random per request (the default).
    #[default]
    Random,
    /// By client IP.
    ClientIp,
    /// By a request header's value (random when absent).
    Header(HeaderName),
    /// By the `consumer` attribute an earlier plugin set (random when none).
    Consumer,
}

impl AttachmentConfig {
    /// Whether a change of `plugin_dir/<stem>.wasm` concerns this attachment.
    pub fn uses(&self, stem: &str) -> bool {
        let shadow = self.shadow.as_deref().and_then(|f| f.strip_suffix(".wasm"));
        if shadow == Some(stem) {
            return true;
        }
        if self.versions.is_empty() {
            &*self.name == stem
        } else {
            self.versions.iter().any(|v| v.label() == stem)
        }
    }
}

impl AttachmentConfig {
    /// An attachment of plugin `name` with every setting at its default
    /// (empty config, `on_error: deny`, no callouts), as the config file
    /// would give it; for embedding and tests.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.into(),
            on_error: OnError::Deny,
            config: "{}".into(),
            timeout: DEFAULT_PLUGIN_TIMEOUT,
            memory_limit: DEFAULT_PLUGIN_MEMORY,
            max_instances: DEFAULT_MAX_INSTANCES,
            body_limit: DEFAULT_BODY_LIMIT,
            optional: false,
            allow_read: Vec::new(),
            counter: None,
            callouts: Vec::new(),
            callout_timeout: DEFAULT_CALLOUT_TIMEOUT,
            callout_total_timeout: DEFAULT_CALLOUT_TOTAL_TIMEOUT,
            callout_max_body: DEFAULT_CALLOUT_MAX_BODY,
            callout_cache_ttl: None,
            sha256: None,
            versions: Vec::new(),
            version_key: VersionKey::Random,
            shadow: None,
        }
    }
}

/// Default `plugin_state.rate_limit_keys`: local rate-limit keys kept per plugin.
pub const DEFAULT_RATE_LIMIT_KEYS: usize = 100_000;
/// Default `plugin_state.kv_keys`: kv entries kept per plugin.
pub const DEFAULT_KV_KEYS: usize = 100_000;
/// Default `plugin_state.kv_bytes`: kv bytes kept per plugin.
pub const DEFAULT_KV_BYTES: usize = 64 << 20;
/// Default `plugin_state.callout_cache_bytes`: cached callout answers per plugin.
pub const DEFAULT_CALLOUT_CACHE_BYTES: usize = 8 << 20;
/// Default deadline per plugin call.
pub const DEFAULT_PLUGIN_TIMEOUT: Duration = Duration::from_millis(10);
/// Default memory cap per plugin instance.
pub const DEFAULT_PLUGIN_MEMORY: usize = 64 << 20;
/// Default instance pool size per attachment.
pub const DEFAULT_MAX_INSTANCES: usize = 64;
/// Default body buffer for body hooks.
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;
/// Default bound of one plugin callout.
pub const DEFAULT_CALLOUT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default bound of the callout waiting within one hook call.
pub const DEFAULT_CALLOUT_TOTAL_TIMEOUT: Duration = Duration::from_secs(3);
/// Default largest callout answer body.
pub const DEFAULT_CALLOUT_MAX_BODY: usize = 1 << 20;

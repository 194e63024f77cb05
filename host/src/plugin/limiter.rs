//! The limiter math behind `host.rate-limit`: counters kept in this process
//! ([`local`]) or shared by every gateway node through Redis ([`redis`]).

pub mod local;
pub mod redis;

pub use local::{DEFAULT_MAX_KEYS, RateLimiter};
pub use redis::RedisLimiter;

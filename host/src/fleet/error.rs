//! What can go wrong between a node and etcd, typed.

use std::path::PathBuf;

/// A fleet operation that did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FleetError {
    /// The bootstrap file or flags are unusable.
    #[error("{}: {message}", path.display())]
    Bootstrap {
        /// The file (or the flag).
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// etcd could not be reached or refused the request.
    #[error("etcd: {0}")]
    Etcd(String),
    /// A value under the prefix is not what Gatehouse writes there.
    #[error("etcd key {key}: {message}")]
    Corrupt {
        /// The key.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// Someone else changed the config since the version this write is based
    /// on: nothing was written.
    #[error(
        "the config changed since version {base} (now version {current}); re-read it and retry"
    )]
    Conflict {
        /// The version the write was based on.
        base: u64,
        /// The version now in etcd.
        current: u64,
    },
    /// A staged rollout is under way: promote it or roll it back first.
    #[error("a staged rollout of version {version} is under way; promote it or roll it back first")]
    RolloutActive {
        /// The version being rolled out.
        version: u64,
    },
    /// No staged rollout is under way.
    #[error("no staged rollout is under way")]
    NoRollout,
    /// There is no config in etcd yet.
    #[error("no config under {prefix}/config; write one with `gatehouse config push`")]
    NoConfig {
        /// The prefix.
        prefix: String,
    },
    /// A plugin blob's bytes do not hash to the SHA-256 it is stored under.
    #[error("plugin `{name}`: blob {expected} hashes to {actual}; refused")]
    HashMismatch {
        /// The plugin name.
        name: String,
        /// The SHA-256 its record names.
        expected: String,
        /// What the bytes hash to.
        actual: String,
    },
    /// No plugin of that name was pushed.
    #[error("no plugin `{0}` in etcd")]
    NoPlugin(String),
    /// Local state (the state directory, plugin_dir) could not be written.
    #[error("{}: {message}", path.display())]
    Local {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        message: String,
    },
}

impl From<etcd_client::Error> for FleetError {
    fn from(e: etcd_client::Error) -> Self {
        Self::Etcd(e.to_string())
    }
}

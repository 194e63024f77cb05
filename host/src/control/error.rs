//! What can go wrong on the control plane, typed: the admin API and the log
//! render these; nothing passes them around as strings.

use std::path::PathBuf;

use crate::config::{ConfigError, ConfigErrors};

/// Why a config reload changed nothing.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReloadError {
    /// The config file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::sync::Arc<std::io::Error>,
    },
    /// The new config is invalid or its plugins do not load; the last good
    /// one keeps serving.
    #[error("config reload rejected, keeping the last good config:\n{0}")]
    Rejected(ConfigErrors),
}

/// Why a plugin hot swap changed nothing: the running version keeps serving.
#[derive(Debug, Clone, thiserror::Error)]
#[error("plugin swap rejected, keeping the running version: {}", list(.errors))]
pub struct SwapError {
    /// The plugin whose file changed.
    pub plugin: String,
    /// Every attachment that could not start the new file, at its config path.
    pub errors: Vec<ConfigError>,
}

fn list(errors: &[ConfigError]) -> String {
    let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
    list.join("; ")
}

/// The last thing the control plane rejected.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ControlError {
    /// A config reload.
    #[error(transparent)]
    Reload(#[from] ReloadError),
    /// A plugin swap.
    #[error(transparent)]
    Swap(#[from] SwapError),
}

/// Why an admin write changed nothing.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// The document is invalid or its plugins do not load.
    #[error("{0}")]
    Invalid(#[from] ConfigErrors),
    /// etcd refused or could not take the write (a conflict included).
    #[error(transparent)]
    Fleet(#[from] crate::fleet::FleetError),
}

//! Configuration: the user-facing file (YAML or JSON) parsed into raw serde types,
//! then validated into types that cannot hold an illegal state. First stage of a
//! reload: `load` → [`Config`] → `Snapshot::build`.

mod cache;
pub mod document;
mod duration;
mod edge;
mod env;
mod error;
mod fallback;
mod matching;
mod model;
mod observe;
mod raw;
mod validate;

use std::path::Path;

pub use cache::*;
pub use duration::parse_duration;
pub use edge::*;
pub use error::{ConfigError, ConfigErrors};
pub use fallback::*;
pub use matching::*;
pub use model::*;
pub use observe::*;

/// Reads, substitutes `${ENV}`, parses and validates the config file at `path`.
///
/// Every problem found is returned at once, each with the file and the path inside
/// it (`routes[2].upstream`).
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors::single(path, ConfigError::new("", format!("cannot read file: {e}")))
    })?;
    parse(path, &text)
}

/// Parses and validates config `text`; `path` names the source in errors and
/// anchors relative paths (`plugin_dir`, certificate files).
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
    parse_in(path, path.parent().unwrap_or(Path::new(".")), text)
}

/// [`parse`] with relative paths anchored at `base` (a fleet node's config
/// has a name, `etcd:/gatehouse/config`, but no directory).
pub fn parse_in(path: &Path, base: &Path, text: &str) -> Result<Config, ConfigErrors> {
    let text = env::substitute(text).map_err(|e| ConfigErrors::single(path, e))?;
    let raw = raw::parse(path, &text).map_err(|e| ConfigErrors::single(path, e))?;
    validate::validate(raw, base).map_err(|errors| ConfigErrors::new(path, errors))
}

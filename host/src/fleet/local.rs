//! The node's local copy of the last config it applied, so that a node
//! restarted while etcd is down starts serving what the fleet last served.

use std::path::{Path, PathBuf};

use super::{FleetError, Record};

/// `{state_dir}/config.json`: the last applied [`Record`].
#[derive(Debug, Clone)]
pub struct LocalCopy {
    file: PathBuf,
}

impl LocalCopy {
    /// The copy in `state_dir` (created on first write).
    pub fn new(state_dir: &Path) -> Self {
        Self {
            file: state_dir.join("config.json"),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// The last applied record, if there is a readable one.
    pub fn read(&self) -> Option<Record> {
        let bytes = std::fs::read(&self.file).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(file = %self.file.display(), error = %e, "ignoring an unreadable local config copy");
                None
            }
        }
    }

    /// Replaces the copy (temp file + rename: never half a file).
    pub fn write(&self, rec: &Record) -> Result<(), FleetError> {
        let err = |e: std::io::Error| FleetError::Local {
            path: self.file.clone(),
            message: e.to_string(),
        };
        let bytes = serde_json::to_vec(rec).map_err(|e| err(std::io::Error::other(e)))?;
        crate::files::write_atomically(&self.file, &bytes).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_round_trips_and_a_torn_one_is_ignored() {
        let dir = tempfile::tempdir().expect("tmp");
        let copy = LocalCopy::new(&dir.path().join("state"));
        assert_eq!(copy.read(), None);
        let rec = Record {
            version: 3,
            revision: 42,
            at: "2026-12-02T00:00:00Z".into(),
            author: "ops".into(),
            summary: "routes: +a".into(),
            document: serde_json::json!({ "routes": [] }),
        };
        copy.write(&rec).expect("write");
        assert_eq!(copy.read(), Some(rec));
        std::fs::write(copy.path(), b"{\"version\": 3, \"docu").expect("write");
        assert_eq!(copy.read(), None);
    }
}

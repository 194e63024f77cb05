//! The consumer store's file: one JSON record per line, appended and synced
//! per write, replayed at start, and rewritten whole (temp file + rename)
//! when it has grown to more than twice what it describes.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::record::Record;
use super::store::{Store, StoreError, parse_key};

/// The open journal.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    /// Opened on the first append: a store nobody writes leaves no file.
    file: Option<File>,
    /// Records in the file.
    lines: usize,
}

impl Journal {
    /// Replays the journal at `path` (none yet: an empty store).
    pub fn open(path: &Path) -> Result<(Self, Store), StoreError> {
        let io = |source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut store = Store::default();
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(e)),
        };
        // Everything after the last newline is a write a crash cut short:
        // it was never acknowledged, so it is dropped (and cut from the file,
        // so the next append starts on a line of its own).
        let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if whole < text.len() {
            tracing::warn!(path = %path.display(), bytes = text.len() - whole, "consumer store: dropping a torn last line");
            let f = OpenOptions::new().write(true).open(path).map_err(io)?;
            f.set_len(whole as u64).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        let mut lines = 0;
        for (n, line) in text[..whole].split(|&b| b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let bad = |message: String| StoreError::Journal {
                path: path.to_path_buf(),
                line: n + 1,
                message,
            };
            let record: Record = serde_json::from_slice(line).map_err(|e| bad(e.to_string()))?;
            // Each record was checked when it was written; a replica's copy
            // also holds keys written again (upserts), so replaying applies
            // without the write-time checks, but a malformed key is named.
            if let Record::Key(k) = &record {
                parse_key(k).map_err(|e| bad(e.to_string()))?;
            }
            store.apply(record);
            lines += 1;
        }
        let journal = Self {
            path: path.to_path_buf(),
            file: None,
            lines,
        };
        Ok((journal, store))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Appends `records` and syncs them to disk before returning.
    pub fn append(&mut self, records: &[Record]) -> Result<(), StoreError> {
        let mut buf = Vec::with_capacity(records.len() * 160);
        for r in records {
            serde_json::to_writer(&mut buf, r).map_err(|e| self.io(e.into()))?;
            buf.push(b'\n');
        }
        if self.file.is_none() {
            let file = self.open_append().map_err(|e| self.io(e))?;
            self.file = Some(file);
        }
        let Some(file) = self.file.as_mut() else {
            return Err(StoreError::Closed);
        };
        let written = file.write_all(&buf).and_then(|()| file.sync_data());
        written.map_err(|e| self.io(e))?;
        self.lines += records.len();
        Ok(())
    }

    fn open_append(&self) -> std::io::Result<File> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let created = !self.path.exists();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        if created {
            // The new file's name must survive a crash too.
            File::open(dir)?.sync_all()?;
        }
        Ok(file)
    }

    /// Whether the file holds more than twice the `live` records it describes.
    pub fn wants_compaction(&self, live: usize) -> bool {
        self.lines > live.saturating_mul(2) + 1000
    }

    /// Rewrites the file as `records`, atomically.
    pub fn compact(&mut self, records: &[Record]) -> Result<(), StoreError> {
        let mut buf = Vec::with_capacity(records.len() * 160);
        for r in records {
            serde_json::to_writer(&mut buf, r).map_err(|e| self.io(e.into()))?;
            buf.push(b'\n');
        }
        crate::files::write_atomically(&self.path, &buf).map_err(|e| self.io(e))?;
        // The old handle points at the replaced file.
        self.file = None;
        self.lines = records.len();
        Ok(())
    }
}

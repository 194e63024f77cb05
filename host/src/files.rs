//! Writing files that other readers (the file watcher, other processes, a
//! restart after a crash) must see whole or not at all.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to a hidden temporary file beside `path` (creating the
/// directory), syncs it and renames it over `path`: readers see the old file
/// or the new one, never half of one. The temporary name ends in `.tmp`, so
/// the plugin watcher never takes it for a plugin.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.{}.tmp", fastrand::u64(..)));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

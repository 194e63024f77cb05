//! Builds the example plugins written in other languages (`examples/<name>/`,
//! each with a `build.sh [out.wasm] [source]`) once per test run, from source,
//! with the toolchains `scripts/setup` installs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The workspace's target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
}

fn out_dir() -> PathBuf {
    target_dir().join("example-plugins")
}

/// The component of `examples/<name>`, built now unless an earlier run left
/// one newer than every source file and the WIT.
pub fn example_plugin(name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, Arc<OnceLock<PathBuf>>>>> = OnceLock::new();
    let cell = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry(name.to_string())
        .or_default()
        .clone();
    cell.get_or_init(|| {
        let dir = workspace().join("examples").join(name);
        let out = out_dir().join(format!("{}.wasm", name.replace('-', "_")));
        let newest_input = newest(&dir).max(newest(&workspace().join("wit")));
        let fresh = modified(&out).is_some_and(|built| built > newest_input);
        if !fresh {
            build_example(name, &out, None);
        }
        out
    })
    .clone()
}

/// Builds `examples/<name>` from another `source` file (e.g. a changed copy)
/// into `out`, with the example's toolchain.
pub fn build_example(name: &str, out: &Path, source: Option<&Path>) {
    let dir = workspace().join("examples").join(name);
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let mut cmd = Command::new("bash");
    cmd.arg(dir.join("build.sh")).arg(out);
    if let Some(src) = source {
        cmd.arg(src);
    }
    cmd.env("GATEHOUSE_WIT", workspace().join("wit"));
    let run = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {}/build.sh: {e}", dir.display()));
    assert!(
        run.status.success(),
        "building example {name} failed (scripts/setup installs the toolchains):\n{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time under `dir`, skipping installed toolchains.
fn newest(dir: &Path) -> SystemTime {
    let mut latest = SystemTime::UNIX_EPOCH;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return latest;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "node_modules" || name == ".venv" || name == "__pycache__" {
            continue;
        }
        let t = if path.is_dir() {
            newest(&path)
        } else {
            modified(&path).unwrap_or(latest)
        };
        latest = latest.max(t);
    }
    latest
}

/// A changed version of `examples/<name>`: `file` rewritten by `edit`, built
/// with the example's toolchain into its own component (rebuilt only when the
/// edited source or the example changed).
pub fn example_variant(
    name: &str,
    file: &str,
    tag: &str,
    edit: impl Fn(&str) -> String,
) -> PathBuf {
    let original = example_plugin(name); // also installs the toolchain once
    let dir = workspace().join("examples").join(name);
    let text = std::fs::read_to_string(dir.join(file)).unwrap();
    let edited = edit(&text);
    assert_ne!(edited, text, "the edit changed nothing");
    let src = out_dir().join(format!("{name}-{tag}")).join(file);
    std::fs::create_dir_all(src.parent().unwrap()).unwrap();
    if std::fs::read_to_string(&src).ok().as_deref() != Some(edited.as_str()) {
        std::fs::write(&src, &edited).unwrap();
    }
    let out = out_dir().join(format!("{}_{tag}.wasm", name.replace('-', "_")));
    let inputs = modified(&src).unwrap().max(modified(&original).unwrap());
    if modified(&out).is_none_or(|built| built <= inputs) {
        build_example(name, &out, Some(&src));
    }
    out
}

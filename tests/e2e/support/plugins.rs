//! Builds the repository's plugins once per test run and hands out their paths.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The test plugins and the hello example; the built-in plugins are every
/// folder of `plugins/` (the one list of them, shared with `scripts/`).
const TEST_PLUGINS: &[&str] = &["testkit", "tag-a", "tag-b", "hello-plugin"];

/// Every plugin crate the tests use, built in one cargo invocation.
fn crates() -> Vec<String> {
    let mut out: Vec<String> = TEST_PLUGINS.iter().map(|s| s.to_string()).collect();
    let dir = workspace().join("plugins");
    let mut builtins: Vec<String> = std::fs::read_dir(&dir)
        .expect("plugins/")
        .filter_map(Result::ok)
        .filter(|e| e.path().join("Cargo.toml").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    builtins.sort();
    out.extend(builtins);
    out
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn out_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    target.join("wasm32-wasip2").join("plugin")
}

/// The path of plugin crate `name`'s component, building all plugins first
/// (once per process; cargo itself skips what is up to date).
pub fn plugin_path(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace()).args([
            "build",
            "--profile",
            "plugin",
            "--target",
            "wasm32-wasip2",
            "--quiet",
        ]);
        for p in crates() {
            cmd.args(["-p", &p]);
        }
        let out = cmd.output().map_err(|e| format!("running cargo: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    });
    if let Err(e) = built {
        panic!("building plugins failed:\n{e}");
    }
    let path = out_dir().join(format!("{}.wasm", name.replace('-', "_")));
    assert!(path.exists(), "{} missing after build", path.display());
    path
}

/// Precompiles the component at `wasm` to `out` with `gatehouse plugin compile`.
pub fn precompile(wasm: &std::path::Path, out: &std::path::Path) {
    let done = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["plugin", "compile"])
        .arg(wasm)
        .arg("-o")
        .arg(out)
        .env("GATEHOUSE_LOG", "off")
        .output()
        .expect("run gatehouse plugin compile");
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
}

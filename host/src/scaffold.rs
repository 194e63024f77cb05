//! `gatehouse plugin new`: writes a plugin skeleton that builds and loads as it
//! is, in Rust, JavaScript, Python or C.
//!
//! The build scripts and pinned toolchains are the ones the repository's own
//! examples use (embedded from `examples/`), so a new project starts from what
//! the test suite builds on every run.

use std::path::{Path, PathBuf};

/// The languages a skeleton can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust with `gatehouse-plugin-sdk`.
    Rust,
    /// JavaScript with componentize-js.
    Js,
    /// Python with componentize-py.
    Python,
    /// C with wit-bindgen and wasi-libc.
    C,
}

/// Why a skeleton could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// Plugin names become file names and config keys.
    #[error(
        "invalid plugin name `{0}`: use lower-case letters, digits and `-`, starting with a letter (at most 64)"
    )]
    InvalidName(String),
    /// Never overwrite someone's work.
    #[error("{0} already exists")]
    Exists(PathBuf),
    /// The Rust skeleton depends on the SDK by path.
    #[error("the Rust SDK was not found at {0}; pass --sdk <path to plugin-sdk>")]
    SdkMissing(PathBuf),
    /// Writing a file failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

const WIT: &str = include_str!("../../wit/plugin.wit");
const README: &str = include_str!("../templates/README.md");

/// One file of a skeleton: relative path, contents, executable.
type File = (&'static str, String, bool);

/// Writes a skeleton for plugin `name` into `dir` (which must not exist) and
/// returns the files written. `sdk` is the `plugin-sdk` directory the Rust
/// skeleton depends on.
pub fn create(
    name: &str,
    lang: Lang,
    dir: &Path,
    sdk: &Path,
) -> Result<Vec<PathBuf>, ScaffoldError> {
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !valid {
        return Err(ScaffoldError::InvalidName(name.into()));
    }
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir.into()));
    }
    let files = files(name, lang, sdk)?;
    let mut written = Vec::with_capacity(files.len());
    for (rel, text, executable) in files {
        let path = dir.join(rel);
        write(&path, &text, executable).map_err(|source| ScaffoldError::Io {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

fn files(name: &str, lang: Lang, sdk: &Path) -> Result<Vec<File>, ScaffoldError> {
    let t = Fill { name };
    let mut files = match lang {
        Lang::Rust => rust_files(&t, sdk)?,
        Lang::Js => js_files(&t),
        Lang::Python => python_files(&t),
        Lang::C => c_files(&t),
    };
    // Every skeleton does the same thing, so one case file tests them all.
    files.push((
        "cases.yaml",
        t.fill(include_str!("../templates/cases.yaml")),
        false,
    ));
    Ok(files)
}

/// Fills a template's placeholders with the plugin's name.
struct Fill<'a> {
    name: &'a str,
}

impl Fill<'_> {
    fn fill(&self, template: &str) -> String {
        template.replace("{{name}}", self.name)
    }

    fn readme(&self, language: &str, toolchain: &str) -> String {
        self.fill(README)
            .replace("{{language}}", language)
            .replace("{{toolchain}}", toolchain)
    }
}

/// The WIT package the non-Rust toolchains build against.
fn wit() -> File {
    ("wit/plugin.wit", WIT.to_string(), false)
}

fn rust_files(t: &Fill<'_>, sdk: &Path) -> Result<Vec<File>, ScaffoldError> {
    let sdk = std::fs::canonicalize(sdk)
        .ok()
        .filter(|p| p.join("Cargo.toml").is_file())
        .ok_or_else(|| ScaffoldError::SdkMissing(sdk.into()))?;
    let crate_name = t.name.replace('-', "_");
    Ok(vec![
        (
            "Cargo.toml",
            t.fill(include_str!("../templates/rust/Cargo.toml"))
                .replace("{{sdk}}", &sdk.to_string_lossy()),
            false,
        ),
        (
            "src/lib.rs",
            t.fill(include_str!("../templates/rust/lib.rs")),
            false,
        ),
        (
            "build.sh",
            include_str!("../templates/rust/build.sh").replace("{{crate}}", &crate_name),
            true,
        ),
        (
            "README.md",
            t.readme(
                "Rust",
                "Needs Rust with the `wasm32-wasip2` target (the script adds it).",
            ),
            false,
        ),
    ])
}

fn js_files(t: &Fill<'_>) -> Vec<File> {
    let rename = |s: &str| s.replace("\"js-ab-test\"", &format!("\"{}\"", t.name));
    vec![
        ("plugin.js", t.fill(include_str!("../templates/js/plugin.js")), false),
        ("package.json", rename(include_str!("../../examples/js-ab-test/package.json"))
            .replace("A Gatehouse plugin in JavaScript: A/B experiment cookie + user-agent block list", "A Gatehouse plugin in JavaScript"), false),
        ("package-lock.json", rename(include_str!("../../examples/js-ab-test/package-lock.json")), false),
        ("build.mjs", include_str!("../../examples/js-ab-test/build.mjs").into(), false),
        ("build.sh", include_str!("../../examples/js-ab-test/build.sh").into(), true),
        ("README.md", t.readme("JavaScript", "Needs Node.js and npm; the first build installs the pinned componentize-js from `package-lock.json`."), false),
        wit(),
    ]
}

fn python_files(t: &Fill<'_>) -> Vec<File> {
    vec![
        (
            "app.py",
            t.fill(include_str!("../templates/python/app.py")),
            false,
        ),
        (
            "requirements.txt",
            include_str!("../../examples/python-signature/requirements.txt").into(),
            false,
        ),
        (
            "build.sh",
            include_str!("../../examples/python-signature/build.sh").into(),
            true,
        ),
        (
            "README.md",
            t.readme(
                "Python",
                "Needs Python 3 with `venv`; the first build installs the pinned componentize-py into `.venv`.",
            ),
            false,
        ),
        wit(),
    ]
}

fn c_files(t: &Fill<'_>) -> Vec<File> {
    vec![
        (
            "plugin.c",
            t.fill(include_str!("../templates/c/plugin.c")),
            false,
        ),
        (
            "build.sh",
            include_str!("../../examples/c-deny-list/build.sh").into(),
            true,
        ),
        (
            "README.md",
            t.readme(
                "C",
                "Needs `apt-get install clang lld wasi-libc libclang-rt-dev-wasm32` and `cargo install wit-bindgen-cli --locked --version 0.63.0`; wasm-tools is taken from PATH or installed from PyPI into `.venv`.",
            ),
            false,
        ),
        wit(),
    ]
}

fn write(path: &Path, text: &str, executable: bool) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text)?;
    if executable {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_nothing_is_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        for bad in ["", "Upper", "1st", "has_underscore", "trailing-", "a/b"] {
            let e = create(bad, Lang::C, &tmp.path().join("x"), tmp.path()).unwrap_err();
            assert!(matches!(e, ScaffoldError::InvalidName(_)), "{bad}: {e}");
        }
        let dir = tmp.path().join("deny");
        let files = create("deny", Lang::C, &dir, tmp.path()).unwrap();
        assert!(files.contains(&dir.join("wit/plugin.wit")));
        let source = std::fs::read_to_string(dir.join("plugin.c")).unwrap();
        assert!(source.contains("hello from deny") && !source.contains("{{"));
        let e = create("deny", Lang::C, &dir, tmp.path()).unwrap_err();
        assert!(matches!(e, ScaffoldError::Exists(_)));
        let e = create(
            "r",
            Lang::Rust,
            &tmp.path().join("r"),
            &tmp.path().join("nope"),
        )
        .unwrap_err();
        assert!(matches!(e, ScaffoldError::SdkMissing(_)));
    }

    #[test]
    fn the_javascript_skeleton_is_renamed_throughout() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("greet");
        create("greet", Lang::Js, &dir, tmp.path()).unwrap();
        for file in ["package.json", "package-lock.json"] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            assert!(
                !text.contains("js-ab-test") && text.contains("\"greet\""),
                "{file}"
            );
        }
    }
}

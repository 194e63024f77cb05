//! `gatehouse validate` against golden files: each invalid config in
//! `tests/golden/` must produce exactly the errors in its `.err` file.
//! Run with `UPDATE_GOLDEN=1` to rewrite the `.err` files after a deliberate change.

use std::path::PathBuf;
use std::process::Command;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/golden")
}

fn validate(file: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .current_dir(golden_dir())
        .args(["validate", "-c", file])
        .env("GATEHOUSE_LOG", "off")
        .output()
        .expect("run gatehouse validate");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn invalid_configs_match_their_golden_errors() {
    let mut checked = 0;
    let mut entries: Vec<_> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.ends_with(".yaml") || name.ends_with(".json")) || name.starts_with("valid") {
            continue;
        }
        let (ok, output) = validate(&name);
        assert!(!ok, "{name} must be rejected");
        let expected_path = path.with_extension("err");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&expected_path, &output).unwrap();
        }
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| panic!("missing {}", expected_path.display()));
        assert_eq!(
            output,
            expected,
            "{name}: output differs from {}",
            expected_path.display()
        );
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} golden files");
}

#[test]
fn valid_config_passes() {
    let (ok, output) = validate("valid.yaml");
    assert!(ok, "{output}");
    assert!(
        output.contains("ok (1 routes, 0 plugin attachments)"),
        "{output}"
    );
}

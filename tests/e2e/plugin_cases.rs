//! `gatehouse plugin test`: the built-in plugins' case files pass, and a
//! case that does not hold fails with what differed.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::plugin_path;

fn plugin_test(wasm: &Path, cases: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["plugin", "test"])
        .arg(wasm)
        .arg("--cases")
        .arg(cases)
        .output()
        .expect("run gatehouse");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn plugins_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins")
}

#[test]
fn every_built_in_plugin_passes_its_case_file() {
    let mut ran = Vec::new();
    for entry in std::fs::read_dir(plugins_dir()).expect("plugins/") {
        let dir = entry.expect("entry").path();
        let cases = dir.join("cases.yaml");
        if !cases.is_file() {
            continue;
        }
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name")
            .to_string();
        let (code, out, err) = plugin_test(&plugin_path(&name), &cases);
        assert_eq!(code, Some(0), "{name}:\n{out}{err}");
        assert!(
            out.trim_end().ends_with(" passed, 0 failed"),
            "{name}: {out}"
        );
        ran.push(name);
    }
    ran.sort();
    assert_eq!(
        ran,
        ["api-key", "ext-authz", "rate-limit"],
        "the plugins with case files"
    );
}

#[test]
fn a_case_that_does_not_hold_names_what_differed_and_fails_the_run() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cases = tmp.path().join("cases.yaml");
    std::fs::write(
        &cases,
        "config: { keys_from_consumers: true }\ncases:\n  - name: right\n    request: { headers: { x-api-key: k } }\n    host: { credentials: [{ key: k, consumer: bob }] }\n    expect: { outcome: continue, upstream: { headers: { x-consumer-id: bob, x-api-key: null } } }\n  - name: wrong\n    request: { headers: { x-api-key: k } }\n    host: { credentials: [{ key: k, consumer: bob }] }\n    expect: { status: 401, attributes: { consumer: alice }, upstream: { headers: { x-consumer-id: alice } } }\n",
    )
    .expect("write");
    let (code, out, _) = plugin_test(&plugin_path("api-key"), &cases);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(
        out,
        "ok    right\nFAIL  wrong\n      status: expected 401, got 200\n      upstream header x-consumer-id: expected \"alice\", got \"bob\"\n      attribute consumer: expected \"alice\", got \"bob\"\n      host calls made:\n        find-credential sha256=8254c329a92850f6d539dd376f4816ee2764517da5e0235514af433164480d7a\n1 passed, 1 failed\n"
    );
    // A file that cannot be read is exit status 2, not a failed case.
    std::fs::write(&cases, "cases: [{ name: x }]\n").expect("write");
    let (code, _, err) = plugin_test(&plugin_path("api-key"), &cases);
    assert_eq!(code, Some(2));
    assert!(err.contains("missing field `expect`"), "{err}");
}

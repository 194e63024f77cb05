//! Plugins per language, like for like: the `gatehouse plugin new` skeleton
//! (sets one request header) in Rust, JavaScript, Python and C, plus the
//! language examples. Reports component size, compile time (once per version,
//! off the request path), instantiation + `init` time (a new pooled instance),
//! the median `on-request` call on a pooled instance, and linear memory per
//! instance. Needs the toolchains `scripts/setup` installs.
//!
//! `cargo bench -p gatehouse --bench languages` (writes bench/results/languages.md)

#![allow(missing_docs, clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use gatehouse::plugin::PluginRuntime;
use gatehouse::plugin::pool::Call;
use gatehouse::scaffold::{self, Lang};
use support::{attachment, exchange};

const CALLS: usize = 2_000;
const INSTANCES: usize = 5;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{what}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The skeleton for `lang`, created once under target/ and built.
fn skeleton(lang: Lang, tag: &str) -> PathBuf {
    let base = root().join("target/bench-languages");
    let dir = base.join(format!("hello-{tag}"));
    if !dir.exists() {
        scaffold::create(
            &format!("hello-{tag}"),
            lang,
            &dir,
            &root().join("plugin-sdk"),
        )
        .unwrap();
    }
    let out = base.join(format!("hello-{tag}.wasm"));
    let mut cmd = Command::new("bash");
    cmd.arg(dir.join("build.sh"))
        .arg(&out)
        .env_remove("GATEHOUSE_WIT");
    if lang == Lang::Rust {
        cmd.env("CARGO_TARGET_DIR", root().join("target/scaffold-rust"));
    }
    run(&mut cmd, &format!("building the {tag} skeleton"));
    out
}

fn example(name: &str) -> PathBuf {
    let out = root().join(format!("target/bench-languages/{name}.wasm"));
    run(
        Command::new("bash")
            .arg(root().join("examples").join(name).join("build.sh"))
            .arg(&out),
        &format!("building {name}"),
    );
    out
}

struct Row {
    name: String,
    size: u64,
    compile: Duration,
    instantiate: Duration,
    call: Duration,
    memory: usize,
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn measure(
    rt: &tokio::runtime::Runtime,
    name: &str,
    wasm: &Path,
    config: &str,
    headers: &[(&'static str, &'static str)],
) -> Row {
    // A cold compile: a fresh runtime and a copy in a fresh directory, so
    // neither the in-memory nor the on-disk compile cache answers.
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("p.wasm");
    std::fs::copy(wasm, &copy).unwrap();
    let runtime = PluginRuntime::new().unwrap();
    let t = Instant::now();
    let compiled = runtime.compile("p", &copy).unwrap();
    let compile = t.elapsed();

    let mut cfg = attachment("p", config);
    cfg.timeout = Duration::from_secs(1);
    let mut starts = Vec::new();
    let mut pool = None;
    for _ in 0..INSTANCES {
        let t = Instant::now();
        let p = rt.block_on(runtime.start_pool(&compiled, &cfg)).unwrap();
        starts.push(t.elapsed());
        pool = Some(p);
    }
    let pool = pool.unwrap();
    let mut calls = Vec::with_capacity(CALLS);
    rt.block_on(async {
        let mut ex = exchange(0);
        for (k, v) in headers {
            ex.req.headers.insert(*k, v.parse().unwrap());
        }
        for _ in 0..CALLS {
            let t = Instant::now();
            let r = pool.invoke(&mut ex, Call::Request).await;
            calls.push(t.elapsed());
            r.unwrap();
        }
    });
    Row {
        name: name.into(),
        size: std::fs::metadata(wasm).unwrap().len(),
        compile,
        instantiate: median(starts),
        call: median(calls),
        memory: pool.memory_peak(),
    }
}

fn main() {
    // `cargo bench` passes --bench; a filter argument is not supported here.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for (lang, tag, label) in [
        (Lang::Rust, "rust", "Rust (SDK)"),
        (Lang::C, "c", "C (wit-bindgen + wasi-libc)"),
        (Lang::Js, "js", "JavaScript (componentize-js)"),
        (Lang::Python, "python", "Python (componentize-py)"),
    ] {
        let wasm = skeleton(lang, tag);
        rows.push(measure(
            &rt,
            &format!("skeleton: {label}"),
            &wasm,
            "{}",
            &[],
        ));
    }
    let deny = example("c-deny-list");
    rows.push(measure(
        &rt,
        "example: c-deny-list (3 patterns)",
        &deny,
        r#"{"deny":["/admin/*","*.php","/internal"]}"#,
        &[],
    ));
    let ab = example("js-ab-test");
    rows.push(measure(
        &rt,
        "example: js-ab-test (cookie set)",
        &ab,
        r#"{"experiment":"x"}"#,
        &[("cookie", "ab_x=A")],
    ));
    let sig = example("python-signature");
    // The call is answered (missing signature): the bench measures the hook, not HMAC.
    rows.push(measure(
        &rt,
        "example: python-signature (unsigned → 401)",
        &sig,
        r#"{"secret":"0123456789abcdef0123"}"#,
        &[],
    ));

    let mut table = String::from(
        "| plugin | component | compile (once) | new instance + init | on-request call (median) | linear memory / instance |\n|---|---:|---:|---:|---:|---:|\n",
    );
    for r in &rows {
        table += &format!(
            "| {} | {:.0} KB | {:.2} s | {:.2} ms | {:.1} µs | {:.1} MiB |\n",
            r.name,
            r.size as f64 / 1000.0,
            r.compile.as_secs_f64(),
            r.instantiate.as_secs_f64() * 1e3,
            r.call.as_secs_f64() * 1e6,
            r.memory as f64 / (1 << 20) as f64,
        );
    }
    println!("{table}");
    let out = root().join("bench/results/languages.md");
    std::fs::write(
        &out,
        format!(
            "Measured {} UTC by `cargo bench -p gatehouse --bench languages`.\n\n{table}",
            humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        ),
    )
    .unwrap();
    println!("wrote {}", out.display());
}

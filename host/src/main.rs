//! The `gatehouse` command: `run`, `validate`, `plugin compile`, `plugin new`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use gatehouse::config;
use gatehouse::plugin::PluginRuntime;
use gatehouse::scaffold::{self, Lang};
use gatehouse::snapshot::Snapshot;

#[derive(Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "An API gateway whose policies are WebAssembly components"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve, watching the config file and plugin_dir for changes.
    Run {
        /// Config file (YAML or JSON).
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Check the config and every plugin it references (runs each `init`).
    Validate {
        /// Config file (YAML or JSON).
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Plugin tools.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Precompile a component to `<name>.cwasm` so that it swaps in fast.
    Compile {
        /// The component (`.wasm`).
        wasm: PathBuf,
        /// Output path (default: next to the input, `.cwasm`).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Write a plugin skeleton that builds and loads as it is.
    New {
        /// Plugin name: the `.wasm` file name and the `name` in route configs.
        name: String,
        /// Language of the skeleton.
        #[arg(long, value_enum)]
        lang: Lang,
        /// Directory to create (default: `./<name>`).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The `plugin-sdk` directory a Rust skeleton depends on (default: the
        /// one in the source tree this gatehouse was built from).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GATEHOUSE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Run { config } => run(config),
        Command::Validate { config } => validate(config),
        Command::Plugin {
            command: PluginCommand::Compile { wasm, output },
        } => compile(wasm, output),
        Command::Plugin {
            command:
                PluginCommand::New {
                    name,
                    lang,
                    dir,
                    sdk,
                },
        } => new_plugin(&name, lang, dir, sdk),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime(workers: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        b.worker_threads(n);
    }
    b.enable_all().build().context("starting the async runtime")
}

fn run(path: PathBuf) -> anyhow::Result<ExitCode> {
    let workers = match config::load(&path) {
        Ok(c) => c.workers,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    runtime(workers)?.block_on(async move {
        let gw = match gatehouse::Gateway::start(&path).await {
            Ok(gw) => gw,
            Err(e) => {
                eprintln!("{e}");
                return Ok(ExitCode::from(2));
            }
        };
        for a in gw.addrs() {
            tracing::info!(addr = %a, "listening");
            // A machine-readable line so that scripts and tests can find port-0 listeners.
            println!("listening on http://{a}");
        }
        shutdown_signal().await;
        tracing::info!("shutting down: draining in-flight requests");
        gw.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let term = async {
        match term.as_mut() {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

fn validate(path: PathBuf) -> anyhow::Result<ExitCode> {
    let cfg = match config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    runtime(Some(1))?.block_on(async {
        let rt = PluginRuntime::new().map_err(anyhow::Error::msg)?;
        match Snapshot::build(cfg, &rt, None).await {
            Ok(s) => {
                println!(
                    "{}: ok ({} routes, {} plugin attachments)",
                    path.display(),
                    s.routes.len(),
                    s.attachments().len()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(errors) => {
                eprintln!("{}", config::ConfigErrors::new(&path, errors));
                Ok(ExitCode::FAILURE)
            }
        }
    })
}

fn compile(wasm: PathBuf, output: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let out = output.unwrap_or_else(|| wasm.with_extension("cwasm"));
    let rt = PluginRuntime::new().map_err(anyhow::Error::msg)?;
    rt.precompile(&wasm, &out).map_err(anyhow::Error::msg)?;
    println!("wrote {}", out.display());
    Ok(ExitCode::SUCCESS)
}

fn new_plugin(
    name: &str,
    lang: Lang,
    dir: Option<PathBuf>,
    sdk: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    let sdk =
        sdk.unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../plugin-sdk")));
    let files = scaffold::create(name, lang, &dir, &sdk)?;
    for f in &files {
        println!("created {}", f.display());
    }
    println!(
        "build it with `{}/build.sh {name}.wasm`, then copy {name}.wasm into the gateway's plugin_dir",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

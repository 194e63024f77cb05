//! The `gatehouse` command: `run`, `validate`, `config push`, `plugin
//! compile|new|push`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use gatehouse::config;
use gatehouse::fleet::{Bootstrap, FleetError, Store};
use gatehouse::plugin::PluginRuntime;
use gatehouse::scaffold::{self, Lang};
use gatehouse::snapshot::Snapshot;

/// mimalloc (v3) instead of glibc's malloc: a request allocates and frees
/// dozens of small blocks (header maps, strings crossing the Wasm boundary),
/// which mimalloc's thread-local free lists serve in fewer instructions
/// (3-plugin chain 125.1k -> 118.0k per request; bench/results/2026-12-08-speed.md).
/// Its options are set first thing in `main` ([`gatehouse::allocator::tune`]).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Serve, watching the config file and plugin_dir for changes; or, with
    /// `--etcd`/`--bootstrap`, serve the fleet's config from etcd.
    Run {
        /// Config file (YAML or JSON).
        #[arg(short, long, required_unless_present_any = ["etcd", "bootstrap"], conflicts_with_all = ["etcd", "bootstrap"])]
        config: Option<PathBuf>,
        /// Where the fleet's config is.
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// The fleet's config in etcd.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Staged rollouts: a version to the nodes matching labels first.
    Rollout {
        #[command(subcommand)]
        command: RolloutCommand,
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

/// How to reach the fleet's etcd: flags, or a bootstrap file.
#[derive(clap::Args)]
struct FleetArgs {
    /// etcd client URLs, comma-separated (`http://127.0.0.1:2379`).
    #[arg(long, conflicts_with = "bootstrap")]
    etcd: Option<String>,
    /// Key prefix in etcd.
    #[arg(long, requires = "etcd")]
    prefix: Option<String>,
    /// A bootstrap file: etcd endpoints, prefix, credentials and TLS; this
    /// node's id, labels and state_dir; node-local overrides.
    #[arg(long)]
    bootstrap: Option<PathBuf>,
}

impl FleetArgs {
    fn bootstrap(&self) -> anyhow::Result<Option<Bootstrap>> {
        Ok(match (&self.etcd, &self.bootstrap) {
            (Some(e), _) => Some(Bootstrap::from_flags(e, self.prefix.as_deref())?),
            (None, Some(b)) => Some(Bootstrap::load(b)?),
            (None, None) => None,
        })
    }

    fn required(&self) -> anyhow::Result<Bootstrap> {
        self.bootstrap()?
            .context("say where etcd is: --etcd URL or --bootstrap FILE")
    }
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a config file and write it to etcd as the fleet's next
    /// version (a transaction: refused if someone wrote first).
    Push {
        /// Config file (YAML or JSON).
        file: PathBuf,
        #[command(flatten)]
        fleet: FleetArgs,
        /// Recorded as the version's author.
        #[arg(long, default_value = "cli")]
        author: String,
        /// Write only if the live version is still this one.
        #[arg(long)]
        if_version: Option<u64>,
    },
}

#[derive(Subcommand)]
enum RolloutCommand {
    /// Validate a config file and roll it out to the nodes whose labels
    /// match `--labels`; every other node keeps the live version.
    Start {
        /// Config file (YAML or JSON).
        file: PathBuf,
        #[command(flatten)]
        fleet: FleetArgs,
        /// The canary nodes: `key=value[,key=value]`, all must match.
        #[arg(long)]
        labels: String,
        /// Roll back by itself when the canary nodes' 5xx share passes this (0.05).
        #[arg(long)]
        max_error_rate: Option<f64>,
        /// Over this many seconds.
        #[arg(long, default_value_t = 60)]
        window: u64,
        /// Fewer requests than this in the window decide nothing.
        #[arg(long, default_value_t = 100)]
        min_requests: u64,
        /// Recorded as the version's author.
        #[arg(long, default_value = "cli")]
        author: String,
    },
    /// Make the rollout's version every node's.
    Promote {
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// End the rollout: the canary nodes return to the live version.
    Abort {
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// The rollout under way and how the last one ended (JSON).
    Status {
        #[command(flatten)]
        fleet: FleetArgs,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Store a component in etcd as plugin `--name`: every fleet node
    /// installs it into its plugin_dir and hot-swaps it.
    Push {
        /// The component (`.wasm`).
        wasm: PathBuf,
        /// The plugin name routes attach.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        fleet: FleetArgs,
        /// Recorded as who pushed it.
        #[arg(long, default_value = "cli")]
        author: String,
    },
    /// Run a plugin against a file of cases, in the gateway's engine and
    /// chain but without a gateway (exit 0: all passed; 1: a case failed;
    /// 2: the file or the plugin cannot be read).
    Test {
        /// The component (`.wasm`).
        wasm: PathBuf,
        /// The case file (YAML; see the plugin guide).
        #[arg(long)]
        cases: PathBuf,
    },
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

/// Operational logs on stderr: `GATEHOUSE_LOG` filters (default `info`),
/// `GATEHOUSE_LOG_FORMAT` is `text` (default) or `json` (one object a line,
/// for log shippers).
fn init_logging() -> Result<(), String> {
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("GATEHOUSE_LOG")
            .unwrap_or_else(|_| "info".into())
    };
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr);
    match std::env::var("GATEHOUSE_LOG_FORMAT").as_deref() {
        Ok("json") => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_env_filter(filter())
            .init(),
        Ok("text") | Err(std::env::VarError::NotPresent) => {
            builder.with_env_filter(filter()).init()
        }
        Ok(other) => {
            return Err(format!(
                "GATEHOUSE_LOG_FORMAT=`{other}`: expected `text` or `json`"
            ));
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err("GATEHOUSE_LOG_FORMAT: expected `text` or `json`".into());
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    gatehouse::allocator::tune();
    let cli = Cli::parse();
    if let Err(e) = init_logging() {
        eprintln!("{e}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Run { config, fleet } => match config {
            Some(c) => run(c),
            None => fleet.required().and_then(run_fleet),
        },
        Command::Config {
            command:
                ConfigCommand::Push {
                    file,
                    fleet,
                    author,
                    if_version,
                },
        } => fleet
            .required()
            .and_then(|b| push_config(&file, b, &author, if_version)),
        Command::Rollout { command } => rollout(command),
        Command::Plugin {
            command:
                PluginCommand::Push {
                    wasm,
                    name,
                    fleet,
                    author,
                },
        } => fleet
            .required()
            .and_then(|b| push_plugin(&wasm, &name, b, &author)),
        Command::Validate { config } => validate(config),
        Command::Plugin {
            command: PluginCommand::Compile { wasm, output },
        } => compile(wasm, output),
        Command::Plugin {
            command: PluginCommand::Test { wasm, cases },
        } => test_plugin(&wasm, &cases),
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
    runtime(workers)?.block_on(async move { serve(gatehouse::Gateway::start(&path).await).await })
}

fn run_fleet(b: Bootstrap) -> anyhow::Result<ExitCode> {
    let workers = b
        .overrides
        .as_ref()
        .and_then(|o| o.get("workers"))
        .and_then(serde_json::Value::as_u64)
        .and_then(|n| usize::try_from(n).ok());
    runtime(workers)?.block_on(async move { serve(gatehouse::Gateway::start_fleet(b).await).await })
}

async fn serve(
    started: Result<gatehouse::Gateway, gatehouse::StartError>,
) -> anyhow::Result<ExitCode> {
    let gw = match started {
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
    if let Some(a) = gw.admin_addr() {
        println!("admin on http://{a}");
    }
    shutdown_signal().await;
    tracing::info!("shutting down: draining in-flight requests");
    gw.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Validates `file` (parse and validate; plugins load on the nodes, which
/// keep their last good config if one does not) and writes it as the
/// version after the live one.
fn push_config(
    file: &Path,
    b: Bootstrap,
    author: &str,
    if_version: Option<u64>,
) -> anyhow::Result<ExitCode> {
    if let Err(e) = config::load(file) {
        eprintln!("{e}");
        return Ok(ExitCode::FAILURE);
    }
    let text = std::fs::read_to_string(file).with_context(|| file.display().to_string())?;
    let document = config::document::parse(file, &text).map_err(anyhow::Error::msg)?;
    runtime(Some(1))?.block_on(async move {
        let store = Store::connect(&b).await?;
        let (live, _) = store.config().await?;
        if let (Some(want), Some(live)) = (if_version, &live)
            && live.version != want
        {
            eprintln!(
                "error: the live version is {}, not {want}; nothing written",
                live.version
            );
            return Ok(ExitCode::from(3));
        }
        match store.write_config(document, author, live.as_ref()).await {
            Ok(rec) => {
                println!(
                    "version {} written ({}; etcd revision {})",
                    rec.version, rec.summary, rec.revision
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e @ (FleetError::Conflict { .. } | FleetError::RolloutActive { .. })) => {
                eprintln!("error: {e}");
                Ok(ExitCode::from(3))
            }
            Err(e) => Err(e.into()),
        }
    })
}

fn rollout(command: RolloutCommand) -> anyhow::Result<ExitCode> {
    use gatehouse::fleet::rollout::AutoRollback;
    let (fleet, start) = match command {
        RolloutCommand::Start {
            file,
            fleet,
            labels,
            max_error_rate,
            window,
            min_requests,
            author,
        } => {
            let labels = labels
                .split(',')
                .filter(|l| !l.is_empty())
                .map(|l| {
                    l.split_once('=')
                        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                        .with_context(|| format!("--labels: `{l}` is not key=value"))
                })
                .collect::<anyhow::Result<std::collections::BTreeMap<_, _>>>()?;
            anyhow::ensure!(!labels.is_empty(), "--labels: name at least one label");
            if let Err(e) = config::load(&file) {
                eprintln!("{e}");
                return Ok(ExitCode::FAILURE);
            }
            let text =
                std::fs::read_to_string(&file).with_context(|| file.display().to_string())?;
            let document = config::document::parse(&file, &text).map_err(anyhow::Error::msg)?;
            let auto = max_error_rate.map(|max_error_rate| AutoRollback {
                max_error_rate,
                window_seconds: window,
                min_requests,
            });
            (fleet, Some((document, labels, auto, author)))
        }
        RolloutCommand::Promote { fleet } => (fleet, None),
        RolloutCommand::Abort { fleet } => {
            let b = fleet.required()?;
            return runtime(Some(1))?.block_on(async move {
                let o = Store::connect(&b)
                    .await?
                    .roll_back("cli", None, None)
                    .await?;
                println!("version {} rolled back", o.version);
                Ok(ExitCode::SUCCESS)
            });
        }
        RolloutCommand::Status { fleet } => {
            let b = fleet.required()?;
            return runtime(Some(1))?.block_on(async move {
                let state = Store::connect(&b).await?.rollout_state().await?;
                println!("{state:#}");
                Ok(ExitCode::SUCCESS)
            });
        }
    };
    let b = fleet.required()?;
    runtime(Some(1))?.block_on(async move {
        let store = Store::connect(&b).await?;
        let Some((document, labels, auto, author)) = start else {
            let rec = store.promote("cli").await?;
            println!("version {} promoted to every node", rec.version);
            return Ok(ExitCode::SUCCESS);
        };
        let (live, _) = store.config().await?;
        let live = live.context("no live config to roll out from; push one first")?;
        match store
            .start_rollout(document, &author, &live, labels, auto)
            .await
        {
            Ok(c) => {
                println!(
                    "version {} rolling out to nodes with {:?} ({})",
                    c.record.version, c.labels, c.record.summary
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e @ (FleetError::Conflict { .. } | FleetError::RolloutActive { .. })) => {
                eprintln!("error: {e}");
                Ok(ExitCode::from(3))
            }
            Err(e) => Err(e.into()),
        }
    })
}

fn push_plugin(wasm: &Path, name: &str, b: Bootstrap, author: &str) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        gatehouse::fleet::sync::valid_name(name),
        "`{name}` is not a valid plugin name"
    );
    let bytes = std::fs::read(wasm).with_context(|| wasm.display().to_string())?;
    anyhow::ensure!(
        bytes.starts_with(b"\0asm"),
        "{} is not a WebAssembly component",
        wasm.display()
    );
    runtime(Some(1))?.block_on(async move {
        let store = Store::connect(&b).await?;
        let rec = store.push_plugin(name, &bytes, author).await?;
        println!(
            "plugin {name}: {} ({} bytes in {} chunks)",
            rec.sha256, rec.size, rec.chunks
        );
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

fn test_plugin(wasm: &Path, cases: &Path) -> anyhow::Result<ExitCode> {
    runtime(Some(1))?.block_on(async {
        match gatehouse::plugin::offline::run(wasm, cases).await {
            Ok(report) => {
                println!("{report}");
                Ok(if report.passed() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::from(2))
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

//! The real `gatehouse` binary as a child process, for tests that measure the
//! process (RSS), send it signals, or talk to it over raw sockets.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `gatehouse run` process; killed on drop.
pub struct GatewayProcess {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl GatewayProcess {
    /// Writes `yaml` (listeners and plugin_dir added) and starts the binary,
    /// waiting for its "listening on" line.
    pub fn spawn(yaml: &str, plugins: &[(&str, &Path)]) -> Self {
        let (dir, path) = super::gateway::prepare_dir(yaml, plugins);
        let mut child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["run", "-c"])
            .arg(&path)
            .env("GATEHOUSE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn gatehouse");
        let (addr, _) = started(&mut child, false);
        Self { child, addr, dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn plugin_dir(&self) -> PathBuf {
        self.dir.path().join("plugins")
    }

    /// Resident set size in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }
}

/// Waits for a started `gatehouse run` to print its first listener and, when
/// `admin` is asked for, its admin address; panics if it exits first or takes
/// over a minute.
pub fn started(child: &mut Child, admin: bool) -> (SocketAddr, Option<SocketAddr>) {
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut listener = None;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(a) = line.strip_prefix("listening on http://") {
                if listener.is_none() {
                    listener = a.parse::<SocketAddr>().ok();
                    if !admin {
                        let _ = tx.send((listener, None));
                    }
                }
            } else if let Some(a) = line.strip_prefix("admin on http://") {
                let _ = tx.send((listener, a.parse::<SocketAddr>().ok()));
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok((Some(l), a)) => (l, a),
        _ => panic!("gatehouse did not start"),
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

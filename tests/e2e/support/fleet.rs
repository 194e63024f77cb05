//! Fleet nodes: real `gatehouse run --bootstrap` processes, each with its own
//! directory (bootstrap file, plugin_dir, state_dir), that can be killed,
//! stopped and restarted on the same directory; and the CLI that writes to
//! the fleet's etcd.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// The admin token every fleet test config carries.
pub const TOKEN: &str = "fleet-admin-token-for-tests";

/// One node.
pub struct FleetNode {
    child: Option<Child>,
    pub id: String,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub dir: PathBuf,
}

impl FleetNode {
    /// Writes `<root>/<id>/bootstrap.yaml` (etcd `endpoints`, the node's id
    /// and `labels`, plugin_dir and state_dir in its directory) and starts it.
    pub fn spawn(root: &Path, id: &str, endpoints: &str, labels: &[(&str, &str)]) -> Self {
        let dir = root.join(id);
        std::fs::create_dir_all(dir.join("plugins")).expect("node dir");
        let eps: Vec<String> = endpoints.split(',').map(|e| format!("\"{e}\"")).collect();
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}: \"{v}\""))
            .collect();
        let bootstrap = format!(
            "etcd:\n  endpoints: [{}]\nnode:\n  id: {id}\n  labels: {{ {} }}\n  state_dir: ./state\noverrides:\n  plugin_dir: {}\n",
            eps.join(", "),
            labels.join(", "),
            dir.join("plugins").display()
        );
        std::fs::write(dir.join("bootstrap.yaml"), bootstrap).expect("bootstrap");
        let mut n = Self {
            child: None,
            id: id.to_string(),
            addr: "127.0.0.1:1".parse().expect("addr"),
            admin: "127.0.0.1:1".parse().expect("addr"),
            dir,
        };
        n.start();
        n
    }

    /// Starts (again) on the node's directory: new ports, same state.
    pub fn start(&mut self) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .arg("run")
            .arg("--bootstrap")
            .arg(self.dir.join("bootstrap.yaml"))
            .env("GATEHOUSE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn gatehouse");
        let (addr, admin) = super::process::started(&mut child, true);
        self.addr = addr;
        self.admin = admin.expect("the fleet config has an admin listener");
        self.child = Some(child);
    }

    /// `http://<listener><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `http://<admin><path>`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, and wait for the exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }
}

impl Drop for FleetNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A fleet document: port-0 listener and admin (with [`TOKEN`]) and `rest`.
pub fn document(rest: &str) -> String {
    format!(
        "listeners:\n  - addr: 127.0.0.1:0\nadmin:\n  addr: 127.0.0.1:0\n  tokens: [{{ name: ops, token: {TOKEN} }}]\n{rest}"
    )
}

/// `gatehouse <args> --etcd <endpoints>`, waited for.
pub fn cli(endpoints: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(args)
        .args(["--etcd", endpoints])
        .env("GATEHOUSE_LOG", "warn")
        .output()
        .expect("run gatehouse")
}

/// Writes `yaml` to a file and `gatehouse config push`es it; panics on failure.
pub fn push_config(endpoints: &str, dir: &Path, yaml: &str) -> String {
    let file = dir.join(format!("push-{}.yaml", fastrand::u32(..)));
    std::fs::write(&file, yaml).expect("write");
    let out = cli(
        endpoints,
        &["config", "push", file.to_str().expect("utf-8 path")],
    );
    assert!(
        out.status.success(),
        "config push failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

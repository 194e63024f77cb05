//! A real etcd cluster (Debian's `etcd-server`) on free loopback ports, owned
//! by one test: every member in its own temporary data directory, killed on
//! drop; members can be killed, restarted on the same ports and data, and the
//! leader found, to test elections and outages.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Member {
    name: String,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

/// An etcd cluster of one or more members.
pub struct EtcdCluster {
    members: Vec<Member>,
    dir: tempfile::TempDir,
    initial: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

impl EtcdCluster {
    /// Starts `n` members and waits until the cluster has a leader. A member
    /// that cannot bind (another test took a port between the pick and the
    /// bind) makes it start over on fresh ports.
    pub fn start(n: usize) -> Self {
        for _ in 0..3 {
            let mut c = Self::fresh(n);
            if c.wait_healthy_within(Duration::from_secs(30)).is_ok() {
                return c;
            }
            c.kill_all();
        }
        panic!("etcd cluster of {n} did not come up (see the etcd-*.log files)");
    }

    fn fresh(n: usize) -> Self {
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client: free_port(),
                peer: free_port(),
                child: None,
            })
            .collect();
        let initial = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = Self {
            members,
            dir: tempfile::tempdir().expect("tmp"),
            initial,
        };
        for i in 0..n {
            c.spawn(i);
        }
        c
    }

    fn spawn(&mut self, i: usize) {
        let data = self.dir.path().join(&self.members[i].name);
        let log = std::fs::File::create(self.dir.path().join(format!("etcd-{i}.log")))
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null());
        let m = &mut self.members[i];
        let client = format!("http://127.0.0.1:{}", m.client);
        let peer = format!("http://127.0.0.1:{}", m.peer);
        let child = Command::new("etcd")
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&data)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &self.initial])
            .args([
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                "gatehouse-test",
            ])
            .args(["--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start etcd ({e}); run ./scripts/setup to install etcd-server")
            });
        m.child = Some(child);
    }

    /// Client URLs of every member, comma-separated.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn status(port: u16) -> Option<serde_json::Value> {
        let out = Command::new("etcdctl")
            .args(["--endpoints", &format!("http://127.0.0.1:{port}")])
            .args(["--dial-timeout", "1s", "--command-timeout", "1s"])
            .args(["endpoint", "status", "-w", "json"])
            .env("ETCDCTL_API", "3")
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v.get(0).cloned()
    }

    /// Waits until every running member reports the same leader.
    pub fn wait_healthy(&mut self) {
        if let Err(e) = self.wait_healthy_within(Duration::from_secs(30)) {
            panic!("{e}");
        }
    }

    fn wait_healthy_within(&mut self, within: Duration) -> Result<(), String> {
        let started = Instant::now();
        loop {
            for m in &mut self.members {
                if let Some(c) = &mut m.child
                    && let Ok(Some(status)) = c.try_wait()
                {
                    return Err(format!("etcd member {} exited: {status}", m.name));
                }
            }
            let leaders: Vec<Option<u64>> = self
                .members
                .iter()
                .filter(|m| m.child.is_some())
                .map(|m| {
                    Self::status(m.client)
                        .and_then(|s| s["Status"]["leader"].as_u64())
                        .filter(|l| *l != 0)
                })
                .collect();
            if leaders.iter().all(Option::is_some) && leaders.windows(2).all(|w| w[0] == w[1]) {
                return Ok(());
            }
            if started.elapsed() > within {
                return Err(format!("etcd cluster did not elect a leader: {leaders:?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The index of the current leader.
    pub fn leader(&self) -> usize {
        for (i, m) in self.members.iter().enumerate() {
            if m.child.is_none() {
                continue;
            }
            if let Some(s) = Self::status(m.client)
                && s["Status"]["header"]["member_id"] == s["Status"]["leader"]
            {
                return i;
            }
        }
        panic!("no etcd member is the leader");
    }

    /// SIGKILL member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills every member: the whole store is gone.
    pub fn kill_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }

    /// Starts member `i` again on its ports and data.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
    }

    /// Starts every stopped member and waits for a leader.
    pub fn restart_all(&mut self) {
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() {
                self.spawn(i);
            }
        }
        self.wait_healthy();
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}

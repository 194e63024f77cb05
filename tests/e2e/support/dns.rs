//! A real DNS server (Debian's `dnsmasq`, from `dnsmasq-base`) on a free
//! loopback port, answering only the records a test gives it, with a 1 s
//! TTL; restarted on the same port to change them. The port is chosen
//! outside the ephemeral range so no other test can take it between two
//! restarts.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One dnsmasq.
pub struct DnsServer {
    child: Option<Child>,
    port: u16,
}

impl DnsServer {
    /// Serves `records`: dnsmasq options such as
    /// `--host-record=a.test,127.0.0.1` or `--srv-host=_http._tcp.s.test,a.test,8080,0,1`.
    pub fn start(records: &[String]) -> Self {
        for _ in 0..20 {
            let mut s = Self {
                child: None,
                port: quiet_port(),
            };
            if s.try_serve(records) {
                return s;
            }
        }
        panic!("dnsmasq did not start on any of 20 ports");
    }

    /// Replaces the records (a restart on the same port, retried while the
    /// old process's sockets are still being released).
    pub fn serve(&mut self, records: &[String]) {
        for _ in 0..20 {
            if self.try_serve(records) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("dnsmasq did not restart on port {}", self.port);
    }

    /// Starts dnsmasq on `self.port`; false when it exited (the port was
    /// taken) instead of answering.
    fn try_serve(&mut self, records: &[String]) -> bool {
        self.stop();
        let mut child = Command::new("dnsmasq")
            .args([
                "-k",
                &format!("--port={}", self.port),
                "--listen-address=127.0.0.1",
            ])
            .args([
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
                "-C",
                "/dev/null",
            ])
            .args(["--pid-file=", "--user=root", "--local-ttl=1"])
            .args(records)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start dnsmasq ({e}); run ./scripts/setup to install dnsmasq-base")
            });
        // Ready once it answers on TCP (dnsmasq serves TCP too).
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if !matches!(child.try_wait(), Ok(None)) || started.elapsed() > Duration::from_secs(10)
            {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
        true
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port below the kernel's ephemeral range (32768 and up) that is free
/// for UDP and TCP now: the rest of the suite binds port 0 and makes
/// outgoing connections from the ephemeral range, so nothing else takes it
/// while dnsmasq restarts on it.
fn quiet_port() -> u16 {
    loop {
        let port = fastrand::u16(20_000..32_000);
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port));
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
        if udp.is_ok() && tcp.is_ok() {
            return port;
        }
    }
}

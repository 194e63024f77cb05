//! A real DNS server (Debian's `dnsmasq`, from `dnsmasq-base`) on a free
//! loopback port, answering only the records a test gives it, with a 1 s
//! TTL; restarted on the same port to change them.

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
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("free port")
            .port();
        let mut s = Self { child: None, port };
        s.serve(records);
        s
    }

    /// Replaces the records (a restart on the same port).
    pub fn serve(&mut self, records: &[String]) {
        self.stop();
        let child = Command::new("dnsmasq")
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
        self.child = Some(child);
        // Ready once it answers on TCP (dnsmasq serves TCP too).
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "dnsmasq did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
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

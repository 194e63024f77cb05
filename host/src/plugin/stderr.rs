//! A plugin's standard error, written to the gateway's log line by line.
//!
//! Guests built from interpreted languages report their own failures there
//! (a Python traceback, a JavaScript exception, a C `fprintf(stderr, …)`) just
//! before they trap, so without it an author only sees "unreachable executed".
//! Standard output stays closed: plugins talk to the host through `host.log`.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Longest line kept; the rest of an overlong line is cut (a guest cannot
/// make the gateway buffer without bound).
const MAX_LINE: usize = 4096;

/// The `stderr` handed to each instance of one plugin.
#[derive(Clone)]
pub(crate) struct PluginStderr {
    plugin: Arc<str>,
}

impl PluginStderr {
    pub(crate) fn new(plugin: Arc<str>) -> Self {
        PluginStderr { plugin }
    }
}

impl IsTerminal for PluginStderr {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for PluginStderr {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            plugin: self.plugin.clone(),
            line: Vec::new(),
        })
    }
}

/// Collects bytes into lines and logs each complete one.
struct LineWriter {
    plugin: Arc<str>,
    line: Vec<u8>,
}

impl LineWriter {
    fn push(&mut self, mut data: &[u8]) {
        while let Some(end) = data.iter().position(|&b| b == b'\n') {
            self.keep(&data[..end]);
            self.emit();
            data = &data[end + 1..];
        }
        self.keep(data);
    }

    fn keep(&mut self, part: &[u8]) {
        let room = MAX_LINE.saturating_sub(self.line.len());
        self.line.extend_from_slice(&part[..part.len().min(room)]);
    }

    fn emit(&mut self) {
        let text = String::from_utf8_lossy(&self.line);
        let text = text.trim_end_matches('\r');
        if !text.is_empty() {
            tracing::warn!(plugin = &*self.plugin, stream = "stderr", "{text}");
        }
        self.line.clear();
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.line.is_empty() {
            this.emit();
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.emit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_and_caps_their_length() {
        let mut w = LineWriter {
            plugin: "p".into(),
            line: Vec::new(),
        };
        w.push(b"Traceback (most recent call last):\n  File");
        assert_eq!(w.line, b"  File");
        w.push(&vec![b'x'; 3 * MAX_LINE]);
        assert_eq!(w.line.len(), MAX_LINE);
        w.push(b"\nnext");
        assert_eq!(w.line, b"next");
    }
}

//! A client's socket as hyper sees it: the bytes the listener already read
//! (the protocol sniff, or a parked connection's unparsed bytes) come first,
//! and while the connection is being parked hyper's shutdown leaves the
//! socket open, so that the connection can be taken back and served again.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::idle::Activity;

/// A socket with bytes to replay before its own.
#[derive(Debug)]
pub struct Replay<I> {
    /// Bytes read before hyper's connection was built; `None` once replayed,
    /// so that their allocation goes as soon as hyper has copied them.
    pre: Option<Bytes>,
    inner: I,
    /// Its `parking` flag turns hyper's shutdown into a no-op.
    activity: Arc<Activity>,
}

impl<I> Replay<I> {
    /// `inner`, read after `pre`.
    pub fn new(inner: I, pre: Bytes, activity: Arc<Activity>) -> Self {
        let pre = (!pre.is_empty()).then_some(pre);
        Self {
            pre,
            inner,
            activity,
        }
    }

    /// The socket back, with the bytes not replayed yet (empty once hyper has
    /// read them all).
    pub fn into_parts(self) -> (I, Bytes) {
        (self.inner, self.pre.unwrap_or_default())
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Replay<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(pre) = self.pre.as_mut() {
            let n = pre.len().min(buf.remaining());
            buf.put_slice(&pre[..n]);
            pre.advance(n);
            if pre.is_empty() {
                self.pre = None;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Replay<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // hyper flushes its write buffer before it shuts the socket down, so
        // a parked connection has sent everything when this returns.
        if self.activity.is_parking() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn replays_its_bytes_first_then_reads_the_socket() {
        let (mut client, server) = tokio::io::duplex(64);
        let activity = Arc::new(Activity::opened_at(tokio::time::Instant::now()));
        let mut io = Replay::new(server, Bytes::from_static(b"GET / HT"), activity);
        client.write_all(b"TP/1.1\r\n").await.unwrap();
        let mut small = [0u8; 3];
        io.read_exact(&mut small).await.unwrap();
        assert_eq!(&small, b"GET");
        let mut rest = [0u8; 13];
        io.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b" / HTTP/1.1\r\n");
        let (_, left) = io.into_parts();
        assert!(left.is_empty());
    }

    #[tokio::test]
    async fn a_parking_connection_keeps_its_socket_open() {
        let (mut client, server) = tokio::io::duplex(64);
        let activity = Arc::new(Activity::opened_at(tokio::time::Instant::now()));
        let mut io = Replay::new(server, Bytes::new(), activity.clone());
        activity.set_parking(true);
        io.shutdown().await.unwrap();
        io.write_all(b"still open").await.unwrap();
        let mut got = [0u8; 10];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"still open");
        activity.set_parking(false);
        io.shutdown().await.unwrap();
        let mut end = Vec::new();
        client.read_to_end(&mut end).await.unwrap();
        assert!(end.is_empty(), "shut down once parking is over");
    }
}

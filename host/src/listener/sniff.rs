//! Which protocol a client speaks, from its first bytes: HTTP/2 when they are
//! the connection preface (h2c with prior knowledge, or h2 after ALPN),
//! HTTP/1.x otherwise. The bytes read are handed on, to be replayed to the
//! connection that serves the protocol; until they arrive, the connection
//! holds nothing but its socket.

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.0 or HTTP/1.1 (hyper answers anything else with 400).
    Http1,
    /// HTTP/2.
    Http2,
}

/// Reads until the first bytes tell the protocol apart: at most the
/// preface's 24 bytes, and usually one read (`GET`, `POST`, ... differ from
/// `PRI` within two bytes). `Ok(None)` when the client closed before
/// sending anything.
pub async fn sniff<I: AsyncRead + Unpin>(io: &mut I) -> std::io::Result<Option<(Protocol, Bytes)>> {
    let mut buf = [0u8; H2_PREFACE.len()];
    let mut filled = 0;
    while filled < buf.len() {
        let n = io.read(&mut buf[filled..]).await?;
        if n == 0 {
            if filled == 0 {
                return Ok(None);
            }
            // A short, closed stream: HTTP/1's parser gives it its answer.
            break;
        }
        filled += n;
        if buf[..filled] != H2_PREFACE[..filled] {
            break;
        }
    }
    let protocol = if filled == H2_PREFACE.len() && buf == *H2_PREFACE {
        Protocol::Http2
    } else {
        Protocol::Http1
    };
    Ok(Some((protocol, Bytes::copy_from_slice(&buf[..filled]))))
}

/// Waits for a parked HTTP/1 connection's next bytes (a connection that is
/// already known to speak HTTP/1). `Ok(None)` when the client closed.
pub async fn next_bytes<I: AsyncRead + Unpin>(io: &mut I) -> std::io::Result<Option<Bytes>> {
    // Small on purpose: this buffer lives in the waiting future, and hyper
    // reads the rest of the request into its own.
    let mut buf = [0u8; 16];
    let n = io.read(&mut buf).await?;
    Ok((n > 0).then(|| Bytes::copy_from_slice(&buf[..n])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn sniffed(parts: &[&[u8]]) -> Option<(Protocol, Bytes)> {
        let (mut client, mut server) = tokio::io::duplex(64);
        let owned: Vec<Vec<u8>> = parts.iter().map(|p| p.to_vec()).collect();
        let writer = tokio::spawn(async move {
            for p in owned {
                client.write_all(&p).await.unwrap();
                tokio::task::yield_now().await;
            }
            client
        });
        let got = sniff(&mut server).await.unwrap();
        drop(writer.await.unwrap());
        got
    }

    #[tokio::test]
    async fn a_request_line_is_http1_and_its_bytes_are_kept() {
        let (p, b) = sniffed(&[b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"])
            .await
            .unwrap();
        assert_eq!(p, Protocol::Http1);
        assert!(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".starts_with(&b));
    }

    #[tokio::test]
    async fn the_preface_is_http2_even_in_pieces() {
        let (p, b) = sniffed(&[b"PRI * HT", b"TP/2.0\r\n\r\nSM", b"\r\n\r\n"])
            .await
            .unwrap();
        assert_eq!(p, Protocol::Http2);
        assert_eq!(&b[..], H2_PREFACE);
    }

    #[tokio::test]
    async fn a_method_sharing_the_first_letter_is_http1() {
        let (p, b) = sniffed(&[b"P", b"OST / HTTP/1.1\r\n"]).await.unwrap();
        assert_eq!(p, Protocol::Http1);
        assert_eq!(&b[..2], b"PO");
    }

    #[tokio::test]
    async fn a_client_that_closes_at_once_is_nothing() {
        let (client, mut server) = tokio::io::duplex(64);
        drop(client);
        assert!(sniff(&mut server).await.unwrap().is_none());
    }
}

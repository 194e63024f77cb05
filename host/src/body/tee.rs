//! A body passed through to its reader while a copy is kept, up to a
//! limit: the cache fills from the response its first client is reading,
//! without holding that client back.

use bytes::{Bytes, BytesMut};

use super::Body;

/// What [`Body::Tee`] reports when it is done: the whole body when it ended
/// within the limit, `None` when it went past it, failed, ended with
/// trailers, or was dropped half-way.
pub type OnCopy = Box<dyn FnOnce(Option<Bytes>) + Send + Sync>;

/// A body and its copy.
pub struct Tee {
    pub(super) inner: Body,
    copy: Option<BytesMut>,
    limit: usize,
    on_done: Option<OnCopy>,
}

impl std::fmt::Debug for Tee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tee")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl Tee {
    pub(super) fn new(inner: Body, limit: usize, on_done: OnCopy) -> Self {
        Self {
            inner,
            copy: Some(BytesMut::new()),
            limit,
            on_done: Some(on_done),
        }
    }

    /// Adds a data frame to the copy; past the limit the copy is given up.
    pub(super) fn keep(&mut self, data: &Bytes) {
        let Some(copy) = &mut self.copy else { return };
        if copy.len() + data.len() > self.limit {
            self.give_up();
            return;
        }
        copy.extend_from_slice(data);
    }

    /// The body ended: report the copy.
    pub(super) fn ended(&mut self) {
        let copy = self.copy.take().map(BytesMut::freeze);
        if let Some(f) = self.on_done.take() {
            f(copy);
        }
    }

    /// No whole copy will be made (limit, error, trailers).
    pub(super) fn give_up(&mut self) {
        self.copy = None;
        if let Some(f) = self.on_done.take() {
            f(None);
        }
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        // Dropped before the end: the copy is partial.
        self.give_up();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use http_body_util::BodyExt;

    use super::*;

    type Seen = Arc<Mutex<Option<Option<Bytes>>>>;

    fn tee(body: &'static [u8], limit: usize) -> (Body, Seen) {
        let seen: Seen = Arc::default();
        let s = seen.clone();
        let b = Body::tee(
            Body::full(body),
            limit,
            Box::new(move |c| *s.lock().unwrap() = Some(c)),
        );
        (b, seen)
    }

    #[tokio::test]
    async fn the_reader_gets_every_byte_and_the_copy_is_whole() {
        let (b, seen) = tee(b"hello", 10);
        assert_eq!(b.collect().await.unwrap().to_bytes(), "hello");
        assert_eq!(
            seen.lock().unwrap().clone(),
            Some(Some(Bytes::from_static(b"hello")))
        );
    }

    #[tokio::test]
    async fn past_the_limit_the_reader_still_gets_it_all_but_no_copy_is_kept() {
        let (b, seen) = tee(b"hello world", 5);
        assert_eq!(b.collect().await.unwrap().to_bytes(), "hello world");
        assert_eq!(seen.lock().unwrap().clone(), Some(None));
    }

    #[tokio::test]
    async fn a_body_dropped_unread_reports_no_copy() {
        let (b, seen) = tee(b"hello", 10);
        drop(b);
        assert_eq!(seen.lock().unwrap().clone(), Some(None));
    }
}

//! The bulkhead: a cap on requests in flight to one service. Past the cap the
//! answer is an immediate 503, never a queue.

use std::sync::atomic::{AtomicUsize, Ordering};

/// In-flight counter with a cap.
#[derive(Debug)]
pub struct Bulkhead {
    max: usize,
    in_flight: AtomicUsize,
}

/// A taken slot, given back on drop.
#[derive(Debug)]
pub struct Slot<'a>(&'a Bulkhead);

impl Bulkhead {
    /// A bulkhead admitting `max` requests at once.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Takes a slot, or `None` when all are taken.
    pub fn enter(&self) -> Option<Slot<'_>> {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_cap_and_frees_on_drop() {
        let b = Bulkhead::new(2);
        let a = b.enter().expect("1");
        let _c = b.enter().expect("2");
        assert!(b.enter().is_none());
        drop(a);
        assert!(b.enter().is_some());
    }
}

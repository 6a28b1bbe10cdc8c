//! A bounded number of things at once (live views, order searches, slowed logins): a place is
//! taken from a counter if one is free, and given back when its `Slot` is dropped, however the
//! work ends (an error, a panic, a client that leaves). Imports nothing of ours.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Shop requests in flight: those that start a sale (a hold) and those that finish one (a
/// payment), counted apart so each has its own bound (`http::shed`).
#[derive(Debug, Default)]
pub struct ShopInFlight {
    pub starting: AtomicUsize,
    pub finishing: AtomicUsize,
}

/// A place taken from a counter; dropping it gives the place back.
#[derive(Debug)]
pub struct Slot<'a>(&'a AtomicUsize);

/// A place if fewer than `max` are taken, else `None` (and nothing taken).
pub fn take(counter: &AtomicUsize, max: usize) -> Option<Slot<'_>> {
    if counter.fetch_add(1, Ordering::SeqCst) >= max {
        counter.fetch_sub(1, Ordering::SeqCst);
        return None;
    }
    Some(Slot(counter))
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_bounded_and_given_back() {
        let counter = AtomicUsize::new(0);
        let taken: Vec<_> = (0..3).map(|_| take(&counter, 3).unwrap()).collect();
        assert!(take(&counter, 3).is_none());
        assert_eq!(counter.load(Ordering::SeqCst), 3, "a refusal takes nothing");
        drop(taken);
        assert_eq!(counter.load(Ordering::SeqCst), 0);
        assert!(take(&counter, 3).is_some());
    }
}

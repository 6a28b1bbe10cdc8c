//! The expiry sweep: orders whose hold timed out become EXPIRED in the store. TigerBeetle has
//! already released (or is about to release) their units by itself; this only makes the store
//! say so.

use super::app::{store_read, App, FlowError};
use crate::clock::now_ms;

impl App {
    /// Takes at most `limit` due entries of the expiry index (paid and failed orders' entries
    /// too: they are removed here) and expires the orders still PENDING; returns (entries
    /// taken, orders expired).
    pub async fn sweep_expired(&self, limit: usize) -> Result<(usize, usize), FlowError> {
        let due = store_read(self.store.due_expiries(now_ms(), limit))?;
        let entries = due.len();
        assert!(entries <= limit);
        if entries == 0 {
            return Ok((0, 0));
        }
        let expired = self.store.expire(due, now_ms()).await?;
        assert!(expired <= entries);
        self.metrics.expired.add(expired as u64);
        Ok((entries, expired))
    }
}

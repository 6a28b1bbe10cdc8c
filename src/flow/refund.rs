//! A refund: the order's units go back to sale in the ledger (ids derived from its holds, so a
//! retried or concurrent refund moves nothing twice), then the order is marked REFUNDED in the
//! store. A ticket that got in is refused unless forced; forced, its admission is taken back in
//! the same linked chain as the refund, so the ledger never holds a refunded ticket inside.

use super::app::{store_read, App, FlowError};
use crate::accounting::{self, Resource, TransferResult};
use crate::clock::now_ms;
use crate::ids::parse_order_id;
use crate::order::{Order, OrderStatus, Refund};
use crate::staff::StaffMember;
use crate::store::RefundRecorded;

/// A refund's answer: the order after it, and whether this call refunded it (false: it was
/// refunded before).
pub struct Refunded {
    pub order: Order,
    pub now: bool,
}

/// The reason's length at most (it is kept in the order and exported).
pub const REFUND_REASON_LEN_MAX: usize = 200;

impl App {
    pub async fn refund(
        &self,
        order_id: &str,
        reason: &str,
        force: bool,
        by: &StaffMember,
    ) -> Result<Refunded, FlowError> {
        if reason.len() > REFUND_REASON_LEN_MAX {
            return Err(FlowError::BadRequest(format!("a reason is at most {REFUND_REASON_LEN_MAX} bytes")));
        }
        let found = store_read(self.store.order(order_id))?;
        let order = found.ok_or_else(|| FlowError::NotFound("unknown order".into()))?;
        // After any payment event of this order, and before any later one.
        let _order_lock = self.payment_locks.stripe(&order.psid).lock().await;
        // And after any scan of its ticket: a refund never races an admission.
        let _ticket_lock = self.door_locks.stripe(order_id).lock().await;
        let order = store_read(self.store.order(order_id))?.expect("orders are never deleted");
        match order.status {
            OrderStatus::Refunded => return Ok(Refunded { order, now: false }),
            status if status.is_paid() => {}
            status => {
                return Err(FlowError::Conflict(format!(
                    "only a paid order can be refunded; this one is {}",
                    status.as_str()
                )))
            }
        }
        let admitted = self.return_units(&order, force).await?;
        let refund = Refund { at_ms: now_ms(), by: by.name.clone(), reason: reason.to_string(), forced: admitted };
        let order = match self.store.refund(order_id, refund).await? {
            RefundRecorded::Refunded(order) => *order,
            RefundRecorded::AlreadyRefunded(order) => return Ok(Refunded { order: *order, now: false }),
            other => return Err(FlowError::Unavailable(format!("the refund was not recorded: {other:?}"))),
        };
        let detail =
            format!("order {} {} {}{}", order.order_id, order.amount, reason, if admitted { " (forced)" } else { "" });
        self.log_activity(by, "refund", detail).await;
        Ok(Refunded { order, now: true })
    }

    /// Moves the order's units back to Budget; answers whether its ticket had been admitted
    /// (then only with `force`, and the admission is taken back first).
    async fn return_units(&self, order: &Order, force: bool) -> Result<bool, FlowError> {
        let ledger = self.config.ledger;
        let order_num = parse_order_id(&order.order_id).expect("order ids are ours");
        let class = Resource::class(&order.cls);
        let mut transfers = Vec::new();
        let mut admitted = false;
        if order.status == OrderStatus::Paid {
            // Entries, exits and the unadmission in one lookup: a ticket that got in needs
            // `force`; only one inside now is taken back (a retried forced refund finds it taken
            // back already, and must not send that again: in a linked chain, its `exists`
            // would fail the refund).
            let state = self.ticket_state(order_num, order.ticket_hold_id).await?;
            admitted = state.admitted_ever;
            if admitted && !force {
                return Err(FlowError::Conflict(
                    "the ticket was admitted at the door; refund it with \"force\": true".into(),
                ));
            }
            // A retry after a lost store write sends only what the ledger lacks: an `exists` in
            // a linked chain would fail the whole chain, every time.
            if let Some((entry, _)) = state.last_entry.filter(|_| state.inside) {
                let unadmit = accounting::unadmission(ledger, class, order_num, entry);
                let linked = if state.refunded {
                    tigerbeetle_unofficial::transfer::Flags::empty()
                } else {
                    tigerbeetle_unofficial::transfer::Flags::LINKED
                };
                transfers.push(unadmit.with_flags(linked));
            }
            if !state.refunded {
                transfers.push(accounting::refund(ledger, class, order.ticket_hold_id, order_num));
            }
        }
        // The goodie's refund is independent (`exists` on a retry is a success).
        if let Some(goodie_hold) = order.goodie_hold_id.filter(|_| order.got_goodie) {
            transfers.push(accounting::refund(ledger, Resource::GOODIES, goodie_hold, order_num));
        }
        if transfers.is_empty() {
            return Ok(admitted);
        }
        for (index, result) in self.transfers(transfers).await?.into_iter().enumerate() {
            if !matches!(result, TransferResult::Created | TransferResult::Exists) {
                tracing::error!(?result, index, order_id = %order.order_id, "a refund transfer was refused");
                return Err(FlowError::Unavailable(format!("the refund was refused by the ledger: {result:?}")));
            }
        }
        Ok(admitted)
    }
}

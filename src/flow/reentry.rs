//! Re-entry (`re_entry = true`): an exit scan lets a ticket in once more, and the ledger still
//! holds at most one unit inside per ticket.
//!
//! A ticket's entries and exits are numbered: entry 0 is its admission, exit k ends entry k,
//! entry k+1 may follow exit k. Every id derives from the order and the number, so two doors
//! (or a retry) that decide the same step create it once. A scan reads the whole state in one
//! lookup (at most `ENTRIES_MAX` of each) under the ticket's lock, and creates only the step
//! that state allows: an entry only after the previous exit, an exit only while inside.

use tigerbeetle_unofficial as tb;

use super::app::{App, FlowError};
use super::door::{Direction, Scan};
use crate::accounting::{self, Resource, TransferResult, ENTRIES_MAX};
use crate::clock::now_ms;
use crate::ids::parse_order_id;
use crate::order::Order;
use crate::staff::StaffMember;

/// A ticket's way through the doors, as the ledger has it.
pub struct TicketState {
    /// The last entry made, and its transfer.
    pub last_entry: Option<(u32, tb::Transfer)>,
    /// Whether the last entry has not been followed by its exit (nor taken back by a refund).
    pub inside: bool,
    pub admitted_ever: bool,
    /// A forced refund took an entry back (its exit id, code `UNADMISSION`).
    pub taken_back: bool,
    /// The ledger has the ticket's refund (its store write may still be missing: the order can
    /// still read PAID, and must not get in).
    pub refunded: bool,
}

impl App {
    /// Every entry and exit of a ticket (an unadmission is its entry's exit) and its refund, in
    /// one lookup.
    pub(super) async fn ticket_state(&self, order_num: u128, ticket_hold: u128) -> Result<TicketState, FlowError> {
        let mut ids: Vec<u128> = (0..ENTRIES_MAX).map(|k| accounting::entry_id(order_num, k)).collect();
        ids.extend((0..ENTRIES_MAX).map(|k| accounting::exit_id(order_num, k)));
        ids.push(accounting::refund_id(ticket_hold));
        let found = self.lookup(self.ledger.lookup_transfers(ids)).await?;
        let has = |id: u128| found.iter().find(|t| t.id() == id).copied();
        let last_entry = (0..ENTRIES_MAX).rev().find_map(|k| has(accounting::entry_id(order_num, k)).map(|t| (k, t)));
        let taken_back = found.iter().any(|t| t.code() == accounting::code::UNADMISSION);
        let inside = last_entry.is_some_and(|(k, _)| has(accounting::exit_id(order_num, k)).is_none());
        let refunded = has(accounting::refund_id(ticket_hold)).is_some();
        Ok(TicketState { admitted_ever: last_entry.is_some(), last_entry, inside, taken_back, refunded })
    }

    /// A scan in or out of a paid ticket with re-entry on.
    pub(super) async fn pass(
        &self,
        order: &Order,
        door: &str,
        door_key: u64,
        direction: Direction,
        staff: &StaffMember,
    ) -> Result<Scan, FlowError> {
        let order_num = parse_order_id(&order.order_id).expect("order ids are ours");
        let state = self.ticket_state(order_num, order.ticket_hold_id).await?;
        let order_id = order.order_id.clone();
        if state.refunded {
            return Ok(Scan::Refunded { order_id });
        }
        let resource = Resource::class(&order.cls);
        let ledger = self.config.ledger;
        // The first entry is an admission, with its store record (`admit`), as without re-entry.
        let first_entry = match state.last_entry {
            None => true,
            Some((0, _)) => state.inside,
            Some(_) => false,
        };
        if direction == Direction::In && first_entry {
            return self.admit(order, door, door_key, staff).await;
        }
        let (transfer, exiting) = match (direction, state.last_entry) {
            (Direction::In, None) => unreachable!("a first entry is an admission"),
            (Direction::In, Some((_, last))) if state.inside => {
                return Ok(Scan::AlreadyAdmitted(self.describe(order, &last)?))
            }
            (Direction::In, Some((k, _))) if k + 1 >= ENTRIES_MAX => return Ok(Scan::EntriesUsedUp { order_id }),
            (Direction::In, Some((k, _))) => {
                (accounting::entry(ledger, resource, order_num, k + 1, door_key, staff.number), false)
            }
            (Direction::Out, Some((k, _))) if state.inside => {
                (accounting::exit(ledger, resource, order_num, k, door_key, staff.number), true)
            }
            (Direction::Out, _) => return Ok(Scan::NotInside { order_id }),
        };
        match self.transfers(vec![transfer]).await?[0] {
            TransferResult::Created | TransferResult::Exists | TransferResult::ExistsOtherwise => {}
            other => {
                tracing::error!(?other, order_id = %order.order_id, "a door transfer was refused by TigerBeetle");
                return Err(FlowError::Unavailable(format!("the ledger refused the scan: {other:?}")));
            }
        }
        let passage = crate::order::Admission {
            order_id: order.order_id.clone(),
            cls: order.cls.clone(),
            admitted_at_ms: now_ms(),
            door: door.to_string(),
            staff: staff.name.clone(),
        };
        let action = if exiting { "exited" } else { "re-entered" };
        self.log_activity(staff, action, format!("order {} class {} door {door}", order.order_id, order.cls)).await;
        Ok(if exiting { Scan::Exited(passage) } else { Scan::Admitted(passage) })
    }
}

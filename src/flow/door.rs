//! A door scan: read the code, find the order, and let the ledger decide.
//!
//! The admission is a transfer Spent → Admitted whose id derives from the order, so however
//! many doors scan a ticket, at once or across a crash, TigerBeetle creates one admission. The
//! store's record of it is what makes the answer: a scan answers `admitted` only after that
//! record is durable, so the record exists exactly for the admissions a door was told about.
//! Scans of one ticket run one at a time (`App::door_locks`, held from the ledger to the record):
//!
//! * created now → record it → `admitted`;
//! * it exists, and the store has its record → `already_admitted`, with the first admission's
//!   time, door and staff read back from the ledger;
//! * it exists, and the store has no record → the first scan never answered (its store write
//!   failed, or the server died before it): nobody was told to let this guest in, so this scan
//!   records it and answers `admitted`.

use super::app::{store_read, App, FlowError};
use crate::accounting::{self, Resource, TransferResult};
use crate::clock::now_ms;
use crate::ids::parse_order_id;
use crate::order::{Admission, Order, OrderStatus};
use crate::staff::StaffMember;
use crate::store::AdmissionRecorded;
use crate::ticket::Code;

/// A decided scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan {
    Admitted(Admission),
    /// The first admission of this ticket.
    AlreadyAdmitted(Admission),
    NotPaid {
        order_id: String,
        status: OrderStatus,
    },
    Refunded {
        order_id: String,
    },
    Unknown,
    Invalid(&'static str),
    /// Re-entry: the ticket left (the exit's door, staff and time).
    Exited(Admission),
    /// Re-entry: an exit scan of a ticket that is not inside.
    NotInside {
        order_id: String,
    },
    /// Re-entry: the ticket has used all its `accounting::ENTRIES_MAX` entries.
    EntriesUsedUp {
        order_id: String,
    },
}

/// Which way a scan lets a ticket through: in (always), or out (with `re_entry` on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

impl App {
    /// Scans a ticket at `door` (a name `accounting::door_key` takes), and logs the scan.
    pub async fn scan(
        &self,
        code: &str,
        door: &str,
        direction: Direction,
        staff: &StaffMember,
    ) -> Result<Scan, FlowError> {
        if direction == Direction::Out && !self.config.re_entry {
            return Err(FlowError::BadRequest("exit scans need re_entry = true in the configuration".into()));
        }
        let scan = self.decide(code, door, direction, staff).await?;
        self.log_scan(staff, door, &scan);
        if let Scan::Admitted(_) = &scan {
            self.metrics.admissions.add(1);
        }
        Ok(scan)
    }

    async fn decide(
        &self,
        code: &str,
        door: &str,
        direction: Direction,
        staff: &StaffMember,
    ) -> Result<Scan, FlowError> {
        let door_key = accounting::door_key(door).ok_or_else(|| FlowError::BadRequest("invalid door".into()))?;
        let order_id = match self.ticket_key.read(code) {
            Code::Signed(order_id) => order_id,
            Code::Printed(ticket_code) => {
                if !self.manual_codes.allow(&staff.session, now_ms()) {
                    return Err(FlowError::TooMany("too many codes typed by hand; scan the QR code".into()));
                }
                let Some(order_id) = store_read(self.store.ticket_order(&ticket_code))? else {
                    return Ok(Scan::Unknown);
                };
                // Codes carry 50 random bits: should two tickets ever share one, the index
                // names one of them, and only that one's code gets in by hand.
                let order = store_read(self.store.order(&order_id))?;
                if order.and_then(|o| o.ticket_code).as_deref() != Some(ticket_code.as_str()) {
                    return Ok(Scan::Unknown);
                }
                order_id
            }
            Code::Invalid(why) => return Ok(Scan::Invalid(why)),
        };
        let _ticket_lock = self.door_locks.stripe(&order_id).lock().await;
        let Some(order) = store_read(self.store.order(&order_id))? else { return Ok(Scan::Unknown) };
        match order.status {
            OrderStatus::Paid if order.ticket_code.is_some() => {}
            OrderStatus::Refunded => return Ok(Scan::Refunded { order_id }),
            status => return Ok(Scan::NotPaid { order_id, status }),
        }
        if self.config.re_entry {
            return self.pass(&order, door, door_key, direction, staff).await;
        }
        // A refund moves its units in the ledger before it marks the order: if its store write
        // failed, the order still reads PAID. The ledger's refund decides.
        let refund = accounting::refund_id(order.ticket_hold_id);
        if !self.lookup(self.ledger.lookup_transfers(vec![refund])).await?.is_empty() {
            return Ok(Scan::Refunded { order_id });
        }
        self.admit(&order, door, door_key, staff).await
    }

    /// A scan and its answer in the activity log. An admission's entry is committed with the
    /// admission's record (`admit`); a refusal's is queued, and the answer does not wait for it.
    fn log_scan(&self, staff: &StaffMember, door: &str, scan: &Scan) {
        let detail = match scan {
            Scan::Admitted(_) => return,
            Scan::AlreadyAdmitted(a) => {
                format!("already_admitted order {} door {door} (first at {})", a.order_id, a.door)
            }
            Scan::NotPaid { order_id, status } => format!("not_paid order {order_id} {} door {door}", status.as_str()),
            Scan::Refunded { order_id } => format!("refunded order {order_id} door {door}"),
            Scan::Unknown => format!("unknown door {door}"),
            Scan::Invalid(why) => format!("invalid door {door}: {why}"),
            Scan::Exited(a) => format!("exited order {} class {} door {door}", a.order_id, a.cls),
            Scan::NotInside { order_id } => format!("not_inside order {order_id} door {door}"),
            Scan::EntriesUsedUp { order_id } => format!("entries_used_up order {order_id} door {door}"),
        };
        let entry =
            crate::staff::ActivityEntry { at_ms: now_ms(), staff: staff.name.clone(), action: "scan".into(), detail };
        if !self.store.log_activity_queued(entry) {
            tracing::warn!("the store's queue is full: a refused scan is not in the activity log");
        }
    }

    /// The ledger's admission of a paid order's ticket, then the store's record of it.
    pub(super) async fn admit(
        &self,
        order: &Order,
        door: &str,
        door_key: u64,
        staff: &StaffMember,
    ) -> Result<Scan, FlowError> {
        let order_num = parse_order_id(&order.order_id).expect("order ids are ours");
        let resource = Resource::class(&order.cls);
        let transfer = accounting::admission(self.config.ledger, resource, order_num, door_key, staff.number);
        let result = self.transfers(vec![transfer]).await?[0];
        let record = Admission {
            order_id: order.order_id.clone(),
            cls: order.cls.clone(),
            admitted_at_ms: now_ms(),
            door: door.to_string(),
            staff: staff.name.clone(),
        };
        match result {
            TransferResult::Created => {}
            TransferResult::Exists | TransferResult::ExistsOtherwise => {
                if store_read(self.store.admission(&order.order_id))?.is_some() {
                    return self.first_admission(order, order_num).await.map(Scan::AlreadyAdmitted);
                }
                tracing::info!(order_id = %order.order_id, "a ticket's admission was never answered: admitting now");
            }
            other => {
                tracing::error!(?other, order_id = %order.order_id, "admission refused by TigerBeetle");
                return Err(FlowError::Unavailable(format!("the admission was refused: {other:?}")));
            }
        }
        let entry = crate::staff::ActivityEntry {
            at_ms: record.admitted_at_ms,
            staff: staff.name.clone(),
            action: "admitted".into(),
            detail: format!("order {} class {} door {door}", record.order_id, record.cls),
        };
        match self.store.record_admission(record.clone(), entry).await? {
            AdmissionRecorded::Recorded => Ok(Scan::Admitted(record)),
            // Not while this scan holds the ticket's lock; kept for a second server on one store.
            AdmissionRecorded::Existed(_) => self.first_admission(order, order_num).await.map(Scan::AlreadyAdmitted),
        }
    }

    /// The first admission of a ticket, as the ledger has it.
    async fn first_admission(&self, order: &Order, order_num: u128) -> Result<Admission, FlowError> {
        let found = self.lookup(self.ledger.lookup_transfers(vec![accounting::admission_id(order_num)])).await?;
        let Some(first) = found.first() else {
            return Err(FlowError::Unavailable("the ledger's admission of this ticket was not found".into()));
        };
        self.describe(order, first)
    }

    /// A door transfer (an entry or an exit) as the ledger has it: its time (the cluster's),
    /// door and staff number; the staff member's name from the store.
    pub(super) fn describe(
        &self,
        order: &Order,
        first: &tigerbeetle_unofficial::Transfer,
    ) -> Result<Admission, FlowError> {
        let at_ms = first.timestamp().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let staff = match store_read(self.store.staff_name(first.user_data_32()))? {
            Some(name) => name,
            None if first.user_data_32() == crate::staff::ADMIN_NUMBER => self.config.admin_user.clone(),
            None => format!("staff #{}", first.user_data_32()),
        };
        Ok(Admission {
            order_id: order.order_id.clone(),
            cls: order.cls.clone(),
            admitted_at_ms: at_ms,
            door: accounting::door_name(first.user_data_64()),
            staff,
        })
    }
}

//! Applying a group of writes to one redb transaction, recording each change in the redo log's
//! `Ops` as it goes (the log's record is the group's after-images). Either the whole group
//! commits or none of it.

use redb::{ReadableTable, ReadableTableMetadata, Table, WriteTransaction};

use super::redo::Ops;
use super::schema::{
    table_id, time_key, StatusOnly, ACTIVITY, ADMISSIONS, BENCH_RESULTS, BENCH_RESULTS_MAX, COUNTS, EXPIRED_LOG,
    EXPIRY, ORDERS, SESSIONS, STAFF, STAFF_NUMBERS, TICKETS,
};
use super::write::{
    AdmissionRecorded, CheckoutRecord, PaymentRecord, PaymentRecorded, RefundRecorded, StaffChanged, StaffOp, Write,
};
use crate::order::{Admission, Order, OrderStatus, Refund};
use crate::staff::{ActivityEntry, StaffRecord, ADMIN_NUMBER, STAFF_MAX};

/// The tables a group writes, open for the whole group, and the changes to the status counts.
struct Tables<'tx> {
    sessions: Table<'tx, &'static str, &'static [u8]>,
    orders: Table<'tx, &'static str, &'static [u8]>,
    expiry: Table<'tx, (u64, &'static str), ()>,
    expired_log: Table<'tx, (u64, &'static str), ()>,
    bench_results: Table<'tx, &'static str, &'static [u8]>,
    admissions: Table<'tx, &'static str, &'static [u8]>,
    tickets: Table<'tx, &'static str, &'static str>,
    staff: Table<'tx, &'static str, &'static [u8]>,
    activity: Table<'tx, (u64, &'static str), &'static [u8]>,
    staff_numbers: Table<'tx, u32, &'static str>,
    /// Orders gained (lost) per status, indexed as `OrderStatus::ALL`.
    deltas: [i64; OrderStatus::ALL.len()],
}

impl Tables<'_> {
    fn moved(&mut self, before: OrderStatus, after: OrderStatus) {
        self.deltas[before.index()] -= 1;
        self.deltas[after.index()] += 1;
    }

    fn put_order(&mut self, ops: &mut Ops, order_id: &str, record: &[u8]) -> anyhow::Result<()> {
        self.orders.insert(order_id, record)?;
        ops.put(table_id::ORDERS, order_id.as_bytes(), record);
        Ok(())
    }

    /// A new ticket's code, so that a door can find its order when the code is typed by hand.
    fn index_ticket(&mut self, ops: &mut Ops, code: &str, order_id: &str) -> anyhow::Result<()> {
        self.tickets.insert(code, order_id)?;
        ops.put(table_id::TICKETS, code.as_bytes(), order_id.as_bytes());
        Ok(())
    }
}

/// Applies a group of writes to one transaction, keeping each write's result in its answer, and
/// records their changes in `ops` for the redo log.
pub fn apply_group(tx: &WriteTransaction, group: &mut [Write], ops: &mut Ops) -> anyhow::Result<()> {
    let mut tables = Tables {
        sessions: tx.open_table(SESSIONS)?,
        orders: tx.open_table(ORDERS)?,
        expiry: tx.open_table(EXPIRY)?,
        expired_log: tx.open_table(EXPIRED_LOG)?,
        bench_results: tx.open_table(BENCH_RESULTS)?,
        admissions: tx.open_table(ADMISSIONS)?,
        tickets: tx.open_table(TICKETS)?,
        staff: tx.open_table(STAFF)?,
        activity: tx.open_table(ACTIVITY)?,
        staff_numbers: tx.open_table(STAFF_NUMBERS)?,
        deltas: [0; OrderStatus::ALL.len()],
    };
    for write in group.iter_mut() {
        match write {
            Write::Checkout(record, answer) => answer.result = Some(checkout(&mut tables, ops, record)?),
            Write::Payment(record, answer) => answer.result = Some(payment(&mut tables, ops, record)?),
            Write::Expire { due, now_ms, answer } => answer.result = Some(expire(&mut tables, ops, due, *now_ms)?),
            Write::BenchResult { name, report, answer } => {
                answer.result = Some(bench_result(&mut tables, ops, name, report)?)
            }
            Write::Prune { sessions_before_ms, expired_before_ms, max, answer } => {
                answer.result = Some(prune(&mut tables, ops, *sessions_before_ms, *expired_before_ms, *max)?)
            }
            Write::Admission(record, answer) => {
                let (admission, entry) = record.as_ref();
                answer.result = Some(admit(&mut tables, ops, admission)?);
                if answer.result == Some(AdmissionRecorded::Recorded) {
                    activity(&mut tables, ops, entry)?;
                }
            }
            Write::Refund { order_id, refund: r, answer } => {
                answer.result = Some(refund(&mut tables, ops, order_id, r)?)
            }
            Write::Staff(op, answer) => answer.result = Some(staff(&mut tables, ops, op)?),
            Write::Activity(entry, answer) => answer.result = Some(activity(&mut tables, ops, entry)?),
            Write::Flush(answer) => answer.result = Some(()),
        }
    }
    let deltas = tables.deltas;
    drop(tables);
    let mut counts = tx.open_table(COUNTS)?;
    for (status, delta) in OrderStatus::ALL.iter().zip(deltas) {
        if delta != 0 {
            let current = counts.get(status.as_str())?.map(|v| v.value()).unwrap_or(0);
            let updated = current.checked_add_signed(delta).expect("order counts never go negative");
            counts.insert(status.as_str(), updated)?;
            ops.put(table_id::COUNTS, status.as_str().as_bytes(), &updated.to_le_bytes());
        }
    }
    Ok(())
}

fn checkout(tables: &mut Tables<'_>, ops: &mut Ops, record: &CheckoutRecord) -> anyhow::Result<()> {
    let CheckoutRecord { psid, order_id, expires_at_ms, session, order } = record;
    tables.sessions.insert(psid.as_str(), session.as_slice())?;
    ops.put(table_id::SESSIONS, psid.as_bytes(), session);
    tables.put_order(ops, order_id, order)?;
    tables.expiry.insert((*expires_at_ms, order_id.as_str()), ())?;
    ops.put(table_id::EXPIRY, &time_key(*expires_at_ms, order_id), &[]);
    tables.deltas[OrderStatus::Pending.index()] += 1;
    Ok(())
}

fn payment(tables: &mut Tables<'_>, ops: &mut Ops, record: &PaymentRecord) -> anyhow::Result<PaymentRecorded> {
    let PaymentRecord { order_id, event_key, outcome, prepared } = record;
    // Fast path: the order is byte for byte what the handler read (nothing else touched it
    // meanwhile; the sweeper is the only other writer of orders).
    if let Some(p) = prepared {
        let unchanged = tables.orders.get(order_id.as_str())?.is_some_and(|v| v.value() == p.expected.as_slice());
        if unchanged {
            if let Some((before, after)) = p.changed {
                tables.moved(before, after);
                if let Some(code) = outcome.as_ref().and_then(|o| o.ticket_code.as_deref()) {
                    tables.index_ticket(ops, code, order_id)?;
                }
            }
            tables.put_order(ops, order_id, &p.updated)?;
            return Ok(PaymentRecorded::Order(p.status));
        }
    }
    let current: Option<Order> = match tables.orders.get(order_id.as_str())? {
        Some(v) => Some(serde_json::from_slice(v.value())?),
        None => None,
    };
    Ok(match current {
        None => PaymentRecorded::NotFound,
        Some(order) if order.event_keys.iter().any(|k| k == event_key) => PaymentRecorded::Replay,
        Some(mut order) => {
            if let Some((before, after)) = order.apply_payment(event_key, outcome.as_ref()) {
                tables.moved(before, after);
                if let Some(code) = order.ticket_code.as_deref() {
                    tables.index_ticket(ops, code, order_id)?;
                }
            }
            tables.put_order(ops, order_id, &serde_json::to_vec(&order)?)?;
            PaymentRecorded::Order(order.status)
        }
    })
}

fn expire(tables: &mut Tables<'_>, ops: &mut Ops, due: &[(u64, String)], now_ms: u64) -> anyhow::Result<usize> {
    let mut expired = 0;
    for (at, order_id) in due {
        if tables.expiry.remove((*at, order_id.as_str()))?.is_some() {
            ops.delete(table_id::EXPIRY, &time_key(*at, order_id));
        }
        // Most due entries are of orders paid or failed meanwhile: look at their status only.
        let order: Option<Order> = match tables.orders.get(order_id.as_str())? {
            Some(v) if serde_json::from_slice::<StatusOnly>(v.value())?.status == OrderStatus::Pending => {
                Some(serde_json::from_slice(v.value())?)
            }
            _ => None,
        };
        let Some(mut order) = order else { continue };
        assert_eq!(order.status, OrderStatus::Pending);
        order.status = OrderStatus::Expired;
        tables.moved(OrderStatus::Pending, OrderStatus::Expired);
        tables.expired_log.insert((now_ms, order_id.as_str()), ())?;
        ops.put(table_id::EXPIRED_LOG, &time_key(now_ms, order_id), &[]);
        tables.put_order(ops, order_id, &serde_json::to_vec(&order)?)?;
        expired += 1;
    }
    assert!(expired <= due.len());
    Ok(expired)
}

fn bench_result(tables: &mut Tables<'_>, ops: &mut Ops, name: &str, report: &[u8]) -> anyhow::Result<bool> {
    let table = &mut tables.bench_results;
    if table.len()? >= BENCH_RESULTS_MAX as u64 && table.get(name)?.is_none() {
        return Ok(false);
    }
    table.insert(name, report)?;
    ops.put(table_id::BENCH_RESULTS, name.as_bytes(), report);
    Ok(true)
}

/// The smallest session id made at `at_ms` (`ids::new_psid`: `ps_`, the creation time in 12 hex
/// digits, then randomness): every session id below it was made before.
pub fn psid_floor(at_ms: u64) -> String {
    assert!(at_ms < 1 << 48, "session ids carry 48 bits of milliseconds");
    format!("ps_{at_ms:012x}")
}

/// Deletes the oldest sessions and expiry log entries, up to `max` of each.
fn prune(
    tables: &mut Tables<'_>,
    ops: &mut Ops,
    sessions_before_ms: u64,
    expired_before_ms: u64,
    max: usize,
) -> anyhow::Result<(usize, usize)> {
    let floor = psid_floor(sessions_before_ms);
    let mut psids = Vec::new();
    for entry in tables.sessions.range::<&str>(..floor.as_str())?.take(max) {
        psids.push(entry?.0.value().to_string());
    }
    for psid in &psids {
        tables.sessions.remove(psid.as_str())?;
        ops.delete(table_id::SESSIONS, psid.as_bytes());
    }
    let mut expired = Vec::new();
    for entry in tables.expired_log.range((0u64, "")..(expired_before_ms, ""))?.take(max) {
        let (key, _) = entry?;
        let (at, order_id) = key.value();
        expired.push((at, order_id.to_string()));
    }
    for (at, order_id) in &expired {
        tables.expired_log.remove((*at, order_id.as_str()))?;
        ops.delete(table_id::EXPIRED_LOG, &time_key(*at, order_id));
    }
    Ok((psids.len(), expired.len()))
}

/// Records a ticket's admission unless one is recorded: the first stands.
fn admit(tables: &mut Tables<'_>, ops: &mut Ops, admission: &Admission) -> anyhow::Result<AdmissionRecorded> {
    if let Some(existing) = tables.admissions.get(admission.order_id.as_str())? {
        return Ok(AdmissionRecorded::Existed(Box::new(serde_json::from_slice(existing.value())?)));
    }
    let record = serde_json::to_vec(admission)?;
    tables.admissions.insert(admission.order_id.as_str(), record.as_slice())?;
    ops.put(table_id::ADMISSIONS, admission.order_id.as_bytes(), &record);
    Ok(AdmissionRecorded::Recorded)
}

/// Marks a paid order REFUNDED; a refunded one is answered as it is (idempotent).
fn refund(tables: &mut Tables<'_>, ops: &mut Ops, order_id: &str, refund: &Refund) -> anyhow::Result<RefundRecorded> {
    let mut order: Order = match tables.orders.get(order_id)? {
        Some(v) => serde_json::from_slice(v.value())?,
        None => return Ok(RefundRecorded::NotFound),
    };
    if order.status == OrderStatus::Refunded {
        return Ok(RefundRecorded::AlreadyRefunded(Box::new(order)));
    }
    if !order.status.is_paid() {
        return Ok(RefundRecorded::NotRefundable(order.status));
    }
    tables.moved(order.status, OrderStatus::Refunded);
    order.status = OrderStatus::Refunded;
    order.refund = Some(refund.clone());
    tables.put_order(ops, order_id, &serde_json::to_vec(&order)?)?;
    Ok(RefundRecorded::Refunded(Box::new(order)))
}

fn put_staff(tables: &mut Tables<'_>, ops: &mut Ops, record: &StaffRecord) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec(record)?;
    tables.staff.insert(record.name.as_str(), bytes.as_slice())?;
    ops.put(table_id::STAFF, record.name.as_bytes(), &bytes);
    Ok(())
}

fn staff(tables: &mut Tables<'_>, ops: &mut Ops, op: &StaffOp) -> anyhow::Result<StaffChanged> {
    let name = match op {
        StaffOp::Create(record) => record.name.as_str(),
        StaffOp::Remove { name, .. } | StaffOp::EndSessions { name, .. } => name.as_str(),
    };
    let existing: Option<StaffRecord> = match tables.staff.get(name)? {
        Some(v) => Some(serde_json::from_slice(v.value())?),
        None => None,
    };
    let record = match (op, existing) {
        (StaffOp::Create(_), Some(existing)) if existing.removed_at_ms.is_none() => return Ok(StaffChanged::NameTaken),
        // A new account (a new number) may take a removed one's name: the old sessions, of the
        // old number, stay ended.
        (StaffOp::Create(new), _) => {
            if tables.staff.len()? >= STAFF_MAX as u64 {
                return Ok(StaffChanged::Full);
            }
            let mut number_max = ADMIN_NUMBER;
            for entry in tables.staff.iter()? {
                let record: StaffRecord = serde_json::from_slice(entry?.1.value())?;
                number_max = number_max.max(record.number);
            }
            let record = StaffRecord { number: number_max + 1, ..new.clone() };
            tables.staff_numbers.insert(record.number, record.name.as_str())?;
            ops.put(table_id::STAFF_NUMBERS, &record.number.to_be_bytes(), record.name.as_bytes());
            record
        }
        (_, None) => return Ok(StaffChanged::NotFound),
        (_, Some(record)) if record.removed_at_ms.is_some() => return Ok(StaffChanged::NotFound),
        (StaffOp::Remove { at_ms, .. }, Some(record)) => StaffRecord { removed_at_ms: Some(*at_ms), ..record },
        (StaffOp::EndSessions { at_ms, .. }, Some(record)) => StaffRecord { sessions_since_ms: *at_ms, ..record },
    };
    put_staff(tables, ops, &record)?;
    Ok(StaffChanged::Done(record))
}

fn activity(tables: &mut Tables<'_>, ops: &mut Ops, entry: &ActivityEntry) -> anyhow::Result<()> {
    // Entries of the same millisecond are told apart by a random suffix; the log is append-only.
    let id = format!("{:016x}", rand::random::<u64>());
    let bytes = serde_json::to_vec(entry)?;
    tables.activity.insert((entry.at_ms, id.as_str()), bytes.as_slice())?;
    ops.put(table_id::ACTIVITY, &time_key(entry.at_ms, &id), &bytes);
    Ok(())
}

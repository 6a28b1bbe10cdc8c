//! The store's tables and their encoding, and opening the two files: redb brought up to date
//! with the redo log's records. Table names, key types and table ids are the on-disk format.

use std::path::{Path, PathBuf};

use anyhow::Context;
use redb::{Database, ReadableDatabase, TableDefinition, WriteTransaction};
use serde::Deserialize;

use super::redo::{self, Op, RedoLog};
use crate::order::OrderStatus;

/// psid → Session (JSON).
pub const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
/// order id → Order (JSON).
pub const ORDERS: TableDefinition<&str, &[u8]> = TableDefinition::new("orders");
/// (expires_at_ms, order id) → (): holds by expiry, for the sweeper. Every PENDING order has its
/// entry. A payment leaves it in place, and the sweeper removes it when it falls due (skipping the
/// order if it is final by then): payments arrive in any order, so removing entries there dirtied
/// a page of this B-tree per payment in every group commit, while the sweeper removes a run of
/// neighbouring keys.
pub const EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("expiry");
/// order status → number of orders in it, kept in the same transactions as the orders.
pub const COUNTS: TableDefinition<&str, u64> = TableDefinition::new("order_counts");
/// (expired_at_ms, order id) → (): the sweeper's log, for the admin's "recent expiries".
pub const EXPIRED_LOG: TableDefinition<(u64, &str), ()> = TableDefinition::new("expired_log");
/// result name → a `tigerfans bench --json` report, for the bench page.
pub const BENCH_RESULTS: TableDefinition<&str, &[u8]> = TableDefinition::new("bench_results");
/// order id → Admission (JSON): tickets let in at the door.
pub const ADMISSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("admissions");
/// ticket code → order id: what a door reads when a code is typed by hand.
pub const TICKETS: TableDefinition<&str, &str> = TableDefinition::new("tickets");
/// staff name → StaffRecord (JSON).
pub const STAFF: TableDefinition<&str, &[u8]> = TableDefinition::new("staff");
/// staff number → staff name.
pub const STAFF_NUMBERS: TableDefinition<u32, &str> = TableDefinition::new("staff_numbers");
/// (at_ms, entry id) → ActivityEntry (JSON): the staff's append-only activity log.
pub const ACTIVITY: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("activity");
/// `REDO_SEQ` → the seq of the last redo record this database holds: replay skips those.
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub const REDO_SEQ: &str = "redo_seq";
/// Present once the ticket index holds the codes of orders paid before it existed.
pub const TICKETS_INDEXED: &str = "tickets_indexed";

/// Stored benchmark reports at most.
pub const BENCH_RESULTS_MAX: usize = 100;

/// Table ids in redo records. Never renumber: a log written by one version may be replayed by
/// the next.
pub mod table_id {
    pub const SESSIONS: u8 = 1;
    pub const ORDERS: u8 = 2;
    pub const EXPIRY: u8 = 3;
    pub const COUNTS: u8 = 4;
    pub const EXPIRED_LOG: u8 = 5;
    pub const BENCH_RESULTS: u8 = 6;
    pub const ADMISSIONS: u8 = 7;
    pub const TICKETS: u8 = 8;
    pub const STAFF: u8 = 9;
    pub const ACTIVITY: u8 = 10;
    pub const STAFF_NUMBERS: u8 = 11;
}

/// Enough of an order's record to skip it without decoding all of it.
#[derive(Deserialize)]
pub struct StatusOnly {
    pub status: OrderStatus,
}

/// The redo log beside a store file: `tigerfans.redb` → `tigerfans.redo`.
pub fn redo_path(path: &Path) -> PathBuf {
    path.with_extension("redo")
}

/// A `(time, order id)` key as the redo log carries it.
pub fn time_key(at_ms: u64, order_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + order_id.len());
    key.extend_from_slice(&at_ms.to_be_bytes());
    key.extend_from_slice(order_id.as_bytes());
    key
}

/// Whether a failed group commit failed in redb (I/O, a full disk, a poisoned database): then
/// the database must be reopened.
pub fn is_redb_error(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause.is::<redb::StorageError>()
            || cause.is::<redb::CommitError>()
            || cause.is::<redb::TransactionError>()
            || cause.is::<redb::TableError>()
            || cause.is::<redb::Error>()
    })
}

fn open_database(path: &Path, cache_bytes: usize) -> anyhow::Result<Database> {
    let db = Database::builder()
        .set_cache_size(cache_bytes)
        .create(path)
        .with_context(|| format!("opening store {}", path.display()))?;
    let tx = db.begin_write()?;
    tx.open_table(SESSIONS)?;
    tx.open_table(ORDERS)?;
    tx.open_table(EXPIRY)?;
    tx.open_table(COUNTS)?;
    tx.open_table(EXPIRED_LOG)?;
    tx.open_table(BENCH_RESULTS)?;
    tx.open_table(ADMISSIONS)?;
    tx.open_table(TICKETS)?;
    tx.open_table(STAFF)?;
    tx.open_table(ACTIVITY)?;
    tx.open_table(STAFF_NUMBERS)?;
    tx.open_table(META)?;
    index_tickets(&tx)?;
    tx.commit()?;
    Ok(db)
}

/// A store made before the ticket index: index the codes of its paid orders, once.
fn index_tickets(tx: &WriteTransaction) -> anyhow::Result<()> {
    use redb::ReadableTable;
    let mut meta = tx.open_table(META)?;
    if meta.get(TICKETS_INDEXED)?.is_some() {
        return Ok(());
    }
    let orders = tx.open_table(ORDERS)?;
    let mut tickets = tx.open_table(TICKETS)?;
    let mut indexed = 0u64;
    for entry in orders.iter()? {
        let (key, value) = entry?;
        let order: crate::order::Order = serde_json::from_slice(value.value()).context("decoding an order")?;
        if let Some(code) = order.ticket_code.as_deref() {
            tickets.insert(code, key.value())?;
            indexed += 1;
        }
    }
    meta.insert(TICKETS_INDEXED, indexed)?;
    Ok(())
}

/// The open store: redb brought up to date with the redo log, and the log ready for the next
/// record.
pub struct Opened {
    pub db: Database,
    pub log: RedoLog,
    /// The seq of the last record the database holds.
    pub seq: u64,
}

/// Opens the store's two files, replays the redo records the database does not hold yet, and
/// checkpoints, so the log starts its next generation empty. The log is given the size a
/// generation reaches (`checkpoint_log_bytes` and an eighth for the group that crosses it) up
/// front; if it cannot be, it grows as it is written.
pub fn open_store(path: &Path, cache_bytes: usize, checkpoint_log_bytes: u64) -> anyhow::Result<Opened> {
    let db = open_database(path, cache_bytes)?;
    let log_path = redo_path(path);
    let (mut log, records) = RedoLog::open(&log_path)?;
    let held = db.begin_read()?.open_table(META)?.get(REDO_SEQ)?.map(|v| v.value()).unwrap_or(0);
    let mut seq = held;
    let tx = db.begin_write()?;
    for record in records.iter().filter(|r| r.seq > held) {
        anyhow::ensure!(
            record.seq == seq + 1,
            "redo log {} continues at record {} but the store holds records up to {seq}: the two files do \
             not belong together (remove both to start afresh)",
            log_path.display(),
            record.seq
        );
        redo::decode(&record.payload)
            .and_then(|ops| apply_ops(&tx, &ops))
            .with_context(|| format!("replaying redo record {} of {}", record.seq, log_path.display()))?;
        seq = record.seq;
    }
    tx.open_table(META)?.insert(REDO_SEQ, seq)?;
    tx.commit()?;
    log.rewind();
    let log_bytes = checkpoint_log_bytes + checkpoint_log_bytes / 8;
    match log.preallocate(log_bytes) {
        Ok(0) => {}
        Ok(added) => tracing::info!(added_bytes = added, log = %log_path.display(), "store: redo log preallocated"),
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "store: the redo log grows as it is written instead"),
    }
    if seq > held {
        tracing::info!(records = seq - held, log = %log_path.display(), "store: replayed the redo log");
    }
    Ok(Opened { db, log, seq })
}

/// Applies a replayed record's changes.
fn apply_ops(tx: &WriteTransaction, ops: &[Op<'_>]) -> anyhow::Result<()> {
    let mut sessions = tx.open_table(SESSIONS)?;
    let mut orders = tx.open_table(ORDERS)?;
    let mut expiry = tx.open_table(EXPIRY)?;
    let mut counts = tx.open_table(COUNTS)?;
    let mut expired_log = tx.open_table(EXPIRED_LOG)?;
    let mut bench_results = tx.open_table(BENCH_RESULTS)?;
    let mut door = DoorTables::open(tx)?;
    let text = |key: &[u8]| std::str::from_utf8(key).context("redo key is not UTF-8").map(str::to_string);
    let timed = |key: &[u8]| -> anyhow::Result<(u64, String)> {
        anyhow::ensure!(key.len() >= 8, "redo time key too short");
        Ok((u64::from_be_bytes(key[..8].try_into().expect("8 bytes")), text(&key[8..])?))
    };
    for op in ops {
        match *op {
            Op::Put { table: table_id::SESSIONS, key, value } => {
                sessions.insert(text(key)?.as_str(), value)?;
            }
            Op::Put { table: table_id::ORDERS, key, value } => {
                orders.insert(text(key)?.as_str(), value)?;
            }
            Op::Put { table: table_id::EXPIRY, key, .. } => {
                let (at, id) = timed(key)?;
                expiry.insert((at, id.as_str()), ())?;
            }
            Op::Delete { table: table_id::EXPIRY, key } => {
                let (at, id) = timed(key)?;
                expiry.remove((at, id.as_str()))?;
            }
            Op::Put { table: table_id::COUNTS, key, value } => {
                let count = u64::from_le_bytes(value.try_into().context("redo count is not 8 bytes")?);
                counts.insert(text(key)?.as_str(), count)?;
            }
            Op::Put { table: table_id::EXPIRED_LOG, key, .. } => {
                let (at, id) = timed(key)?;
                expired_log.insert((at, id.as_str()), ())?;
            }
            Op::Delete { table: table_id::EXPIRED_LOG, key } => {
                let (at, id) = timed(key)?;
                expired_log.remove((at, id.as_str()))?;
            }
            Op::Delete { table: table_id::SESSIONS, key } => {
                sessions.remove(text(key)?.as_str())?;
            }
            Op::Put { table: table_id::BENCH_RESULTS, key, value } => {
                bench_results.insert(text(key)?.as_str(), value)?;
            }
            _ => door.apply(op)?,
        }
    }
    Ok(())
}

/// The door's and the staff's tables, for a replay.
struct DoorTables<'tx> {
    admissions: redb::Table<'tx, &'static str, &'static [u8]>,
    tickets: redb::Table<'tx, &'static str, &'static str>,
    staff: redb::Table<'tx, &'static str, &'static [u8]>,
    staff_numbers: redb::Table<'tx, u32, &'static str>,
    activity: redb::Table<'tx, (u64, &'static str), &'static [u8]>,
}

impl<'tx> DoorTables<'tx> {
    fn open(tx: &'tx WriteTransaction) -> anyhow::Result<DoorTables<'tx>> {
        Ok(DoorTables {
            admissions: tx.open_table(ADMISSIONS)?,
            tickets: tx.open_table(TICKETS)?,
            staff: tx.open_table(STAFF)?,
            staff_numbers: tx.open_table(STAFF_NUMBERS)?,
            activity: tx.open_table(ACTIVITY)?,
        })
    }

    fn apply(&mut self, op: &Op<'_>) -> anyhow::Result<()> {
        let text = |bytes: &[u8]| std::str::from_utf8(bytes).context("redo key is not UTF-8").map(str::to_string);
        match *op {
            Op::Put { table: table_id::ADMISSIONS, key, value } => {
                self.admissions.insert(text(key)?.as_str(), value)?;
            }
            Op::Put { table: table_id::TICKETS, key, value } => {
                self.tickets.insert(text(key)?.as_str(), text(value)?.as_str())?;
            }
            Op::Put { table: table_id::STAFF, key, value } => {
                self.staff.insert(text(key)?.as_str(), value)?;
            }
            Op::Put { table: table_id::STAFF_NUMBERS, key, value } => {
                let number = u32::from_be_bytes(key.try_into().context("redo staff number is not 4 bytes")?);
                self.staff_numbers.insert(number, text(value)?.as_str())?;
            }
            Op::Put { table: table_id::ACTIVITY, key, value } => {
                anyhow::ensure!(key.len() >= 8, "redo time key too short");
                let at = u64::from_be_bytes(key[..8].try_into().expect("8 bytes"));
                self.activity.insert((at, text(&key[8..])?.as_str()), value)?;
            }
            ref other => anyhow::bail!("redo op {other:?} names no table that takes it"),
        }
        Ok(())
    }
}

//! The redb store: payment sessions (hot) and orders (cold), each order with the ids of the
//! webhook events it has seen.
//!
//! One writer thread *group-commits* (`writer`): it takes every write waiting in its queue,
//! applies them in one transaction (`apply`), makes that durable once (the group's changes
//! appended to the redo log and fdatasynced, see `redo`), commits, and only then answers each
//! waiter. So a 200 on a checkout or a webhook means its write is on disk, while the sync is
//! shared by everyone who arrived during the previous one. Reads (here) use redb's MVCC
//! snapshots and never wait for the writer; they only ever see groups already in the log.
//!
//! On disk the store is two files: `NAME.redb` (redb, made durable at checkpoints; its tables in
//! `schema`) and `NAME.redo` (the redo log since the last checkpoint). Opening the store replays
//! the log.

mod apply;
mod flusher;
mod redo;
mod schema;
mod write;
mod writer;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot, watch};

use crate::metrics::Metrics;
use crate::order::{Admission, Order, OrderStatus, Outcome, PreparedOrder, Refund, Session};
use crate::staff::{ActivityEntry, StaffRecord, STAFF_MAX};
use flusher::Flusher;
use schema::{
    open_store, Opened, StatusOnly, ACTIVITY, ADMISSIONS, BENCH_RESULTS, COUNTS, EXPIRED_LOG, EXPIRY, ORDERS, SESSIONS,
    STAFF, STAFF_NUMBERS, TICKETS,
};
use write::{Answer, CheckoutRecord, PaymentRecord, Write};
use writer::{SharedDb, Writer};

pub use schema::{redo_path, BENCH_RESULTS_MAX};
pub use write::{AdmissionRecorded, PaymentRecorded, RefundRecorded, StaffChanged, StaffOp, StoreError};
pub use writer::{CHECKPOINT_LOG_BYTES, GROUP_COMMIT_WRITES_MAX, REOPEN_INTERVAL_MS, REOPEN_INTERVAL_MS_MAX};

/// Admin listings scan at most this many records per request.
pub const ADMIN_SCAN_MAX: usize = 100_000;
pub const ADMIN_LIST_MAX: usize = 500;
/// The admin's list of open holds looks at most this many expiry entries back (paid and failed
/// orders stay in the expiry index until the sweeper reaches them). Every live admin view reads
/// it each second, on the HTTP workers: 2,000 status-only decodes is a few ms. After a rush
/// mostly paid, older open holds can be beyond it; the inventory's counts stay exact.
pub const HOLDS_SCAN_MAX: usize = 2_000;
/// Writes waiting for the writer; beyond this, a write answers `Busy` (HTTP 503).
pub const WRITE_QUEUE_MAX: usize = 65_536;
/// redb's page cache (default of `--store-cache-mib`). redb's own default (1 GiB) is larger than
/// a small Pi can spare; hot sessions and recent orders fit in far less, and the OS page cache
/// still holds the rest of the file.
pub const CACHE_BYTES: usize = 16 * 1024 * 1024;
pub const CACHE_BYTES_MIN: usize = 1024 * 1024;
/// Retention. Orders are kept for good (they are the event's records: tickets sold, the audit).
/// A payment session is needed while its order can still be paid or its MockPay page shown:
/// it is deleted this long after it was made (a hold lasts at most 24 hours; a payment event
/// after that still finds its order, which carries the holds). The admin's "recent expiries"
/// log keeps a day. The expiry index holds only holds within their time (the sweeper removes
/// entries as they fall due), and an order at most `ORDER_EVENT_KEYS_MAX` event ids: so
/// beyond the orders themselves, the store holds at most two days of sessions and a day of
/// expiries, however long the appliance runs.
pub const SESSION_RETENTION_MS: u64 = 48 * 60 * 60 * 1000;
pub const EXPIRED_LOG_RETENTION_MS: u64 = 24 * 60 * 60 * 1000;
/// Sessions and expiry log entries one prune deletes at most (one group commit).
pub const PRUNE_BATCH_MAX: usize = 4096;

/// How long a write waits for its group commit. A commit takes about a millisecond and a
/// checkpoint tens; this bounds a disk that stalls (an SD card's garbage collection, a hung
/// mount), so a request answers 503 instead of hanging, and a webhook's order lock is let go.
pub const WRITE_TIMEOUT_MS: u64 = 10_000;

// A group is taken from the queue: a group larger than the queue could never fill.
const _: () = assert!(GROUP_COMMIT_WRITES_MAX <= WRITE_QUEUE_MAX);
const _: () = assert!(CACHE_BYTES >= CACHE_BYTES_MIN);
const _: () = assert!(HOLDS_SCAN_MAX >= ADMIN_LIST_MAX && ADMIN_SCAN_MAX >= ADMIN_LIST_MAX);
// A session outlives its hold, whatever the configured hold time.
const _: () = assert!(SESSION_RETENTION_MS > crate::config::HOLD_TIMEOUT_S_MAX as u64 * 1000);
const _: () = assert!(PRUNE_BATCH_MAX <= GROUP_COMMIT_WRITES_MAX);

/// The store's side of an audit, read in one transaction.
#[derive(Debug, Default)]
pub struct AuditSnapshot {
    /// When the snapshot was taken (Unix ms).
    pub taken_at_ms: u64,
    pub orders: Vec<Order>,
    pub sessions: Vec<Session>,
    /// Order ids in the expiry index.
    pub expiry: Vec<String>,
    /// The kept per-status counts.
    pub counts: Vec<(OrderStatus, u64)>,
    /// The door's admission records.
    pub admissions: Vec<crate::order::Admission>,
}

#[derive(Clone)]
pub struct Store {
    db: SharedDb,
    queue: mpsc::Sender<Write>,
    /// Bumped after every commit: the admin's live view waits on it.
    commits: watch::Receiver<u64>,
    write_timeout_ms: u64,
}

/// Joins the writer thread once every `Store` clone is dropped: then everything acknowledged
/// has been committed.
pub struct WriterHandle(std::thread::JoinHandle<()>);

impl WriterHandle {
    pub fn join(self) {
        self.0.join().expect("store writer panicked");
    }
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &'static str) -> anyhow::Result<T> {
    serde_json::from_slice(bytes).with_context(|| format!("decoding {what}"))
}

impl Store {
    pub fn open(path: &Path, metrics: Arc<Metrics>) -> anyhow::Result<(Store, WriterHandle)> {
        Store::open_with_cache(path, metrics, CACHE_BYTES)
    }

    /// `cache_bytes`: redb's page cache (`--store-cache-mib`).
    pub fn open_with_cache(
        path: &Path,
        metrics: Arc<Metrics>,
        cache_bytes: usize,
    ) -> anyhow::Result<(Store, WriterHandle)> {
        Store::open_with_checkpoints(path, metrics, cache_bytes, CHECKPOINT_LOG_BYTES)
    }

    /// `checkpoint_log_bytes`: the redo log's size that triggers a checkpoint (tests make it small).
    pub fn open_with_checkpoints(
        path: &Path,
        metrics: Arc<Metrics>,
        cache_bytes: usize,
        checkpoint_log_bytes: u64,
    ) -> anyhow::Result<(Store, WriterHandle)> {
        assert!(cache_bytes >= CACHE_BYTES_MIN);
        assert!(checkpoint_log_bytes > 0);
        let Opened { db, log, seq } = open_store(path, cache_bytes, checkpoint_log_bytes)?;
        let db: SharedDb = Arc::new(std::sync::RwLock::new(Some(Arc::new(db))));
        let (queue, receiver) = mpsc::channel(WRITE_QUEUE_MAX);
        let (commits_tx, commits) = watch::channel(0u64);
        let flusher = Flusher::spawn(path, commits.clone(), metrics.clone())?;
        let writer = Writer {
            db: db.clone(),
            path: path.to_path_buf(),
            cache_bytes,
            metrics,
            commits: commits_tx,
            log: Some(log),
            seq,
            checkpoint_log_bytes,
            flusher,
        };
        let handle = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run(receiver))
            .context("spawning the store writer")?;
        Ok((Store { db, queue, commits, write_timeout_ms: WRITE_TIMEOUT_MS }, WriterHandle(handle)))
    }

    /// The open database for a read; an error (503) while the writer reopens it.
    fn db(&self) -> anyhow::Result<Arc<Database>> {
        self.db
            .read()
            .expect("store lock poisoned")
            .clone()
            .ok_or_else(|| anyhow::anyhow!("store unavailable: reopening after a disk error"))
    }

    /// Queues a write and waits until it is durably committed, at most the write timeout.
    async fn write<T>(&self, write: Write, answer: oneshot::Receiver<Result<T, StoreError>>) -> Result<T, StoreError> {
        self.queue.try_send(write).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => StoreError::Busy,
            mpsc::error::TrySendError::Closed(_) => StoreError::Failed("store closed".into()),
        })?;
        let timeout = std::time::Duration::from_millis(self.write_timeout_ms);
        match tokio::time::timeout(timeout, answer).await {
            Ok(answer) => answer.unwrap_or_else(|_| Err(StoreError::Failed("store writer stopped".into()))),
            Err(_) => Err(StoreError::Timeout(self.write_timeout_ms)),
        }
    }

    /// Records a checkout: its session and its PENDING order (encoded here, by the caller's core).
    pub async fn checkout(&self, session: &Session, order: &Order) -> Result<(), StoreError> {
        assert_eq!(session.order_id, order.order_id);
        assert_eq!(session.psid, order.psid);
        assert_eq!(order.status, OrderStatus::Pending);
        assert_eq!((order.ticket_hold_id, order.goodie_hold_id), (session.ticket_hold_id, session.goodie_hold_id));
        let record = CheckoutRecord {
            psid: session.psid.clone(),
            order_id: order.order_id.clone(),
            expires_at_ms: session.expires_at_ms,
            session: serde_json::to_vec(session).expect("sessions encode"),
            order: serde_json::to_vec(order).expect("orders encode"),
        };
        let (answer, receiver) = Answer::new();
        self.write(Write::Checkout(record, answer), receiver).await
    }

    /// Records a payment event: its outcome if the order is still open (`None`: the event lost
    /// a race and is only remembered), and its id. `prepared`: the caller's encoding of the
    /// result, used if the order is still byte for byte what the caller read.
    pub async fn record_payment(
        &self,
        order_id: &str,
        event_key: &str,
        outcome: Option<Outcome>,
        prepared: Option<PreparedOrder>,
    ) -> Result<PaymentRecorded, StoreError> {
        let record = PaymentRecord { order_id: order_id.into(), event_key: event_key.into(), outcome, prepared };
        let (answer, receiver) = Answer::new();
        self.write(Write::Payment(record, answer), receiver).await
    }

    /// The sweeper's write: marks the orders of these expiry entries EXPIRED if they are still
    /// PENDING, and removes the entries. Answers how many orders expired.
    pub async fn expire(&self, due: Vec<(u64, String)>, now_ms: u64) -> Result<usize, StoreError> {
        let (answer, receiver) = Answer::new();
        self.write(Write::Expire { due, now_ms, answer }, receiver).await
    }

    /// Keeps a benchmark report under `name` (replacing one of that name). False when
    /// `BENCH_RESULTS_MAX` others are kept already.
    pub async fn save_bench_result(&self, name: String, report: Vec<u8>) -> Result<bool, StoreError> {
        let (answer, receiver) = Answer::new();
        self.write(Write::BenchResult { name, report, answer }, receiver).await
    }

    /// Retention (see `SESSION_RETENTION_MS`): deletes sessions made more than
    /// `session_retention_ms` before `now_ms` and expiry log entries older than
    /// `expired_log_retention_ms`, at most `PRUNE_BATCH_MAX` of each; answers how many of each.
    pub async fn prune(
        &self,
        now_ms: u64,
        session_retention_ms: u64,
        expired_log_retention_ms: u64,
    ) -> Result<(usize, usize), StoreError> {
        let (answer, receiver) = Answer::new();
        let write = Write::Prune {
            sessions_before_ms: now_ms.saturating_sub(session_retention_ms),
            expired_before_ms: now_ms.saturating_sub(expired_log_retention_ms),
            max: PRUNE_BATCH_MAX,
            answer,
        };
        self.write(write, receiver).await
    }

    /// Waits until every write queued so far is committed (used at shutdown).
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (answer, receiver) = Answer::new();
        self.write(Write::Flush(answer), receiver).await
    }

    /// Changes after every commit.
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.commits.clone()
    }

    pub fn session(&self, psid: &str) -> anyhow::Result<Option<Session>> {
        let tx = self.db()?.begin_read()?;
        let table = tx.open_table(SESSIONS)?;
        table.get(psid)?.map(|v| decode(v.value(), "session")).transpose()
    }

    pub fn order(&self, order_id: &str) -> anyhow::Result<Option<Order>> {
        let tx = self.db()?.begin_read()?;
        let table = tx.open_table(ORDERS)?;
        table.get(order_id)?.map(|v| decode(v.value(), "order")).transpose()
    }

    /// What a webhook needs: the order and its record as stored (the writer applies the payment
    /// only if the record is still exactly this).
    pub fn payment_order(&self, order_id: &str) -> anyhow::Result<Option<(Order, Vec<u8>)>> {
        let tx = self.db()?.begin_read()?;
        let table = tx.open_table(ORDERS)?;
        Ok(match table.get(order_id)? {
            Some(v) => Some((decode(v.value(), "order")?, v.value().to_vec())),
            None => None,
        })
    }

    /// Open holds whose expiry is at or before `now_ms`, oldest first, at most `limit`.
    pub fn due_expiries(&self, now_ms: u64, limit: usize) -> anyhow::Result<Vec<(u64, String)>> {
        let tx = self.db()?.begin_read()?;
        let table = tx.open_table(EXPIRY)?;
        let mut due = Vec::new();
        for entry in table.range((0u64, "")..(now_ms.saturating_add(1), ""))?.take(limit) {
            let (key, _) = entry?;
            let (at, order_id) = key.value();
            due.push((at, order_id.to_string()));
        }
        Ok(due)
    }

    /// How many orders are in each status (kept up to date by every write, O(1) to read).
    pub fn order_counts(&self) -> anyhow::Result<Vec<(OrderStatus, u64)>> {
        let tx = self.db()?.begin_read()?;
        let table = tx.open_table(COUNTS)?;
        let mut out = Vec::with_capacity(OrderStatus::ALL.len());
        for status in OrderStatus::ALL {
            out.push((status, table.get(status.as_str())?.map(|v| v.value()).unwrap_or(0)));
        }
        Ok(out)
    }

    /// One consistent snapshot of everything an audit compares with the ledger.
    pub fn audit_snapshot(&self) -> anyhow::Result<AuditSnapshot> {
        let taken_at_ms = crate::clock::now_ms();
        let tx = self.db()?.begin_read()?;
        let mut snapshot = AuditSnapshot { taken_at_ms, ..AuditSnapshot::default() };
        for entry in tx.open_table(ORDERS)?.iter()? {
            snapshot.orders.push(decode(entry?.1.value(), "order")?);
        }
        for entry in tx.open_table(SESSIONS)?.iter()? {
            snapshot.sessions.push(decode(entry?.1.value(), "session")?);
        }
        for entry in tx.open_table(EXPIRY)?.iter()? {
            let (k, _) = entry?;
            snapshot.expiry.push(k.value().1.to_string());
        }
        for entry in tx.open_table(ADMISSIONS)?.iter()? {
            snapshot.admissions.push(decode(entry?.1.value(), "admission")?);
        }
        let counts = tx.open_table(COUNTS)?;
        for status in OrderStatus::ALL {
            snapshot.counts.push((status, counts.get(status.as_str())?.map(|v| v.value()).unwrap_or(0)));
        }
        Ok(snapshot)
    }

    /// Newest orders first, optionally only one status and/or matching `query` (a substring of
    /// the email, the ticket code or the order id, case-insensitive).
    pub fn recent_orders(
        &self,
        limit: usize,
        status: Option<OrderStatus>,
        query: Option<&str>,
    ) -> anyhow::Result<Vec<Order>> {
        let limit = limit.min(ADMIN_LIST_MAX);
        let query = query.map(str::to_lowercase).filter(|q| !q.is_empty());
        let tx = self.db()?.begin_read()?;
        let table = tx.open_table(ORDERS)?;
        let mut out = Vec::new();
        for entry in table.iter()?.rev().take(ADMIN_SCAN_MAX) {
            if out.len() >= limit {
                break;
            }
            let order: Order = decode(entry?.1.value(), "order")?;
            if status.is_some_and(|s| s != order.status) {
                continue;
            }
            if let Some(q) = &query {
                let code = order.ticket_code.as_deref().unwrap_or("").to_lowercase();
                let matches = order.email.to_lowercase().contains(q.as_str())
                    || code.contains(q.as_str())
                    || order.order_id.contains(q.as_str());
                if !matches {
                    continue;
                }
            }
            out.push(order);
        }
        Ok(out)
    }

    /// Open holds, soonest to expire last (newest first), with their orders. The expiry index
    /// also holds paid and failed orders until the sweeper reaches them: those are skipped,
    /// looking at most `HOLDS_SCAN_MAX` entries back.
    pub fn active_holds(&self, limit: usize) -> anyhow::Result<Vec<(u64, Order)>> {
        self.newest_with_orders(EXPIRY, limit, HOLDS_SCAN_MAX, Some(OrderStatus::Pending))
    }

    /// The most recent expiries, newest first.
    pub fn recent_expired(&self, limit: usize) -> anyhow::Result<Vec<(u64, Order)>> {
        self.newest_with_orders(EXPIRED_LOG, limit, limit, None)
    }

    /// The last entries of a `(time, order id)` index, newest first, joined with their orders
    /// (only those in `status`, if given): at most `limit`, looking at most `scan_max` back.
    fn newest_with_orders(
        &self,
        index: TableDefinition<(u64, &str), ()>,
        limit: usize,
        scan_max: usize,
        status: Option<OrderStatus>,
    ) -> anyhow::Result<Vec<(u64, Order)>> {
        let limit = limit.min(ADMIN_LIST_MAX);
        let tx = self.db()?.begin_read()?;
        let index = tx.open_table(index)?;
        let orders = tx.open_table(ORDERS)?;
        let mut out = Vec::new();
        for entry in index.iter()?.rev().take(scan_max.max(limit)) {
            if out.len() == limit {
                break;
            }
            let (key, _) = entry?;
            let (at_ms, order_id) = key.value();
            let Some(v) = orders.get(order_id)? else { continue };
            if let Some(status) = status {
                let StatusOnly { status: current } = decode(v.value(), "order")?;
                if current != status {
                    continue;
                }
            }
            out.push((at_ms, decode(v.value(), "order")?));
        }
        Ok(out)
    }

    /// Uploaded benchmark reports, by name.
    pub fn bench_results(&self) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        let tx = self.db()?.begin_read()?;
        let table = tx.open_table(BENCH_RESULTS)?;
        let mut out = Vec::new();
        for entry in table.iter()?.take(BENCH_RESULTS_MAX) {
            let (k, v) = entry?;
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }
}

/// The door, the box office and the staff: admissions, refunds, the ticket code index, staff
/// accounts and the activity log; and the walks the exports stream.
impl Store {
    /// Records a ticket's admission (after the ledger's) and its activity entry; the first
    /// recorded stands (then the entry is not written either).
    pub async fn record_admission(
        &self,
        admission: Admission,
        entry: ActivityEntry,
    ) -> Result<AdmissionRecorded, StoreError> {
        let (answer, receiver) = Answer::new();
        self.write(Write::Admission(Box::new((admission, entry)), answer), receiver).await
    }

    /// Marks a paid order REFUNDED (after the ledger returned its units).
    pub async fn refund(&self, order_id: &str, refund: Refund) -> Result<RefundRecorded, StoreError> {
        let (answer, receiver) = Answer::new();
        self.write(Write::Refund { order_id: order_id.to_string(), refund, answer }, receiver).await
    }

    pub async fn change_staff(&self, op: StaffOp) -> Result<StaffChanged, StoreError> {
        let (answer, receiver) = Answer::new();
        self.write(Write::Staff(op, answer), receiver).await
    }

    /// Queues an activity entry without waiting for its commit (a door's refusals: the answer
    /// must not wait for a log line); false when the queue is full.
    pub fn log_activity_queued(&self, entry: ActivityEntry) -> bool {
        let (answer, _receiver) = Answer::new();
        self.queue.try_send(Write::Activity(entry, answer)).is_ok()
    }

    pub async fn log_activity(&self, entry: ActivityEntry) -> Result<(), StoreError> {
        let (answer, receiver) = Answer::new();
        self.write(Write::Activity(entry, answer), receiver).await
    }

    pub fn admission(&self, order_id: &str) -> anyhow::Result<Option<Admission>> {
        let tx = self.db()?.begin_read()?;
        let table = tx.open_table(ADMISSIONS)?;
        table.get(order_id)?.map(|v| decode(v.value(), "admission")).transpose()
    }

    /// The order a ticket code belongs to.
    pub fn ticket_order(&self, ticket_code: &str) -> anyhow::Result<Option<String>> {
        let tx = self.db()?.begin_read()?;
        let table = tx.open_table(TICKETS)?;
        Ok(table.get(ticket_code)?.map(|v| v.value().to_string()))
    }

    pub fn staff(&self, name: &str) -> anyhow::Result<Option<StaffRecord>> {
        let tx = self.db()?.begin_read()?;
        let table = tx.open_table(STAFF)?;
        table.get(name)?.map(|v| decode(v.value(), "staff record")).transpose()
    }

    pub fn staff_name(&self, number: u32) -> anyhow::Result<Option<String>> {
        let tx = self.db()?.begin_read()?;
        let table = tx.open_table(STAFF_NUMBERS)?;
        Ok(table.get(number)?.map(|v| v.value().to_string()))
    }

    /// Every staff account, removed ones included (at most `STAFF_MAX`).
    pub fn staff_list(&self) -> anyhow::Result<Vec<StaffRecord>> {
        let tx = self.db()?.begin_read()?;
        let table = tx.open_table(STAFF)?;
        let mut out = Vec::new();
        for entry in table.iter()?.take(STAFF_MAX) {
            out.push(decode(entry?.1.value(), "staff record")?);
        }
        Ok(out)
    }

    /// The newest activity entries first, at most `limit` (and `ADMIN_LIST_MAX`).
    pub fn recent_activity(&self, limit: usize) -> anyhow::Result<Vec<ActivityEntry>> {
        let tx = self.db()?.begin_read()?;
        let table = tx.open_table(ACTIVITY)?;
        let mut out = Vec::new();
        for entry in table.iter()?.rev().take(limit.min(ADMIN_LIST_MAX)) {
            out.push(decode(entry?.1.value(), "activity entry")?);
        }
        Ok(out)
    }

    /// Calls `each` with every record of a table, in key order, in one snapshot, until it
    /// answers false (the exports: one record in memory at a time).
    fn each<K: redb::Key + 'static, T: serde::de::DeserializeOwned>(
        &self,
        table: TableDefinition<K, &[u8]>,
        what: &'static str,
        mut each: impl FnMut(T) -> bool,
    ) -> anyhow::Result<()> {
        let tx = self.db()?.begin_read()?;
        for entry in tx.open_table(table)?.iter()? {
            if !each(decode(entry?.1.value(), what)?) {
                break;
            }
        }
        Ok(())
    }

    /// Every order, oldest first (see `each`).
    pub fn each_order(&self, each: impl FnMut(Order) -> bool) -> anyhow::Result<()> {
        self.each(ORDERS, "order", each)
    }

    /// Every admission, by order id (see `each`).
    pub fn each_admission(&self, each: impl FnMut(Admission) -> bool) -> anyhow::Result<()> {
        self.each(ADMISSIONS, "admission", each)
    }

    /// Every activity entry, oldest first (see `each`).
    pub fn each_activity(&self, each: impl FnMut(ActivityEntry) -> bool) -> anyhow::Result<()> {
        self.each(ACTIVITY, "activity entry", each)
    }
}

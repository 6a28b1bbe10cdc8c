//! The redb store: payment sessions (hot) and orders (cold), each order with the ids of the
//! webhook events it has seen.
//!
//! One writer thread *group-commits*: it takes every write waiting in its queue, applies them in
//! one transaction, makes that durable once (the group's changes appended to the redo log and
//! fdatasynced, see `redo`), commits, and only then answers each waiter. So a 200 on a checkout or
//! a webhook means its write is on disk, while the sync is shared by everyone who arrived during
//! the previous one. Reads use redb's MVCC snapshots and never wait for the writer; they only
//! ever see groups already in the log.
//!
//! On disk the store is two files: `NAME.redb` (redb, made durable at checkpoints) and
//! `NAME.redo` (the redo log since the last checkpoint). Opening the store replays the log.

mod flusher;
mod redo;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;
use flusher::Flusher;
use redo::{Op, Ops, RedoLog};

/// psid → Session (JSON).
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
/// order id → Order (JSON).
const ORDERS: TableDefinition<&str, &[u8]> = TableDefinition::new("orders");
/// (expires_at_ms, order id) → (): holds by expiry, for the sweeper. Every PENDING order has its
/// entry. A payment leaves it in place, and the sweeper removes it when it falls due (skipping the
/// order if it is final by then): payments arrive in any order, so removing entries there dirtied
/// a page of this B-tree per payment in every group commit, while the sweeper removes a run of
/// neighbouring keys.
const EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("expiry");
/// order status → number of orders in it, kept in the same transactions as the orders.
const COUNTS: TableDefinition<&str, u64> = TableDefinition::new("order_counts");
/// (expired_at_ms, order id) → (): the sweeper's log, for the admin's "recent expiries".
const EXPIRED_LOG: TableDefinition<(u64, &str), ()> = TableDefinition::new("expired_log");
/// result name → a `tigerfans bench --json` report, for the bench page.
const BENCH_RESULTS: TableDefinition<&str, &[u8]> = TableDefinition::new("bench_results");
/// `REDO_SEQ` → the seq of the last redo record this database holds: replay skips those.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const REDO_SEQ: &str = "redo_seq";

/// Table ids in redo records. Never renumber: a log written by one version may be replayed by
/// the next.
mod table_id {
    pub const SESSIONS: u8 = 1;
    pub const ORDERS: u8 = 2;
    pub const EXPIRY: u8 = 3;
    pub const COUNTS: u8 = 4;
    pub const EXPIRED_LOG: u8 = 5;
    pub const BENCH_RESULTS: u8 = 6;
}

/// Admin listings scan at most this many records per request.
pub const ADMIN_SCAN_MAX: usize = 100_000;
pub const ADMIN_LIST_MAX: usize = 500;
/// The admin's list of open holds looks at most this many expiry entries back (paid and failed
/// orders stay in the expiry index until the sweeper reaches them). Every live admin view reads
/// it each second, on the HTTP workers: 2,000 status-only decodes is a few ms. After a rush
/// mostly paid, older open holds can be beyond it; the inventory's counts stay exact.
pub const HOLDS_SCAN_MAX: usize = 2_000;
pub const BENCH_RESULTS_MAX: usize = 100;

/// Writes waiting for the writer; beyond this, `submit` answers `Busy` (HTTP 503).
pub const WRITE_QUEUE_MAX: usize = 65_536;
/// Writes applied in one transaction at most.
pub const GROUP_COMMIT_WRITES_MAX: usize = 8_192;
/// redb's page cache (default of `--store-cache-mib`). redb's own default (1 GiB) is larger than
/// a small Pi can spare; hot sessions and recent orders fit in far less, and the OS page cache
/// still holds the rest of the file.
pub const CACHE_BYTES: usize = 16 * 1024 * 1024;
pub const CACHE_BYTES_MIN: usize = 1024 * 1024;
/// A checkpoint (one durable redb commit, then the redo log starts over) when the log since the
/// last one has grown this large, and at every clean stop. It bounds the replay after a crash
/// and the log file's size. There is no timed checkpoint: between them everything acknowledged
/// is durable in the log anyway, and a checkpoint stalls the writer for as long as it writes the
/// pages dirtied since the last one.
pub const CHECKPOINT_LOG_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Pending,
    Paid,
    PaidUnfulfilled,
    Failed,
    Canceled,
    Expired,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 6] = [
        OrderStatus::Pending,
        OrderStatus::Paid,
        OrderStatus::PaidUnfulfilled,
        OrderStatus::Failed,
        OrderStatus::Canceled,
        OrderStatus::Expired,
    ];

    fn index(self) -> usize {
        OrderStatus::ALL.iter().position(|s| *s == self).expect("listed")
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "PENDING",
            OrderStatus::Paid => "PAID",
            OrderStatus::PaidUnfulfilled => "PAID_UNFULFILLED",
            OrderStatus::Failed => "FAILED",
            OrderStatus::Canceled => "CANCELED",
            OrderStatus::Expired => "EXPIRED",
        }
    }

    /// A payment outcome may still change an order in these states: an expired hold can be
    /// booked late. Every other state is the order's final answer.
    pub fn is_open(self) -> bool {
        matches!(self, OrderStatus::Pending | OrderStatus::Expired)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub psid: String,
    pub order_id: String,
    pub cls: String,
    pub email: String,
    pub amount: u64,
    pub currency: String,
    pub ticket_hold_id: u128,
    /// `None` when the goodie pool refused the hold at checkout.
    pub goodie_hold_id: Option<u128>,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    pub order_id: String,
    pub psid: String,
    pub status: OrderStatus,
    pub cls: String,
    pub qty: u32,
    pub amount: u64,
    pub currency: String,
    pub email: String,
    pub created_at_ms: u64,
    pub paid_at_ms: Option<u64>,
    pub ticket_code: Option<String>,
    pub got_goodie: bool,
    /// Idempotency keys of the payment events recorded for this order, oldest first, at most
    /// `ORDER_EVENT_KEYS_MAX`. Kept in the order rather than in a table of their own: a webhook
    /// then rewrites one record (the keys are random, so a table of them scattered every group
    /// commit over the whole B-tree), and a storm for one order cannot grow the store.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_keys: Vec<String>,
    /// The holds a payment moves, copied from the session, so that a payment event reads one
    /// record instead of two (each a random B-tree lookup, most of a webhook's CPU in the server
    /// when the open orders outgrow the cache). 0 in orders written before the copy was kept: a
    /// webhook then reads them from the session.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ticket_hold_id: u128,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goodie_hold_id: Option<u128>,
}

fn is_zero(id: &u128) -> bool {
    *id == 0
}

/// Event ids an order remembers. Beyond this the oldest is forgotten: a very late replay of it
/// finds the order final and changes nothing anyway (answered with the order's status).
pub const ORDER_EVENT_KEYS_MAX: usize = 16;

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
}

/// Enough of an order's record to skip it without decoding all of it.
#[derive(Deserialize)]
struct StatusOnly {
    status: OrderStatus,
}

/// An order rewritten by its webhook handler, off the writer thread.
#[derive(Debug, Clone)]
pub struct PreparedOrder {
    /// The order's record as the handler read it.
    pub expected: Vec<u8>,
    /// The record after the event.
    pub updated: Vec<u8>,
    /// (before, after) when the status changed.
    pub changed: Option<(OrderStatus, OrderStatus)>,
    pub status: OrderStatus,
}

impl Order {
    /// Applies a payment event: its outcome if the order is still open, and its id to the
    /// remembered ones. Returns (before, after) if the status changed.
    pub fn apply_payment(&mut self, event_key: &str, outcome: Option<&Outcome>) -> Option<(OrderStatus, OrderStatus)> {
        assert!(!self.event_keys.iter().any(|k| k == event_key), "replays are answered before");
        let mut changed = None;
        if let Some(outcome) = outcome.filter(|_| self.status.is_open()) {
            changed = Some((self.status, outcome.status));
            self.status = outcome.status;
            self.paid_at_ms = outcome.paid_at_ms;
            self.ticket_code = outcome.ticket_code.clone();
            self.got_goodie = outcome.got_goodie;
        }
        let excess = (self.event_keys.len() + 1).saturating_sub(ORDER_EVENT_KEYS_MAX);
        self.event_keys.drain(..excess);
        self.event_keys.push(event_key.to_string());
        changed
    }

    /// The handler's side of a payment write: the order as read (`record`), rewritten.
    pub fn prepare_payment(&self, record: Vec<u8>, event_key: &str, outcome: Option<&Outcome>) -> PreparedOrder {
        let mut updated = self.clone();
        let changed = updated.apply_payment(event_key, outcome);
        PreparedOrder {
            expected: record,
            updated: serde_json::to_vec(&updated).expect("orders encode"),
            changed,
            status: updated.status,
        }
    }
}

/// What a payment event does to an order.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: OrderStatus,
    pub paid_at_ms: Option<u64>,
    pub ticket_code: Option<String>,
    pub got_goodie: bool,
}

#[derive(Debug)]
pub enum Write {
    /// A new session and its PENDING order, already encoded by the handler (encoding is spread
    /// over all cores; the single writer thread only inserts).
    Checkout { psid: String, order_id: String, expires_at_ms: u64, session: Vec<u8>, order: Vec<u8> },
    /// A payment event's outcome: applied only if the order is still open and the event is new.
    /// `outcome: None` records the event without changing the order (it lost a race).
    /// `prepared`: the handler's encoding of the result, valid if the order is still exactly as
    /// it read it (then the single writer thread only compares and inserts).
    Payment { order_id: String, event_key: String, outcome: Option<Outcome>, prepared: Option<PreparedOrder> },
    /// The sweeper: marks these orders EXPIRED if they are still PENDING.
    Expire { due: Vec<(u64, String)>, now_ms: u64 },
    /// A benchmark report uploaded to the bench page.
    BenchResult { name: String, report: Vec<u8> },
}

impl Write {
    pub fn checkout(session: &Session, order: &Order) -> Write {
        assert_eq!(session.order_id, order.order_id);
        assert_eq!(session.psid, order.psid);
        assert_eq!(order.status, OrderStatus::Pending);
        assert_eq!((order.ticket_hold_id, order.goodie_hold_id), (session.ticket_hold_id, session.goodie_hold_id));
        Write::Checkout {
            psid: session.psid.clone(),
            order_id: order.order_id.clone(),
            expires_at_ms: session.expires_at_ms,
            session: serde_json::to_vec(session).expect("sessions encode"),
            order: serde_json::to_vec(order).expect("orders encode"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteResult {
    Done,
    /// The order's status after the write.
    Order(OrderStatus),
    /// This event id was processed before.
    Replay,
    NotFound,
    Expired(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    Busy,
    Failed(String),
    /// Not committed within the write timeout: the outcome is unknown (it stays queued and may
    /// still commit), as after a crash.
    Timeout(u64),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Busy => write!(f, "store write queue is full"),
            StoreError::Failed(why) => write!(f, "store write failed: {why}"),
            StoreError::Timeout(ms) => write!(f, "store write not committed within {ms} ms (outcome unknown)"),
        }
    }
}

type Reply = oneshot::Sender<Result<WriteResult, StoreError>>;

/// The open database, shared by readers and the writer; `None` while the writer reopens it after
/// a failed commit (redb refuses everything after an I/O error until the file is reopened).
type SharedDb = Arc<std::sync::RwLock<Option<Arc<Database>>>>;

/// After a failed commit, the writer tries to reopen the store this often; writes in between
/// fail at once (503), so a full or read-only disk costs no waiting.
pub const REOPEN_INTERVAL_MS: u64 = 250;
/// Commits that keep failing right after a reopen (a full disk opens fine) back off up to this.
pub const REOPEN_INTERVAL_MS_MAX: u64 = 5_000;
/// How long `write` waits for its group commit. A commit takes about a millisecond and a
/// checkpoint tens; this bounds a disk that stalls (an SD card's garbage collection, a hung
/// mount), so a request answers 503 instead of hanging, and a webhook's order lock is let go.
pub const WRITE_TIMEOUT_MS: u64 = 10_000;

#[derive(Clone)]
pub struct Store {
    db: SharedDb,
    queue: mpsc::Sender<(Write, Reply)>,
    /// Bumped after every commit: the admin's live view waits on it.
    commits: tokio::sync::watch::Receiver<u64>,
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
        let (commits_tx, commits) = tokio::sync::watch::channel(0u64);
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
    pub async fn write(&self, write: Write) -> Result<WriteResult, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue.try_send((write, reply)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => StoreError::Busy,
            mpsc::error::TrySendError::Closed(_) => StoreError::Failed("store closed".into()),
        })?;
        let timeout = std::time::Duration::from_millis(self.write_timeout_ms);
        match tokio::time::timeout(timeout, answer).await {
            Ok(answer) => answer.unwrap_or_else(|_| Err(StoreError::Failed("store writer stopped".into()))),
            Err(_) => Err(StoreError::Timeout(self.write_timeout_ms)),
        }
    }

    pub fn session(&self, psid: &str) -> anyhow::Result<Option<Session>> {
        let tx = self.db()?.begin_read()?;
        let table = tx.open_table(SESSIONS)?;
        Ok(match table.get(psid)? {
            Some(v) => Some(serde_json::from_slice(v.value()).context("decoding session")?),
            None => None,
        })
    }

    pub fn order(&self, order_id: &str) -> anyhow::Result<Option<Order>> {
        let tx = self.db()?.begin_read()?;
        let table = tx.open_table(ORDERS)?;
        Ok(match table.get(order_id)? {
            Some(v) => Some(serde_json::from_slice(v.value()).context("decoding order")?),
            None => None,
        })
    }

    /// What a webhook needs: the order and its record as stored (the writer applies the payment
    /// only if the record is still exactly this).
    pub fn payment_order(&self, order_id: &str) -> anyhow::Result<Option<(Order, Vec<u8>)>> {
        let tx = self.db()?.begin_read()?;
        let table = tx.open_table(ORDERS)?;
        Ok(match table.get(order_id)? {
            Some(v) => Some((serde_json::from_slice(v.value()).context("decoding order")?, v.value().to_vec())),
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

    /// Every order, for audits and tests (a full scan: not for the hot path).
    pub fn orders(&self) -> anyhow::Result<Vec<Order>> {
        let tx = self.db()?.begin_read()?;
        let table = tx.open_table(ORDERS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (_, v) = entry?;
            out.push(serde_json::from_slice(v.value()).context("decoding order")?);
        }
        Ok(out)
    }

    /// One consistent snapshot of everything an audit compares with the ledger.
    pub fn audit_snapshot(&self) -> anyhow::Result<AuditSnapshot> {
        let taken_at_ms = crate::flow::now_ms();
        let tx = self.db()?.begin_read()?;
        let mut snapshot = AuditSnapshot { taken_at_ms, ..AuditSnapshot::default() };
        for entry in tx.open_table(ORDERS)?.iter()? {
            let (_, v) = entry?;
            snapshot.orders.push(serde_json::from_slice(v.value()).context("decoding order")?);
        }
        for entry in tx.open_table(SESSIONS)?.iter()? {
            let (_, v) = entry?;
            snapshot.sessions.push(serde_json::from_slice(v.value()).context("decoding session")?);
        }
        for entry in tx.open_table(EXPIRY)?.iter()? {
            let (k, _) = entry?;
            snapshot.expiry.push(k.value().1.to_string());
        }
        let counts = tx.open_table(COUNTS)?;
        for status in OrderStatus::ALL {
            snapshot.counts.push((status, counts.get(status.as_str())?.map(|v| v.value()).unwrap_or(0)));
        }
        Ok(snapshot)
    }

    /// Waits until every write queued so far is committed (used at shutdown).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.write(Write::Expire { due: Vec::new(), now_ms: 0 }).await.map(|_| ())
    }

    /// Changes after every commit.
    pub fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.commits.clone()
    }

    /// Newest orders first, optionally only one status and/or matching `query` (a substring of
    /// the email or the ticket code, case-insensitive).
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
            let (_, v) = entry?;
            let order: Order = serde_json::from_slice(v.value()).context("decoding order")?;
            if status.is_some_and(|s| s != order.status) {
                continue;
            }
            if let Some(q) = &query {
                let code = order.ticket_code.as_deref().unwrap_or("").to_lowercase();
                if !order.email.to_lowercase().contains(q.as_str()) && !code.contains(q.as_str()) {
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
                let StatusOnly { status: current } = serde_json::from_slice(v.value()).context("decoding order")?;
                if current != status {
                    continue;
                }
            }
            out.push((at_ms, serde_json::from_slice(v.value()).context("decoding order")?));
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

/// Whether a failed group commit failed in redb (I/O, a full disk, a poisoned database): then
/// the database must be reopened.
fn is_redb_error(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause.is::<redb::StorageError>()
            || cause.is::<redb::CommitError>()
            || cause.is::<redb::TransactionError>()
            || cause.is::<redb::TableError>()
            || cause.is::<redb::Error>()
    })
}

/// Webhook event ids had a table of their own before they moved into the orders.
const LEGACY_EVENTS: TableDefinition<&str, &str> = TableDefinition::new("events");

/// The redo log beside a store file: `tigerfans.redb` → `tigerfans.redo`.
pub fn redo_path(path: &Path) -> PathBuf {
    path.with_extension("redo")
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
    tx.open_table(META)?;
    tx.delete_table(LEGACY_EVENTS)?;
    tx.commit()?;
    Ok(db)
}

/// The open store: redb brought up to date with the redo log, and the log ready for the next
/// record.
struct Opened {
    db: Database,
    log: RedoLog,
    /// The seq of the last record the database holds.
    seq: u64,
}

/// Opens the store's two files, replays the redo records the database does not hold yet, and
/// checkpoints, so the log starts its next generation empty. The log is given the size a
/// generation reaches (`checkpoint_log_bytes` and an eighth for the group that crosses it) up
/// front; if it cannot be, it grows as it is written.
fn open_store(path: &Path, cache_bytes: usize, checkpoint_log_bytes: u64) -> anyhow::Result<Opened> {
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
            Op::Put { table: table_id::BENCH_RESULTS, key, value } => {
                bench_results.insert(text(key)?.as_str(), value)?;
            }
            other => anyhow::bail!("redo op {other:?} names no table that takes it"),
        }
    }
    Ok(())
}

/// A `(time, order id)` key as the redo log carries it.
fn time_key(at_ms: u64, order_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + order_id.len());
    key.extend_from_slice(&at_ms.to_be_bytes());
    key.extend_from_slice(order_id.as_bytes());
    key
}

struct Writer {
    db: SharedDb,
    path: std::path::PathBuf,
    cache_bytes: usize,
    metrics: Arc<Metrics>,
    commits: tokio::sync::watch::Sender<u64>,
    /// The redo log; `None` while the store is broken.
    log: Option<RedoLog>,
    /// The seq of the last redo record, in the log and in redb.
    seq: u64,
    /// `CHECKPOINT_LOG_BYTES` but in tests.
    checkpoint_log_bytes: u64,
    /// Syncs the redb file in the background, so checkpoints stall the writer less.
    flusher: Flusher,
}

/// Why the store cannot take writes, and what is left of the database that failed.
struct Broken {
    why: String,
    /// The failed database, until every reader has let go of it (then it closes its file).
    closing: Option<Arc<Database>>,
    retry_at: Instant,
}

/// How a group commit failed. Its writers are told it failed; in the `Reopen` case the group
/// may still be in the log and be replayed by the reopen (as after a crash right after it).
enum GroupError {
    /// The redo log could not be written and cut off what it wrote: this group failed, nothing
    /// else did; the next group may succeed (a disk with space again).
    Log(anyhow::Error),
    /// A redb error, or a log that could not be cut back: the store must be reopened.
    Reopen(anyhow::Error),
    /// A record that does not decode (a bug): this group fails, the database stays.
    Bug(anyhow::Error),
}

impl GroupError {
    fn store(e: anyhow::Error) -> GroupError {
        if is_redb_error(&e) {
            GroupError::Reopen(e)
        } else {
            GroupError::Bug(e)
        }
    }
}

impl Writer {
    fn run(mut self, mut receiver: mpsc::Receiver<(Write, Reply)>) {
        let mut group: Vec<(Write, Reply)> = Vec::with_capacity(GROUP_COMMIT_WRITES_MAX);
        let mut broken: Option<Broken> = None;
        // Failed commits since the last good one: paces reopening and logging.
        let mut failures: u32 = 0;
        loop {
            // Healthy: block for the next write. Broken: poll, so reopening goes on without writes.
            if broken.is_none() {
                match receiver.blocking_recv() {
                    Some(first) => group.push(first),
                    None => break,
                }
            } else {
                match receiver.try_recv() {
                    Ok(first) => group.push(first),
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                    Err(mpsc::error::TryRecvError::Empty) => std::thread::sleep(std::time::Duration::from_millis(10)),
                }
            }
            while !group.is_empty() && group.len() < GROUP_COMMIT_WRITES_MAX {
                match receiver.try_recv() {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            if let Some(state) = broken.take() {
                broken = self.reopen(state);
            }
            if let Some(state) = &broken {
                let why = format!("store unavailable after a disk error ({})", state.why);
                for (_, reply) in group.drain(..) {
                    let _ = reply.send(Err(StoreError::Failed(why.clone())));
                }
                continue;
            }
            if group.is_empty() {
                continue;
            }
            let db = self.db.read().expect("store lock poisoned").clone().expect("open while not broken");
            let started = Instant::now();
            let results = self.commit_group(&db, &group);
            self.metrics.store_commit_writes.observe(group.len() as u64);
            self.metrics.store_commit_us.observe(started.elapsed().as_micros() as u64);
            let failed = match results {
                Ok(results) => {
                    assert_eq!(results.len(), group.len());
                    if failures > 0 {
                        tracing::warn!(failed_commits = failures, "store commits succeed again");
                        failures = 0;
                    }
                    self.commits.send_modify(|n| *n += 1);
                    for ((_, reply), result) in group.drain(..).zip(results) {
                        let _ = reply.send(Ok(result));
                    }
                    match self.checkpoint_if_due(&db) {
                        Ok(()) => None,
                        Err(e) => Some(format!("checkpoint: {e:#}")),
                    }
                }
                Err(GroupError::Log(e)) => {
                    let why = format!("{e:#}");
                    failures += 1;
                    if failures.is_power_of_two() {
                        tracing::error!(error = %why, writes = group.len(), failures, "redo log write failed");
                    }
                    for (_, reply) in group.drain(..) {
                        let _ = reply.send(Err(StoreError::Failed(why.clone())));
                    }
                    None
                }
                Err(GroupError::Bug(e)) => {
                    // Not the storage (a record that does not decode: a bug): fail these writes,
                    // keep the database.
                    let why = format!("{e:#}");
                    tracing::error!(error = %why, writes = group.len(), "group commit failed");
                    for (_, reply) in group.drain(..) {
                        let _ = reply.send(Err(StoreError::Failed(why.clone())));
                    }
                    None
                }
                Err(GroupError::Reopen(e)) => {
                    let why = format!("{e:#}");
                    for (_, reply) in group.drain(..) {
                        let _ = reply.send(Err(StoreError::Failed(why.clone())));
                    }
                    Some(why)
                }
            };
            if let Some(why) = failed {
                failures += 1;
                if failures.is_power_of_two() {
                    tracing::error!(error = %why, failures, "store commit failed; reopening the store");
                }
                // redb answers every later transaction with PreviousIo until the file is
                // reopened. Readers get 503 meanwhile; nothing acknowledged is affected: it is in
                // the redo log, which the reopen replays.
                let closing = self.db.write().expect("store lock poisoned").take();
                drop(db);
                self.log = None;
                let backoff_ms = if failures == 1 {
                    0
                } else {
                    (REOPEN_INTERVAL_MS << (failures - 2).min(8)).min(REOPEN_INTERVAL_MS_MAX)
                };
                let retry_at = Instant::now() + std::time::Duration::from_millis(backoff_ms);
                broken = Some(Broken { why, closing, retry_at });
            }
        }
        // Every sender is gone: make redb durable, so the next start has nothing to replay.
        if broken.is_none() {
            let db = self.db.read().expect("store lock poisoned").clone().expect("open while not broken");
            if let Err(e) = self.checkpoint(&db) {
                tracing::error!(error = %format!("{e:#}"), "final store checkpoint failed (the redo log has it all)");
            }
        }
        self.flusher.stop();
    }

    /// Applies a group in one redb transaction, makes it durable in the redo log, then commits
    /// it (non-durable in redb: its pages stay in memory until a checkpoint).
    fn commit_group(&mut self, db: &Database, group: &[(Write, Reply)]) -> Result<Vec<WriteResult>, GroupError> {
        let store = GroupError::store;
        let mut tx = db.begin_write().map_err(|e| store(e.into()))?;
        tx.set_durability(Durability::None).map_err(|e| store(e.into()))?;
        let mut ops = Ops::default();
        let results = apply_group(&tx, group, &mut ops).map_err(store)?;
        if ops.as_bytes().is_empty() {
            // Nothing changed (a flush, replays, a sweep with nothing due): nothing to make durable.
            return Ok(results);
        }
        let seq = self.seq + 1;
        let mut meta = tx.open_table(META).map_err(|e| store(e.into()))?;
        meta.insert(REDO_SEQ, seq).map_err(|e| store(e.into()))?;
        drop(meta);
        let log = self.log.as_mut().expect("a log while not broken");
        // The transaction is dropped (aborted) if this fails.
        log.append(seq, &ops).map_err(|e| {
            if e.cut_off {
                GroupError::Log(e.error)
            } else {
                GroupError::Reopen(e.error)
            }
        })?;
        tx.commit().map_err(|e| store(e.into()))?;
        self.seq = seq;
        Ok(results)
    }

    fn checkpoint_if_due(&mut self, db: &Database) -> anyhow::Result<()> {
        if self.log.as_ref().expect("a log while not broken").position() >= self.checkpoint_log_bytes {
            self.checkpoint(db)?;
        }
        Ok(())
    }

    /// Makes redb durable (one durable commit writes every page dirtied since the last one,
    /// once), then starts the redo log over.
    fn checkpoint(&mut self, db: &Database) -> anyhow::Result<()> {
        let started = Instant::now();
        let tx = db.begin_write()?;
        tx.open_table(META)?.insert(REDO_SEQ, self.seq)?;
        tx.commit()?;
        self.log.as_mut().expect("a log while not broken").rewind();
        self.metrics.store_checkpoint_us.observe(started.elapsed().as_micros() as u64);
        Ok(())
    }

    /// One attempt to reopen the store; `None` when it is open again.
    fn reopen(&mut self, mut state: Broken) -> Option<Broken> {
        if Instant::now() < state.retry_at {
            return Some(state);
        }
        state.retry_at = Instant::now() + std::time::Duration::from_millis(REOPEN_INTERVAL_MS);
        if let Some(closing) = state.closing.take() {
            match Arc::try_unwrap(closing) {
                Ok(db) => drop(db),
                Err(still_read) => {
                    state.closing = Some(still_read);
                    return Some(state);
                }
            }
        }
        match open_store(&self.path, self.cache_bytes, self.checkpoint_log_bytes) {
            Ok(Opened { db, log, seq }) => {
                *self.db.write().expect("store lock poisoned") = Some(Arc::new(db));
                self.log = Some(log);
                self.seq = seq;
                tracing::info!(after = %state.why, "store reopened");
                None
            }
            Err(e) => {
                let why = format!("{e:#}");
                if why != state.why {
                    tracing::error!(error = %why, "store still unavailable");
                }
                state.why = why;
                Some(state)
            }
        }
    }
}

/// Applies a group of writes to one transaction and records their changes in `ops` for the redo
/// log. Either all commit or none.
fn apply_group(tx: &WriteTransaction, group: &[(Write, Reply)], ops: &mut Ops) -> anyhow::Result<Vec<WriteResult>> {
    let mut results = Vec::with_capacity(group.len());
    let mut deltas = [0i64; OrderStatus::ALL.len()];
    {
        let mut sessions = tx.open_table(SESSIONS)?;
        let mut orders = tx.open_table(ORDERS)?;
        let mut expiry = tx.open_table(EXPIRY)?;
        let mut expired_log = tx.open_table(EXPIRED_LOG)?;
        let mut bench_results = tx.open_table(BENCH_RESULTS)?;
        for (write, _) in group {
            let result = match write {
                Write::Checkout { psid, order_id, expires_at_ms, session, order } => {
                    sessions.insert(psid.as_str(), session.as_slice())?;
                    ops.put(table_id::SESSIONS, psid.as_bytes(), session);
                    orders.insert(order_id.as_str(), order.as_slice())?;
                    ops.put(table_id::ORDERS, order_id.as_bytes(), order);
                    expiry.insert((*expires_at_ms, order_id.as_str()), ())?;
                    ops.put(table_id::EXPIRY, &time_key(*expires_at_ms, order_id), &[]);
                    deltas[OrderStatus::Pending.index()] += 1;
                    WriteResult::Done
                }
                Write::Payment { order_id, event_key, outcome, prepared } => {
                    // Fast path: the order is byte for byte what the handler read (nothing else
                    // touched it meanwhile; the sweeper is the only other writer of orders).
                    let unchanged = match prepared {
                        Some(p) => orders.get(order_id.as_str())?.is_some_and(|v| v.value() == p.expected.as_slice()),
                        None => false,
                    };
                    if let (true, Some(p)) = (unchanged, prepared) {
                        if let Some((before, after)) = p.changed {
                            deltas[before.index()] -= 1;
                            deltas[after.index()] += 1;
                        }
                        orders.insert(order_id.as_str(), p.updated.as_slice())?;
                        ops.put(table_id::ORDERS, order_id.as_bytes(), &p.updated);
                        WriteResult::Order(p.status)
                    } else {
                        let current: Option<Order> = match orders.get(order_id.as_str())? {
                            Some(v) => Some(serde_json::from_slice(v.value())?),
                            None => None,
                        };
                        match current {
                            None => WriteResult::NotFound,
                            Some(order) if order.event_keys.iter().any(|k| k == event_key) => WriteResult::Replay,
                            Some(mut order) => {
                                if let Some((before, after)) = order.apply_payment(event_key, outcome.as_ref()) {
                                    deltas[before.index()] -= 1;
                                    deltas[after.index()] += 1;
                                }
                                let record = serde_json::to_vec(&order)?;
                                orders.insert(order_id.as_str(), record.as_slice())?;
                                ops.put(table_id::ORDERS, order_id.as_bytes(), &record);
                                WriteResult::Order(order.status)
                            }
                        }
                    }
                }
                Write::BenchResult { name, report } => {
                    if bench_results.len()? < BENCH_RESULTS_MAX as u64 || bench_results.get(name.as_str())?.is_some() {
                        bench_results.insert(name.as_str(), report.as_slice())?;
                        ops.put(table_id::BENCH_RESULTS, name.as_bytes(), report);
                        WriteResult::Done
                    } else {
                        WriteResult::NotFound
                    }
                }
                Write::Expire { due, now_ms } => {
                    let mut expired = 0;
                    for (at, order_id) in due {
                        if expiry.remove((*at, order_id.as_str()))?.is_some() {
                            ops.delete(table_id::EXPIRY, &time_key(*at, order_id));
                        }
                        // Most due entries are of orders paid or failed meanwhile: look at their
                        // status only.
                        let order: Option<Order> = match orders.get(order_id.as_str())? {
                            Some(v)
                                if serde_json::from_slice::<StatusOnly>(v.value())?.status == OrderStatus::Pending =>
                            {
                                Some(serde_json::from_slice(v.value())?)
                            }
                            _ => None,
                        };
                        if let Some(mut order) = order {
                            assert_eq!(order.status, OrderStatus::Pending);
                            order.status = OrderStatus::Expired;
                            deltas[OrderStatus::Pending.index()] -= 1;
                            deltas[OrderStatus::Expired.index()] += 1;
                            expired_log.insert((*now_ms, order_id.as_str()), ())?;
                            ops.put(table_id::EXPIRED_LOG, &time_key(*now_ms, order_id), &[]);
                            let record = serde_json::to_vec(&order)?;
                            orders.insert(order_id.as_str(), record.as_slice())?;
                            ops.put(table_id::ORDERS, order_id.as_bytes(), &record);
                            expired += 1;
                        }
                    }
                    WriteResult::Expired(expired)
                }
            };
            results.push(result);
        }
        let mut counts = tx.open_table(COUNTS)?;
        for (status, delta) in OrderStatus::ALL.iter().zip(deltas) {
            if delta != 0 {
                let current = counts.get(status.as_str())?.map(|v| v.value()).unwrap_or(0);
                let updated = current.checked_add_signed(delta).expect("order counts never go negative");
                counts.insert(status.as_str(), updated)?;
                ops.put(table_id::COUNTS, status.as_str().as_bytes(), &updated.to_le_bytes());
            }
        }
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("tigerfans-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn order_and_session(n: u32) -> (Session, Order) {
        let (psid, order_id) = (format!("ps_{n:04}"), format!("{n:032x}"));
        let session = Session {
            psid: psid.clone(),
            order_id: order_id.clone(),
            cls: "A".into(),
            email: "a@b.co".into(),
            amount: 1,
            currency: "EUR".into(),
            ticket_hold_id: 1,
            goodie_hold_id: None,
            created_at_ms: 1,
            expires_at_ms: 1000,
        };
        let order = Order {
            order_id,
            psid,
            status: OrderStatus::Pending,
            cls: "A".into(),
            qty: 1,
            amount: 1,
            currency: "EUR".into(),
            email: "a@b.co".into(),
            created_at_ms: 1,
            paid_at_ms: None,
            ticket_code: None,
            got_goodie: false,
            event_keys: Vec::new(),
            ticket_hold_id: 1,
            goodie_hold_id: None,
        };
        (session, order)
    }

    fn payment(order_id: &str, key: &str, status: OrderStatus) -> Write {
        Write::Payment {
            order_id: order_id.into(),
            event_key: key.into(),
            outcome: Some(Outcome { status, paid_at_ms: None, ticket_code: None, got_goodie: false }),
            prepared: None,
        }
    }

    /// Copies the store's two files as a kill -9 would leave them (from the page cache, so not a
    /// power loss): redb as of its last durable commit, the redo log with every acknowledged
    /// group since.
    fn crash_copy(from: &Path, to: &Path) {
        std::fs::copy(from, to).unwrap();
        std::fs::copy(redo_path(from), redo_path(to)).unwrap();
    }

    /// How many orders a store's redb file holds by itself, without its redo log: what
    /// checkpoints made durable.
    fn orders_without_the_log(path: &Path) -> usize {
        let bare = path.with_file_name("bare.redb");
        std::fs::copy(path, &bare).unwrap();
        let _ = std::fs::remove_file(redo_path(&bare));
        let (store, writer) = Store::open(&bare, Default::default()).unwrap();
        let orders = store.orders().unwrap().len();
        drop(store);
        writer.join();
        orders
    }

    #[tokio::test]
    async fn acknowledged_writes_survive_a_crash_before_any_checkpoint_through_the_redo_log() {
        let dir = scratch("redo");
        let path = dir.join("s.redb");
        let (store, writer) = Store::open(&path, Default::default()).unwrap();
        // One of every kind of write: checkouts, a payment, an expiry, a bench result.
        let mut ids = Vec::new();
        for n in 0..3 {
            let (mut session, mut order) = order_and_session(n);
            session.expires_at_ms = 1_000 + u64::from(n);
            order.email = format!("fan{n}@example.com");
            store.write(Write::checkout(&session, &order)).await.unwrap();
            ids.push(order.order_id);
        }
        store.write(payment(&ids[0], "e0", OrderStatus::Paid)).await.unwrap();
        let due = store.due_expiries(2_000, 10).unwrap();
        assert_eq!(due.len(), 3);
        assert_eq!(store.write(Write::Expire { due, now_ms: 2_000 }).await, Ok(WriteResult::Expired(2)));
        let report = b"{\"phases\":[]}".to_vec();
        store.write(Write::BenchResult { name: "run-1".into(), report: report.clone() }).await.unwrap();
        let before = store.audit_snapshot().unwrap();

        // The crash: the files as they are now (the log is far from a checkpoint).
        let crashed = dir.join("crashed.redb");
        crash_copy(&path, &crashed);
        // Without its redo log the database has none of it: the log is what made it durable.
        assert_eq!(orders_without_the_log(&path), 0, "redb alone is checkpointed only");

        let (replayed, replayed_writer) = Store::open(&crashed, Default::default()).unwrap();
        let after = replayed.audit_snapshot().unwrap();
        let orders = |s: &AuditSnapshot| s.orders.iter().map(|o| serde_json::to_string(o).unwrap()).collect::<Vec<_>>();
        let sessions =
            |s: &AuditSnapshot| s.sessions.iter().map(|o| serde_json::to_string(o).unwrap()).collect::<Vec<_>>();
        assert_eq!(orders(&after), orders(&before));
        assert_eq!(sessions(&after), sessions(&before));
        assert_eq!(after.expiry, before.expiry);
        assert_eq!(after.counts, before.counts);
        assert!(after.counts.contains(&(OrderStatus::Expired, 2)) && after.counts.contains(&(OrderStatus::Paid, 1)));
        assert_eq!(replayed.recent_expired(10).unwrap().len(), 2);
        assert_eq!(replayed.bench_results().unwrap(), vec![("run-1".to_string(), report)]);
        // Replayed and checkpointed: new writes follow, and a second crash replays only those.
        let (session, order) = order_and_session(9);
        replayed.write(Write::checkout(&session, &order)).await.unwrap();
        let again = dir.join("again.redb");
        crash_copy(&crashed, &again);
        let (second, second_writer) = Store::open(&again, Default::default()).unwrap();
        assert_eq!(second.orders().unwrap().len(), 4);
        assert_eq!(second.order(&order.order_id).unwrap().unwrap().status, OrderStatus::Pending);

        // A clean stop checkpoints: redb alone then holds everything.
        drop((store, replayed, second));
        writer.join();
        replayed_writer.join();
        second_writer.join();
        let stopped = dir.join("stopped.redb");
        std::fs::copy(&path, &stopped).unwrap();
        let (stopped_store, stopped_writer) = Store::open(&stopped, Default::default()).unwrap();
        assert_eq!(stopped_store.orders().unwrap().len(), 3);
        drop(stopped_store);
        stopped_writer.join();
        // Reopened with its own log, whose records the database already holds: none is applied
        // again, and the store takes new writes after them.
        let (reopened, reopened_writer) = Store::open(&path, Default::default()).unwrap();
        assert_eq!(reopened.audit_snapshot().unwrap().counts, before.counts);
        let (session, order) = order_and_session(10);
        reopened.write(Write::checkout(&session, &order)).await.unwrap();
        assert_eq!(reopened.orders().unwrap().len(), 4);
        drop(reopened);
        reopened_writer.join();

        // A log that does not belong to the database is refused, not half applied.
        let fresh = dir.join("fresh.redb");
        std::fs::copy(redo_path(&again), redo_path(&fresh)).unwrap();
        let refused = Store::open(&fresh, Default::default()).err().expect("a foreign log is refused");
        assert!(format!("{refused:#}").contains("do not belong together"), "{refused:#}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn checkpoints_make_redb_durable_and_a_crash_after_them_replays_only_the_rest() {
        let dir = scratch("checkpoints");
        let path = dir.join("s.redb");
        let metrics = Arc::new(Metrics::default());
        // A checkpoint once the log holds 2 KiB: every few checkouts here (23 of them, a
        // prime, so that the last few are in the log only, whatever a record's exact size).
        let (store, writer) = Store::open_with_checkpoints(&path, metrics.clone(), CACHE_BYTES, 2048).unwrap();
        let log_bytes = std::fs::metadata(redo_path(&path)).unwrap().len();
        assert_eq!(log_bytes, 2048 + 2048 / 8, "the log is given a generation's size up front");
        for n in 0..23 {
            let (session, order) = order_and_session(n);
            store.write(Write::checkout(&session, &order)).await.unwrap();
        }
        let checkpoints = metrics.store_checkpoint_us.count();
        assert!(checkpoints >= 3, "{checkpoints} checkpoints");
        let before = store.audit_snapshot().unwrap();
        let crashed = dir.join("crashed.redb");
        crash_copy(&path, &crashed);
        let checkpointed = orders_without_the_log(&path);
        assert!((10..23).contains(&checkpointed), "redb alone holds what was checkpointed: {checkpointed}");
        let (replayed, replayed_writer) = Store::open(&crashed, Default::default()).unwrap();
        let after = replayed.audit_snapshot().unwrap();
        assert_eq!(after.orders.len(), 23);
        assert_eq!((after.expiry, after.counts), (before.expiry, before.counts));
        drop((store, replayed));
        writer.join();
        replayed_writer.join();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The background flusher syncs the redb file after commits, not while the store is idle, and
    /// the writer's end stops it (a flusher that ignored its stop would hang `join`).
    #[tokio::test]
    async fn the_flusher_syncs_the_redb_file_after_commits_only() {
        let dir = scratch("flusher");
        let metrics = Arc::new(Metrics::default());
        let (store, writer) = Store::open(&dir.join("s.redb"), metrics.clone()).unwrap();
        let interval = std::time::Duration::from_millis(flusher::FLUSH_INTERVAL_MS);
        tokio::time::sleep(interval * 3).await;
        assert_eq!(metrics.store_flush_us.count(), 0, "an idle store is not synced");
        let (session, order) = order_and_session(1);
        store.write(Write::checkout(&session, &order)).await.unwrap();
        let deadline = Instant::now() + interval * 10;
        while metrics.store_flush_us.count() == 0 {
            assert!(Instant::now() < deadline, "no background sync after a commit");
            tokio::time::sleep(interval / 10).await;
        }
        let synced = metrics.store_flush_us.count();
        tokio::time::sleep(interval * 3).await;
        assert_eq!(metrics.store_flush_us.count(), synced, "no new commit, no new sync");
        drop(store);
        writer.join();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    #[allow(clippy::await_holding_lock)] // holding the lock across the write is the point
    async fn a_write_not_committed_in_time_answers_timeout_and_may_still_commit() {
        let dir = scratch("timeout");
        let (store, writer) = Store::open(&dir.join("s.redb"), Default::default()).unwrap();
        let impatient = Store { write_timeout_ms: 50, ..store.clone() };
        let (session, order) = order_and_session(3);
        // The stand-in for a disk that stalls: the writer waits for the database handle, which
        // this test holds (as a reopen after a disk error would).
        let stalled = store.db.write().unwrap();
        assert_eq!(impatient.write(Write::checkout(&session, &order)).await, Err(StoreError::Timeout(50)));
        assert!(StoreError::Timeout(50).to_string().contains("outcome unknown"));
        drop(stalled);
        // The write stayed queued: its outcome was unknown, not failed.
        store.flush().await.unwrap();
        assert_eq!(store.order(&order.order_id).unwrap().unwrap().status, OrderStatus::Pending);
        drop((store, impatient));
        writer.join();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn first_outcome_wins_replays_are_recognised_and_event_ids_stay_bounded() {
        let dir = scratch("events");
        let (store, writer) = Store::open(&dir.join("s.redb"), Default::default()).unwrap();
        let (session, order) = order_and_session(7);
        let id = order.order_id.clone();
        assert_eq!(store.write(Write::checkout(&session, &order)).await, Ok(WriteResult::Done));
        assert_eq!(store.write(payment(&id, "e0", OrderStatus::Paid)).await, Ok(WriteResult::Order(OrderStatus::Paid)));
        assert_eq!(store.write(payment(&id, "e0", OrderStatus::Paid)).await, Ok(WriteResult::Replay));
        // A later contradicting event is recorded but changes nothing.
        assert_eq!(
            store.write(payment(&id, "e1", OrderStatus::Failed)).await,
            Ok(WriteResult::Order(OrderStatus::Paid))
        );
        for i in 2..40 {
            store.write(payment(&id, &format!("e{i}"), OrderStatus::Failed)).await.unwrap();
        }
        let stored = store.order(&id).unwrap().unwrap();
        assert_eq!(stored.status, OrderStatus::Paid);
        assert_eq!(stored.event_keys.len(), ORDER_EVENT_KEYS_MAX, "a storm cannot grow an order without bound");
        assert_eq!(stored.event_keys.last().unwrap(), "e39");
        assert_eq!(store.write(payment(&id, "e39", OrderStatus::Failed)).await, Ok(WriteResult::Replay));
        // The counts followed the one real change; the expiry entry waits for the sweeper.
        let snapshot = store.audit_snapshot().unwrap();
        assert_eq!(snapshot.expiry, std::slice::from_ref(&id));
        assert!(
            snapshot.counts.contains(&(OrderStatus::Paid, 1)) && snapshot.counts.contains(&(OrderStatus::Pending, 0))
        );
        assert_eq!(store.write(payment("nope", "e", OrderStatus::Paid)).await, Ok(WriteResult::NotFound));

        // The handler-prepared fast path, and its fallback when the order changed underneath.
        let (session, order) = order_and_session(8);
        let id = order.order_id.clone();
        store.write(Write::checkout(&session, &order)).await.unwrap();
        let record = serde_json::to_vec(&order).unwrap();
        let stale = order.prepare_payment(b"not the record".to_vec(), "s1", None);
        let write = |key: &str, prepared: PreparedOrder, status: OrderStatus| Write::Payment {
            order_id: id.clone(),
            event_key: key.into(),
            outcome: Some(Outcome { status, paid_at_ms: None, ticket_code: None, got_goodie: false }),
            prepared: Some(prepared),
        };
        let outcome = Outcome { status: OrderStatus::Canceled, paid_at_ms: None, ticket_code: None, got_goodie: false };
        let fresh = order.prepare_payment(record, "p1", Some(&outcome));
        assert_eq!(fresh.changed, Some((OrderStatus::Pending, OrderStatus::Canceled)));
        assert_eq!(
            store.write(write("p1", fresh, OrderStatus::Canceled)).await,
            Ok(WriteResult::Order(OrderStatus::Canceled))
        );
        // Stale bytes: the writer decodes the current order and applies the event itself.
        assert_eq!(
            store.write(write("s1", stale, OrderStatus::Paid)).await,
            Ok(WriteResult::Order(OrderStatus::Canceled))
        );
        let stored = store.order(&id).unwrap().unwrap();
        assert_eq!((stored.status, stored.event_keys.clone()), (OrderStatus::Canceled, vec!["p1".into(), "s1".into()]));
        let counts = store.audit_snapshot().unwrap().counts;
        assert!(counts.contains(&(OrderStatus::Canceled, 1)) && counts.contains(&(OrderStatus::Pending, 0)));
        drop(store);
        writer.join();
        let _ = std::fs::remove_dir_all(&dir);
    }
}

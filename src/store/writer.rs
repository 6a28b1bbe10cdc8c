//! The group-commit writer: one thread takes every write waiting in the queue, applies them in
//! one transaction (`apply`), makes the group durable in the redo log, commits, and only then
//! answers each writer. After a failed commit it reopens the store (redb refuses everything after
//! an I/O error until the file is reopened) and fails writes at once until it can.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use redb::{Database, Durability};
use tokio::sync::{mpsc, watch};

use super::apply::apply_group;
use super::flusher::Flusher;
use super::redo::{Ops, RedoLog};
use super::schema::{is_redb_error, open_store, Opened, META, REDO_SEQ};
use super::write::{StoreError, Write};
use crate::metrics::Metrics;

/// Writes applied in one transaction at most.
pub const GROUP_COMMIT_WRITES_MAX: usize = 8_192;
/// A checkpoint (one durable redb commit, then the redo log starts over) when the log since the
/// last one has grown this large, and at every clean stop. It bounds the replay after a crash
/// and the log file's size. There is no timed checkpoint: between them everything acknowledged
/// is durable in the log anyway, and a checkpoint stalls the writer for as long as it writes the
/// pages dirtied since the last one.
pub const CHECKPOINT_LOG_BYTES: u64 = 64 * 1024 * 1024;
/// After a failed commit, the writer tries to reopen the store this often; writes in between
/// fail at once (503), so a full or read-only disk costs no waiting.
pub const REOPEN_INTERVAL_MS: u64 = 250;
/// Commits that keep failing right after a reopen (a full disk opens fine) back off up to this.
pub const REOPEN_INTERVAL_MS_MAX: u64 = 5_000;
/// While broken, the writer looks for new writes (and retries the reopen) this often.
const BROKEN_POLL_MS: u64 = 10;

/// The open database, shared by readers and the writer; `None` while the writer reopens it after
/// a failed commit.
pub type SharedDb = Arc<RwLock<Option<Arc<Database>>>>;

pub struct Writer {
    pub db: SharedDb,
    pub path: PathBuf,
    pub cache_bytes: usize,
    pub metrics: Arc<Metrics>,
    /// Bumped after every commit.
    pub commits: watch::Sender<u64>,
    /// The redo log; `None` while the store is broken.
    pub log: Option<RedoLog>,
    /// The seq of the last redo record, in the log and in redb.
    pub seq: u64,
    /// `CHECKPOINT_LOG_BYTES` but in tests.
    pub checkpoint_log_bytes: u64,
    /// Syncs the redb file in the background, so checkpoints stall the writer less.
    pub flusher: Flusher,
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

fn fail_all(group: &mut Vec<Write>, why: &str) {
    for write in group.drain(..) {
        write.fail(StoreError::Failed(why.to_string()));
    }
}

impl Writer {
    /// Runs until every sender is gone, then checkpoints (nothing to replay at the next start).
    pub fn run(mut self, mut receiver: mpsc::Receiver<Write>) {
        let mut group: Vec<Write> = Vec::with_capacity(GROUP_COMMIT_WRITES_MAX);
        let mut broken: Option<Broken> = None;
        // Failed commits since the last good one: paces reopening and logging.
        let mut failures: u32 = 0;
        while next_group(&mut receiver, &mut group, broken.is_some()) {
            assert!(group.len() <= GROUP_COMMIT_WRITES_MAX);
            if let Some(state) = broken.take() {
                broken = self.reopen(state);
            }
            if let Some(state) = &broken {
                fail_all(&mut group, &format!("store unavailable after a disk error ({})", state.why));
                continue;
            }
            if group.is_empty() {
                continue;
            }
            if let Some(why) = self.commit_and_answer(&mut group, &mut failures) {
                broken = Some(self.break_down(why, &mut failures));
            }
            assert!(group.is_empty(), "every write of a group is answered");
        }
        if broken.is_none() {
            let db = self.db.read().expect("store lock poisoned").clone().expect("open while not broken");
            if let Err(e) = self.checkpoint(&db) {
                tracing::error!(error = %format!("{e:#}"), "final store checkpoint failed (the redo log has it all)");
            }
        }
        self.flusher.stop();
    }

    /// Commits a group and answers its writers. `Some(why)` when the store must be reopened.
    fn commit_and_answer(&mut self, group: &mut Vec<Write>, failures: &mut u32) -> Option<String> {
        let db = self.db.read().expect("store lock poisoned").clone().expect("open while not broken");
        let started = Instant::now();
        let committed = self.commit_group(&db, group);
        self.metrics.store_commit_writes.observe(group.len() as u64);
        self.metrics.store_commit_us.observe(started.elapsed().as_micros() as u64);
        match committed {
            Ok(()) => {
                if *failures > 0 {
                    tracing::warn!(failed_commits = *failures, "store commits succeed again");
                    *failures = 0;
                }
                self.commits.send_modify(|n| *n += 1);
                group.drain(..).for_each(Write::commit);
                self.checkpoint_if_due(&db).err().map(|e| format!("checkpoint: {e:#}"))
            }
            Err(GroupError::Log(e)) => {
                let why = format!("{e:#}");
                *failures += 1;
                if failures.is_power_of_two() {
                    tracing::error!(error = %why, writes = group.len(), failures = *failures, "redo log write failed");
                }
                fail_all(group, &why);
                None
            }
            Err(GroupError::Bug(e)) => {
                // Not the storage (a record that does not decode: a bug): fail these writes,
                // keep the database.
                let why = format!("{e:#}");
                tracing::error!(error = %why, writes = group.len(), "group commit failed");
                fail_all(group, &why);
                None
            }
            Err(GroupError::Reopen(e)) => {
                let why = format!("{e:#}");
                fail_all(group, &why);
                Some(why)
            }
        }
    }

    /// Closes the failed database: redb answers every later transaction with PreviousIo until
    /// the file is reopened. Readers get 503 meanwhile; nothing acknowledged is affected: it is
    /// in the redo log, which the reopen replays.
    fn break_down(&mut self, why: String, failures: &mut u32) -> Broken {
        *failures += 1;
        if failures.is_power_of_two() {
            tracing::error!(error = %why, failures = *failures, "store commit failed; reopening the store");
        }
        let closing = self.db.write().expect("store lock poisoned").take();
        self.log = None;
        let backoff_ms =
            if *failures == 1 { 0 } else { (REOPEN_INTERVAL_MS << (*failures - 2).min(8)).min(REOPEN_INTERVAL_MS_MAX) };
        Broken { why, closing, retry_at: Instant::now() + Duration::from_millis(backoff_ms) }
    }

    /// Applies a group in one redb transaction, makes it durable in the redo log, then commits
    /// it (non-durable in redb: its pages stay in memory until a checkpoint).
    fn commit_group(&mut self, db: &Database, group: &mut [Write]) -> Result<(), GroupError> {
        let store = GroupError::store;
        let mut tx = db.begin_write().map_err(|e| store(e.into()))?;
        tx.set_durability(Durability::None).map_err(|e| store(e.into()))?;
        let mut ops = Ops::default();
        apply_group(&tx, group, &mut ops).map_err(store)?;
        if ops.as_bytes().is_empty() {
            // Nothing changed (a flush, replays, a sweep with nothing due): nothing to make durable.
            return Ok(());
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
        Ok(())
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
        state.retry_at = Instant::now() + Duration::from_millis(REOPEN_INTERVAL_MS);
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

/// Fills `group` with the next writes: healthy, it blocks for the first; broken, it polls, so
/// reopening goes on without writes. False once every sender is gone.
fn next_group(receiver: &mut mpsc::Receiver<Write>, group: &mut Vec<Write>, broken: bool) -> bool {
    assert!(group.is_empty());
    if !broken {
        match receiver.blocking_recv() {
            Some(first) => group.push(first),
            None => return false,
        }
    } else {
        match receiver.try_recv() {
            Ok(first) => group.push(first),
            Err(mpsc::error::TryRecvError::Disconnected) => return false,
            Err(mpsc::error::TryRecvError::Empty) => std::thread::sleep(Duration::from_millis(BROKEN_POLL_MS)),
        }
    }
    while !group.is_empty() && group.len() < GROUP_COMMIT_WRITES_MAX {
        match receiver.try_recv() {
            Ok(next) => group.push(next),
            Err(_) => break,
        }
    }
    true
}

//! A background `fdatasync` of the redb file, so that a checkpoint finds little left to sync.
//!
//! Between checkpoints the writer commits to redb without durability. redb writes the pages that
//! no longer fit its cache into the file, and Linux keeps them dirty in its page cache (for up to
//! 30 s, or until gigabytes are dirty). A checkpoint's durable commit, and redb's sync when the
//! file grows, then waited for all of them at once, on the writer thread, with every write queued
//! behind it: 50 to 150 ms each under random-order payments (measured), which was most of the
//! webhooks' p99. This thread syncs the file every `FLUSH_INTERVAL_MS` while groups are being
//! committed, so those syncs find only what the last interval dirtied.
//!
//! Only an optimization: durability comes from the redo log and from the checkpoint's own sync. A
//! failed sync here is logged and otherwise ignored; Linux reports a writeback error to every file
//! description open on the file, so redb's own sync at the next checkpoint sees it as well.

use std::fs::File;
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::metrics::Metrics;

/// How often the redb file is synced while it is being written. Shorter intervals write pages
/// that are rewritten often (branch pages) to disk more often; longer ones leave more for the
/// checkpoint. Measured at 500 ms: checkpoints stalled the writer 35 to 40% less at 12,000
/// random-order payments/s, and 40 to 60% less at the soak's 5,000 flows/s.
pub const FLUSH_INTERVAL_MS: u64 = 500;

pub struct Flusher {
    /// Never sent on: dropping it stops the thread at once.
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Flusher {
    /// Starts syncing the redb file at `path`. `commits` counts the writer's group commits: the
    /// file is synced only when it moved since the last sync, so an idle store costs nothing.
    pub fn spawn(
        path: &Path,
        commits: tokio::sync::watch::Receiver<u64>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Flusher> {
        // Read-only is enough for fdatasync, and takes none of redb's locks.
        let file = File::open(path).with_context(|| format!("opening {} for background syncs", path.display()))?;
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("store-flusher".into())
            .spawn(move || run(&file, &commits, &stopped, &metrics))
            .context("spawning the store flusher")?;
        Ok(Flusher { stop, thread })
    }

    /// Stops the thread and waits for it (at most one sync in progress).
    pub fn stop(self) {
        drop(self.stop);
        self.thread.join().expect("store flusher panicked");
    }
}

fn run(file: &File, commits: &tokio::sync::watch::Receiver<u64>, stopped: &mpsc::Receiver<()>, metrics: &Metrics) {
    let interval = Duration::from_millis(FLUSH_INTERVAL_MS);
    let mut synced_at_commit = *commits.borrow();
    let mut failing = false;
    loop {
        match stopped.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let commit = *commits.borrow();
        if commit == synced_at_commit {
            continue;
        }
        let started = Instant::now();
        match file.sync_data() {
            Ok(()) => {
                metrics.store_flush_us.observe(started.elapsed().as_micros() as u64);
                synced_at_commit = commit;
                if failing {
                    // Linux reports a writeback error once per file description: this Ok does not
                    // mean the pages that failed were written. The checkpoint's sync reports them.
                    tracing::info!("background syncs of the store return no error again");
                    failing = false;
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "background sync of the store failed (its checkpoint will retry)");
                    failing = true;
                }
            }
        }
    }
}

//! The continuous auto-batcher in front of TigerBeetle.
//!
//! A checkout needs two transfers; one TigerBeetle round trip costs ~0.7 ms whether it carries 2
//! transfers or 8189. So every handler hands its transfers to this one task, which packs what
//! all handlers submitted into a single `create_transfers` call while the previous call is in
//! flight, then routes each result back to the submitter it belongs to. Under load, batches grow
//! by themselves; at rest, a lone submission goes out at once (no timer, no added latency).
//!
//! Invariants:
//! * a submission is never split: its transfers are contiguous in one batch, so a linked chain
//!   stays atomic;
//! * a batch never exceeds `batch_transfers_max` (TigerBeetle's limit);
//! * the queue is bounded: when full, `submit` fails at once with `Busy` instead of piling up.

use std::future::Future;
use std::sync::Arc;

use tigerbeetle_unofficial::Transfer;
use tokio::sync::{mpsc, oneshot};

use crate::accounting::{TransferResult, BATCH_TRANSFERS_MAX};
use crate::metrics::Metrics;

/// Where batches go: TigerBeetle in production (`ledger::Ledger`), anything in unit tests.
pub trait Backend: Send + Sync + 'static {
    /// Submits one batch. On success returns `(index, result)` for every transfer that was not
    /// created, TigerBeetle's sparse result format; `Err` means the request itself failed.
    fn create_transfers(
        &self,
        batch: Vec<Transfer>,
    ) -> impl Future<Output = Result<Vec<(u32, TransferResult)>, String>> + Send;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// The queue is full: the caller should answer 503 rather than wait.
    Busy,
    /// TigerBeetle could not take the request (client error, eviction, shutdown).
    Unavailable(String),
}

impl std::fmt::Display for BatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BatchError::Busy => write!(f, "TigerBeetle request queue is full"),
            BatchError::Unavailable(why) => write!(f, "TigerBeetle unavailable: {why}"),
        }
    }
}

struct Submission {
    transfers: Vec<Transfer>,
    reply: oneshot::Sender<Result<Vec<TransferResult>, BatchError>>,
}

#[derive(Clone)]
pub struct Batcher {
    queue: mpsc::Sender<Submission>,
    batch_transfers_max: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct BatcherOptions {
    /// Submissions waiting while a call is in flight; beyond this, `Busy`.
    pub queue_submissions_max: usize,
    pub batch_transfers_max: usize,
    /// Lanes after the first take a batch only when at least this many submissions wait (0:
    /// whenever any do), so a second call goes out only when the first left a large batch.
    pub overflow_submissions_min: usize,
}

/// With more than one lane (TigerBeetle client), a second call goes out only while this many
/// submissions wait behind the one in flight: a second client taking whatever waits split the
/// batches and was slower; taking only a large backlog was not (docs/decisions.md, 2026-12-03).
pub const OVERFLOW_SUBMISSIONS_MIN: usize = 64;

/// How often a waiting overflow lane looks at the queue again.
const OVERFLOW_POLL_MS: u64 = 1;

impl Default for BatcherOptions {
    fn default() -> Self {
        BatcherOptions {
            queue_submissions_max: 65_536,
            batch_transfers_max: BATCH_TRANSFERS_MAX,
            overflow_submissions_min: OVERFLOW_SUBMISSIONS_MIN,
        }
    }
}

impl Batcher {
    /// Starts the batching task on the current tokio runtime, with one TigerBeetle client.
    pub fn spawn<B: Backend>(backend: Arc<B>, options: BatcherOptions, metrics: Arc<Metrics>) -> Batcher {
        Batcher::spawn_lanes(vec![backend], options, metrics)
    }

    /// Starts one lane per backend (each its own TigerBeetle client, so each can have a request
    /// in flight: the replica pipelines them). Lanes take turns draining the one queue, so a
    /// submission still goes out whole, in one batch, exactly once.
    pub fn spawn_lanes<B: Backend>(backends: Vec<Arc<B>>, options: BatcherOptions, metrics: Arc<Metrics>) -> Batcher {
        assert!(!backends.is_empty());
        assert!(options.queue_submissions_max > 0);
        assert!(options.batch_transfers_max > 0 && options.batch_transfers_max <= BATCH_TRANSFERS_MAX);
        let (queue, receiver) = mpsc::channel(options.queue_submissions_max);
        let intake = Arc::new(tokio::sync::Mutex::new(Intake { receiver, carried: None }));
        for (index, backend) in backends.into_iter().enumerate() {
            let waiting_min = if index == 0 { 0 } else { options.overflow_submissions_min };
            tokio::spawn(lane(backend, intake.clone(), options.batch_transfers_max, waiting_min, metrics.clone()));
        }
        Batcher { queue, batch_transfers_max: options.batch_transfers_max }
    }

    /// Submits transfers (a linked chain, or independent ones) and waits for their results,
    /// one per transfer, in order.
    pub async fn submit(&self, transfers: Vec<Transfer>) -> Result<Vec<TransferResult>, BatchError> {
        assert!(!transfers.is_empty(), "empty submission");
        assert!(transfers.len() <= self.batch_transfers_max, "submission larger than a batch");
        let (reply, answer) = oneshot::channel();
        self.queue.try_send(Submission { transfers, reply }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => BatchError::Busy,
            mpsc::error::TrySendError::Closed(_) => BatchError::Unavailable("batcher stopped".into()),
        })?;
        answer.await.unwrap_or_else(|_| Err(BatchError::Unavailable("batcher stopped".into())))
    }
}

/// The queue's receiving end, shared by the lanes. `carried` is a submission that did not fit
/// in the previous batch; it opens the next one.
struct Intake {
    receiver: mpsc::Receiver<Submission>,
    carried: Option<Submission>,
}

type Owner = (oneshot::Sender<Result<Vec<TransferResult>, BatchError>>, usize, usize);

async fn lane<B: Backend>(
    backend: Arc<B>,
    intake: Arc<tokio::sync::Mutex<Intake>>,
    batch_transfers_max: usize,
    waiting_min: usize,
    metrics: Arc<Metrics>,
) {
    let mut owners: Vec<Owner> = Vec::new();
    loop {
        let mut batch: Vec<Transfer> = Vec::with_capacity(batch_transfers_max);
        {
            let mut intake = intake.lock().await;
            if waiting_min > 0 && intake.carried.is_none() && intake.receiver.len() < waiting_min {
                drop(intake);
                tokio::time::sleep(std::time::Duration::from_millis(OVERFLOW_POLL_MS)).await;
                continue;
            }
            let intake = &mut *intake;
            let first = match intake.carried.take() {
                Some(submission) => submission,
                None => match intake.receiver.recv().await {
                    Some(submission) => submission,
                    None => return,
                },
            };
            debug_assert!(owners.is_empty());
            owners.push((first.reply, 0, first.transfers.len()));
            batch.extend_from_slice(&first.transfers);
            while batch.len() < batch_transfers_max {
                match intake.receiver.try_recv() {
                    Ok(next) => {
                        if batch.len() + next.transfers.len() > batch_transfers_max {
                            intake.carried = Some(next);
                            break;
                        }
                        owners.push((next.reply, batch.len(), next.transfers.len()));
                        batch.extend_from_slice(&next.transfers);
                    }
                    Err(_) => break,
                }
            }
        }
        assert!(batch.len() <= batch_transfers_max);

        let batch_len = batch.len();
        let started = std::time::Instant::now();
        metrics.tb_in_flight.inc();
        let outcome = backend.create_transfers(batch).await;
        metrics.tb_in_flight.dec();
        metrics.tb_batch_transfers.observe(batch_len as u64);
        metrics.tb_call_us.observe(started.elapsed().as_micros() as u64);
        route(outcome, &mut owners, batch_len);
    }
}

/// Hands each submitter its own slice of the batch's results.
fn route(outcome: Result<Vec<(u32, TransferResult)>, String>, owners: &mut Vec<Owner>, batch_len: usize) {
    match outcome {
        Ok(failures) => {
            // Sparse results are sorted by index; walk them alongside the owners.
            let mut failures = failures.into_iter().peekable();
            for (reply, start, len) in owners.drain(..) {
                let mut results = vec![TransferResult::Created; len];
                while let Some(&(index, result)) = failures.peek() {
                    let index = index as usize;
                    assert!(index < batch_len, "result index {index} beyond batch {batch_len}");
                    if index >= start + len {
                        break;
                    }
                    assert!(index >= start, "results out of order");
                    assert_ne!(result, TransferResult::Created, "only failures are listed");
                    results[index - start] = result;
                    failures.next();
                }
                // The submitter may have timed out and gone: nothing to do then.
                let _ = reply.send(Ok(results));
            }
            assert!(failures.next().is_none(), "unrouted results");
        }
        Err(why) => {
            for (reply, _, _) in owners.drain(..) {
                let _ = reply.send(Err(BatchError::Unavailable(why.clone())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Fails every transfer whose id is divisible by 7 with exceeds_credits and
    /// records the batch sizes it saw.
    struct Fake {
        sizes: Mutex<Vec<usize>>,
    }

    impl Backend for Fake {
        async fn create_transfers(&self, batch: Vec<Transfer>) -> Result<Vec<(u32, TransferResult)>, String> {
            self.sizes.lock().unwrap().push(batch.len());
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            Ok(batch
                .iter()
                .enumerate()
                .filter(|(_, t)| t.id() % 7 == 0)
                .map(|(i, _)| (i as u32, TransferResult::ExceedsCredits))
                .collect())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_submitters_get_their_own_results() {
        let fake = Arc::new(Fake { sizes: Mutex::new(Vec::new()) });
        let options =
            BatcherOptions { queue_submissions_max: 10_000, batch_transfers_max: 64, overflow_submissions_min: 0 };
        let batcher = Batcher::spawn(fake.clone(), options, Arc::new(Metrics::default()));
        let mut tasks = Vec::new();
        for submitter in 0..500u128 {
            let batcher = batcher.clone();
            tasks.push(tokio::spawn(async move {
                let len = (submitter % 5 + 1) as usize;
                let ids: Vec<u128> = (0..len as u128).map(|i| submitter * 100 + i + 1).collect();
                let transfers = ids.iter().map(|&id| Transfer::new(id)).collect();
                let results = batcher.submit(transfers).await.unwrap();
                assert_eq!(results.len(), len);
                for (id, result) in ids.iter().zip(results) {
                    let expected = if id % 7 == 0 { TransferResult::ExceedsCredits } else { TransferResult::Created };
                    assert_eq!(result, expected, "submitter {submitter} id {id}");
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let sizes = fake.sizes.lock().unwrap();
        assert!(sizes.iter().all(|&s| s <= 64));
        assert_eq!(sizes.iter().sum::<usize>(), (0..500).map(|s| s % 5 + 1).sum::<usize>());
        assert!(sizes.len() < 500, "no batching happened: {} calls", sizes.len());
    }

    struct Down;
    impl Backend for Down {
        async fn create_transfers(&self, _: Vec<Transfer>) -> Result<Vec<(u32, TransferResult)>, String> {
            Err("replica down".into())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lanes_share_one_queue_without_losing_or_duplicating() {
        let fakes: Vec<Arc<Fake>> = (0..3).map(|_| Arc::new(Fake { sizes: Mutex::new(Vec::new()) })).collect();
        let options =
            BatcherOptions { queue_submissions_max: 10_000, batch_transfers_max: 16, overflow_submissions_min: 0 };
        let batcher = Batcher::spawn_lanes(fakes.clone(), options, Arc::new(Metrics::default()));
        let mut tasks = Vec::new();
        for submitter in 0..300u128 {
            let batcher = batcher.clone();
            tasks.push(tokio::spawn(async move {
                let ids: Vec<u128> = (0..3).map(|i| submitter * 10 + i + 1).collect();
                let results = batcher.submit(ids.iter().map(|&id| Transfer::new(id)).collect()).await.unwrap();
                for (id, result) in ids.iter().zip(results) {
                    assert_eq!(result == TransferResult::ExceedsCredits, id % 7 == 0);
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let total: usize = fakes.iter().map(|f| f.sizes.lock().unwrap().iter().sum::<usize>()).sum();
        assert_eq!(total, 900, "every transfer sent exactly once");
        assert!(fakes.iter().filter(|f| !f.sizes.lock().unwrap().is_empty()).count() >= 2, "lanes shared the load");
    }

    #[tokio::test]
    async fn request_failure_reaches_every_submitter() {
        let batcher = Batcher::spawn(Arc::new(Down), BatcherOptions::default(), Arc::new(Metrics::default()));
        let err = batcher.submit(vec![Transfer::new(1)]).await.unwrap_err();
        assert_eq!(err, BatchError::Unavailable("replica down".into()));
    }

    struct Stuck;
    impl Backend for Stuck {
        async fn create_transfers(&self, _: Vec<Transfer>) -> Result<Vec<(u32, TransferResult)>, String> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn full_queue_is_busy_not_blocking() {
        let options = BatcherOptions { queue_submissions_max: 2, batch_transfers_max: 1, overflow_submissions_min: 0 };
        let batcher = Batcher::spawn(Arc::new(Stuck), options, Arc::new(Metrics::default()));
        let mut waiting = Vec::new();
        for i in 0..3 {
            let b = batcher.clone();
            waiting.push(tokio::spawn(async move { b.submit(vec![Transfer::new(i + 1)]).await }));
            tokio::task::yield_now().await;
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let err = batcher.submit(vec![Transfer::new(9)]).await.unwrap_err();
        assert_eq!(err, BatchError::Busy);
    }

    /// Records the batch sizes it saw; a stuck one never answers.
    struct Lane {
        stuck: bool,
        sizes: Mutex<Vec<usize>>,
    }

    impl Backend for Lane {
        async fn create_transfers(&self, batch: Vec<Transfer>) -> Result<Vec<(u32, TransferResult)>, String> {
            self.sizes.lock().unwrap().push(batch.len());
            if self.stuck {
                std::future::pending::<()>().await;
            }
            Ok(Vec::new())
        }
    }

    /// Two lanes, the first stuck on its call: the second takes the waiting submissions only
    /// once at least `overflow_submissions_min` wait, and then all of them in one batch.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_overflow_lane_waits_for_a_backlog() {
        let first = Arc::new(Lane { stuck: true, sizes: Mutex::new(Vec::new()) });
        let overflow = Arc::new(Lane { stuck: false, sizes: Mutex::new(Vec::new()) });
        let options =
            BatcherOptions { queue_submissions_max: 100, batch_transfers_max: 64, overflow_submissions_min: 5 };
        let batcher =
            Batcher::spawn_lanes(vec![first.clone(), overflow.clone()], options, Arc::new(Metrics::default()));
        let submit = |id: u128| {
            let b = batcher.clone();
            tokio::spawn(async move { b.submit(vec![Transfer::new(id)]).await })
        };
        let _first = submit(1);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(*first.sizes.lock().unwrap(), [1], "the first lane took the first submission");
        let mut waiting: Vec<_> = (2..=5).map(submit).collect();
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        assert!(overflow.sizes.lock().unwrap().is_empty(), "4 waiting are fewer than 5: the overflow lane waits");
        waiting.push(submit(6));
        for task in waiting {
            task.await.unwrap().unwrap();
        }
        assert_eq!(*overflow.sizes.lock().unwrap(), [5], "then it takes all 5 at once");
    }
}

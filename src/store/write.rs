//! The writes the store takes, each with its own typed answer, and how a write fails.
//!
//! A write waits in the writer's queue with the channel its caller waits on. The writer applies
//! a whole group to one transaction, where each write keeps its result (`Answer::result`); only
//! after the group is durable does every caller get its answer, or every one the group's error.

use tokio::sync::oneshot;

use crate::order::{Admission, Order, OrderStatus, Outcome, PreparedOrder, Refund};
use crate::staff::{ActivityEntry, StaffRecord};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The write queue is full (HTTP 503).
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

/// What recording a payment event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentRecorded {
    /// Recorded; the order's status after it.
    Order(OrderStatus),
    /// This event id was recorded before: nothing changed.
    Replay,
    NotFound,
}

/// What recording an admission did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdmissionRecorded {
    Recorded,
    /// The ticket's admission was recorded before: this one is not (it is the first that counts).
    Existed(Box<Admission>),
}

/// What a refund did to its order.
#[derive(Debug, Clone)]
pub enum RefundRecorded {
    Refunded(Box<Order>),
    /// Refunded before (a retry, or a concurrent refund): the order as it is.
    AlreadyRefunded(Box<Order>),
    NotRefundable(OrderStatus),
    NotFound,
}

/// A change to the staff accounts.
#[derive(Debug, Clone)]
pub enum StaffOp {
    /// A new account; the writer gives it the next staff number.
    Create(StaffRecord),
    /// Marks the account removed: its sessions end, its name and number stay on record.
    Remove { name: String, at_ms: u64 },
    /// Ends the account's sessions issued before `at_ms` (its logout).
    EndSessions { name: String, at_ms: u64 },
}

#[derive(Debug, Clone)]
pub enum StaffChanged {
    Done(StaffRecord),
    NameTaken,
    NotFound,
    /// `staff::STAFF_MAX` accounts exist (removed ones count).
    Full,
}

/// A caller waiting for its write, and the write's result once applied (not yet durable).
#[derive(Debug)]
pub struct Answer<T> {
    reply: oneshot::Sender<Result<T, StoreError>>,
    pub result: Option<T>,
}

impl<T> Answer<T> {
    pub fn new() -> (Answer<T>, oneshot::Receiver<Result<T, StoreError>>) {
        let (reply, receiver) = oneshot::channel();
        (Answer { reply, result: None }, receiver)
    }

    fn send(self, answer: Result<T, StoreError>) {
        // The caller may have stopped waiting (a timeout): the write stands all the same.
        let _ = self.reply.send(answer);
    }

    fn commit(self) {
        let Answer { reply, result } = self;
        let result = result.expect("every write of a committed group was applied");
        // The caller may have stopped waiting (a timeout): the write stands all the same.
        let _ = reply.send(Ok(result));
    }
}

/// A new session and its PENDING order, encoded by the handler (encoding is spread over all
/// cores; the single writer thread only inserts).
#[derive(Debug)]
pub struct CheckoutRecord {
    pub psid: String,
    pub order_id: String,
    pub expires_at_ms: u64,
    pub session: Vec<u8>,
    pub order: Vec<u8>,
}

/// A payment event's outcome: applied only if the order is still open and the event is new.
/// `outcome: None` records the event without changing the order (it lost a race). `prepared`:
/// the handler's encoding of the result, valid if the order is still exactly as it read it
/// (then the writer only compares and inserts).
#[derive(Debug)]
pub struct PaymentRecord {
    pub order_id: String,
    pub event_key: String,
    pub outcome: Option<Outcome>,
    pub prepared: Option<PreparedOrder>,
}

#[derive(Debug)]
pub enum Write {
    Checkout(CheckoutRecord, Answer<()>),
    Payment(PaymentRecord, Answer<PaymentRecorded>),
    /// The sweeper: marks these orders EXPIRED if they are still PENDING; answers how many.
    Expire {
        due: Vec<(u64, String)>,
        now_ms: u64,
        answer: Answer<usize>,
    },
    /// A benchmark report for the bench page; answers false when the table is full.
    BenchResult {
        name: String,
        report: Vec<u8>,
        answer: Answer<bool>,
    },
    /// Retention: deletes payment sessions created before `sessions_before_ms` and expiry log
    /// entries before `expired_before_ms`, at most `max` of each; answers how many of each.
    Prune {
        sessions_before_ms: u64,
        expired_before_ms: u64,
        max: usize,
        answer: Answer<(usize, usize)>,
    },
    /// A ticket let in at the door (recorded after the ledger's admission), with its line in the
    /// activity log, in one commit.
    Admission(Box<(Admission, ActivityEntry)>, Answer<AdmissionRecorded>),
    /// Marks a paid order REFUNDED (after the ledger moved its units back).
    Refund {
        order_id: String,
        refund: Refund,
        answer: Answer<RefundRecorded>,
    },
    Staff(StaffOp, Answer<StaffChanged>),
    /// Appends to the activity log.
    Activity(ActivityEntry, Answer<()>),
    /// Changes nothing: answered once every write queued before it is committed.
    Flush(Answer<()>),
}

impl Write {
    /// Answers the write's caller with what it applied: its group is durable.
    pub fn commit(self) {
        match self {
            Write::Checkout(_, answer) | Write::Flush(answer) => answer.commit(),
            Write::Payment(_, answer) => answer.commit(),
            Write::Expire { answer, .. } => answer.commit(),
            Write::BenchResult { answer, .. } => answer.commit(),
            Write::Prune { answer, .. } => answer.commit(),
            Write::Admission(_, answer) => answer.commit(),
            Write::Refund { answer, .. } => answer.commit(),
            Write::Staff(_, answer) => answer.commit(),
            Write::Activity(_, answer) => answer.commit(),
        }
    }

    /// Answers the write's caller with its group's failure.
    pub fn fail(self, error: StoreError) {
        match self {
            Write::Checkout(_, answer) | Write::Flush(answer) => answer.send(Err(error)),
            Write::Payment(_, answer) => answer.send(Err(error)),
            Write::Expire { answer, .. } => answer.send(Err(error)),
            Write::BenchResult { answer, .. } => answer.send(Err(error)),
            Write::Prune { answer, .. } => answer.send(Err(error)),
            Write::Admission(_, answer) => answer.send(Err(error)),
            Write::Refund { answer, .. } => answer.send(Err(error)),
            Write::Staff(_, answer) => answer.send(Err(error)),
            Write::Activity(_, answer) => answer.send(Err(error)),
        }
    }
}

//! The running appliance's shared state, and the one way the use cases reach TigerBeetle: with
//! a bounded wait, so a cluster that does not answer is a 503, never a hung request.

use std::sync::Arc;
use std::time::Duration;

use tigerbeetle_unofficial as tb;

use crate::accounting::{Inventory, TransferResult};
use crate::admin::Admin;
use crate::batcher::{BatchError, Batcher};
use crate::config::Config;
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

/// Shared state of the running appliance; one per process.
pub struct App {
    pub config: Config,
    pub ledger: Arc<Ledger>,
    /// The live audit's TigerBeetle client: one for the process, opened at the first audit.
    /// Its own, so that its pages of 8,189 transfers do not queue in front of the customers'
    /// transfers; one, because a replica keeps a bounded number of client sessions and a new
    /// client per audit evicted the others (the server's own among them).
    pub audit_ledger: std::sync::Mutex<Option<Arc<Ledger>>>,
    /// What a live audit may read into memory (`audit::LIVE` unless configured).
    pub audit_limits: crate::audit::AuditLimits,
    pub batcher: Batcher,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// How long a request waits for TigerBeetle before answering 503.
    pub tb_timeout: Duration,
    pub admin: Admin,
    /// MockPay's HMAC secret: the configured one, or the install's own (`secrets`).
    pub webhook_secret: String,
    /// Striped locks that serialize payment events per order (by psid) within this process, so
    /// that two outcomes for one expired hold cannot both move units (see `payment::settle`).
    pub payment_locks: PaymentLocks,
    /// Door scans per ticket (by order id) run one at a time, from the ledger's admission to the
    /// store's record of it: a second door waits, then sees the first one's answer.
    pub door_locks: PaymentLocks,
    /// Signs and reads the tickets' QR payloads.
    pub ticket_key: crate::ticket::TicketKey,
    /// Ticket codes typed by hand, per staff session.
    pub manual_codes: crate::ticket::ManualCodes,
    /// The shop's ticket-moving requests in flight, bounded by the HTTP edge (load shedding).
    pub shop_in_flight: crate::slots::ShopInFlight,
    /// Anonymous checkouts per client address (hold-squatting).
    pub throttle: crate::throttle::Throttle,
    /// Whether the event's accounts are set up in TigerBeetle yet.
    pub readiness: Readiness,
    /// Turns true at shutdown: long-lived streams end so the server can drain.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Where the HTTP server listens (its port chosen, if it was 0): the kiosk's runs load it.
    pub listen_address: std::net::SocketAddr,
}

/// Whether the app may serve: the server listens before TigerBeetle answers (a replica takes
/// seconds to start), and until the event's accounts are set up every request that needs the
/// ledger answers 503 with `why`.
pub struct Readiness {
    ready: std::sync::atomic::AtomicBool,
    why: std::sync::Mutex<String>,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness {
            ready: std::sync::atomic::AtomicBool::new(false),
            why: std::sync::Mutex::new("waiting for TigerBeetle to answer".to_string()),
        }
    }
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.ready.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Not ready yet: why, for `/healthz` and every 503 meanwhile.
    pub fn why(&self) -> String {
        format!("starting: {}", self.why.lock().expect("readiness lock poisoned"))
    }

    pub fn waiting(&self, why: String) {
        *self.why.lock().expect("readiness lock poisoned") = why;
    }

    pub fn set_ready(&self) {
        self.ready.store(true, std::sync::atomic::Ordering::Release);
    }
}

/// Locks striped by a hash of the payment session id: events for one order run one at a time,
/// events for different orders almost never wait for each other.
///
/// "Almost never" needs many stripes: a waiter waits for a whole TigerBeetle call and group
/// commit (~10 ms under load). With 256 events in flight, 1,024 stripes made 22% of them share
/// a stripe with another (1 ms of the webhook's mean latency, measured); 16,384 make it 1.5%,
/// for 0.6 MiB of memory.
pub struct PaymentLocks {
    stripes: Vec<tokio::sync::Mutex<()>>,
}

pub const PAYMENT_LOCK_STRIPES: usize = 16_384;

impl Default for PaymentLocks {
    fn default() -> Self {
        PaymentLocks { stripes: (0..PAYMENT_LOCK_STRIPES).map(|_| tokio::sync::Mutex::new(())).collect() }
    }
}

impl PaymentLocks {
    pub fn stripe(&self, key: &str) -> &tokio::sync::Mutex<()> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(key);
        &self.stripes[(hash % PAYMENT_LOCK_STRIPES as u64) as usize]
    }
}

/// A use case's refusal, mapped one-to-one onto an HTTP status by `http`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowError {
    BadRequest(String),
    NotFound(String),
    SoldOut {
        cls: String,
    },
    /// The request conflicts with the order's state (a refund of an admitted ticket).
    Conflict(String),
    /// Switched off by the configuration (online sales with `mockpay = false`).
    Forbidden(String),
    TooMany(String),
    Unavailable(String),
}

impl From<BatchError> for FlowError {
    fn from(e: BatchError) -> Self {
        FlowError::Unavailable(e.to_string())
    }
}

impl From<StoreError> for FlowError {
    fn from(e: StoreError) -> Self {
        FlowError::Unavailable(e.to_string())
    }
}

/// A store read that failed is a 503 (the disk or the file is in trouble).
pub fn store_read<T>(result: anyhow::Result<T>) -> Result<T, FlowError> {
    result.map_err(|e| FlowError::Unavailable(format!("store read failed: {e:#}")))
}

impl App {
    /// Waits at most `tb_timeout` for a TigerBeetle request; a timeout is a 503.
    async fn within_tb_timeout<T>(&self, request: impl std::future::Future<Output = T>) -> Result<T, FlowError> {
        tokio::time::timeout(self.tb_timeout, request).await.map_err(|_| {
            FlowError::Unavailable(format!("TigerBeetle did not answer within {} ms", self.tb_timeout.as_millis()))
        })
    }

    /// A TigerBeetle lookup, bounded by `tb_timeout`.
    pub(super) async fn lookup<T>(
        &self,
        lookup: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> Result<T, FlowError> {
        self.within_tb_timeout(lookup)
            .await?
            .map_err(|e| FlowError::Unavailable(format!("TigerBeetle lookup failed: {e:#}")))
    }

    /// Transfers through the batcher, bounded by `tb_timeout`: one result per transfer.
    pub(super) async fn transfers(&self, transfers: Vec<tb::Transfer>) -> Result<Vec<TransferResult>, FlowError> {
        let count = transfers.len();
        let results = self.within_tb_timeout(self.batcher.submit(transfers)).await??;
        assert_eq!(results.len(), count, "one result per transfer");
        Ok(results)
    }

    /// The audit's client (see `audit_ledger`).
    pub fn audit_ledger(&self) -> anyhow::Result<Arc<Ledger>> {
        let mut slot = self.audit_ledger.lock().expect("audit ledger lock poisoned");
        if let Some(ledger) = slot.as_ref() {
            return Ok(ledger.clone());
        }
        let ledger = Arc::new(Ledger::connect(self.ledger.cluster_id, &self.ledger.addresses)?);
        *slot = Some(ledger.clone());
        Ok(ledger)
    }

    /// Each class's inventory (in config order) and the goodie pool's, from TigerBeetle's balances.
    pub async fn inventory(&self) -> Result<(Vec<Inventory>, Inventory), FlowError> {
        self.lookup(self.ledger.inventory(&self.config)).await
    }
}

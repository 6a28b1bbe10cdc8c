//! The use cases: checkout, payment event, expiry sweep, and the bare accounting path.
//!
//! Each composes the pure accounting model, the batcher (TigerBeetle) and the store (redb).
//! Order of effects, and why it is safe after a crash at any point:
//! * checkout: holds in TigerBeetle first, then the session and PENDING order in the store, then
//!   the answer. A crash in between leaves holds nobody knows of; they expire by themselves.
//! * payment: post/void in TigerBeetle (ids derived from the hold ids), then the order's final
//!   state in the store, then the answer. A crash in between is healed by the provider's retry:
//!   the same derived ids answer `exists` and the store catches up.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tigerbeetle_unofficial as tb;

use crate::accounting::{self, Resource, TransferResult};
use crate::batcher::{BatchError, Batcher};
use crate::config::Config;
use crate::ledger::Ledger;
use crate::metrics::{stage, Metrics};
use crate::payment::{self, Event, EventType};
use crate::store::{Order, OrderStatus, Outcome, Session, Store, StoreError, Write, WriteResult};

/// Shared state of the running appliance; one per process.
pub struct App {
    pub config: Config,
    pub ledger: Arc<Ledger>,
    pub batcher: Batcher,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// How long a request waits for TigerBeetle before answering 503.
    pub tb_timeout: Duration,
    pub admin: crate::admin::Admin,
    /// Striped locks that serialize payment events per order (by psid) within this process, so
    /// that two outcomes for one expired hold cannot both move units (see `settle`).
    pub payment_locks: PaymentLocks,
    /// Turns true at shutdown: long-lived streams end so the server can drain.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
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
    pub fn stripe(&self, psid: &str) -> &tokio::sync::Mutex<()> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(psid);
        &self.stripes[(hash % PAYMENT_LOCK_STRIPES as u64) as usize]
    }
}

/// The holds a payment event posts or voids.
#[derive(Debug, Clone, Copy)]
struct Holds {
    ticket: u128,
    goodie: Option<u128>,
}

/// A use case's refusal, mapped one-to-one onto an HTTP status by `http`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowError {
    BadRequest(String),
    NotFound(String),
    SoldOut { cls: String },
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

fn store_read<T>(result: anyhow::Result<T>) -> Result<T, FlowError> {
    result.map_err(|e| FlowError::Unavailable(format!("store read failed: {e:#}")))
}

pub struct CheckoutOk {
    pub order_id: String,
    pub psid: String,
    pub amount: u64,
    pub currency: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum PaymentOk {
    Applied(OrderStatus),
    Replay,
}

pub use crate::api::is_valid_email;

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis() as u64
}

pub fn rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Random bytes for ids, session ids and ticket codes, from rand's thread-local CSPRNG (ChaCha,
/// seeded and periodically reseeded from the OS). Asking the OS for each id was a `getrandom`
/// system call per id, four per checkout: 1.7% of all CPU samples in a profile of the reserve
/// phase (server, replica and generator), for two ids per request.
fn random_bytes<const N: usize>() -> [u8; N] {
    use rand::RngCore;
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
}

/// Payment session ids are capabilities (whoever has one can pay or cancel): 128 random bits,
/// after a millisecond timestamp so that new sessions land at the right edge of the store's
/// B-tree (few dirty pages per group commit) instead of all over it.
pub fn new_psid() -> String {
    let mut s = String::with_capacity(3 + 12 + 32);
    s.push_str("ps_");
    push_hex(&mut s, &now_ms().to_be_bytes()[2..]);
    push_hex(&mut s, &random_bytes::<16>());
    s
}

/// `TCK-` and 10 characters from an alphabet without look-alikes (0/O, 1/I): 50 random bits.
pub fn new_ticket_code() -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut code = String::with_capacity(14);
    code.push_str("TCK-");
    for b in random_bytes::<10>() {
        code.push(ALPHABET[(b & 31) as usize] as char);
    }
    code
}

/// A new id for orders and holds: a millisecond timestamp (48 bits, so ids sort by time and land
/// at the right edge of B-trees) and 80 random bits (a CSPRNG the OS seeds, see `random_bytes`).
/// Unlike TigerBeetle's `id()` (sequential within a millisecond), neighbours cannot be guessed:
/// an order id is what reads an order and its ticket code.
pub fn new_id() -> u128 {
    let random = random_bytes::<10>();
    let mut low = [0u8; 16];
    low[6..].copy_from_slice(&random);
    let id = (u128::from(now_ms()) << 80) | u128::from_be_bytes(low);
    assert!(id != 0 && id != u128::MAX);
    id
}

pub fn format_order_id(id: u128) -> String {
    format!("{id:032x}")
}

pub fn parse_order_id(order_id: &str) -> Option<u128> {
    (order_id.len() == 32).then(|| u128::from_str_radix(order_id, 16).ok()).flatten()
}

impl App {
    /// Waits at most `tb_timeout` for a TigerBeetle request; a timeout is a 503.
    async fn within_tb_timeout<T>(&self, request: impl std::future::Future<Output = T>) -> Result<T, FlowError> {
        tokio::time::timeout(self.tb_timeout, request).await.map_err(|_| {
            FlowError::Unavailable(format!("TigerBeetle did not answer within {} ms", self.tb_timeout.as_millis()))
        })
    }

    /// A TigerBeetle lookup, bounded by `tb_timeout`.
    async fn lookup<T>(&self, lookup: impl std::future::Future<Output = anyhow::Result<T>>) -> Result<T, FlowError> {
        self.within_tb_timeout(lookup)
            .await?
            .map_err(|e| FlowError::Unavailable(format!("TigerBeetle lookup failed: {e:#}")))
    }

    async fn transfers(&self, transfers: Vec<tb::Transfer>) -> Result<Vec<TransferResult>, FlowError> {
        Ok(self.within_tb_timeout(self.batcher.submit(transfers)).await??)
    }

    /// Places a ticket hold and a goodie hold, then records the session and its PENDING order.
    pub async fn checkout(&self, cls: &str, email: &str) -> Result<CheckoutOk, FlowError> {
        let mut clock = Instant::now();
        let class =
            self.config.class(cls).ok_or_else(|| FlowError::BadRequest(format!("unknown ticket class {cls:?}")))?;
        if !is_valid_email(email) {
            return Err(FlowError::BadRequest("invalid customer_email".into()));
        }
        let ledger = self.config.ledger;
        let timeout_s = self.config.hold_timeout_s;
        let order_num = new_id();
        let ticket_hold_id = new_id();
        let goodie_hold_id = new_id();
        self.metrics.stage(stage::CHECKOUT_VALIDATE, &mut clock);
        let results = self
            .transfers(vec![
                accounting::hold(ledger, Resource::class(&class.id), ticket_hold_id, order_num, timeout_s),
                accounting::hold(ledger, Resource::GOODIES, goodie_hold_id, order_num, timeout_s),
            ])
            .await?;
        self.metrics.stage(stage::CHECKOUT_TIGERBEETLE, &mut clock);
        assert_eq!(results.len(), 2);
        let goodie_held = results[1].is_success();
        match results[0] {
            r if r.is_success() => {}
            TransferResult::ExceedsCredits => {
                self.metrics.sold_out.add(1);
                if goodie_held {
                    // Give the goodie back now rather than at the hold's timeout. If this fails the
                    // hold still expires on its own, so the sold-out answer stands either way.
                    if let Err(e) = self.transfers(vec![accounting::void(goodie_hold_id)]).await {
                        tracing::warn!(error = ?e, "voiding the goodie hold of a sold-out checkout");
                    }
                }
                return Err(FlowError::SoldOut { cls: class.id.clone() });
            }
            other => {
                tracing::error!(?other, "ticket hold refused");
                return Err(FlowError::Unavailable(format!("ticket hold refused by TigerBeetle: {other:?}")));
            }
        }
        if !goodie_held && results[1] != TransferResult::ExceedsCredits {
            tracing::warn!(result = ?results[1], "goodie hold refused");
        }

        let created_at_ms = now_ms();
        let order_id = format_order_id(order_num);
        let psid = new_psid();
        let session = Session {
            psid: psid.clone(),
            order_id: order_id.clone(),
            cls: class.id.clone(),
            email: email.to_string(),
            amount: class.price_cents,
            currency: self.config.currency.clone(),
            ticket_hold_id,
            goodie_hold_id: goodie_held.then_some(goodie_hold_id),
            created_at_ms,
            expires_at_ms: created_at_ms + u64::from(timeout_s) * 1000,
        };
        let order = Order {
            order_id: order_id.clone(),
            psid: psid.clone(),
            status: OrderStatus::Pending,
            cls: class.id.clone(),
            qty: 1,
            amount: class.price_cents,
            currency: self.config.currency.clone(),
            email: email.to_string(),
            created_at_ms,
            paid_at_ms: None,
            ticket_code: None,
            got_goodie: false,
            event_keys: Vec::new(),
            ticket_hold_id,
            goodie_hold_id: session.goodie_hold_id,
        };
        self.store.write(Write::checkout(&session, &order)).await?;
        self.metrics.stage(stage::CHECKOUT_STORE, &mut clock);
        self.metrics.checkouts.add(1);
        Ok(CheckoutOk { order_id, psid, amount: class.price_cents, currency: self.config.currency.clone() })
    }

    /// Verifies, then applies a payment provider's event. Idempotent per `idempotency_key`, and
    /// per order: the first valid outcome is final.
    pub async fn payment_event(&self, body: &[u8], signature: Option<&str>) -> Result<PaymentOk, FlowError> {
        let mut clock = Instant::now();
        let event = payment::decode_event(self.config.webhook_secret.as_bytes(), body, signature)
            .map_err(FlowError::BadRequest)?;
        self.metrics.payment_events.add(1);
        // One event per order at a time, from the read of its state to the write of its outcome.
        let _order_lock = self.payment_locks.stripe(&event.payment_session_id).lock().await;
        // One read: the order carries its session's holds. Only a mismatch (or an order written
        // before it did) reads the session, to answer exactly as the session would.
        let found = store_read(self.store.payment_order(&event.order_id))?;
        let (order, record) = match found {
            Some((order, record)) if order.psid == event.payment_session_id => (order, record),
            _ => return Err(self.payment_refusal(&event)?),
        };
        if order.amount != event.amount || order.currency != event.currency {
            return Err(FlowError::BadRequest("amount or currency does not match the payment session".into()));
        }
        let holds = if order.ticket_hold_id != 0 {
            Holds { ticket: order.ticket_hold_id, goodie: order.goodie_hold_id }
        } else {
            let session = store_read(self.store.session(&event.payment_session_id))?
                .ok_or_else(|| FlowError::NotFound("unknown payment session".into()))?;
            Holds { ticket: session.ticket_hold_id, goodie: session.goodie_hold_id }
        };
        if order.event_keys.contains(&event.idempotency_key) {
            return Ok(PaymentOk::Replay);
        }

        self.metrics.stage(stage::WEBHOOK_VERIFY_READ, &mut clock);
        let outcome = if order.status.is_open() { self.settle(&order, holds, event.kind).await? } else { None };
        self.metrics.stage(stage::WEBHOOK_TIGERBEETLE, &mut clock);
        // Encoded here, on whichever core runs this handler; the writer only compares and inserts.
        let prepared = order.prepare_payment(record, &event.idempotency_key, outcome.as_ref());
        let write = Write::Payment {
            order_id: order.order_id.clone(),
            event_key: event.idempotency_key,
            outcome,
            prepared: Some(prepared),
        };
        let written = self.store.write(write).await?;
        self.metrics.stage(stage::WEBHOOK_STORE, &mut clock);
        match written {
            WriteResult::Order(status) => Ok(PaymentOk::Applied(status)),
            WriteResult::Replay => Ok(PaymentOk::Replay),
            WriteResult::NotFound => Err(FlowError::NotFound("unknown order".into())),
            other => unreachable!("payment write answered {other:?}"),
        }
    }

    /// Moves the holds in TigerBeetle for a payment outcome. `None`: another event already
    /// settled them the other way (it won the race; its write decides the order).
    async fn settle(&self, order: &Order, holds: Holds, kind: EventType) -> Result<Option<Outcome>, FlowError> {
        let Holds { ticket, goodie } = holds;
        match kind {
            EventType::Succeeded => {
                let mut transfers = vec![accounting::post(ticket)];
                transfers.extend(goodie.map(accounting::post));
                let results = self.transfers(transfers).await?;
                let got_goodie =
                    results.get(1).is_some_and(|r| r.is_success() || *r == TransferResult::PendingAlreadyPosted);
                let paid_at_ms = Some(now_ms());
                let status = match results[0] {
                    r if r.is_success() || r == TransferResult::PendingAlreadyPosted => OrderStatus::Paid,
                    TransferResult::PendingAlreadyVoided => return Ok(None),
                    TransferResult::PendingExpired => self.book_now(order, ticket).await?,
                    other => {
                        tracing::error!(?other, order_id = %order.order_id, "posting ticket hold");
                        return Err(FlowError::Unavailable(format!("posting the hold refused: {other:?}")));
                    }
                };
                let ticket_code = (status == OrderStatus::Paid).then(new_ticket_code);
                Ok(Some(Outcome { status, paid_at_ms, ticket_code, got_goodie }))
            }
            EventType::Failed | EventType::Canceled => {
                let mut transfers = vec![accounting::void(ticket)];
                transfers.extend(goodie.map(accounting::void));
                let results = self.transfers(transfers).await?;
                match results[0] {
                    r if r.is_success() || r == TransferResult::PendingAlreadyVoided => {}
                    TransferResult::PendingExpired => {
                        // The hold expired. A succeeded event may already have booked the ticket
                        // directly and then lost its store write (a crash, a 503): that booking
                        // stands, and the provider's retry of it will record PAID.
                        let booked = self.booked_after_expiry(ticket).await?;
                        if booked {
                            return Ok(None);
                        }
                    }
                    TransferResult::PendingAlreadyPosted => return Ok(None),
                    other => {
                        tracing::error!(?other, order_id = %order.order_id, "voiding ticket hold");
                        return Err(FlowError::Unavailable(format!("voiding the hold refused: {other:?}")));
                    }
                }
                let status = if kind == EventType::Failed { OrderStatus::Failed } else { OrderStatus::Canceled };
                Ok(Some(Outcome { status, paid_at_ms: None, ticket_code: None, got_goodie: false }))
            }
        }
    }

    /// Why an event names no order of ours under its session, in the session's terms (the cold
    /// path: the hot one reads only the order).
    fn payment_refusal(&self, event: &Event) -> Result<FlowError, FlowError> {
        let session = store_read(self.store.session(&event.payment_session_id))?;
        Ok(match session {
            None => FlowError::NotFound("unknown payment session".into()),
            Some(session) if session.order_id != event.order_id => {
                FlowError::BadRequest("order_id does not match the payment session".into())
            }
            Some(_) => FlowError::NotFound("unknown order".into()),
        })
    }

    /// Whether a book-now transfer exists for this hold.
    async fn booked_after_expiry(&self, hold_id: u128) -> Result<bool, FlowError> {
        let found = self.lookup(self.ledger.lookup_transfers(vec![accounting::book_now_id(hold_id)])).await?;
        Ok(!found.is_empty())
    }

    /// The hold expired before the payment arrived: take a unit now if one is left.
    async fn book_now(&self, order: &Order, ticket_hold_id: u128) -> Result<OrderStatus, FlowError> {
        let order_num = parse_order_id(&order.order_id).expect("order ids are ours");
        let transfer = accounting::book_now(self.config.ledger, Resource::class(&order.cls), ticket_hold_id, order_num);
        let results = self.transfers(vec![transfer]).await?;
        match results[0] {
            r if r.is_success() => Ok(OrderStatus::Paid),
            TransferResult::ExceedsCredits | TransferResult::IdAlreadyFailed => Ok(OrderStatus::PaidUnfulfilled),
            other => {
                tracing::error!(?other, order_id = %order.order_id, "booking an expired hold");
                Err(FlowError::Unavailable(format!("booking refused: {other:?}")))
            }
        }
    }

    /// MockPay's buttons: sign an event as the provider would and deliver it to the webhook
    /// handler in-process (same verification, same idempotency).
    pub async fn emit(&self, psid: &str, kind: EventType) -> Result<(Session, PaymentOk), FlowError> {
        let session = store_read(self.store.session(psid))?
            .ok_or_else(|| FlowError::NotFound("unknown payment session".into()))?;
        let event = Event {
            kind,
            payment_session_id: session.psid.clone(),
            order_id: session.order_id.clone(),
            amount: session.amount,
            currency: session.currency.clone(),
            created_at: rfc3339_ms(now_ms()),
            idempotency_key: format!("evt_{}", &new_psid()[3..]),
        };
        let body = serde_json::to_vec(&event).expect("events serialize");
        let signature = payment::sign(self.config.webhook_secret.as_bytes(), &body);
        let ok = self.payment_event(&body, Some(&signature)).await?;
        Ok((session, ok))
    }

    /// Marks orders whose hold timed out as EXPIRED. TigerBeetle has already released (or is
    /// about to release) their units; this only makes the store say so. Takes at most `limit`
    /// due entries of the expiry index (paid and failed orders' entries too: they are removed
    /// here); returns (entries taken, orders expired).
    pub async fn sweep_expired(&self, limit: usize) -> Result<(usize, usize), FlowError> {
        let due = store_read(self.store.due_expiries(now_ms(), limit))?;
        let entries = due.len();
        assert!(entries <= limit);
        if entries == 0 {
            return Ok((0, 0));
        }
        match self.store.write(Write::Expire { due, now_ms: now_ms() }).await? {
            WriteResult::Expired(n) => {
                assert!(n <= entries);
                self.metrics.expired.add(n as u64);
                Ok((entries, n))
            }
            other => unreachable!("expire write answered {other:?}"),
        }
    }

    /// The accounting path alone (for benchmarks): a ticket hold and a goodie hold.
    pub async fn reserve(&self, cls: Option<&str>) -> Result<(u128, Option<u128>), FlowError> {
        let class = match cls {
            Some(cls) => {
                self.config.class(cls).ok_or_else(|| FlowError::BadRequest(format!("unknown ticket class {cls:?}")))?
            }
            None => &self.config.classes[0],
        };
        let (ticket, goodie) = (new_id(), new_id());
        let ledger = self.config.ledger;
        let timeout_s = self.config.hold_timeout_s;
        let results = self
            .transfers(vec![
                accounting::bench_hold(ledger, Resource::class(&class.id), ticket, timeout_s),
                accounting::bench_hold(ledger, Resource::GOODIES, goodie, timeout_s),
            ])
            .await?;
        match results[0] {
            r if r.is_success() => Ok((ticket, results[1].is_success().then_some(goodie))),
            TransferResult::ExceedsCredits => Err(FlowError::SoldOut { cls: class.id.clone() }),
            other => Err(FlowError::Unavailable(format!("ticket hold refused: {other:?}"))),
        }
    }

    /// Posts holds made by `reserve` (and only those: see `accounting::bench_post`).
    pub async fn commit(&self, ticket: u128, goodie: Option<u128>) -> Result<Vec<TransferResult>, FlowError> {
        let mut transfers = vec![accounting::bench_post(ticket)];
        transfers.extend(goodie.map(accounting::bench_post));
        self.transfers(transfers).await
    }

    pub async fn inventory(&self) -> Result<(Vec<accounting::Inventory>, accounting::Inventory), FlowError> {
        self.lookup(self.ledger.inventory(&self.config)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_ids() {
        let code = new_ticket_code();
        assert_eq!(code.len(), 14);
        assert!(code.starts_with("TCK-"));
        assert_ne!(new_ticket_code(), new_ticket_code());
        let psid = new_psid();
        assert_eq!(psid.len(), 47);
        assert!(psid[..15] <= new_psid()[..15], "time-ordered prefix");
        assert_eq!(parse_order_id(&format_order_id(12345)), Some(12345));
        let (a, b) = (new_id(), new_id());
        assert_ne!(a, b);
        assert!(b.abs_diff(a) > 1 << 20 || (a >> 80) != (b >> 80), "not sequential");
        assert!(a >> 80 <= b >> 80, "time-ordered");
        assert_eq!(parse_order_id("zz"), None);
    }
}

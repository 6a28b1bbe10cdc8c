//! The use cases, one a file: checkout, payment event, expiry sweep, and the bare accounting path
//! the reference's benchmark calls.
//!
//! Each composes the pure accounting model, the batcher (TigerBeetle) and the store (redb).
//! Order of effects, and why it is safe after a crash at any point:
//! * checkout: holds in TigerBeetle first, then the session and PENDING order in the store, then
//!   the answer. A crash in between leaves holds nobody knows of; they expire by themselves.
//! * payment: post/void in TigerBeetle (ids derived from the hold ids), then the order's final
//!   state in the store, then the answer. A crash in between is healed by the provider's retry:
//!   the same derived ids answer `exists` and the store catches up.
//! * door scan, refund, box-office sale: the ledger first (ids derived from the order), then the
//!   store; each file's doc says how a retry after a crash completes it.

pub mod accounting_bench;
pub mod app;
pub mod box_office;
pub mod checkout;
pub mod door;
pub mod expiry;
pub mod payment;
pub mod reentry;
pub mod refund;
pub mod staff;

pub use app::{App, FlowError, PaymentLocks, Readiness, PAYMENT_LOCK_STRIPES};
pub use checkout::CheckoutOk;
pub use door::{Direction, Scan};
pub use payment::PaymentOk;
pub use refund::Refunded;

//! The TigerBeetle model of an event, as pure functions: no IO here.
//!
//! Every *resource* (each ticket class, and the goodie pool) has three accounts on the event's
//! ledger:
//!
//! ```text
//!   Operator ──funding (capacity)──▶ Budget ──hold / post / book-now──▶ Spent
//!                                    (debits must not exceed credits)
//! ```
//!
//! * Funding moves `capacity` units Operator → Budget once (deterministic ids: a restart funds
//!   nothing twice; a raised capacity funds only the difference).
//! * A checkout places a *pending* transfer Budget → Spent of 1 unit with a timeout: the hold.
//!   Because Budget may not be debited beyond its credits, TigerBeetle refuses the hold that would
//!   oversell (`exceeds_credits`). Overselling is impossible by construction.
//! * A payment posts the hold (or voids it); an expired hold returns to Budget by itself.
//!
//! * At the door, an admission moves the ticket's unit Spent → Admitted. Its id derives from the
//!   order, so a second admission of the same ticket is TigerBeetle's `exists`: the ledger, not
//!   the door, decides that a ticket gets in once. A forced refund of an admitted ticket first
//!   moves the unit back (Admitted → Spent, the "unadmission").
//! * A refund moves the unit Spent → Budget (back on sale), its id derived from the hold.
//!
//! ```text
//!   Budget ──sold──▶ Spent ──admission──▶ Admitted
//!     ▲                │ ◀──unadmission──┘
//!     └────refund──────┘
//! ```
//!
//! Balances read back as inventory (see `inventory`): refunds are Spent's debits that are not
//! admissions, capacity is Budget's credits less refunds, held is Spent's pending credits.

use sha2::{Digest, Sha256};
use tb::error::CreateTransferErrorKind;
use tb::{account, transfer, Account, Transfer};
use tigerbeetle_unofficial as tb;

/// The largest batch TigerBeetle accepts in one `create_transfers` request:
/// (message_size_max 1 MiB - 256 B header) / 128 B per transfer.
pub const BATCH_TRANSFERS_MAX: usize = 8189;

/// Account kinds, also used as the account `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum AccountKind {
    Operator = 1,
    Budget = 2,
    Spent = 3,
    Admitted = 4,
}

/// Transfer codes: why units moved.
pub mod code {
    pub const FUNDING: u16 = 1;
    pub const HOLD: u16 = 2;
    pub const BOOK_NOW: u16 = 3;
    /// Holds made by the bare accounting endpoints (benchmarks). Their posts carry this code,
    /// and TigerBeetle refuses a post whose code differs from its hold's: those endpoints can
    /// never post a customer's hold.
    pub const BENCH_HOLD: u16 = 4;
    /// A ticket let in at the door: Spent → Admitted.
    pub const ADMISSION: u16 = 5;
    /// An admission taken back (a forced refund of an admitted ticket): Admitted → Spent.
    pub const UNADMISSION: u16 = 6;
    /// A sold unit returned to sale: Spent → Budget.
    pub const REFUND: u16 = 7;
    /// A ticket leaving through an exit scan (with `re_entry` on): Admitted → Spent.
    pub const EXIT: u16 = 8;
}

/// Entries one ticket may make at most with `re_entry` on: a scan looks up every entry and exit
/// id of a ticket in one request, so this bounds that request.
pub const ENTRIES_MAX: u32 = 16;

/// What is sold: a ticket class (by its id, at most 8 bytes) or the goodie pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Resource {
    key: u64,
}

impl Resource {
    /// The goodie pool. `~` is not allowed in class ids, so this key never collides with one.
    pub const GOODIES: Resource = Resource { key: u64::from_be_bytes(*b"~goodies") };

    pub fn class(class_id: &str) -> Resource {
        let bytes = class_id.as_bytes();
        assert!(crate::config::is_valid_class_id(class_id), "class id {class_id:?} must be validated by config");
        let mut key = [0u8; 8];
        key[..bytes.len()].copy_from_slice(bytes);
        Resource { key: u64::from_be_bytes(key) }
    }
}

/// One thing an event sells: a ticket class or the goodie pool, with its capacity.
#[derive(Debug, Clone)]
pub struct EventResource {
    /// For logs and reports: `class A`, `goodies`.
    pub name: String,
    /// `None` for the goodie pool.
    pub class_id: Option<String>,
    pub resource: Resource,
    pub capacity: u64,
}

/// What an event sells: its classes in configuration order, then the goodie pool.
pub fn event_resources(config: &crate::config::Config) -> Vec<EventResource> {
    let mut out: Vec<EventResource> = config
        .classes
        .iter()
        .map(|c| EventResource {
            name: format!("class {}", c.id),
            class_id: Some(c.id.clone()),
            resource: Resource::class(&c.id),
            capacity: c.capacity,
        })
        .collect();
    out.push(EventResource {
        name: "goodies".to_string(),
        class_id: None,
        resource: Resource::GOODIES,
        capacity: config.goodie_limit,
    });
    out
}

/// The deterministic id of a resource's account: `ledger << 96 | kind << 64 | resource key`.
pub fn account_id(ledger: u32, resource: Resource, kind: AccountKind) -> u128 {
    assert!(ledger != 0);
    let id = (u128::from(ledger) << 96) | (u128::from(kind as u16) << 64) | u128::from(resource.key);
    assert!(id != 0 && id != u128::MAX);
    id
}

/// The four accounts of a resource, ready for `create_accounts` (`exists` is success; a ledger
/// made before the door existed gets its Admitted accounts at the next start).
pub fn resource_accounts(ledger: u32, resource: Resource) -> [Account; 4] {
    let make = |kind: AccountKind| {
        Account::new(account_id(ledger, resource, kind), ledger, kind as u16).with_user_data_64(resource.key)
    };
    [
        make(AccountKind::Operator),
        make(AccountKind::Budget).with_flags(account::Flags::DEBITS_MUST_NOT_EXCEED_CREDITS),
        make(AccountKind::Spent),
        make(AccountKind::Admitted),
    ]
}

/// Derives a 128-bit id from a tag and parts, so that ids of follow-up transfers are functions of
/// what they follow: a retried or concurrent request derives the same id, and TigerBeetle answers
/// `exists` instead of moving units twice.
fn derive_id(tag: &[u8], parts: &[u128]) -> u128 {
    let mut hasher = Sha256::new();
    hasher.update(b"tigerfans/");
    hasher.update(tag);
    for part in parts {
        hasher.update(part.to_le_bytes());
    }
    let digest = hasher.finalize();
    let id = u128::from_le_bytes(digest[..16].try_into().expect("16 bytes"));
    // 0 and u128::MAX are reserved by TigerBeetle; a hash hitting them is astronomically unlikely.
    assert!(id != 0 && id != u128::MAX);
    id
}

/// How many units must be added so that Budget's funding equals `capacity`.
/// `None` when already funded at least that much (lowering a capacity is not supported: units
/// may already be sold; it is reported, not applied).
pub fn funding_needed(funded: u128, capacity: u64) -> Option<u128> {
    let capacity = u128::from(capacity);
    (funded < capacity).then(|| capacity - funded)
}

/// The funding transfer that raises a resource's Budget from `funded` to `capacity`.
/// Its id depends on both, so two processes starting with the same config fund once.
pub fn funding_transfer(ledger: u32, resource: Resource, funded: u128, capacity: u64) -> Option<Transfer> {
    let amount = funding_needed(funded, capacity)?;
    let id = derive_id(b"fund", &[u128::from(ledger), u128::from(resource.key), funded, u128::from(capacity)]);
    Some(
        Transfer::new(id)
            .with_debit_account_id(account_id(ledger, resource, AccountKind::Operator))
            .with_credit_account_id(account_id(ledger, resource, AccountKind::Budget))
            .with_amount(amount)
            .with_ledger(ledger)
            .with_code(code::FUNDING),
    )
}

/// A hold: a pending transfer of one unit Budget → Spent that expires after `timeout_s`.
/// `order_id` is kept in `user_data_128` so the ledger can be audited against the store.
pub fn hold(ledger: u32, resource: Resource, hold_id: u128, order_id: u128, timeout_s: u32) -> Transfer {
    hold_with_code(ledger, resource, hold_id, order_id, timeout_s, code::HOLD)
}

/// A hold of the bare accounting path (`code::BENCH_HOLD`).
pub fn bench_hold(ledger: u32, resource: Resource, hold_id: u128, timeout_s: u32) -> Transfer {
    hold_with_code(ledger, resource, hold_id, hold_id, timeout_s, code::BENCH_HOLD)
}

fn hold_with_code(
    ledger: u32,
    resource: Resource,
    hold_id: u128,
    order_id: u128,
    timeout_s: u32,
    code: u16,
) -> Transfer {
    assert!(hold_id != 0 && hold_id != u128::MAX);
    assert!(timeout_s > 0);
    Transfer::new(hold_id)
        .with_debit_account_id(account_id(ledger, resource, AccountKind::Budget))
        .with_credit_account_id(account_id(ledger, resource, AccountKind::Spent))
        .with_amount(1)
        .with_ledger(ledger)
        .with_code(code)
        .with_user_data_128(order_id)
        .with_flags(transfer::Flags::PENDING)
        .with_timeout(timeout_s)
}

pub fn post_id(hold_id: u128) -> u128 {
    derive_id(b"post", &[hold_id])
}

pub fn void_id(hold_id: u128) -> u128 {
    derive_id(b"void", &[hold_id])
}

pub fn book_now_id(hold_id: u128) -> u128 {
    derive_id(b"book", &[hold_id])
}

/// Posts a hold. Its id derives from the hold's, so it can only ever post once.
pub fn post(hold_id: u128) -> Transfer {
    Transfer::new(post_id(hold_id))
        .with_pending_id(hold_id)
        .with_amount(1)
        .with_flags(transfer::Flags::POST_PENDING_TRANSFER)
}

/// Posts a hold only if it was made by the bare accounting path (`bench_hold`).
pub fn bench_post(hold_id: u128) -> Transfer {
    post(hold_id).with_code(code::BENCH_HOLD)
}

/// Voids a hold: its unit returns to Budget at once.
pub fn void(hold_id: u128) -> Transfer {
    Transfer::new(void_id(hold_id))
        .with_pending_id(hold_id)
        .with_amount(1)
        .with_flags(transfer::Flags::VOID_PENDING_TRANSFER)
}

/// A paid order whose hold expired books its unit directly, if Budget still has one.
pub fn book_now(ledger: u32, resource: Resource, hold_id: u128, order_id: u128) -> Transfer {
    Transfer::new(book_now_id(hold_id))
        .with_debit_account_id(account_id(ledger, resource, AccountKind::Budget))
        .with_credit_account_id(account_id(ledger, resource, AccountKind::Spent))
        .with_amount(1)
        .with_ledger(ledger)
        .with_code(code::BOOK_NOW)
        .with_user_data_128(order_id)
}

pub fn admission_id(order_id: u128) -> u128 {
    derive_id(b"admit", &[order_id])
}

/// The id of a ticket's `entry`-th entry (0: its admission) and of the exit that ends it.
pub fn entry_id(order_id: u128, entry: u32) -> u128 {
    assert!(entry < ENTRIES_MAX);
    if entry == 0 {
        admission_id(order_id)
    } else {
        derive_id(b"admit", &[order_id, u128::from(entry)])
    }
}

pub fn exit_id(order_id: u128, entry: u32) -> u128 {
    assert!(entry < ENTRIES_MAX);
    derive_id(b"exit", &[order_id, u128::from(entry)])
}

pub fn refund_id(hold_id: u128) -> u128 {
    derive_id(b"refund", &[hold_id])
}

/// A door's name as the ledger keeps it: at most 8 bytes of `[a-z0-9_-]`, big-endian in a u64
/// (so the ledger alone can answer where a ticket got in).
pub fn door_key(door: &str) -> Option<u64> {
    let valid = (1..=8).contains(&door.len())
        && door.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    valid.then(|| {
        let mut key = [0u8; 8];
        key[..door.len()].copy_from_slice(door.as_bytes());
        u64::from_be_bytes(key)
    })
}

pub fn door_name(key: u64) -> String {
    let bytes = key.to_be_bytes();
    String::from_utf8_lossy(&bytes[..bytes.iter().position(|b| *b == 0).unwrap_or(8)]).into_owned()
}

/// What a door scan asks the ledger: one unit of the order's ticket Spent → Admitted, with the
/// door and the staff member's number in it. Its id derives from the order: only the first scan
/// of a ticket creates it; a retry of the very same scan (same door, same staff) is `exists`,
/// any other is `exists` with a different door or staff.
pub fn admission(ledger: u32, resource: Resource, order_id: u128, door: u64, staff: u32) -> Transfer {
    entry(ledger, resource, order_id, 0, door, staff)
}

/// A ticket's `entry`-th entry (re-entry after an exit); entry 0 is its admission.
pub fn entry(ledger: u32, resource: Resource, order_id: u128, entry: u32, door: u64, staff: u32) -> Transfer {
    assert!(door != 0, "doors are named");
    Transfer::new(entry_id(order_id, entry))
        .with_debit_account_id(account_id(ledger, resource, AccountKind::Spent))
        .with_credit_account_id(account_id(ledger, resource, AccountKind::Admitted))
        .with_amount(1)
        .with_ledger(ledger)
        .with_code(code::ADMISSION)
        .with_user_data_128(order_id)
        .with_user_data_64(door)
        .with_user_data_32(staff)
}

/// A ticket leaving after its `entry`-th entry: the unit goes back to Spent, and the ticket may
/// enter once more (entry `entry + 1`).
pub fn exit(ledger: u32, resource: Resource, order_id: u128, entry: u32, door: u64, staff: u32) -> Transfer {
    Transfer::new(exit_id(order_id, entry))
        .with_debit_account_id(account_id(ledger, resource, AccountKind::Admitted))
        .with_credit_account_id(account_id(ledger, resource, AccountKind::Spent))
        .with_amount(1)
        .with_ledger(ledger)
        .with_code(code::EXIT)
        .with_user_data_128(order_id)
        .with_user_data_64(door)
        .with_user_data_32(staff)
}

/// Takes the `entry`-th entry back before its ticket is refunded (linked to the refund). Its id
/// is that entry's exit id: the ledger lets an entry end once, by an exit or by a refund.
pub fn unadmission(ledger: u32, resource: Resource, order_id: u128, entry: u32) -> Transfer {
    Transfer::new(exit_id(order_id, entry))
        .with_debit_account_id(account_id(ledger, resource, AccountKind::Admitted))
        .with_credit_account_id(account_id(ledger, resource, AccountKind::Spent))
        .with_amount(1)
        .with_ledger(ledger)
        .with_code(code::UNADMISSION)
        .with_user_data_128(order_id)
}

/// Returns an order's unit of a resource to sale; `hold_id` is the order's hold of it.
pub fn refund(ledger: u32, resource: Resource, hold_id: u128, order_id: u128) -> Transfer {
    Transfer::new(refund_id(hold_id))
        .with_debit_account_id(account_id(ledger, resource, AccountKind::Spent))
        .with_credit_account_id(account_id(ledger, resource, AccountKind::Budget))
        .with_amount(1)
        .with_ledger(ledger)
        .with_code(code::REFUND)
        .with_user_data_128(order_id)
}

/// The result of one transfer, as far as the application cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferResult {
    Created,
    /// The same transfer was created before: an idempotent success.
    Exists,
    /// A transfer with this id exists with other user data (an admission from another door or
    /// staff member).
    ExistsOtherwise,
    /// Budget has no unit left: sold out.
    ExceedsCredits,
    /// A previous attempt with this id failed transiently (e.g. sold out): same answer again.
    IdAlreadyFailed,
    PendingExpired,
    PendingAlreadyPosted,
    PendingAlreadyVoided,
    PendingNotFound,
    /// Anything else is a programmer error or a corrupted request: carries TigerBeetle's code.
    Other(u32),
}

impl TransferResult {
    /// Maps a transfer's error from TigerBeetle's result enum; `code` is kept for the kinds the
    /// application does not name (it shows in logs and the commit endpoint's answer).
    pub fn from_error(kind: CreateTransferErrorKind, code: u32) -> TransferResult {
        match kind {
            CreateTransferErrorKind::Exists => TransferResult::Exists,
            CreateTransferErrorKind::ExistsWithDifferentUserData64
            | CreateTransferErrorKind::ExistsWithDifferentUserData32 => TransferResult::ExistsOtherwise,
            CreateTransferErrorKind::ExceedsCredits => TransferResult::ExceedsCredits,
            CreateTransferErrorKind::IdAlreadyFailed => TransferResult::IdAlreadyFailed,
            CreateTransferErrorKind::PendingTransferExpired => TransferResult::PendingExpired,
            CreateTransferErrorKind::PendingTransferAlreadyPosted => TransferResult::PendingAlreadyPosted,
            CreateTransferErrorKind::PendingTransferAlreadyVoided => TransferResult::PendingAlreadyVoided,
            CreateTransferErrorKind::PendingTransferNotFound => TransferResult::PendingNotFound,
            _ => TransferResult::Other(code),
        }
    }

    /// Created now or before: the units moved exactly once.
    pub fn is_success(self) -> bool {
        matches!(self, TransferResult::Created | TransferResult::Exists)
    }
}

/// What a resource's balances say about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Inventory {
    pub capacity: u64,
    /// Sold and not refunded.
    pub sold: u64,
    pub active_holds: u64,
    pub available: u64,
    /// Let in at the door (and not taken back).
    pub admitted: u64,
    pub refunded: u64,
}

/// Reads inventory off a resource's Budget, Spent and Admitted accounts.
pub fn inventory(budget: &Account, spent: &Account, admitted: &Account) -> Inventory {
    let narrow = |v: u128| u64::try_from(v).expect("unit balances fit in u64 (CAPACITY_MAX)");
    // Spent's debits are admissions and refunds; Admitted's credits are the admissions.
    let refunded = narrow(spent.debits_posted().saturating_sub(admitted.credits_posted()));
    let capacity = narrow(budget.credits_posted()) - refunded;
    let sold = narrow(budget.debits_posted()) - refunded;
    let held = narrow(spent.credits_pending());
    // Double entry: what Budget gave (and Admitted gave back) is what Spent received.
    assert_eq!(budget.debits_posted() + admitted.debits_posted(), spent.credits_posted());
    assert_eq!(budget.debits_pending(), spent.credits_pending());
    assert!(sold + held <= capacity, "debits exceed credits on a Budget account");
    // Never below zero (every exit ends one entry); saturating, so a request never aborts on it.
    let admitted = narrow(admitted.credits_posted().saturating_sub(admitted.debits_posted()));
    assert!(admitted <= sold + refunded, "more admitted than ever sold");
    Inventory { capacity, sold, active_holds: held, available: capacity - sold - held, admitted, refunded }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_are_deterministic_and_distinct() {
        let a = Resource::class("A");
        let b = Resource::class("B");
        let mut ids = Vec::new();
        for ledger in [1, 2] {
            for resource in [a, b, Resource::GOODIES] {
                for kind in [AccountKind::Operator, AccountKind::Budget, AccountKind::Spent, AccountKind::Admitted] {
                    ids.push(account_id(ledger, resource, kind));
                }
            }
        }
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ids.len());
        assert_eq!(account_id(1, a, AccountKind::Budget), account_id(1, Resource::class("A"), AccountKind::Budget));
    }

    #[test]
    fn budget_forbids_overdraft() {
        let [operator, budget, spent, admitted] = resource_accounts(3, Resource::class("A"));
        assert!(admitted.flags().is_empty());
        assert!(operator.flags().is_empty());
        assert!(budget.flags().contains(account::Flags::DEBITS_MUST_NOT_EXCEED_CREDITS));
        assert!(spent.flags().is_empty());
        assert_eq!(budget.code(), AccountKind::Budget as u16);
    }

    #[test]
    fn funding_covers_only_the_difference() {
        let r = Resource::class("A");
        assert_eq!(funding_needed(0, 50), Some(50));
        assert_eq!(funding_needed(50, 80), Some(30));
        assert_eq!(funding_needed(80, 80), None);
        assert_eq!(funding_needed(80, 50), None);
        let first = funding_transfer(1, r, 0, 50).unwrap();
        assert_eq!(first.amount(), 50);
        assert_eq!(first.id(), funding_transfer(1, r, 0, 50).unwrap().id());
        let raise = funding_transfer(1, r, 50, 80).unwrap();
        assert_eq!(raise.amount(), 30);
        assert_ne!(raise.id(), first.id());
    }

    #[test]
    fn follow_up_ids_derive_from_the_hold() {
        let hold_id = 42;
        assert_eq!(post(hold_id).id(), post(hold_id).id());
        assert_ne!(post_id(hold_id), void_id(hold_id));
        assert_ne!(post_id(hold_id), book_now_id(hold_id));
        assert_ne!(post_id(hold_id), post_id(43));
        let p = post(hold_id);
        assert_eq!(p.pending_id(), hold_id);
        assert!(p.flags().contains(transfer::Flags::POST_PENDING_TRANSFER));
        let v = void(hold_id);
        assert!(v.flags().contains(transfer::Flags::VOID_PENDING_TRANSFER));
    }

    #[test]
    fn admissions_and_refunds() {
        assert_eq!(door_key("north").map(door_name).as_deref(), Some("north"));
        assert_eq!(door_key("gate-12_"), Some(u64::from_be_bytes(*b"gate-12_")));
        for bad in ["", "North", "toolongname", "a b", "é"] {
            assert_eq!(door_key(bad), None, "{bad:?}");
        }
        let a = admission(1, Resource::class("A"), 9, door_key("north").unwrap(), 3);
        assert_eq!(a.id(), admission_id(9));
        assert_ne!(admission_id(9), admission_id(10));
        assert_ne!(admission_id(9), exit_id(9, 0));
        assert_eq!(unadmission(1, Resource::class("A"), 9, 0).id(), exit(1, Resource::class("A"), 9, 0, 1, 1).id());
        assert_eq!((a.user_data_128(), a.user_data_32(), a.code()), (9, 3, code::ADMISSION));
        assert_eq!(a.credit_account_id(), account_id(1, Resource::class("A"), AccountKind::Admitted));
        let r = refund(1, Resource::class("A"), 7, 9);
        assert_eq!(r.id(), refund_id(7));
        assert_eq!(r.credit_account_id(), account_id(1, Resource::class("A"), AccountKind::Budget));
        assert_eq!(unadmission(1, Resource::class("A"), 9, 0).debit_account_id(), a.credit_account_id());
    }

    #[test]
    fn hold_is_pending_with_timeout() {
        let h = hold(1, Resource::GOODIES, 7, 9, 300);
        assert!(h.flags().contains(transfer::Flags::PENDING));
        assert_eq!(h.timeout(), 300);
        assert_eq!(h.user_data_128(), 9);
        assert_eq!(h.debit_account_id(), account_id(1, Resource::GOODIES, AccountKind::Budget));
    }

    #[test]
    fn result_kinds_map() {
        use tb::error::{CreateTransferError, CreateTransferErrorKind as Kind};
        let result = |kind: Kind| TransferResult::from_error(kind, CreateTransferError::from(kind).code().get());
        assert!(result(Kind::Exists).is_success());
        assert_eq!(result(Kind::ExceedsCredits), TransferResult::ExceedsCredits);
        assert_eq!(result(Kind::PendingTransferExpired), TransferResult::PendingExpired);
        // TigerBeetle 0.16's codes, as the C ABI numbers them.
        assert_eq!(CreateTransferError::from(Kind::ExceedsCredits).code().get(), 54);
        assert_eq!(result(Kind::LinkedEventFailed), TransferResult::Other(1));
    }
}

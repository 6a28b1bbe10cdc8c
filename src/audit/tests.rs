//! The reconciliation's unit tests: books made by hand, each with one thing wrong.
use tigerbeetle_unofficial as tb;

use super::reconcile::{reconcile, ResourceLedger};
use super::report::{Finding, Report};
use crate::accounting::{self, code, Resource};
use crate::ids::format_order_id;
use crate::order::{Order, OrderStatus, Session};
use crate::store::AuditSnapshot;

const LEDGER: u32 = 9;
const NOW_MS: u64 = 1_000_000;

fn account(
    id: u128,
    credits_posted: u128,
    debits_posted: u128,
    credits_pending: u128,
    debits_pending: u128,
) -> tb::Account {
    let mut a = tb::Account::new(id, LEDGER, 2);
    let raw = a.as_raw_mut();
    (raw.credits_posted, raw.debits_posted, raw.credits_pending, raw.debits_pending) =
        (credits_posted, debits_posted, credits_pending, debits_pending);
    a
}

fn at(mut t: tb::Transfer, ms: u64) -> tb::Transfer {
    t.as_raw_mut().timestamp = ms * 1_000_000;
    t
}

fn order(num: u128, status: OrderStatus) -> (Order, Session) {
    let session = Session {
        psid: format!("ps_{num}"),
        order_id: format_order_id(num),
        cls: "A".into(),
        email: "a@b.co".into(),
        amount: 1,
        currency: "EUR".into(),
        ticket_hold_id: num * 10,
        goodie_hold_id: None,
        created_at_ms: 0,
        expires_at_ms: NOW_MS + 60_000,
    };
    let order = Order { status, ..Order::pending(&session) };
    (order, session)
}

/// Class A, capacity 10: order 1 PAID (posted), order 2 PENDING (live hold), an unrecorded
/// checkout's live hold (order 3), and whatever `extra` adds.
fn books(extra_orders: &[(u128, OrderStatus)], extra_transfers: Vec<tb::Transfer>) -> Report {
    books_with(extra_orders, extra_transfers, |_| {})
}

fn books_with(
    extra_orders: &[(u128, OrderStatus)],
    extra_transfers: Vec<tb::Transfer>,
    tamper: impl FnOnce(&mut AuditSnapshot),
) -> Report {
    let r = Resource::class("A");
    let hold = |num: u128, ms: u64| at(accounting::hold(LEDGER, r, num * 10, num, 60), ms);
    let mut transfers = vec![
        hold(1, NOW_MS - 5000),
        at(accounting::post(10), NOW_MS - 4000),
        hold(2, NOW_MS - 3000),
        hold(3, NOW_MS - 2000),
    ];
    transfers.extend(extra_transfers);
    let mut snapshot = AuditSnapshot::default();
    for (num, status) in [(1, OrderStatus::Paid), (2, OrderStatus::Pending)].iter().chain(extra_orders) {
        let (o, s) = order(*num, *status);
        if o.status == OrderStatus::Pending {
            snapshot.expiry.push(o.order_id.clone());
        }
        snapshot.orders.push(o);
        snapshot.sessions.push(s);
    }
    let mut counts = [0u64; OrderStatus::ALL.len()];
    for o in &snapshot.orders {
        counts[OrderStatus::ALL.iter().position(|s| *s == o.status).unwrap()] += 1;
    }
    snapshot.counts = OrderStatus::ALL.iter().copied().zip(counts).collect();
    // Balances as TigerBeetle would keep them for these transfers.
    let live_pending = transfers
        .iter()
        .filter(|t| t.flags().contains(tb::transfer::Flags::PENDING))
        .filter(|h| !transfers.iter().any(|t| t.pending_id() == h.id()))
        .count() as u128;
    let sold = transfers
        .iter()
        .filter(|t| t.flags().contains(tb::transfer::Flags::POST_PENDING_TRANSFER) || t.code() == code::BOOK_NOW)
        .count() as u128;
    let resource = ResourceLedger {
        name: "class A".into(),
        class_id: Some("A".into()),
        capacity: 10,
        budget: account(1, 10, sold, 0, live_pending),
        spent: account(2, sold, 0, live_pending, 0),
        admitted: account(3, 0, 0, 0, 0),
        transfers,
        debits: vec![],
    };
    tamper(&mut snapshot);
    reconcile(&[resource], &snapshot, NOW_MS, false)
}

fn checks(findings: &[Finding]) -> Vec<&str> {
    findings.iter().map(|f| f.check.as_str()).collect()
}

#[test]
fn agreeing_books_pass_and_an_unrecorded_checkout_is_a_note() {
    let report = books(&[], vec![]);
    assert!(report.ok, "{:?}", report.mismatches);
    assert_eq!(checks(&report.notes), ["unacknowledged_hold"]);
    let a = &report.resources[0];
    assert_eq!((a.sold_ledger, a.sold_orders, a.held_ledger, a.held_orders, a.held_unacknowledged), (1, 1, 2, 1, 1));
}

#[test]
fn a_void_or_post_the_store_never_recorded_fails() {
    let report = books(&[], vec![at(accounting::void(20), NOW_MS - 1000)]);
    assert_eq!(checks(&report.mismatches), ["unrecorded_void"]);
    assert_eq!(report.mismatches[0].ids, [format_order_id(2)]);
    let report = books(&[], vec![at(accounting::post(20), NOW_MS - 1000)]);
    assert!(checks(&report.mismatches).contains(&"unrecorded_payment"), "{:?}", report.mismatches);
}

#[test]
fn a_unit_sold_twice_or_for_a_final_order_fails() {
    let r = Resource::class("A");
    let report = books(&[], vec![at(accounting::book_now(LEDGER, r, 10, 1), NOW_MS - 100)]);
    assert!(checks(&report.mismatches).contains(&"sold_twice"), "{:?}", report.mismatches);
    let report = books(
        &[(4, OrderStatus::Failed)],
        vec![at(accounting::hold(LEDGER, r, 40, 4, 60), NOW_MS - 900), at(accounting::post(40), NOW_MS - 800)],
    );
    assert!(checks(&report.mismatches).contains(&"sold_not_paid"), "{:?}", report.mismatches);
    // A failed order booked by a late success whose store write is missing: the ledger is
    // ahead (the provider's retry records it), not a unit sold for nothing.
    let report = books(
        &[(5, OrderStatus::Failed)],
        vec![
            at(accounting::hold(LEDGER, r, 50, 5, 60), NOW_MS - 900),
            at(accounting::void(50), NOW_MS - 800),
            at(accounting::book_now(LEDGER, r, 50, 5), NOW_MS - 700),
        ],
    );
    assert_eq!(checks(&report.mismatches), ["sold", "unrecorded_payment"], "{:?}", report.mismatches);
}

#[test]
fn a_pending_order_without_its_hold_and_a_miscounted_store_fail() {
    let report = books(&[(5, OrderStatus::Pending)], vec![]);
    assert_eq!(checks(&report.mismatches), ["hold_missing"]);
    // Expired holds of PENDING orders are fine: the sweeper has not come by yet.
    let r = Resource::class("A");
    let report = books(&[(6, OrderStatus::Pending)], vec![at(accounting::hold(LEDGER, r, 60, 6, 1), NOW_MS - 5000)]);
    assert!(report.ok, "{:?}", report.mismatches);
    let report = books_with(&[], vec![], |s| s.counts[1].1 += 1);
    assert_eq!(checks(&report.mismatches), ["order_counts"]);
    let report = books_with(&[], vec![], |s| s.expiry.clear());
    assert_eq!(checks(&report.mismatches), ["expiry_index"]);
    // A paid order's entry, left for the sweeper, is fine; two entries are not; an expired
    // order's entry is not (the sweeper removes it as it expires the order).
    let expired_hold = || vec![at(accounting::hold(LEDGER, r, 40, 4, 1), NOW_MS - 60_000)];
    let report = books(&[(4, OrderStatus::Expired)], expired_hold());
    assert!(report.ok, "{:?}", report.mismatches);
    let report =
        books_with(&[(4, OrderStatus::Expired)], expired_hold(), |s| s.expiry.push(s.orders[2].order_id.clone()));
    assert_eq!(checks(&report.mismatches), ["expiry_index"]);
    let report = books_with(&[], vec![], |s| s.expiry.push(s.orders[0].order_id.clone()));
    assert!(report.ok, "{:?}", report.mismatches);
    let report = books_with(&[], vec![], |s| {
        let paid = s.orders[0].order_id.clone();
        s.expiry.extend([paid.clone(), paid]);
    });
    assert_eq!(checks(&report.mismatches), ["expiry_index"]);
}

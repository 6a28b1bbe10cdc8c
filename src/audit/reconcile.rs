//! The reconciliation, pure: balances, every transfer on each resource's Spent account, and one
//! store snapshot in; a report out. The module doc of `audit` says what may differ and why.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use tigerbeetle_unofficial as tb;

use super::door::{DoorChecker, DoorLedger};
use super::report::{Findings, Report, ResourceReport};
use crate::accounting::code;
use crate::ids::{id_created_at_ms, parse_order_id};
use crate::order::{Order, OrderStatus, Session};
use crate::store::{AuditSnapshot, SESSION_RETENTION_MS};

/// On a running server, ledger changes this recent may belong to requests still in flight
/// (between their TigerBeetle answer and their store commit): they are notes, not mismatches.
pub const IN_FLIGHT_WINDOW_MS: u64 = 30_000;
/// Whether a hold is live is judged by this machine's clock against the cluster's timestamps:
/// a hold this close to its expiry is not reported as "still live" for a final order.
pub const CLOCK_GRACE_MS: u64 = 2_000;

/// One resource's side of the ledger: its two balances and every transfer crediting Spent.
pub struct ResourceLedger {
    pub name: String,
    /// `None` for the goodie pool.
    pub class_id: Option<String>,
    pub capacity: u64,
    pub budget: tb::Account,
    pub spent: tb::Account,
    pub admitted: tb::Account,
    /// Every transfer crediting Spent.
    pub transfers: Vec<tb::Transfer>,
    /// Every transfer debiting Spent: admissions and refunds.
    pub debits: Vec<tb::Transfer>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HoldState {
    Live,
    Expired,
    Posted,
    Voided,
}

struct Hold {
    order: u128,
    code: u16,
    state: HoldState,
    expires_ns: u64,
    /// When it was posted or voided, or placed if neither.
    changed_ns: u64,
}

pub fn ns(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

fn narrow(v: u128) -> u64 {
    u64::try_from(v).expect("unit balances fit in u64")
}

fn hex(id: u128) -> String {
    format!("{id:032x}")
}

/// The transfers into Spent, sorted by what they are.
#[derive(Default)]
struct Transfers<'t> {
    /// Hold id → when it was posted (voided).
    posted_at: HashMap<u128, u64>,
    voided_at: HashMap<u128, u64>,
    pending: Vec<&'t tb::Transfer>,
    /// Order → when each of its direct bookings happened.
    booked: HashMap<u128, Vec<u64>>,
    /// Order → when its admission was taken back (a forced refund).
    unadmitted: HashMap<u128, u64>,
    /// Order → its exits (re-entry).
    exits: HashMap<u128, u64>,
    /// Units posted or booked: what the Spent balance should add up to.
    posted_units: u64,
}

/// Every hold, by hold id, with the benchmark holds' and unresolved holds' counts.
#[derive(Default)]
struct Holds {
    by_id: HashMap<u128, Hold>,
    held_bench: u64,
    sold_bench: u64,
    unresolved: u64,
}

/// The findings so far, and what every check compares against.
struct Checker<'s> {
    store: &'s AuditSnapshot,
    sessions: HashMap<&'s str, &'s Session>,
    now_ns: u64,
    /// Ledger changes at or after this may belong to requests in flight (`u64::MAX` offline).
    in_flight_after_ns: u64,
    live: bool,
    mismatches: Findings,
    notes: Findings,
}

/// Compares the ledger with the store. `live`: the server is running (see `IN_FLIGHT_WINDOW_MS`;
/// balances are then read before the scan, so only their lower bounds are exact).
pub fn reconcile(resources: &[ResourceLedger], store: &AuditSnapshot, now_ms: u64, live: bool) -> Report {
    // Requests that were between TigerBeetle and the store when the snapshot was taken.
    let in_flight_after_ns =
        if live { store.taken_at_ms.saturating_sub(IN_FLIGHT_WINDOW_MS) * 1_000_000 } else { u64::MAX };
    let mut checker = Checker {
        store,
        sessions: store.sessions.iter().map(|s| (s.psid.as_str(), s)).collect(),
        now_ns: now_ms * 1_000_000,
        in_flight_after_ns,
        live,
        mismatches: Findings::default(),
        notes: Findings::default(),
    };
    let class_ids: HashSet<&str> = resources.iter().filter_map(|r| r.class_id.as_deref()).collect();
    let counted = checker.check_store(&class_ids);
    let reports: Vec<ResourceReport> = resources.iter().map(|r| checker.resource(r)).collect();
    let mismatches = checker.mismatches.into_vec();
    Report {
        ok: mismatches.is_empty(),
        checked_at_ms: now_ms,
        live,
        orders: store.orders.len() as u64,
        sessions: store.sessions.len() as u64,
        order_counts: OrderStatus::ALL.iter().zip(counted).map(|(s, n)| (s.as_str().to_string(), n)).collect(),
        resources: reports,
        mismatches,
        notes: checker.notes.into_vec(),
    }
}

impl Checker<'_> {
    /// The store's own consistency: counts, sessions, classes, the expiry index. Returns the
    /// orders counted per status.
    fn check_store(&mut self, class_ids: &HashSet<&str>) -> [u64; OrderStatus::ALL.len()] {
        let store = self.store;
        let mut counted = [0u64; OrderStatus::ALL.len()];
        for order in &store.orders {
            counted[order.status.index()] += 1;
        }
        for (status, kept) in &store.counts {
            if counted[status.index()] != *kept {
                self.mismatches.add(
                    "order_counts",
                    "the kept count of orders by status differs from the orders",
                    format!("{}: kept {kept}, counted {}", status.as_str(), counted[status.index()]),
                );
            }
        }
        let orders_by_id: HashSet<&str> = store.orders.iter().map(|o| o.order_id.as_str()).collect();
        let mut expiry: HashMap<&str, usize> = HashMap::new();
        for order_id in &store.expiry {
            *expiry.entry(order_id.as_str()).or_default() += 1;
        }
        for order in &store.orders {
            self.check_order_record(order, class_ids, expiry.get(order.order_id.as_str()).copied().unwrap_or(0));
        }
        for session in &store.sessions {
            if !orders_by_id.contains(session.order_id.as_str()) {
                self.mismatches.add("session_without_order", "a payment session has no order", &session.psid);
            }
        }
        counted
    }

    /// One order's record: its session, its class, its expiry entries (`indexed`), its id.
    fn check_order_record(&mut self, order: &Order, class_ids: &HashSet<&str>, indexed: usize) {
        // Sessions are deleted once their time is up (`store::SESSION_RETENTION_MS`).
        let session_kept = order.created_at_ms + SESSION_RETENTION_MS > self.store.taken_at_ms;
        match self.sessions.get(order.psid.as_str()) {
            Some(s) if s.order_id == order.order_id => {}
            Some(_) => self.mismatches.add("session_order", "an order's session names another order", &order.order_id),
            None if session_kept => {
                self.mismatches.add("order_without_session", "an order has no payment session", &order.order_id)
            }
            None => {}
        }
        if !class_ids.contains(order.cls.as_str()) {
            self.mismatches.add(
                "unknown_class",
                "an order of a class the configuration does not have",
                &order.order_id,
            );
        }
        // Every PENDING order once; an EXPIRED one never (the sweeper removed its entry as it
        // expired it); any other at most once (a paid order's entry waits for the sweeper).
        let allowed = match order.status {
            OrderStatus::Pending => 1..=1,
            OrderStatus::Expired => 0..=0,
            _ => 0..=1,
        };
        if !allowed.contains(&indexed) {
            self.mismatches.add(
                "expiry_index",
                "PENDING orders and the expiry index disagree (the order would never expire, or twice)",
                &order.order_id,
            );
        }
        if parse_order_id(&order.order_id).is_none() {
            self.mismatches.add("order_id", "an order id is not one of ours", &order.order_id);
        }
    }

    /// The ledger is ahead of the store for this order: a note while the change may still
    /// belong to a request in flight (between TigerBeetle and its store commit), a mismatch after.
    fn ledger_ahead(&mut self, changed_ns: u64, check: &'static str, detail: &str, id: String) {
        if changed_ns >= self.in_flight_after_ns {
            self.notes.add("in_flight", "a payment being recorded right now", id);
        } else {
            self.mismatches.add(check, detail, id);
        }
    }

    /// One resource: balances, transfers, holds, then order by order, then what the store lacks.
    fn resource(&mut self, r: &ResourceLedger) -> ResourceReport {
        let name = r.name.as_str();
        let report = self.check_balances(r);
        let transfers = self.sort_transfers(r);
        if (!self.live && transfers.posted_units != report.sold_ledger) || transfers.posted_units < report.sold_ledger {
            self.mismatches.add(
                "scan",
                "the transfers found do not add up to the Spent balance",
                format!("{name}: transfers {}, balance {}", transfers.posted_units, report.sold_ledger),
            );
        }
        let holds = self.find_holds(&transfers);
        if !self.live && report.held_ledger > holds.unresolved {
            self.mismatches.add(
                "scan",
                "more units are pending than holds found",
                format!("{name}: pending {}, unresolved holds {}", report.held_ledger, holds.unresolved),
            );
        }
        let sold_by_order = sold_by_order(&holds, &transfers.booked);
        let (sold_orders, held_orders, seen) = self.check_orders(r, &holds, &sold_by_order, &transfers.booked);
        let held_unacknowledged = self.check_unknown_orders(&holds, &transfers.booked, &seen);
        let door = DoorChecker {
            store: self.store,
            mismatches: &mut self.mismatches,
            notes: &mut self.notes,
            in_flight_after_ns: self.in_flight_after_ns,
            live: self.live,
        }
        .check(&DoorLedger {
            name,
            class_id: r.class_id.as_deref(),
            budget: &r.budget,
            spent: &r.spent,
            admitted: &r.admitted,
            debits: &r.debits,
            unadmitted: &transfers.unadmitted,
            exits: &transfers.exits,
        });
        let (sold_bench, held_bench) = (holds.sold_bench, holds.held_bench);
        if report.sold_ledger != sold_orders + sold_bench && !self.live {
            self.mismatches.add(
                "sold",
                "units sold differ from PAID orders (plus benchmark units)",
                format!("{name}: ledger {}, orders {sold_orders}, bench {sold_bench}", report.sold_ledger),
            );
        }
        ResourceReport {
            sold_orders,
            sold_bench,
            held_orders,
            held_unacknowledged,
            held_bench,
            admitted_ledger: door.admitted,
            refunded_ledger: door.refunded,
            admissions_recorded: door.recorded,
            ..report
        }
    }

    /// Budget: funded exactly to capacity, never overdrawn, mirrored by Spent. The report's
    /// ledger figures; the store's are filled in later.
    fn check_balances(&mut self, r: &ResourceLedger) -> ResourceReport {
        let name = r.name.as_str();
        let report = ResourceReport {
            resource: r.name.clone(),
            capacity: r.capacity,
            budget_credits: narrow(r.budget.credits_posted()),
            budget_debits_posted: narrow(r.budget.debits_posted()),
            budget_debits_pending: narrow(r.budget.debits_pending()),
            // Spent's credits are sales, and admissions taken back.
            sold_ledger: narrow(r.spent.credits_posted() - r.admitted.debits_posted()),
            sold_orders: 0,
            sold_bench: 0,
            held_ledger: narrow(r.spent.credits_pending()),
            held_orders: 0,
            held_unacknowledged: 0,
            held_bench: 0,
            admitted_ledger: 0,
            refunded_ledger: 0,
            admissions_recorded: 0,
            transfers_scanned: (r.transfers.len() + r.debits.len()) as u64,
        };
        // Budget's credits are its funding and the refunds (Spent's debits but the admissions).
        let refunded = narrow(r.spent.debits_posted().saturating_sub(r.admitted.credits_posted()));
        let funded = report.budget_credits.saturating_sub(refunded);
        if funded < r.capacity {
            self.mismatches.add("budget_funding", "a budget holds less than its configured capacity", name);
        } else if funded > r.capacity {
            self.notes.add("capacity_lowered", "a budget holds more than its capacity (lowering is not applied)", name);
        }
        if report.budget_debits_posted + report.budget_debits_pending > report.budget_credits {
            self.mismatches.add("oversold", "a budget's debits exceed its credits", name);
        }
        if r.budget.debits_posted() + r.admitted.debits_posted() != r.spent.credits_posted()
            || r.budget.debits_pending() != r.spent.credits_pending()
        {
            self.mismatches.add("double_entry", "Budget debits and Spent credits differ", name);
        }
        report
    }

    /// Every transfer crediting Spent: holds, their posts and voids, direct bookings.
    fn sort_transfers<'t>(&mut self, r: &'t ResourceLedger) -> Transfers<'t> {
        let mut out = Transfers::default();
        let mut posted_units: u128 = 0;
        for t in &r.transfers {
            let flags = t.flags();
            if flags.contains(tb::transfer::Flags::PENDING) {
                out.pending.push(t);
            } else if flags.contains(tb::transfer::Flags::POST_PENDING_TRANSFER) {
                out.posted_at.insert(t.pending_id(), ns(t.timestamp()));
                posted_units += t.amount();
            } else if flags.contains(tb::transfer::Flags::VOID_PENDING_TRANSFER) {
                out.voided_at.insert(t.pending_id(), ns(t.timestamp()));
            } else if t.code() == code::BOOK_NOW {
                out.booked.entry(t.user_data_128()).or_default().push(ns(t.timestamp()));
                posted_units += t.amount();
            } else if t.code() == code::UNADMISSION {
                out.unadmitted.insert(t.user_data_128(), ns(t.timestamp()));
            } else if t.code() == code::EXIT {
                *out.exits.entry(t.user_data_128()).or_default() += 1;
            } else {
                self.mismatches.add(
                    "unknown_transfer",
                    "a transfer into Spent that tigerfans does not make",
                    hex(t.id()),
                );
            }
        }
        out.posted_units = narrow(posted_units);
        out
    }

    /// Each pending transfer and what became of it.
    fn find_holds(&mut self, transfers: &Transfers<'_>) -> Holds {
        let mut holds = Holds { by_id: HashMap::with_capacity(transfers.pending.len()), ..Holds::default() };
        for t in &transfers.pending {
            let placed_ns = ns(t.timestamp());
            let expires_ns = placed_ns + u64::from(t.timeout()) * 1_000_000_000;
            let (state, changed_ns) = if let Some(at) = transfers.posted_at.get(&t.id()) {
                (HoldState::Posted, *at)
            } else if let Some(at) = transfers.voided_at.get(&t.id()) {
                (HoldState::Voided, *at)
            } else if expires_ns > self.now_ns {
                holds.unresolved += 1;
                (HoldState::Live, placed_ns)
            } else {
                holds.unresolved += 1;
                (HoldState::Expired, placed_ns)
            };
            if t.code() == code::BENCH_HOLD {
                match state {
                    HoldState::Posted => holds.sold_bench += 1,
                    HoldState::Live => holds.held_bench += 1,
                    _ => {}
                }
            } else if t.code() != code::HOLD {
                self.mismatches.add(
                    "unknown_transfer",
                    "a pending transfer with a code tigerfans does not use",
                    hex(t.id()),
                );
            }
            let hold = Hold { order: t.user_data_128(), code: t.code(), state, expires_ns, changed_ns };
            holds.by_id.insert(t.id(), hold);
        }
        holds
    }

    /// Order by order, this resource's unit and hold against the order's status. Returns (PAID
    /// orders, open orders with a live hold, the orders seen).
    fn check_orders(
        &mut self,
        r: &ResourceLedger,
        holds: &Holds,
        sold_by_order: &HashMap<u128, (u64, u64)>,
        booked: &HashMap<u128, Vec<u64>>,
    ) -> (u64, u64, HashSet<u128>) {
        let is_goodies = r.class_id.is_none();
        let (mut sold_orders, mut held_orders) = (0u64, 0u64);
        let mut seen = HashSet::new();
        for order in &self.store.orders {
            if !is_goodies && Some(order.cls.as_str()) != r.class_id.as_deref() {
                continue;
            }
            let Some(num) = parse_order_id(&order.order_id) else { continue };
            seen.insert(num);
            // A refunded order's unit was sold, then returned (`door`: the refund's transfer).
            let had_ticket = order.status == OrderStatus::Paid
                || (order.status == OrderStatus::Refunded && order.ticket_code.is_some());
            let expected = if is_goodies { order.got_goodie } else { had_ticket };
            sold_orders += u64::from(expected);
            let (units, changed_ns) = sold_by_order.get(&num).copied().unwrap_or((0, 0));
            self.check_sold(order, expected, units, changed_ns, booked.contains_key(&num));
            held_orders += u64::from(self.check_hold(order, num, is_goodies, holds));
        }
        (sold_orders, held_orders, seen)
    }

    /// The ledger's units for an order (`units`, the newest at `changed_ns`; `booked`: one is a
    /// direct booking) against whether it should have one (`expected`).
    fn check_sold(&mut self, order: &Order, expected: bool, units: u64, changed_ns: u64, booked: bool) {
        let id = order.order_id.clone();
        match (expected, units) {
            (true, 1) | (false, 0) => {}
            (_, n) if n > 1 => self.mismatches.add("sold_twice", "an order holds more than one unit", id),
            (true, _) => self.mismatches.add(
                "paid_not_sold",
                "the store says the order has its unit, the ledger has not sold it",
                id,
            ),
            // An open order, or a failed or canceled one whose late success was booked (never a
            // post: its hold was voided): its webhook's store write is what is missing.
            (false, _) if order.status.is_open() || (booked && order.status.accepts(OrderStatus::Paid)) => self
                .ledger_ahead(
                    changed_ns,
                    "unrecorded_payment",
                    "sold in the ledger, order still open: an unacknowledged webhook (its retry records it)",
                    id,
                ),
            (false, _) => {
                self.mismatches.add("sold_not_paid", "sold in the ledger, but the order's answer was final", id)
            }
        }
    }

    /// The hold behind an order against its status. True for an open order with a live hold.
    fn check_hold(&mut self, order: &Order, num: u128, is_goodies: bool, holds: &Holds) -> bool {
        let hold_id = if is_goodies { order.goodie_hold_id } else { Some(order.ticket_hold_id) };
        let Some(hold_id) = hold_id else { return false };
        let id = order.order_id.clone();
        let Some(hold) = holds.by_id.get(&hold_id) else {
            if order.status == OrderStatus::Pending {
                self.mismatches.add("hold_missing", "an open order's hold is not in the ledger", id);
            }
            return false;
        };
        if hold.order != num {
            self.mismatches.add("hold_order", "a hold names another order", id.clone());
        }
        let live_after_grace = hold.expires_ns > self.now_ns + CLOCK_GRACE_MS * 1_000_000;
        match (order.status, hold.state) {
            (OrderStatus::Pending, HoldState::Live) => return true,
            (status, HoldState::Voided) if status.is_open() && !is_goodies => self.ledger_ahead(
                hold.changed_ns,
                "unrecorded_void",
                "hold voided in the ledger, order still open: an unacknowledged webhook",
                id,
            ),
            (status, HoldState::Live) if !status.is_open() && !is_goodies && live_after_grace => {
                self.mismatches.add("final_order_still_held", "a final order's hold is still live", id)
            }
            _ => {}
        }
        false
    }

    /// Ledger activity for orders the store does not have. Order ids begin with their creation
    /// time in ms (`ids::new_id`): on a running server, orders created since shortly before the
    /// snapshot may simply not be in it yet. Returns the live holds of unrecorded checkouts.
    fn check_unknown_orders(&mut self, holds: &Holds, booked: &HashMap<u128, Vec<u64>>, seen: &HashSet<u128>) -> u64 {
        let in_flight_after_ns = self.in_flight_after_ns;
        let in_flight = |num: u128| id_created_at_ms(num).saturating_mul(1_000_000) >= in_flight_after_ns;
        let holds_by_order: HashMap<u128, &Hold> =
            holds.by_id.values().filter(|h| h.code == code::HOLD).map(|h| (h.order, h)).collect();
        let mut held_unacknowledged = 0u64;
        for (num, hold) in &holds_by_order {
            if seen.contains(num) {
                continue;
            }
            if in_flight(*num) && hold.state != HoldState::Live {
                self.notes.add("in_flight", "an order created after the store snapshot", hex(*num));
                continue;
            }
            match hold.state {
                HoldState::Live => {
                    held_unacknowledged += 1;
                    self.notes.add(
                        "unacknowledged_hold",
                        "a hold of a checkout the store never recorded (a crash, a 503): it expires by itself",
                        hex(*num),
                    );
                }
                HoldState::Posted => self.mismatches.add(
                    "sold_without_order",
                    "a unit sold for an order the store does not have",
                    hex(*num),
                ),
                _ => {}
            }
        }
        for num in booked.keys() {
            if !seen.contains(num) && !in_flight(*num) {
                self.mismatches.add(
                    "sold_without_order",
                    "a unit sold for an order the store does not have",
                    hex(*num),
                );
            }
        }
        held_unacknowledged
    }
}

/// Units sold per order by the ledger, with the newest change: (units, ns).
fn sold_by_order(holds: &Holds, booked: &HashMap<u128, Vec<u64>>) -> HashMap<u128, (u64, u64)> {
    let mut sold: HashMap<u128, (u64, u64)> = HashMap::new();
    for hold in holds.by_id.values().filter(|h| h.code == code::HOLD && h.state == HoldState::Posted) {
        let entry = sold.entry(hold.order).or_default();
        entry.0 += 1;
        entry.1 = entry.1.max(hold.changed_ns);
    }
    for (order, times) in booked {
        let entry = sold.entry(*order).or_default();
        entry.0 += times.len() as u64;
        entry.1 = entry.1.max(times.iter().copied().max().unwrap_or(0));
    }
    sold
}

//! The audit of the door and of refunds, for one resource: every transfer debiting Spent
//! (admissions, refunds) and every admission taken back, against the orders and the store's
//! admission records.
//!
//! Must hold: an admission belongs to a PAID order (or to a refunded one whose admission was
//! taken back by the forced refund); no ticket is admitted twice; Admitted's balance is the
//! admissions less those taken back, and at most what was sold; a refunded order returned
//! exactly its units; the store records no admission the ledger lacks. The ledger may be ahead:
//! an admission the store has no record of is a scan that never answered (the next scan of that
//! ticket admits it), a refund of an order still PAID is one whose store write is missing.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use tigerbeetle_unofficial as tb;

use super::report::Findings;
use crate::accounting::code;
use crate::ids::parse_order_id;
use crate::order::{Order, OrderStatus};
use crate::store::AuditSnapshot;

fn ns(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

fn narrow(v: u128) -> u64 {
    u64::try_from(v).expect("unit balances fit in u64")
}

fn hex(id: u128) -> String {
    format!("{id:032x}")
}

/// One resource's door side of the ledger.
pub struct DoorLedger<'a> {
    pub name: &'a str,
    /// `None` for the goodie pool.
    pub class_id: Option<&'a str>,
    pub budget: &'a tb::Account,
    pub spent: &'a tb::Account,
    pub admitted: &'a tb::Account,
    /// Every transfer debiting Spent.
    pub debits: &'a [tb::Transfer],
    /// Order → when its admission was taken back (from Spent's credits).
    pub unadmitted: &'a HashMap<u128, u64>,
    /// Order → how many times it left through an exit scan (re-entry; from Spent's credits).
    pub exits: &'a HashMap<u128, u64>,
}

/// Where the door's findings go, and what they are judged by (as the reconciliation's).
pub struct DoorChecker<'a> {
    pub store: &'a AuditSnapshot,
    pub mismatches: &'a mut Findings,
    pub notes: &'a mut Findings,
    pub in_flight_after_ns: u64,
    pub live: bool,
}

/// What the report shows of one resource's door.
pub struct DoorFigures {
    pub admitted: u64,
    pub refunded: u64,
    pub recorded: u64,
}

impl DoorChecker<'_> {
    fn ledger_ahead(&mut self, changed_ns: u64, check: &'static str, detail: &str, id: String) {
        if changed_ns >= self.in_flight_after_ns {
            self.notes.add("in_flight", "a refund being recorded right now", id);
        } else {
            self.mismatches.add(check, detail, id);
        }
    }

    pub fn check(&mut self, r: &DoorLedger<'_>) -> DoorFigures {
        let unadmitted = r.unadmitted;
        let is_goodies = r.class_id.is_none();
        let orders: HashMap<u128, &Order> = self
            .store
            .orders
            .iter()
            .filter(|o| is_goodies || Some(o.cls.as_str()) == r.class_id)
            .filter_map(|o| parse_order_id(&o.order_id).map(|num| (num, o)))
            .collect();
        let (admissions, entries, refunds) = self.sort_debits(r.debits);
        // Inside now, per ticket: its entries less its exits and its unadmission: 0 or 1.
        let mut inside: HashMap<u128, i64> = HashMap::with_capacity(entries.len());
        for (num, n) in &entries {
            let out = r.exits.get(num).copied().unwrap_or(0) + u64::from(unadmitted.contains_key(num));
            let now = *n as i64 - out as i64;
            if !(0..=1).contains(&now) {
                // Live, Spent's credits (exits) are scanned before its debits (entries): an exit
                // and a re-entry in between look like two entries.
                let findings = if self.live { &mut *self.notes } else { &mut *self.mismatches };
                findings.add("inside_twice", "a ticket inside more than once, or out more than in", hex(*num));
            }
            inside.insert(*num, now);
        }
        for num in r.exits.keys().filter(|n| !entries.contains_key(n)) {
            self.mismatches.add("exit_without_entry", "an exit of a ticket that never got in", hex(*num));
        }
        self.check_admissions(&orders, &admissions, &inside, unadmitted, is_goodies);
        self.check_refunds(&orders, &refunds, is_goodies);
        let recorded = self.check_recorded(r, &admissions);
        let admitted = narrow(r.admitted.credits_posted().saturating_sub(r.admitted.debits_posted()));
        let inside_scanned = inside.values().filter(|n| **n > 0).sum::<i64>() as u64;
        // Live, balances are read before the scans: exits and entries since then make the two
        // differ either way (a note); offline they must agree.
        if inside_scanned != admitted {
            let findings = if self.live { &mut *self.notes } else { &mut *self.mismatches };
            findings.add(
                "scan",
                "the admissions found do not add up to the Admitted balance",
                format!("{}: admissions {inside_scanned}, balance {admitted}", r.name),
            );
        }
        // From one lookup's balances: sold and not refunded (refunds are Spent's other debits).
        let refunded = r.spent.debits_posted().saturating_sub(r.admitted.credits_posted());
        let sold_now = narrow(r.budget.debits_posted().saturating_sub(refunded));
        if admitted > sold_now {
            self.mismatches.add("admitted_over_sold", "more tickets inside than sold", r.name);
        }
        DoorFigures { admitted, refunded: refunds.len() as u64, recorded }
    }

    /// Spent's debits by kind: first admissions by order, entries (with re-entries) counted by
    /// order, refunds by order (with their time).
    #[allow(clippy::type_complexity)]
    fn sort_debits<'t>(
        &mut self,
        debits: &'t [tb::Transfer],
    ) -> (HashMap<u128, &'t tb::Transfer>, HashMap<u128, u64>, HashMap<u128, u64>) {
        let (mut admissions, mut entries, mut refunds) = (HashMap::new(), HashMap::new(), HashMap::new());
        for t in debits {
            let order = t.user_data_128();
            let twice = match t.code() {
                code::ADMISSION => {
                    *entries.entry(order).or_default() += 1;
                    t.id() == crate::accounting::admission_id(order) && admissions.insert(order, t).is_some()
                }
                code::REFUND => refunds.insert(order, ns(t.timestamp())).is_some(),
                _ => {
                    self.mismatches.add(
                        "unknown_transfer",
                        "a transfer out of Spent that tigerfans does not make",
                        hex(t.id()),
                    );
                    false
                }
            };
            if twice {
                self.mismatches.add("moved_twice", "an order admitted or refunded twice", hex(order));
            }
        }
        for num in entries.keys().filter(|n| !admissions.contains_key(n)) {
            self.mismatches.add("entry_without_admission", "a re-entry of a ticket never admitted", hex(*num));
        }
        (admissions, entries, refunds)
    }

    fn check_admissions(
        &mut self,
        orders: &HashMap<u128, &Order>,
        admissions: &HashMap<u128, &tb::Transfer>,
        inside: &HashMap<u128, i64>,
        unadmitted: &HashMap<u128, u64>,
        is_goodies: bool,
    ) {
        for (num, t) in admissions {
            if is_goodies {
                self.mismatches.add("admitted_goodie", "an admission on the goodie pool", hex(t.id()));
                continue;
            }
            let taken_back = unadmitted.contains_key(num);
            match orders.get(num).map(|o| o.status) {
                None => self.mismatches.add(
                    "admitted_without_order",
                    "an admission of an order the store does not have",
                    hex(*num),
                ),
                Some(OrderStatus::Paid) if !taken_back => {}
                Some(OrderStatus::Paid) => self.ledger_ahead(
                    unadmitted[num],
                    "unrecorded_refund",
                    "an admission taken back, order still PAID: a forced refund's store write is missing",
                    hex(*num),
                ),
                // Refunded while outside (re-entry), or taken back by the forced refund.
                Some(OrderStatus::Refunded) if inside.get(num).copied().unwrap_or(0) <= 0 => {}
                Some(OrderStatus::Refunded) => {
                    self.mismatches.add("refunded_still_inside", "a refunded ticket is still admitted", hex(*num))
                }
                Some(_) => {
                    self.mismatches.add("admitted_not_paid", "an admission of an order that is not paid", hex(*num))
                }
            }
        }
        for num in unadmitted.keys().filter(|n| !admissions.contains_key(n)) {
            self.mismatches.add("unadmitted_not_admitted", "an admission taken back that was never made", hex(*num));
        }
    }

    fn check_refunds(&mut self, orders: &HashMap<u128, &Order>, refunds: &HashMap<u128, u64>, is_goodies: bool) {
        for (num, at_ns) in refunds {
            match orders.get(num).map(|o| o.status) {
                None => self.mismatches.add(
                    "refund_without_order",
                    "a refund of an order the store does not have",
                    hex(*num),
                ),
                Some(OrderStatus::Refunded) => {}
                Some(status) if status.is_paid() => self.ledger_ahead(
                    *at_ns,
                    "unrecorded_refund",
                    "units refunded in the ledger, order still paid: a refund's store write is missing (retry it)",
                    hex(*num),
                ),
                Some(_) => {
                    self.mismatches.add("refund_not_paid", "a refund of an order that was never paid", hex(*num))
                }
            }
        }
        for (num, order) in orders.iter().filter(|(_, o)| o.status == OrderStatus::Refunded) {
            let had_unit = if is_goodies { order.got_goodie } else { order.ticket_code.is_some() };
            match (had_unit, refunds.contains_key(num)) {
                (true, false) => {
                    self.mismatches.add("refund_missing", "a refunded order's unit was not returned", hex(*num))
                }
                (false, true) => {
                    self.mismatches.add("refund_without_unit", "a refund returned a unit never sold", hex(*num))
                }
                _ => {}
            }
        }
    }

    /// The store's admission records against the ledger's admissions: the store is read first,
    /// so each record must be in the ledger. Returns how many records this class has.
    fn check_recorded(&mut self, r: &DoorLedger<'_>, admissions: &HashMap<u128, &tb::Transfer>) -> u64 {
        let Some(class_id) = r.class_id else { return 0 };
        let mut recorded: HashSet<u128> = HashSet::new();
        for a in self.store.admissions.iter().filter(|a| a.cls == class_id) {
            let Some(num) = parse_order_id(&a.order_id) else { continue };
            recorded.insert(num);
            if !admissions.contains_key(&num) {
                self.mismatches.add(
                    "admission_not_in_ledger",
                    "the store records an admission the ledger lacks",
                    &a.order_id,
                );
            }
        }
        for num in admissions.keys().filter(|n| !recorded.contains(n)) {
            self.notes.add(
                "unanswered_admission",
                "admitted in the ledger, never answered at the door (the next scan of the ticket admits it)",
                hex(*num),
            );
        }
        recorded.len() as u64
    }
}

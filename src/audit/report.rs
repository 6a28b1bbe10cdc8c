//! What an audit reports: per resource the ledger's and the store's figures side by side, the
//! mismatches (which fail it) and the notes (which do not), and the report for a terminal.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A finding lists at most this many ids (the count is always complete).
pub const FINDING_IDS_MAX: usize = 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finding {
    pub check: String,
    pub detail: String,
    pub count: usize,
    pub ids: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResourceReport {
    pub resource: String,
    pub capacity: u64,
    pub budget_credits: u64,
    pub budget_debits_posted: u64,
    pub budget_debits_pending: u64,
    /// Spent credits posted: units sold, by the ledger.
    pub sold_ledger: u64,
    /// PAID orders of this class (orders with a goodie, for the goodie pool).
    pub sold_orders: u64,
    /// Units sold through the bare accounting endpoints (benchmarks): no order stands for them.
    pub sold_bench: u64,
    /// Spent credits pending: units on hold, by the ledger.
    pub held_ledger: u64,
    /// Open orders whose hold is live.
    pub held_orders: u64,
    /// Live holds of checkouts the store never recorded (they expire by themselves).
    pub held_unacknowledged: u64,
    pub held_bench: u64,
    /// Units inside (Admitted's balance), refunded units, and the store's admission records.
    #[serde(default)]
    pub admitted_ledger: u64,
    #[serde(default)]
    pub refunded_ledger: u64,
    #[serde(default)]
    pub admissions_recorded: u64,
    pub transfers_scanned: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub ok: bool,
    pub checked_at_ms: u64,
    pub live: bool,
    pub orders: u64,
    pub sessions: u64,
    pub order_counts: BTreeMap<String, u64>,
    pub resources: Vec<ResourceReport>,
    pub mismatches: Vec<Finding>,
    pub notes: Vec<Finding>,
}

/// Collects ids per check, so a report says "12 orders" once rather than 12 times.
#[derive(Default)]
pub struct Findings {
    by_check: BTreeMap<&'static str, (String, Vec<String>)>,
}

impl Findings {
    pub fn add(&mut self, check: &'static str, detail: &str, id: impl Into<String>) {
        let entry = self.by_check.entry(check).or_insert_with(|| (detail.to_string(), Vec::new()));
        entry.1.push(id.into());
    }

    pub fn into_vec(self) -> Vec<Finding> {
        self.by_check
            .into_iter()
            .map(|(check, (detail, ids))| Finding {
                check: check.to_string(),
                detail,
                count: ids.len(),
                ids: ids.into_iter().take(FINDING_IDS_MAX).collect(),
            })
            .collect()
    }
}

/// The report for a terminal.
pub fn render(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "audit of {} orders, {} sessions ({}){}",
        report.orders,
        report.sessions,
        report.order_counts.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "),
        if report.live { ", on a running server" } else { "" }
    );
    let _ = writeln!(
        s,
        "{:<12} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "resource", "capacity", "sold", "PAID", "bench", "held", "open", "unacked", "admitted", "refunded"
    );
    for r in &report.resources {
        let _ = writeln!(
            s,
            "{:<12} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
            r.resource,
            r.capacity,
            r.sold_ledger,
            r.sold_orders,
            r.sold_bench,
            r.held_ledger,
            r.held_orders,
            r.held_unacknowledged,
            r.admitted_ledger,
            r.refunded_ledger
        );
    }
    for (label, findings) in [("MISMATCH", &report.mismatches), ("note", &report.notes)] {
        for f in findings {
            let more =
                if f.count > f.ids.len() { format!(" (+{} more)", f.count - f.ids.len()) } else { String::new() };
            let _ = writeln!(s, "{label} {}: {} ×{}: {}{more}", f.check, f.detail, f.count, f.ids.join(" "));
        }
    }
    let _ = writeln!(s, "{}", if report.ok { "audit passed" } else { "audit FAILED" });
    s
}

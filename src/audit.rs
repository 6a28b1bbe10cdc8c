//! The audit: TigerBeetle's ledger cross-checked against the store, order by order.
//!
//! The ledger is the truth about units (it cannot oversell); the store is the truth about what
//! customers were told. They are written in that order (a hold before its session, a post before
//! its PAID), so after any crash the ledger may be *ahead* of the store, never behind:
//!
//! * a hold with no order is an unacknowledged checkout: it expires by itself (a note);
//! * a hold posted or voided while its order is still open is an unacknowledged webhook: the
//!   provider's retry records it (a mismatch until then, with the order ids to look at);
//! * a PAID order whose unit is not sold, a unit sold twice, an overdrawn budget, a count that
//!   disagrees with the orders: these must never happen (mismatches).
//!
//! `reconcile` is pure: balances, every transfer on each resource's Spent account, and one store
//! snapshot in; a report out. `run` does the IO.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use serde::{Deserialize, Serialize};
use tigerbeetle_unofficial as tb;

use crate::accounting::{self, code, AccountKind};
use crate::config::Config;
use crate::flow::parse_order_id;
use crate::ledger::Ledger;
use crate::replica;
use crate::store::{AuditSnapshot, OrderStatus, Store};

/// Transfers fetched per `get_account_transfers` request (TigerBeetle's maximum reply).
pub const SCAN_PAGE_MAX: u32 = 8189;
/// Transfers scanned per resource at most (128 bytes each in memory while the audit runs); a
/// larger ledger is refused rather than half-checked.
pub const SCAN_TRANSFERS_MAX: usize = 10_000_000;
/// A finding lists at most this many ids (the count is always complete).
pub const FINDING_IDS_MAX: usize = 20;
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
    pub transfers: Vec<tb::Transfer>,
}

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
struct Findings {
    by_check: BTreeMap<&'static str, (String, Vec<String>)>,
}

impl Findings {
    fn add(&mut self, check: &'static str, detail: &str, id: impl Into<String>) {
        let entry = self.by_check.entry(check).or_insert_with(|| (detail.to_string(), Vec::new()));
        entry.1.push(id.into());
    }

    fn into_vec(self) -> Vec<Finding> {
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

fn ns(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

fn narrow(v: u128) -> u64 {
    u64::try_from(v).expect("unit balances fit in u64")
}

fn hex(id: u128) -> String {
    format!("{id:032x}")
}

/// Compares the ledger with the store. `live`: the server is running (see `IN_FLIGHT_WINDOW_MS`;
/// balances are then read before the scan, so only their lower bounds are exact).
pub fn reconcile(resources: &[ResourceLedger], store: &AuditSnapshot, now_ms: u64, live: bool) -> Report {
    let now_ns = now_ms * 1_000_000;
    // Requests that were between TigerBeetle and the store when the snapshot was taken.
    let in_flight_after_ns =
        if live { store.taken_at_ms.saturating_sub(IN_FLIGHT_WINDOW_MS) * 1_000_000 } else { u64::MAX };
    let mut mismatches = Findings::default();
    let mut notes = Findings::default();

    // The store's own consistency.
    let mut counted = [0u64; OrderStatus::ALL.len()];
    for order in &store.orders {
        counted[OrderStatus::ALL.iter().position(|s| *s == order.status).expect("listed")] += 1;
    }
    for (status, kept) in &store.counts {
        let index = OrderStatus::ALL.iter().position(|s| s == status).expect("listed");
        if counted[index] != *kept {
            mismatches.add(
                "order_counts",
                "the kept count of orders by status differs from the orders",
                format!("{}: kept {kept}, counted {}", status.as_str(), counted[index]),
            );
        }
    }
    let sessions: HashMap<&str, &crate::store::Session> = store.sessions.iter().map(|s| (s.psid.as_str(), s)).collect();
    let orders_by_id: HashMap<&str, &crate::store::Order> =
        store.orders.iter().map(|o| (o.order_id.as_str(), o)).collect();
    let mut expiry: HashMap<&str, usize> = HashMap::new();
    for order_id in &store.expiry {
        *expiry.entry(order_id.as_str()).or_default() += 1;
    }
    let class_ids: HashSet<&str> = resources.iter().filter_map(|r| r.class_id.as_deref()).collect();
    for order in &store.orders {
        match sessions.get(order.psid.as_str()) {
            Some(s) if s.order_id == order.order_id => {}
            _ => mismatches.add("order_without_session", "an order has no payment session", &order.order_id),
        }
        if !class_ids.contains(order.cls.as_str()) {
            mismatches.add("unknown_class", "an order of a class the configuration does not have", &order.order_id);
        }
        // Every PENDING order once; an EXPIRED one never (the sweeper removed its entry as it
        // expired it); any other at most once (a paid order's entry waits for the sweeper).
        let indexed = expiry.get(order.order_id.as_str()).copied().unwrap_or(0);
        let allowed = match order.status {
            OrderStatus::Pending => 1..=1,
            OrderStatus::Expired => 0..=0,
            _ => 0..=1,
        };
        if !allowed.contains(&indexed) {
            mismatches.add(
                "expiry_index",
                "PENDING orders and the expiry index disagree (the order would never expire, or twice)",
                &order.order_id,
            );
        }
        if parse_order_id(&order.order_id).is_none() {
            mismatches.add("order_id", "an order id is not one of ours", &order.order_id);
        }
    }
    for session in &store.sessions {
        if !orders_by_id.contains_key(session.order_id.as_str()) {
            mismatches.add("session_without_order", "a payment session has no order", &session.psid);
        }
    }

    let mut reports = Vec::with_capacity(resources.len());
    for resource in resources {
        reports.push(reconcile_resource(
            resource,
            store,
            &sessions,
            now_ns,
            in_flight_after_ns,
            live,
            &mut mismatches,
            &mut notes,
        ));
    }

    let mismatches = mismatches.into_vec();
    Report {
        ok: mismatches.is_empty(),
        checked_at_ms: now_ms,
        live,
        orders: store.orders.len() as u64,
        sessions: store.sessions.len() as u64,
        order_counts: OrderStatus::ALL.iter().zip(counted).map(|(s, n)| (s.as_str().to_string(), n)).collect(),
        resources: reports,
        mismatches,
        notes: notes.into_vec(),
    }
}

/// The ledger is ahead of the store for this order: a note while the change may still belong to
/// a request in flight (between TigerBeetle and its store commit), a mismatch after that.
fn ledger_ahead(
    mismatches: &mut Findings,
    notes: &mut Findings,
    in_flight: bool,
    check: &'static str,
    detail: &str,
    id: String,
) {
    if in_flight {
        notes.add("in_flight", "a payment being recorded right now", id);
    } else {
        mismatches.add(check, detail, id);
    }
}

#[allow(clippy::too_many_arguments)]
fn reconcile_resource(
    r: &ResourceLedger,
    store: &AuditSnapshot,
    sessions: &HashMap<&str, &crate::store::Session>,
    now_ns: u64,
    in_flight_after_ns: u64,
    live: bool,
    mismatches: &mut Findings,
    notes: &mut Findings,
) -> ResourceReport {
    let budget_credits = narrow(r.budget.credits_posted());
    let budget_debits_posted = narrow(r.budget.debits_posted());
    let budget_debits_pending = narrow(r.budget.debits_pending());
    let sold_ledger = narrow(r.spent.credits_posted());
    let held_ledger = narrow(r.spent.credits_pending());
    let name = r.name.as_str();

    // Budget: funded exactly to capacity, never overdrawn, mirrored by Spent.
    if budget_credits < r.capacity {
        mismatches.add("budget_funding", "a budget holds less than its configured capacity", name);
    } else if budget_credits > r.capacity {
        notes.add("capacity_lowered", "a budget holds more than its capacity (lowering is not applied)", name);
    }
    if budget_debits_posted + budget_debits_pending > budget_credits {
        mismatches.add("oversold", "a budget's debits exceed its credits", name);
    }
    if r.budget.debits_posted() != r.spent.credits_posted() || r.budget.debits_pending() != r.spent.credits_pending() {
        mismatches.add("double_entry", "Budget debits and Spent credits differ", name);
    }

    // Every transfer crediting Spent: holds, their posts and voids, direct bookings.
    let mut posted_at: HashMap<u128, u64> = HashMap::new();
    let mut voided_at: HashMap<u128, u64> = HashMap::new();
    let mut pending: Vec<&tb::Transfer> = Vec::new();
    let mut booked: HashMap<u128, Vec<u64>> = HashMap::new();
    let mut posted_units: u128 = 0;
    for t in &r.transfers {
        let flags = t.flags();
        if flags.contains(tb::transfer::Flags::PENDING) {
            pending.push(t);
        } else if flags.contains(tb::transfer::Flags::POST_PENDING_TRANSFER) {
            posted_at.insert(t.pending_id(), ns(t.timestamp()));
            posted_units += t.amount();
        } else if flags.contains(tb::transfer::Flags::VOID_PENDING_TRANSFER) {
            voided_at.insert(t.pending_id(), ns(t.timestamp()));
        } else if t.code() == code::BOOK_NOW {
            booked.entry(t.user_data_128()).or_default().push(ns(t.timestamp()));
            posted_units += t.amount();
        } else {
            mismatches.add("unknown_transfer", "a transfer into Spent that tigerfans does not make", hex(t.id()));
        }
    }
    let posted_units = narrow(posted_units);
    if (!live && posted_units != sold_ledger) || posted_units < sold_ledger {
        mismatches.add(
            "scan",
            "the transfers found do not add up to the Spent balance",
            format!("{name}: transfers {posted_units}, balance {sold_ledger}"),
        );
    }

    let mut holds: HashMap<u128, Hold> = HashMap::with_capacity(pending.len());
    let (mut held_bench, mut sold_bench, mut unresolved) = (0u64, 0u64, 0u64);
    for t in pending {
        let placed_ns = ns(t.timestamp());
        let expires_ns = placed_ns + u64::from(t.timeout()) * 1_000_000_000;
        let (state, changed_ns) = if let Some(at) = posted_at.get(&t.id()) {
            (HoldState::Posted, *at)
        } else if let Some(at) = voided_at.get(&t.id()) {
            (HoldState::Voided, *at)
        } else if expires_ns > now_ns {
            unresolved += 1;
            (HoldState::Live, placed_ns)
        } else {
            unresolved += 1;
            (HoldState::Expired, placed_ns)
        };
        if t.code() == code::BENCH_HOLD {
            match state {
                HoldState::Posted => sold_bench += 1,
                HoldState::Live => held_bench += 1,
                _ => {}
            }
        } else if t.code() != code::HOLD {
            mismatches.add("unknown_transfer", "a pending transfer with a code tigerfans does not use", hex(t.id()));
        }
        holds.insert(t.id(), Hold { order: t.user_data_128(), code: t.code(), state, expires_ns, changed_ns });
    }
    if !live && held_ledger > unresolved {
        mismatches.add(
            "scan",
            "more units are pending than holds found",
            format!("{name}: pending {held_ledger}, unresolved holds {unresolved}"),
        );
    }

    // Units sold per order, by the ledger.
    let mut sold_by_order: HashMap<u128, (u64, u64)> = HashMap::new(); // (units, newest change ns)
    for hold in holds.values().filter(|h| h.code == code::HOLD && h.state == HoldState::Posted) {
        let entry = sold_by_order.entry(hold.order).or_default();
        entry.0 += 1;
        entry.1 = entry.1.max(hold.changed_ns);
    }
    for (order, times) in &booked {
        let entry = sold_by_order.entry(*order).or_default();
        entry.0 += times.len() as u64;
        entry.1 = entry.1.max(times.iter().copied().max().unwrap_or(0));
    }
    let holds_by_order: HashMap<u128, &Hold> =
        holds.values().filter(|h| h.code == code::HOLD).map(|h| (h.order, h)).collect();

    // Order by order.
    let is_goodies = r.class_id.is_none();
    let mut sold_orders = 0u64;
    let mut held_orders = 0u64;
    let mut seen_orders: HashSet<u128> = HashSet::new();
    for order in &store.orders {
        if !is_goodies && Some(order.cls.as_str()) != r.class_id.as_deref() {
            continue;
        }
        let Some(num) = parse_order_id(&order.order_id) else { continue };
        seen_orders.insert(num);
        let expected = if is_goodies { order.got_goodie } else { order.status == OrderStatus::Paid };
        sold_orders += u64::from(expected);
        let (units, changed_ns) = sold_by_order.get(&num).copied().unwrap_or((0, 0));
        let id = order.order_id.clone();
        match (expected, units) {
            (true, 1) | (false, 0) => {}
            (_, n) if n > 1 => mismatches.add("sold_twice", "an order holds more than one unit", id.clone()),
            (true, _) => mismatches.add(
                "paid_not_sold",
                "the store says the order has its unit, the ledger has not sold it",
                id.clone(),
            ),
            (false, _) if order.status.is_open() => ledger_ahead(
                mismatches,
                notes,
                changed_ns >= in_flight_after_ns,
                "unrecorded_payment",
                "sold in the ledger, order still open: an unacknowledged webhook (its retry records it)",
                id.clone(),
            ),
            (false, _) => {
                mismatches.add("sold_not_paid", "sold in the ledger, but the order's answer was final", id.clone())
            }
        }

        // The hold behind an open order.
        let hold_id =
            sessions.get(order.psid.as_str()).map(
                |s| {
                    if is_goodies {
                        s.goodie_hold_id
                    } else {
                        Some(s.ticket_hold_id)
                    }
                },
            );
        let Some(Some(hold_id)) = hold_id else { continue };
        match holds.get(&hold_id) {
            None if order.status == OrderStatus::Pending => {
                mismatches.add("hold_missing", "an open order's hold is not in the ledger", id.clone())
            }
            None => {}
            Some(hold) => {
                if hold.order != num {
                    mismatches.add("hold_order", "a hold names another order", id.clone());
                }
                match (order.status, hold.state) {
                    (OrderStatus::Pending, HoldState::Live) => held_orders += 1,
                    (status, HoldState::Voided) if status.is_open() && !is_goodies => ledger_ahead(
                        mismatches,
                        notes,
                        hold.changed_ns >= in_flight_after_ns,
                        "unrecorded_void",
                        "hold voided in the ledger, order still open: an unacknowledged webhook",
                        id.clone(),
                    ),
                    (status, HoldState::Live)
                        if !status.is_open()
                            && !is_goodies
                            && hold.expires_ns > now_ns + CLOCK_GRACE_MS * 1_000_000 =>
                    {
                        mismatches.add("final_order_still_held", "a final order's hold is still live", id.clone())
                    }
                    _ => {}
                }
            }
        }
    }

    // Ledger activity for orders the store does not have. Order ids begin with their creation
    // time in ms (`flow::new_id`): on a running server, orders created since shortly before the
    // snapshot may simply not be in it yet.
    let in_flight = |num: u128| ((num >> 80) as u64).saturating_mul(1_000_000) >= in_flight_after_ns;
    let mut held_unacknowledged = 0u64;
    for (num, hold) in &holds_by_order {
        if seen_orders.contains(num) {
            continue;
        }
        if in_flight(*num) && hold.state != HoldState::Live {
            notes.add("in_flight", "an order created after the store snapshot", hex(*num));
            continue;
        }
        match hold.state {
            HoldState::Live => {
                held_unacknowledged += 1;
                notes.add(
                    "unacknowledged_hold",
                    "a hold of a checkout the store never recorded (a crash, a 503): it expires by itself",
                    hex(*num),
                );
            }
            HoldState::Posted => {
                mismatches.add("sold_without_order", "a unit sold for an order the store does not have", hex(*num))
            }
            _ => {}
        }
    }
    for num in booked.keys() {
        if !seen_orders.contains(num) && !in_flight(*num) {
            mismatches.add("sold_without_order", "a unit sold for an order the store does not have", hex(*num));
        }
    }

    if sold_ledger != sold_orders + sold_bench && !live {
        mismatches.add(
            "sold",
            "units sold differ from PAID orders (plus benchmark units)",
            format!("{name}: ledger {sold_ledger}, orders {sold_orders}, bench {sold_bench}"),
        );
    }

    ResourceReport {
        resource: r.name.clone(),
        capacity: r.capacity,
        budget_credits,
        budget_debits_posted,
        budget_debits_pending,
        sold_ledger,
        sold_orders,
        sold_bench,
        held_ledger,
        held_orders,
        held_unacknowledged,
        held_bench,
        transfers_scanned: r.transfers.len() as u64,
    }
}

/// Every transfer crediting `account_id`, oldest first, page by page.
async fn scan(ledger: &Ledger, account_id: u128) -> anyhow::Result<Vec<tb::Transfer>> {
    let mut out = Vec::new();
    let mut timestamp_min = 0u64;
    // Up to now (plus clock slack), so a busy server's newest transfers are not chased forever.
    let timestamp_max = ns(SystemTime::now()) + 5_000_000_000;
    loop {
        let mut filter =
            tb::account::Filter::new(account_id, SCAN_PAGE_MAX).with_flags(tb::account::FilterFlags::CREDITS);
        filter.as_raw_mut().timestamp_min = timestamp_min;
        filter.as_raw_mut().timestamp_max = timestamp_max;
        let page = ledger.get_account_transfers(filter).await?;
        // A cluster may answer with pages shorter than asked for: only an empty page ends it.
        let Some(last) = page.last() else { return Ok(out) };
        timestamp_min = ns(last.timestamp()) + 1;
        out.extend(page);
        if out.len() > SCAN_TRANSFERS_MAX {
            bail!("more than {SCAN_TRANSFERS_MAX} transfers on account {account_id:x}: too large to audit");
        }
        if timestamp_min > timestamp_max {
            return Ok(out);
        }
    }
}

/// Reads the store, then the ledger (in that order: the ledger can then only be ahead), and
/// reconciles them. `timeout` bounds all of TigerBeetle's reads together.
pub async fn run(
    config: &Config,
    ledger: &Ledger,
    store: &Store,
    live: bool,
    timeout: Duration,
) -> anyhow::Result<Report> {
    let reader = store.clone();
    let snapshot = tokio::task::spawn_blocking(move || reader.audit_snapshot()).await??;
    let resources = accounting::event_resources(config);
    let collect = async {
        let mut ledgers = Vec::with_capacity(resources.len());
        for accounting::EventResource { name, class_id, resource, capacity } in resources {
            let budget_id = accounting::account_id(config.ledger, resource, AccountKind::Budget);
            let spent_id = accounting::account_id(config.ledger, resource, AccountKind::Spent);
            // Balances first, then the scan: the scan then includes everything they reflect.
            let accounts = ledger.lookup_accounts(vec![budget_id, spent_id]).await?;
            let find = |id: u128| {
                accounts
                    .iter()
                    .find(|a| a.id() == id)
                    .copied()
                    .ok_or_else(|| anyhow!("{name}: account {id:x} not found"))
            };
            let (budget, spent) = (find(budget_id)?, find(spent_id)?);
            let transfers = scan(ledger, spent_id).await?;
            ledgers.push(ResourceLedger { name, class_id, capacity, budget, spent, transfers });
        }
        anyhow::Ok(ledgers)
    };
    let ledgers = crate::ledger::within(timeout, "the audit's reads", collect).await?;
    let now_ms = crate::flow::now_ms();
    Ok(tokio::task::spawn_blocking(move || reconcile(&ledgers, &snapshot, now_ms, live)).await?)
}

/// `tigerfans audit --data-dir`: a stopped appliance's data dir. Runs its replica (or uses
/// `tb_addresses`) just for the audit.
pub struct OfflineOptions {
    pub data_dir: PathBuf,
    pub config: Config,
    pub tb_addresses: Option<String>,
    pub tb_cluster: u128,
    pub tigerbeetle_bin: PathBuf,
    pub tb_cache_grid: String,
    pub timeout: Duration,
}

pub async fn offline(options: OfflineOptions) -> anyhow::Result<Report> {
    let store_file = options.data_dir.join("tigerfans.redb");
    if !store_file.is_file() {
        bail!("no store at {} (is --data-dir right?)", store_file.display());
    }
    // The store first: if tigerfans still runs on this data dir, this is where it shows.
    let (store, writer) = Store::open(&store_file, Default::default())
        .with_context(|| "opening the store (is tigerfans still running on this data dir?)")?;
    if options.tb_addresses.is_none() && !replica::data_file(&options.data_dir).is_file() {
        bail!(
            "no TigerBeetle data file at {} (an external cluster needs --tb-addresses)",
            replica::data_file(&options.data_dir).display()
        );
    }
    let (supervisor, addresses) = replica::start_unless_external(
        options.tb_addresses.as_deref(),
        &options.tigerbeetle_bin,
        &options.data_dir,
        &options.tb_cache_grid,
    )
    .await?;
    let result = async {
        let ledger = Ledger::connect(options.tb_cluster, &addresses)?;
        let report = run(&options.config, &ledger, &store, false, options.timeout).await;
        drop(store);
        tokio::task::spawn_blocking(move || writer.join()).await?;
        report
    }
    .await;
    if let Some(supervisor) = supervisor {
        tokio::task::spawn_blocking(move || supervisor.stop()).await?;
    }
    result
}

/// How long `tigerfans audit --base` waits for each answer. The audit reads every transfer of the
/// event's accounts and every order: a few seconds for a venue, a few minutes for millions of
/// orders (the 10-minute soak's 3 million took about two).
pub const REMOTE_AUDIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// `tigerfans audit --base URL`: logs in as the admin and fetches the running server's audit.
pub async fn remote(base: &str, user: &str, password: &str) -> anyhow::Result<Report> {
    use crate::bench::client::Connection;
    use bytes::Bytes;
    use hyper::{Method, StatusCode};
    let authority = base.trim_start_matches("http://").trim_end_matches('/');
    if authority.contains('/') || base.starts_with("https://") {
        bail!("--base must look like http://HOST:PORT");
    }
    let mut conn = Connection::new(authority, REMOTE_AUDIT_TIMEOUT);
    let fail = |e: String| anyhow!("{base}: {e}");
    let csrf = conn.request(Method::GET, "/api/admin/csrf", &[], Bytes::new()).await.map_err(fail)?;
    let csrf: serde_json::Value = serde_json::from_slice(&csrf.body).context("reading the CSRF token")?;
    let token = csrf["csrf"].as_str().ok_or_else(|| anyhow!("no CSRF token from {base}"))?;
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("username", user)
        .append_pair("password", password)
        .append_pair("csrf", token)
        .finish();
    let login = conn
        .request(
            Method::POST,
            "/admin/login",
            &[("content-type", "application/x-www-form-urlencoded")],
            Bytes::from(form),
        )
        .await
        .map_err(fail)?;
    let cookie = login
        .header("set-cookie")
        .and_then(|v| v.split(';').next())
        .map(str::to_string)
        .ok_or_else(|| anyhow!("admin login refused (wrong user or password, or locked for a minute)"))?;
    let answer = conn
        .request(Method::GET, "/api/admin/audit", &[("cookie", cookie.as_str())], Bytes::new())
        .await
        .map_err(fail)?;
    if answer.status != StatusCode::OK {
        bail!("{base} answered {}: {}", answer.status, String::from_utf8_lossy(&answer.body));
    }
    serde_json::from_slice(&answer.body).context("reading the audit report")
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
        "{:<12} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "resource", "capacity", "sold", "PAID", "bench", "held", "open", "unacked"
    );
    for r in &report.resources {
        let _ = writeln!(
            s,
            "{:<12} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
            r.resource,
            r.capacity,
            r.sold_ledger,
            r.sold_orders,
            r.sold_bench,
            r.held_ledger,
            r.held_orders,
            r.held_unacknowledged
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::Resource;
    use crate::store::{Order, Session};

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
        let order_id = crate::flow::format_order_id(num);
        let psid = format!("ps_{num}");
        let order = Order {
            order_id: order_id.clone(),
            psid: psid.clone(),
            status,
            cls: "A".into(),
            qty: 1,
            amount: 1,
            currency: "EUR".into(),
            email: "a@b.co".into(),
            created_at_ms: 0,
            paid_at_ms: None,
            ticket_code: None,
            got_goodie: false,
            event_keys: Vec::new(),
            ticket_hold_id: num * 10,
            goodie_hold_id: None,
        };
        let session = Session {
            psid,
            order_id,
            cls: "A".into(),
            email: "a@b.co".into(),
            amount: 1,
            currency: "EUR".into(),
            ticket_hold_id: num * 10,
            goodie_hold_id: None,
            created_at_ms: 0,
            expires_at_ms: NOW_MS + 60_000,
        };
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
        let mut counts = [0u64; 6];
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
            transfers,
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
        assert_eq!(
            (a.sold_ledger, a.sold_orders, a.held_ledger, a.held_orders, a.held_unacknowledged),
            (1, 1, 2, 1, 1)
        );
    }

    #[test]
    fn a_void_or_post_the_store_never_recorded_fails() {
        let report = books(&[], vec![at(accounting::void(20), NOW_MS - 1000)]);
        assert_eq!(checks(&report.mismatches), ["unrecorded_void"]);
        assert_eq!(report.mismatches[0].ids, [crate::flow::format_order_id(2)]);
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
    }

    #[test]
    fn a_pending_order_without_its_hold_and_a_miscounted_store_fail() {
        let report = books(&[(5, OrderStatus::Pending)], vec![]);
        assert_eq!(checks(&report.mismatches), ["hold_missing"]);
        // Expired holds of PENDING orders are fine: the sweeper has not come by yet.
        let r = Resource::class("A");
        let report =
            books(&[(6, OrderStatus::Pending)], vec![at(accounting::hold(LEDGER, r, 60, 6, 1), NOW_MS - 5000)]);
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
}

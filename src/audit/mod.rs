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
//!   disagrees with the orders: these must never happen (mismatches);
//! * at the door and for refunds (`reconcile::door`): an admission of an order that is not paid,
//!   a ticket admitted twice, more inside than sold, a refund that did not return its units.
//!
//! `reconcile` is pure: balances, every transfer on each resource's Spent account, and one store
//! snapshot in; a report out. `run` does the IO.

mod door;
mod reconcile;
mod remote;
mod report;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Context};
use tigerbeetle_unofficial as tb;

use crate::accounting::{self, AccountKind};
use crate::config::Config;
use crate::ledger::Ledger;
use crate::replica;
use crate::store::Store;
use reconcile::ns;

pub use reconcile::{reconcile, ResourceLedger, CLOCK_GRACE_MS, IN_FLIGHT_WINDOW_MS};
pub use remote::{remote, REMOTE_AUDIT_TIMEOUT};
pub use report::{render, Finding, Report, ResourceReport, FINDING_IDS_MAX};

/// Transfers fetched per `get_account_transfers` request (TigerBeetle's maximum reply).
pub const SCAN_PAGE_MAX: u32 = 8189;
/// Transfers scanned per resource at most (128 bytes each in memory while the audit runs); a
/// larger ledger is refused rather than half-checked.
pub const SCAN_TRANSFERS_MAX: usize = 10_000_000;

/// What an audit may hold in memory: every order and session, decoded, and every transfer into
/// the resources' Spent accounts (128 bytes each).
#[derive(Debug, Clone, Copy)]
pub struct AuditLimits {
    pub orders_max: u64,
    pub transfers_max: usize,
}

/// A live audit runs inside the serving appliance, beside its replica, on a board that may have
/// 2 GB: at most 100,000 orders (about 1 KiB each with its session: 100 MiB) and 500,000
/// transfers in all (61 MiB). A larger event is audited offline (`tigerfans audit --data-dir`,
/// a process of its own, with the server stopped), which is bounded by `OFFLINE`.
pub const LIVE: AuditLimits = AuditLimits { orders_max: 100_000, transfers_max: 500_000 };
pub const OFFLINE: AuditLimits = AuditLimits { orders_max: u64::MAX, transfers_max: SCAN_TRANSFERS_MAX };

/// Every transfer crediting (`debits`: debiting) `account_id`, oldest first, page by page; at
/// most `room` of them.
async fn scan(ledger: &Ledger, account_id: u128, room: usize, debits: bool) -> anyhow::Result<Vec<tb::Transfer>> {
    let side = if debits { tb::account::FilterFlags::DEBITS } else { tb::account::FilterFlags::CREDITS };
    let mut out = Vec::new();
    let mut timestamp_min = 0u64;
    // Up to now (plus clock slack), so a busy server's newest transfers are not chased forever.
    let timestamp_max = ns(SystemTime::now()) + 5_000_000_000;
    loop {
        let mut filter = tb::account::Filter::new(account_id, SCAN_PAGE_MAX).with_flags(side);
        filter.as_raw_mut().timestamp_min = timestamp_min;
        filter.as_raw_mut().timestamp_max = timestamp_max;
        let page = ledger.get_account_transfers(filter).await?;
        // A cluster may answer with pages shorter than asked for: only an empty page ends it.
        let Some(last) = page.last() else { return Ok(out) };
        timestamp_min = ns(last.timestamp()) + 1;
        out.extend(page);
        if out.len() > room.min(SCAN_TRANSFERS_MAX) {
            bail!(
                "more than {} transfers on account {account_id:x}: too large for this audit (stop the server \
                 and run `tigerfans audit --data-dir`)",
                room.min(SCAN_TRANSFERS_MAX)
            );
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
    limits: AuditLimits,
    timeout: Duration,
) -> anyhow::Result<Report> {
    let orders: u64 = store.order_counts()?.iter().map(|(_, n)| n).sum();
    if orders > limits.orders_max {
        bail!(
            "{orders} orders: more than this audit reads ({}); stop the server and run `tigerfans audit --data-dir`",
            limits.orders_max
        );
    }
    let reader = store.clone();
    let snapshot = tokio::task::spawn_blocking(move || reader.audit_snapshot()).await??;
    let resources = accounting::event_resources(config);
    let collect = async {
        let mut ledgers = Vec::with_capacity(resources.len());
        let mut room = limits.transfers_max;
        for accounting::EventResource { name, class_id, resource, capacity } in resources {
            let budget_id = accounting::account_id(config.ledger, resource, AccountKind::Budget);
            let spent_id = accounting::account_id(config.ledger, resource, AccountKind::Spent);
            let admitted_id = accounting::account_id(config.ledger, resource, AccountKind::Admitted);
            // Balances first, then the scan: the scan then includes everything they reflect.
            let accounts = ledger.lookup_accounts(vec![budget_id, spent_id, admitted_id]).await?;
            let find = |id: u128| {
                accounts
                    .iter()
                    .find(|a| a.id() == id)
                    .copied()
                    .ok_or_else(|| anyhow!("{name}: account {id:x} not found"))
            };
            let (budget, spent, admitted) = (find(budget_id)?, find(spent_id)?, find(admitted_id)?);
            let transfers = scan(ledger, spent_id, room, false).await?;
            room -= transfers.len();
            let debits = scan(ledger, spent_id, room, true).await?;
            room -= debits.len();
            ledgers.push(ResourceLedger { name, class_id, capacity, budget, spent, admitted, transfers, debits });
        }
        anyhow::Ok(ledgers)
    };
    let ledgers = crate::ledger::within(timeout, "the audit's reads", collect).await?;
    let now_ms = crate::clock::now_ms();
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
    /// The replica's memory profile; `None`: the one the data dir last ran with.
    pub tb_profile: Option<crate::tb_profile::TbProfile>,
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
    let tigerbeetle = replica::start_unless_external(
        options.tb_addresses.as_deref(),
        options.tb_cluster,
        &options.tigerbeetle_bin,
        &options.data_dir,
        options.tb_profile.unwrap_or_else(|| crate::tb_profile::TbProfile::of_data_dir(&options.data_dir)),
        Some(&options.tb_cache_grid),
    )
    .await?;
    let result = async {
        let ledger = Ledger::connect(tigerbeetle.cluster, &tigerbeetle.addresses)?;
        let report = run(&options.config, &ledger, &store, false, OFFLINE, options.timeout).await;
        drop(store);
        tokio::task::spawn_blocking(move || writer.join()).await?;
        report
    }
    .await;
    if let Some(supervisor) = tigerbeetle.supervisor {
        tokio::task::spawn_blocking(move || supervisor.stop()).await?;
    }
    result
}

//! Wiring and lifecycle of a running server: replica (or external cluster), ledger, store,
//! batcher, sweeper, HTTP; and the orderly shutdown in reverse.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicI32;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::Admin;
use crate::batcher::{Batcher, BatcherOptions};
use crate::config::Config;
use crate::flow::App;
use crate::http::{self, HttpLimits};
use crate::ledger::{self, Ledger};
use crate::metrics::Metrics;
use crate::replica;
use crate::secrets;
use crate::store::{Store, WriterHandle, EXPIRED_LOG_RETENTION_MS, PRUNE_BATCH_MAX, SESSION_RETENTION_MS};
use crate::tb_profile::TbProfile;
use crate::throttle::{Throttle, ThrottleLimits};

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// An external replica or cluster; `None` runs a co-located replica (appliance mode).
    pub tb_addresses: Option<String>,
    pub tb_cluster: u128,
    pub tigerbeetle_bin: PathBuf,
    /// The co-located replica's memory profile; it also sizes batches, for any cluster.
    pub tb_profile: TbProfile,
    /// Overrides the profile's grid cache.
    pub tb_cache_grid: Option<String>,
    pub tb_timeout_ms: u64,
    /// TigerBeetle clients (batcher lanes), each with one request in flight.
    pub tb_clients: usize,
    pub config: Config,
    pub http: HttpLimits,
    /// How often expired holds are looked for.
    pub sweep_interval_ms: u64,
    /// redb's page cache.
    pub store_cache_bytes: usize,
    /// What a live audit may read into memory.
    pub audit_limits: crate::audit::AuditLimits,
}

/// Expiry index entries a sweep takes at most (one group commit). A sweep that takes this many
/// is followed by the next at once, not at the next tick.
pub const SWEEP_BATCH_MAX: usize = 4096;
pub const STARTUP_TIMEOUT_MS: u64 = 60_000;

/// File descriptors besides HTTP connections: store, replica pipes, TigerBeetle client, logs.
pub const FDS_RESERVED: u64 = 256;

/// Raises the soft open-files limit to cover `connections_max` (Debian's default soft limit,
/// 1024, would refuse connections long before the configured cap with EMFILE).
pub fn raise_fd_limit(connections_max: usize) {
    let wanted = connections_max as u64 + FDS_RESERVED;
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 || limit.rlim_cur >= wanted {
            return;
        }
        let raised = libc::rlimit { rlim_cur: wanted.min(limit.rlim_max), rlim_max: limit.rlim_max };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 || raised.rlim_cur < wanted {
            tracing::warn!(
                soft = raised.rlim_cur,
                wanted,
                "open-files limit below --max-connections; raise LimitNOFILE (systemd) or ulimit -n"
            );
        }
    }
}

/// The data dir holds customers' emails, the admin's password and the secrets: readable by its
/// owner only, the dir and every file in it, whoever starts the server (systemd's
/// `StateDirectory` does the same; a shell's umask usually does not). The umask covers the
/// files made later too, by us (redb, the redo log, logs) and by the replica's `format`.
fn make_data_dir_private(data_dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: sets the process's file mode mask; no memory is touched.
    unsafe {
        libc::umask(0o077);
    }
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating data dir {}", data_dir.display()))?;
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("making data dir {} private", data_dir.display()))
}

pub async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    raise_fd_limit(options.http.connections_max);
    make_data_dir_private(&options.data_dir)?;
    // 1. Listen at once: from its first second the shop answers (503 while TigerBeetle is not
    //    ready), it never refuses a connection because a replica is still starting.
    let listener = http::listen(options.listen).with_context(|| format!("listening on {}", options.listen))?;
    tracing::info!(url = %format!("http://{}", listener.local_addr()?), "tigerfans is serving");
    // 2. TigerBeetle: ours (started, not awaited), or the operator's cluster.
    let tigerbeetle = replica::spawn_unless_external(
        options.tb_addresses.as_deref(),
        options.tb_cluster,
        &options.tigerbeetle_bin,
        &options.data_dir,
        options.tb_profile,
        options.tb_cache_grid.as_deref(),
    )?;
    let replica_pid = tigerbeetle.supervisor.as_ref().map(|s| s.pid_handle()).unwrap_or_default();
    let result = run(options, listener, &tigerbeetle.addresses, tigerbeetle.cluster, replica_pid).await;
    if let Some(supervisor) = tigerbeetle.supervisor {
        tokio::task::spawn_blocking(move || supervisor.stop()).await?;
    }
    result
}

async fn run(
    options: ServeOptions,
    listener: TcpListener,
    addresses: &str,
    cluster: u128,
    replica_pid: Arc<AtomicI32>,
) -> anyhow::Result<()> {
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let metrics = Arc::new(Metrics { replica_pid, ..Metrics::default() });
    let listen_address = listener.local_addr()?;
    let (app, writer) = build_app(&options, listen_address, addresses, cluster, metrics, shutdown_rx.clone())?;
    tracing::info!(%addresses, cluster, ledger = options.config.ledger, "connecting to TigerBeetle");
    let setup = tokio::spawn(set_up_event(app.clone(), shutdown_rx.clone()));
    let sweeper = tokio::spawn(sweep(app.clone(), options.sweep_interval_ms, shutdown_rx.clone()));
    let server = tokio::spawn(http::serve(app.clone(), listener, options.http, shutdown_rx));
    wait_for_signal().await;
    tracing::info!("shutting down");
    let _ = shutdown_tx.send(true);
    server.await??;
    let _ = sweeper.await;
    let _ = setup.await;
    close(app, writer).await
}

/// The ledger client, the store, the batcher, the admin: the app, not yet ready (see
/// `set_up_event`).
fn build_app(
    options: &ServeOptions,
    listen_address: SocketAddr,
    addresses: &str,
    cluster: u128,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(Arc<App>, WriterHandle)> {
    let ledger = Arc::new(Ledger::connect(cluster, addresses)?);
    let (store, writer) =
        Store::open_with_cache(&options.data_dir.join("tigerfans.redb"), metrics.clone(), options.store_cache_bytes)?;
    let mut lanes = vec![ledger.clone()];
    for _ in 1..options.tb_clients {
        lanes.push(Arc::new(Ledger::connect(cluster, addresses)?));
    }
    let batching =
        BatcherOptions { batch_transfers_max: options.tb_profile.batch_transfers_max(), ..Default::default() };
    let batcher = Batcher::spawn_lanes(lanes, batching, metrics.clone());
    let admin =
        Admin::load_or_create(&options.data_dir, &options.config.admin_user, options.config.admin_password.as_deref())?;
    let webhook_secret = secrets::webhook_secret(&options.data_dir, options.config.webhook_secret.as_deref())?;
    let app = Arc::new(App {
        config: options.config.clone(),
        ledger,
        audit_ledger: Default::default(),
        audit_limits: options.audit_limits,
        batcher,
        store,
        metrics,
        tb_timeout: Duration::from_millis(options.tb_timeout_ms),
        admin,
        webhook_secret,
        payment_locks: Default::default(),
        door_locks: Default::default(),
        ticket_key: crate::ticket::TicketKey::load_or_create(&options.data_dir)?,
        manual_codes: Default::default(),
        shop_in_flight: Default::default(),
        readiness: Default::default(),
        throttle: Throttle::new(ThrottleLimits {
            checkouts_per_minute: options.config.checkouts_per_minute_per_client,
            holds_max: options.config.holds_per_client,
            hold_ms: u64::from(options.config.hold_timeout_s) * 1000,
        }),
        shutdown,
        listen_address,
    });
    Ok((app, writer))
}

/// Between attempts to set up the event's accounts while TigerBeetle does not answer.
pub const SETUP_RETRY_MS: u64 = 1_000;

/// Creates the event's accounts and funds them (idempotent), retrying until TigerBeetle
/// answers; then the app is ready. Until then every request that needs the ledger answers 503
/// and `/healthz` says why.
async fn set_up_event(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let timeout = Duration::from_millis(STARTUP_TIMEOUT_MS);
    loop {
        let attempt = ledger::within(timeout, "the event's account setup", app.ledger.ensure_event(&app.config));
        let failed = tokio::select! {
            attempt = attempt => match attempt {
                Ok(()) => break,
                Err(e) => format!("{e:#}"),
            },
            _ = shutdown.changed() => return,
        };
        tracing::warn!(error = %failed, "setting up the event's accounts; retrying");
        app.readiness.waiting(format!("setting up the event's accounts: {failed}"));
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(SETUP_RETRY_MS)) => {}
            _ = shutdown.changed() => return,
        }
    }
    app.readiness.set_ready();
    tracing::info!("the event's accounts are set up: ready");
}

/// Everything acknowledged is committed already: flush what is still queued, then close.
async fn close(app: Arc<App>, writer: WriterHandle) -> anyhow::Result<()> {
    let _ = app.store.flush().await;
    drop(app);
    // The writer ends when the last handle to the store is gone. A connection that outlived the
    // drain may still hold one; everything it was told is durable already, so do not wait forever.
    let join = tokio::task::spawn_blocking(move || writer.join());
    match tokio::time::timeout(Duration::from_secs(5), join).await {
        Ok(joined) => {
            joined?;
            tracing::info!("store closed");
        }
        Err(_) => tracing::warn!(
            "store writer still referenced after the drain; exiting (all acknowledged writes are durable)"
        ),
    }
    Ok(())
}

/// How often the store's retention runs (sessions and expiry log entries past their time).
pub const PRUNE_INTERVAL_MS: u64 = 60_000;

async fn sweep(app: Arc<App>, interval_ms: u64, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A failing store fails every sweep: say so once per episode, not four times a second.
    let mut failing = false;
    let mut pruned_at = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let mut failed = None;
        match app.sweep_expired(SWEEP_BATCH_MAX).await {
            Ok((entries, expired)) => {
                if expired > 0 {
                    tracing::debug!(expired, "expired holds swept");
                }
                if entries == SWEEP_BATCH_MAX {
                    // More are due (a rush's holds fall due as fast as they were placed):
                    // go on now rather than at the next tick.
                    tick.reset_immediately();
                }
            }
            Err(e) => failed = Some(e),
        }
        if pruned_at.elapsed() >= Duration::from_millis(PRUNE_INTERVAL_MS) {
            match prune(&app).await {
                // A full batch: more are due, and the next tick prunes again.
                Ok((sessions, logged)) if sessions.max(logged) == PRUNE_BATCH_MAX => {}
                Ok(_) => pruned_at = std::time::Instant::now(),
                Err(e) => failed = Some(e),
            }
        }
        match failed {
            None if failing => {
                tracing::info!("expiry sweeps work again");
                failing = false;
            }
            Some(e) if !failing => {
                tracing::warn!(error = ?e, "expiry sweep failed (retrying quietly until it works)");
                failing = true;
            }
            _ => {}
        }
    }
}

/// One batch of the store's retention.
async fn prune(app: &App) -> Result<(usize, usize), crate::flow::FlowError> {
    let now = crate::clock::now_ms();
    Ok(app.store.prune(now, SESSION_RETENTION_MS, EXPIRED_LOG_RETENTION_MS).await?)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

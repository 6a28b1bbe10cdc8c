//! Wiring and lifecycle of a running server: replica (or external cluster), ledger, store,
//! batcher, sweeper, HTTP; and the orderly shutdown in reverse.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

use crate::admin::Admin;
use crate::batcher::{Batcher, BatcherOptions};
use crate::config::Config;
use crate::flow::App;
use crate::http::{self, HttpLimits};
use crate::ledger::{self, Ledger};
use crate::metrics::Metrics;
use crate::replica;
use crate::store::Store;

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// An external replica or cluster; `None` runs a co-located replica (appliance mode).
    pub tb_addresses: Option<String>,
    pub tb_cluster: u128,
    pub tigerbeetle_bin: PathBuf,
    pub tb_cache_grid: String,
    pub tb_timeout_ms: u64,
    /// TigerBeetle clients (batcher lanes), each with one request in flight.
    pub tb_clients: usize,
    pub config: Config,
    pub http: HttpLimits,
    /// How often expired holds are looked for.
    pub sweep_interval_ms: u64,
    /// redb's page cache.
    pub store_cache_bytes: usize,
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

pub async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    raise_fd_limit(options.http.connections_max);
    std::fs::create_dir_all(&options.data_dir)
        .with_context(|| format!("creating data dir {}", options.data_dir.display()))?;
    let metrics = Arc::new(Metrics::default());

    // 1. TigerBeetle: ours, or the operator's cluster.
    let (supervisor, addresses) = replica::start_unless_external(
        options.tb_addresses.as_deref(),
        &options.tigerbeetle_bin,
        &options.data_dir,
        &options.tb_cache_grid,
    )
    .await?;
    let result = run(options, metrics, &addresses).await;
    if let Some(supervisor) = supervisor {
        tokio::task::spawn_blocking(move || supervisor.stop()).await?;
    }
    result
}

async fn run(options: ServeOptions, metrics: Arc<Metrics>, addresses: &str) -> anyhow::Result<()> {
    let ledger = Arc::new(Ledger::connect(options.tb_cluster, addresses)?);
    tracing::info!(%addresses, ledger = options.config.ledger, "connecting to TigerBeetle");
    ledger::within(Duration::from_millis(STARTUP_TIMEOUT_MS), "account setup", ledger.ensure_event(&options.config))
        .await
        .context("setting up the event's accounts")?;

    // 2. The store and its group-commit writer.
    let (store, writer) =
        Store::open_with_cache(&options.data_dir.join("tigerfans.redb"), metrics.clone(), options.store_cache_bytes)?;

    // 3. The batcher, the app, the sweeper.
    let mut lanes = vec![ledger.clone()];
    for _ in 1..options.tb_clients {
        lanes.push(Arc::new(Ledger::connect(options.tb_cluster, addresses)?));
    }
    let batcher = Batcher::spawn_lanes(lanes, BatcherOptions::default(), metrics.clone());
    let admin =
        Admin::load_or_create(&options.data_dir, &options.config.admin_user, options.config.admin_password.as_deref())?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let app = Arc::new(App {
        config: options.config.clone(),
        ledger,
        batcher,
        store,
        metrics,
        tb_timeout: Duration::from_millis(options.tb_timeout_ms),
        admin,
        payment_locks: Default::default(),
        shutdown: shutdown_rx.clone(),
    });
    let sweeper = tokio::spawn(sweep(app.clone(), options.sweep_interval_ms, shutdown_rx.clone()));

    // 4. HTTP until a signal.
    let listener = http::listen(options.listen).with_context(|| format!("listening on {}", options.listen))?;
    tracing::info!(url = %format!("http://{}", listener.local_addr()?), "tigerfans is serving");
    let server = tokio::spawn(http::serve(app.clone(), listener, options.http, shutdown_rx));
    wait_for_signal().await;
    tracing::info!("shutting down");
    let _ = shutdown_tx.send(true);
    server.await??;
    let _ = sweeper.await;

    // 5. Everything acknowledged is committed already; flush what is still queued, then close.
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

async fn sweep(app: Arc<App>, interval_ms: u64, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(interval_ms));
    // A failing store fails every sweep: say so once per episode, not four times a second.
    let mut failing = false;
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                match app.sweep_expired(SWEEP_BATCH_MAX).await {
                    Ok((entries, expired)) => {
                        if failing {
                            tracing::info!("expiry sweeps work again");
                            failing = false;
                        }
                        if expired > 0 {
                            tracing::debug!(expired, "expired holds swept");
                        }
                        if entries == SWEEP_BATCH_MAX {
                            // More are due (a rush's holds fall due as fast as they were placed):
                            // go on now rather than at the next tick.
                            tick.reset_immediately();
                        }
                    }
                    Err(e) if !failing => {
                        tracing::warn!(error = ?e, "expiry sweep failed (retrying quietly until it works)");
                        failing = true;
                    }
                    Err(_) => {}
                }
            }
            _ = shutdown.changed() => return,
        }
    }
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

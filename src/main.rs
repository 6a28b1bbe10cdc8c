//! The `tigerfans` command line: `serve` (the default) runs the appliance.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use tigerfans::appliance::{self, ServeOptions};
use tigerfans::audit;
use tigerfans::bench::{self, BenchOptions, PayOrder, Phase};
use tigerfans::config::Config;
use tigerfans::http::HttpLimits;
use tigerfans::tb_profile::TbProfile;

/// Rust's allocations go to mimalloc: thread-local free lists instead of glibc's arena locks
/// (the store writer waited on them while tokio's workers allocated), and the same allocator in
/// the static musl builds for the Pi as on glibc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "tigerfans", version, about = "A ticketing appliance on TigerBeetle and redb")]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
    /// Log format: `human` or `json` (for collectors); `auto` is `human`.
    #[arg(long, global = true, env = "TIGERFANS_LOG_FORMAT", default_value = "auto")]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default when no subcommand is given).
    Serve(ServeArgs),
    /// Load-test a tigerfans server and print throughput, latency and batch sizes.
    Bench(BenchArgs),
    /// Cross-check TigerBeetle's balances with the store; exit status 1 on any mismatch.
    Audit(AuditArgs),
    /// Validate an event configuration file and print it normalized as JSON.
    CheckConfig {
        /// TOML or JSON file.
        file: PathBuf,
    },
    /// Print a TigerBeetle memory profile's `tigerbeetle start` flags (for a replica run by
    /// hand or by systemd: give tigerfans the same --tb-profile, which sets its batch size).
    TbProfile {
        /// small, medium or large.
        profile: TbProfile,
    },
}

#[derive(Args, Clone)]
struct BenchArgs {
    /// The server to load.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    base: String,
    #[arg(long, value_enum, default_value = "all")]
    phase: Phase,
    /// Operations per phase (webhook and commit phases use what checkout and reserve created).
    #[arg(long, default_value_t = 20_000)]
    total: u64,
    /// Concurrent connections, one request in flight on each.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Share of payments that succeed in webhook and flow phases (the rest fail).
    #[arg(long, default_value_t = 0.9)]
    succeed_rate: f64,
    /// Stop each phase after this many seconds even if --total is not reached.
    #[arg(long)]
    duration: Option<f64>,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// The server's webhook secret, to sign webhook events (the webhook and all phases).
    #[arg(long, env = "TIGERFANS_WEBHOOK_SECRET")]
    secret: Option<String>,
    /// File holding the server's webhook secret (DATA_DIR/webhook-secret when the server
    /// generated it). Default: ./data/webhook-secret, if there is one.
    #[arg(long, conflicts_with = "secret")]
    secret_file: Option<PathBuf>,
    /// Ticket class to buy.
    #[arg(long, default_value = "B")]
    cls: String,
    /// Threads of the generator (default: 1, so it leaves the cores to the server).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Aim at this many operations per second (paced; latency counts from when each was due).
    #[arg(long)]
    rate: Option<f64>,
    /// The order in which the webhook phase pays the checkout phase's sessions.
    #[arg(long, value_enum, default_value = "random")]
    pay_order: PayOrder,
    /// A request without its whole answer after this many milliseconds counts as an error.
    #[arg(long, default_value_t = 30_000)]
    request_timeout_ms: u64,
}

/// Offline (a stopped server's `--data-dir`) or live (`--base`, as the admin).
#[derive(Args, Clone)]
struct AuditArgs {
    /// Audit a running server through its admin endpoint instead of a data dir.
    #[arg(long)]
    base: Option<String>,
    /// Admin user for `--base`.
    #[arg(long, env = "TIGERFANS_ADMIN_USER", default_value = "admin")]
    user: String,
    /// File holding the admin password for `--base` (e.g. DATA_DIR/admin-password).
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// The data dir of a stopped server (redb allows one process per file).
    #[arg(long, env = "TIGERFANS_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// The server's event configuration (capacities and ledger). Default: the built-in demo.
    #[arg(long, env = "TIGERFANS_CONFIG")]
    config: Option<PathBuf>,
    /// An external cluster; without it the data dir's own replica is started for the audit.
    #[arg(long, env = "TIGERFANS_TB_ADDRESSES")]
    tb_addresses: Option<String>,
    #[arg(long, env = "TIGERFANS_TB_CLUSTER", default_value_t = 0)]
    tb_cluster: u128,
    #[arg(long, env = "TIGERFANS_TIGERBEETLE_BIN")]
    tigerbeetle_bin: Option<PathBuf>,
    /// Memory profile of the replica started for an offline audit (default: the one the data
    /// dir last ran with).
    #[arg(long, env = "TIGERFANS_TB_PROFILE")]
    tb_profile: Option<TbProfile>,
    /// Grid cache of the replica started for an offline audit.
    #[arg(long, default_value = "64MiB")]
    tb_cache_grid: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Auto,
    Human,
    Json,
}

#[derive(Args, Clone)]
struct ServeArgs {
    /// Address to serve HTTP on.
    #[arg(long, env = "TIGERFANS_LISTEN", default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// Where the store (tigerfans.redb) and, in appliance mode, the TigerBeetle data file live.
    #[arg(long, env = "TIGERFANS_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Addresses of an external TigerBeetle replica or cluster (comma-separated). Without it,
    /// tigerfans formats and runs its own replica.
    #[arg(long, env = "TIGERFANS_TB_ADDRESSES")]
    tb_addresses: Option<String>,
    /// Cluster id of the external cluster.
    #[arg(long, env = "TIGERFANS_TB_CLUSTER", default_value_t = 0)]
    tb_cluster: u128,
    /// The TigerBeetle server binary for appliance mode. Default: `tigerbeetle` beside this
    /// binary, else `tools/bin/tigerbeetle`, else `tigerbeetle` on PATH.
    #[arg(long, env = "TIGERFANS_TIGERBEETLE_BIN")]
    tigerbeetle_bin: Option<PathBuf>,
    /// Memory profile of the co-located replica: small (a 2 GB board), medium (4 GB, room for a
    /// kiosk browser) or large (TigerBeetle's production defaults). Also sets the batch size,
    /// also for an external cluster (give the profile whose --limit-request it runs with).
    #[arg(long, env = "TIGERFANS_TB_PROFILE", default_value = "large")]
    tb_profile: TbProfile,
    /// TigerBeetle grid cache of the co-located replica (default: the profile's, 256MiB for large).
    #[arg(long, env = "TIGERFANS_TB_CACHE_GRID")]
    tb_cache_grid: Option<String>,
    /// A request waits this long for TigerBeetle before answering 503.
    #[arg(long, env = "TIGERFANS_TB_TIMEOUT_MS", default_value_t = 5000)]
    tb_timeout_ms: u64,
    /// TigerBeetle clients the batcher spreads batches over (each has one request in flight).
    #[arg(long, env = "TIGERFANS_TB_CLIENTS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=16))]
    tb_clients: u8,
    /// Event configuration (TOML or JSON). Default: the built-in demo event.
    #[arg(long, env = "TIGERFANS_CONFIG")]
    config: Option<PathBuf>,
    /// Concurrent HTTP connections; more are refused.
    #[arg(long, env = "TIGERFANS_MAX_CONNECTIONS", default_value_t = 4096)]
    max_connections: usize,
    /// Shop requests that start a sale (checkout, reserve) served at once, and as many again
    /// that finish one (payment, commit); more are answered 503 at once, with Retry-After.
    #[arg(long, env = "TIGERFANS_SHOP_IN_FLIGHT_MAX", default_value_t = tigerfans::http::limits::SHOP_IN_FLIGHT_MAX_DEFAULT as u32,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    shop_in_flight_max: u32,
    /// A client must send its request head within this time, and its body within as long again.
    #[arg(long, env = "TIGERFANS_REQUEST_READ_TIMEOUT_MS", default_value_t = 10_000)]
    request_read_timeout_ms: u64,
    /// The store's page cache (redb), in MiB: most of tigerfans' own memory.
    #[arg(long, env = "TIGERFANS_STORE_CACHE_MIB", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=4096))]
    store_cache_mib: u16,
    /// Serve /api/accounting/reserve and /commit (the reference's benchmark path: they take
    /// tickets without an order, on GET). Off unless given here or in the config.
    #[arg(long, env = "TIGERFANS_ACCOUNTING_ENDPOINTS")]
    accounting_endpoints: bool,
    /// A live audit (`/api/admin/audit`) reads at most this many orders into memory; more:
    /// stop the server and run `tigerfans audit --data-dir`.
    #[arg(long, env = "TIGERFANS_LIVE_AUDIT_ORDERS_MAX", default_value_t = tigerfans::audit::LIVE.orders_max)]
    live_audit_orders_max: u64,
    /// ... and at most this many transfers, in all resources.
    #[arg(long, env = "TIGERFANS_LIVE_AUDIT_TRANSFERS_MAX", default_value_t = tigerfans::audit::LIVE.transfers_max)]
    live_audit_transfers_max: usize,
    /// Tokio worker threads (default: one per core).
    #[arg(long, env = "TIGERFANS_WORKER_THREADS")]
    worker_threads: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match cli.command {
        Some(Command::CheckConfig { file }) => {
            let config = Config::load(&file)?;
            println!("{}", serde_json::to_string_pretty(&config)?);
            Ok(())
        }
        Some(Command::TbProfile { profile }) => {
            println!("{}", profile.start_flags(None).join(" "));
            Ok(())
        }
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Audit(args)) => audit(args),
        Some(Command::Bench(args)) => bench::run(BenchOptions {
            secret: bench_secret(args.secret.clone(), args.secret_file.clone())?,
            base: args.base,
            phase: args.phase,
            total: args.total,
            concurrency: args.concurrency,
            succeed_rate: args.succeed_rate,
            duration_s: args.duration,
            json: args.json,
            cls: args.cls,
            threads: args.threads,
            rate: args.rate,
            pay_order: args.pay_order,
            request_timeout_ms: args.request_timeout_ms,
        }),
        None => serve(cli.serve),
    }
}

/// The webhook secret for `bench`: given, from a file, or from the default data dir's file.
fn bench_secret(secret: Option<String>, file: Option<PathBuf>) -> anyhow::Result<Option<String>> {
    let read = |path: &std::path::Path| -> anyhow::Result<String> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(text.trim().to_string())
    };
    let default_file = PathBuf::from("data").join(tigerfans::secrets::WEBHOOK_SECRET_FILE);
    Ok(match (secret, file) {
        (Some(secret), _) => Some(secret),
        (None, Some(file)) => Some(read(&file)?),
        (None, None) if default_file.is_file() => Some(read(&default_file)?),
        (None, None) => None,
    })
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    limit_malloc_arenas();
    // SAFETY: reads a version number.
    assert_eq!(unsafe { libmimalloc_sys::mi_version() } / 10_000, 3, "the allocator options are mimalloc 3's");
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    config.accounting_endpoints |= args.accounting_endpoints;
    if config.accounting_endpoints {
        tracing::warn!("the accounting endpoints are on: anyone can take tickets without an order (benchmarks only)");
    }
    let options = ServeOptions {
        listen: args.listen,
        data_dir: args.data_dir.clone(),
        tb_addresses: args.tb_addresses.clone(),
        tb_cluster: args.tb_cluster,
        tigerbeetle_bin: args.tigerbeetle_bin.clone().unwrap_or_else(default_tigerbeetle_bin),
        tb_profile: args.tb_profile,
        tb_cache_grid: args.tb_cache_grid.clone(),
        tb_timeout_ms: args.tb_timeout_ms,
        tb_clients: usize::from(args.tb_clients),
        config,
        http: HttpLimits {
            connections_max: args.max_connections,
            header_read_timeout_ms: args.request_read_timeout_ms,
            body_read_timeout_ms: args.request_read_timeout_ms,
            shop_in_flight_max: args.shop_in_flight_max as usize,
            ..HttpLimits::default()
        },
        sweep_interval_ms: 250,
        store_cache_bytes: usize::from(args.store_cache_mib) * 1024 * 1024,
        audit_limits: audit::AuditLimits {
            orders_max: args.live_audit_orders_max,
            transfers_max: args.live_audit_transfers_max,
        },
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(n) = args.worker_threads {
        runtime.worker_threads(n);
    }
    let runtime = runtime.build().context("building the tokio runtime")?;
    runtime.block_on(appliance::serve(options))
}

fn audit(args: AuditArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    // Exit 1 means the books disagree; an audit that could not be made (a server unreachable,
    // a wrong password, a ledger beyond what the audit reads) exits 2, so scripts tell the two
    // apart.
    let json = args.json;
    let report = match audit_report(args, &runtime) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("audit could not be made: {e:#}");
            std::process::exit(2);
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", audit::render(&report));
    }
    if !report.ok {
        std::process::exit(1);
    }
    Ok(())
}

fn audit_report(args: AuditArgs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<audit::Report> {
    Ok(match &args.base {
        Some(base) => {
            let password = match (&args.password_file, std::env::var("TIGERFANS_ADMIN_PASSWORD")) {
                (Some(file), _) => std::fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?
                    .trim()
                    .to_string(),
                (None, Ok(password)) => password,
                (None, Err(_)) => anyhow::bail!("--base needs --password-file or TIGERFANS_ADMIN_PASSWORD"),
            };
            runtime.block_on(audit::remote(base, &args.user, &password))?
        }
        None => {
            let config = match &args.config {
                Some(path) => Config::load(path)?,
                None => Config::default(),
            };
            runtime.block_on(audit::offline(audit::OfflineOptions {
                data_dir: args.data_dir,
                config,
                tb_addresses: args.tb_addresses,
                tb_cluster: args.tb_cluster,
                tigerbeetle_bin: args.tigerbeetle_bin.unwrap_or_else(default_tigerbeetle_bin),
                tb_profile: args.tb_profile,
                tb_cache_grid: args.tb_cache_grid,
                timeout: std::time::Duration::from_secs(120),
            }))?
        }
    })
}

/// What still allocates with C's `malloc` (the TigerBeetle client; Rust's allocations go to
/// mimalloc) uses glibc's arenas, one per allocating thread by default (up to 8 per core), and
/// memory freed in one arena is not reused by the others. When all allocations went through
/// glibc that fragmented into tens of MiB of RSS; one arena measured as fast as two. (musl builds
/// have one allocator and no such knob.) glibc's own `MALLOC_ARENA_MAX`, when set, decides.
fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt before any other thread exists; it only sets an allocator parameter.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

/// mimalloc's options for a small RSS. By default it keeps freed memory for a second before
/// returning it to the OS, and commits the memory of an arena when it makes one. Under load (256
/// connections, a redb cache churning 4 KiB pages) that held 83 to 88 MiB of RSS against glibc's
/// 56 MiB; returning memory at once and committing on demand measured 46 to 60 MiB at the same
/// speed (webhooks 21,400 to 22,600/s against 19,600 to 19,900/s with glibc).
///
/// The commit option counts only for arenas made after it is set, and the first arena is made by
/// the first allocation, before `main`: so this runs as a constructor. Linkers order
/// `.init_array.NNNNN` sections by number, so priority 100 runs before mimalloc's own constructor
/// (101 when built with clang, later with gcc) and before anything that allocates. (Priorities up
/// to 100 are nominally the toolchain's; Rust's std uses 99 on glibc, for argv only.) These are
/// defaults: `MIMALLOC_ARENA_EAGER_COMMIT` and `MIMALLOC_PURGE_DELAY` in the environment still win.
#[used]
#[link_section = ".init_array.00100"]
static SET_ALLOCATOR_OPTIONS: extern "C" fn() = set_allocator_options;

extern "C" fn set_allocator_options() {
    // mimalloc 3's option numbers (`mi_option_e` in mimalloc.h; retired options keep their slots,
    // so these stay put). The crate's bindings do not name these two.
    const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: a constant, and setters of allocator parameters: stores into a static table, no
    // allocation, no thread-local state.
    unsafe {
        if libmimalloc_sys::mi_version() / 10_000 != 3 {
            return; // `serve` asserts the version loudly; a constructor must not panic.
        }
        libmimalloc_sys::mi_option_set_default(ARENA_EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set_default(PURGE_DELAY, 0);
    }
}

fn default_tigerbeetle_bin() -> PathBuf {
    let beside = std::env::current_exe().ok().and_then(|exe| Some(exe.parent()?.join("tigerbeetle")));
    let candidates = [beside, Some(PathBuf::from("tools/bin/tigerbeetle"))];
    candidates.into_iter().flatten().find(|p| p.is_file()).unwrap_or_else(|| PathBuf::from("tigerbeetle"))
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("TIGERFANS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Human => false,
        LogFormat::Auto => false,
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

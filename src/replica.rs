//! The co-located TigerBeetle replica of an appliance: format once, start as a supervised child,
//! restart it if it dies, stop it last at shutdown.
//!
//! The child is tied to us with `PR_SET_PDEATHSIG = SIGKILL`: if tigerfans is killed (even with
//! `kill -9`) the kernel kills the replica too, so a restart finds the data file unlocked. That
//! signal fires when the *thread* that spawned the child exits, so children are spawned from one
//! supervisor thread that lives as long as the appliance does.

use std::fs::OpenOptions;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

#[derive(Debug, Clone)]
pub struct ReplicaOptions {
    pub bin: PathBuf,
    pub data_file: PathBuf,
    /// TigerBeetle's `--cache-grid` (e.g. `256MiB`); the largest part of the replica's memory.
    pub cache_grid: String,
    /// Where the replica's own log goes (appended).
    pub log_file: PathBuf,
}

pub const RESTART_BACKOFF_MS_MAX: u64 = 10_000;
pub const START_TIMEOUT_MS: u64 = 60_000;

/// Formats a single-replica cluster's data file if it does not exist yet. Formatting goes to a
/// temporary name first, so a crash mid-format never leaves a half-made file behind.
pub fn format_if_missing(bin: &Path, data_file: &Path) -> anyhow::Result<()> {
    if data_file.exists() {
        return Ok(());
    }
    let tmp = data_file.with_extension("tigerbeetle.formatting");
    let _ = std::fs::remove_file(&tmp);
    tracing::info!(file = %data_file.display(), "formatting the TigerBeetle data file");
    let output = Command::new(bin)
        .args(["format", "--cluster=0", "--replica=0", "--replica-count=1"])
        .arg(&tmp)
        .output()
        .with_context(|| format!("running {} format", bin.display()))?;
    if !output.status.success() {
        bail!("tigerbeetle format failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    std::fs::rename(&tmp, data_file).context("moving the formatted data file into place")?;
    Ok(())
}

/// A free loopback port, found by binding port 0. The replica keeps it across restarts.
pub fn free_loopback_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The data file of the co-located replica in a data dir.
pub fn data_file(data_dir: &Path) -> PathBuf {
    data_dir.join("0_0.tigerbeetle")
}

/// Where TigerBeetle is: the operator's cluster (`external`), or a replica of `data_dir` started
/// and supervised here (formatted first if it has no data file). Returns the supervisor, if one
/// was started, and the addresses for the client.
pub async fn start_unless_external(
    external: Option<&str>,
    bin: &Path,
    data_dir: &Path,
    cache_grid: &str,
) -> anyhow::Result<(Option<Supervisor>, String)> {
    if let Some(addresses) = external {
        return Ok((None, addresses.to_string()));
    }
    let options = ReplicaOptions {
        bin: bin.to_path_buf(),
        data_file: data_file(data_dir),
        cache_grid: cache_grid.to_string(),
        log_file: data_dir.join("tigerbeetle.log"),
    };
    let supervisor = tokio::task::spawn_blocking(move || Supervisor::start(options)).await??;
    let address = supervisor.address.to_string();
    Ok((Some(supervisor), address))
}

pub struct Supervisor {
    pub address: SocketAddr,
    stop: Arc<AtomicBool>,
    pid: Arc<AtomicI32>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Supervisor {
    /// Starts the replica on a free loopback port and waits until it accepts connections.
    pub fn start(options: ReplicaOptions) -> anyhow::Result<Supervisor> {
        if !options.bin.exists() {
            bail!("TigerBeetle binary not found at {} (set --tigerbeetle-bin)", options.bin.display());
        }
        format_if_missing(&options.bin, &options.data_file)?;
        let port = free_loopback_port()?;
        let address: SocketAddr = ([127, 0, 0, 1], port).into();
        let stop = Arc::new(AtomicBool::new(false));
        let pid = Arc::new(AtomicI32::new(0));
        let thread = {
            let (stop, pid) = (stop.clone(), pid.clone());
            std::thread::Builder::new()
                .name("replica-supervisor".into())
                .spawn(move || supervise(options, address, stop, pid))
                .context("spawning the replica supervisor")?
        };
        let supervisor = Supervisor { address, stop, pid, thread: Some(thread) };
        let started = Instant::now();
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            if started.elapsed() > Duration::from_millis(START_TIMEOUT_MS) {
                bail!("TigerBeetle replica did not listen on {address} within {START_TIMEOUT_MS} ms");
            }
            if supervisor.thread.as_ref().is_some_and(|t| t.is_finished()) {
                bail!("TigerBeetle replica supervisor stopped");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        tracing::info!(%address, "TigerBeetle replica is listening");
        Ok(supervisor)
    }

    /// Stops the replica (SIGTERM) and waits for it.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let pid = self.pid.load(Ordering::SeqCst);
        if pid > 0 {
            // SAFETY: plain syscall on a pid we spawned and have not reaped yet.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        tracing::info!("TigerBeetle replica stopped");
    }
}

fn supervise(options: ReplicaOptions, address: SocketAddr, stop: Arc<AtomicBool>, pid: Arc<AtomicI32>) {
    let mut backoff_ms = 250;
    while !stop.load(Ordering::SeqCst) {
        let log = OpenOptions::new().create(true).append(true).open(&options.log_file);
        let (stdout, stderr) = match log.and_then(|f| Ok((f.try_clone()?, f))) {
            Ok((a, b)) => (Stdio::from(a), Stdio::from(b)),
            Err(_) => (Stdio::null(), Stdio::null()),
        };
        let parent = std::process::id() as libc::pid_t;
        let mut command = Command::new(&options.bin);
        command
            .arg("start")
            .arg(format!("--addresses={address}"))
            .arg(format!("--cache-grid={}", options.cache_grid))
            .arg(&options.data_file)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before prctl took effect.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let started = Instant::now();
        let status = match command.spawn() {
            Ok(mut child) => {
                pid.store(child.id() as i32, Ordering::SeqCst);
                tracing::info!(pid = child.id(), %address, "TigerBeetle replica started");
                let status = child.wait();
                pid.store(0, Ordering::SeqCst);
                status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string())
            }
            Err(e) => format!("could not start: {e}"),
        };
        if stop.load(Ordering::SeqCst) {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            backoff_ms = 250;
        }
        tracing::error!(%status, backoff_ms, "TigerBeetle replica exited; restarting");
        std::thread::sleep(Duration::from_millis(backoff_ms));
        backoff_ms = (backoff_ms * 2).min(RESTART_BACKOFF_MS_MAX);
    }
}

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
use std::sync::atomic::{AtomicI32, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::tb_profile::TbProfile;

#[derive(Debug, Clone)]
pub struct ReplicaOptions {
    pub bin: PathBuf,
    pub data_file: PathBuf,
    /// The cluster id the data file is (or is to be) formatted with.
    pub cluster: u128,
    /// `tigerbeetle start`'s flags before the data file: a memory profile's
    /// (`TbProfile::start_flags`), the grid cache among them.
    pub start_flags: Vec<String>,
    /// Where the replica's own log goes (appended).
    pub log_file: PathBuf,
    /// The loopback port to listen on; `None`: a free one (`free_loopback_port`).
    pub port: Option<u16>,
}

pub const RESTART_BACKOFF_MS_MAX: u64 = 10_000;
pub const START_TIMEOUT_MS: u64 = 60_000;

/// Formats a single-replica cluster's data file if it does not exist yet. Formatting goes to a
/// temporary name first, so a crash mid-format never leaves a half-made file behind.
pub fn format_if_missing(bin: &Path, data_file: &Path, cluster: u128) -> anyhow::Result<()> {
    if data_file.exists() {
        return Ok(());
    }
    let tmp = data_file.with_extension("tigerbeetle.formatting");
    let _ = std::fs::remove_file(&tmp);
    tracing::info!(file = %data_file.display(), cluster, "formatting the TigerBeetle data file");
    let output = Command::new(bin)
        .arg("format")
        .arg(format!("--cluster={cluster}"))
        .args(["--replica=0", "--replica-count=1"])
        .arg(&tmp)
        .output()
        .with_context(|| format!("running {} format", bin.display()))?;
    if !output.status.success() {
        bail!("tigerbeetle format failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    std::fs::rename(&tmp, data_file).context("moving the formatted data file into place")?;
    Ok(())
}

/// Where the co-located replica's cluster id is kept: beside its data file.
pub fn cluster_file(data_dir: &Path) -> PathBuf {
    data_dir.join("tigerbeetle-cluster")
}

/// The co-located replica's cluster id. TigerBeetle reserves cluster 0 for testing, so a new
/// data file gets a random id, kept in `cluster_file` (the client must name the same one); a
/// data file formatted before the id was kept has cluster 0, and keeps working with it.
pub fn cluster_id(data_dir: &Path) -> anyhow::Result<u128> {
    let path = cluster_file(data_dir);
    let (text, _) = crate::secrets::read_or_create(&path, || {
        if data_file(data_dir).exists() {
            "0".to_string()
        } else {
            // Never 0; any other u128 is a valid cluster id.
            rand::random::<u128>().max(1).to_string()
        }
    })?;
    text.parse().with_context(|| format!("{} does not hold a cluster id: {text:?}", path.display()))
}

/// The lowest port the replica is given. Below it are the well-known and registered services a
/// machine is likely to run.
pub const REPLICA_PORT_MIN: u16 = 20_000;

/// A free loopback port for the replica, outside the kernel's ephemeral range
/// (`net.ipv4.ip_local_port_range`). The replica keeps its port across restarts (the client
/// knows only that address), and a port from the ephemeral range, which the kernel hands to
/// `bind(0)` and to outgoing connections, could be taken by any process while the replica is
/// down; a port outside it only by one that asks for it by number.
pub fn free_loopback_port() -> anyhow::Result<u16> {
    let (ephemeral_low, _) = ephemeral_port_range();
    let span = u32::from(ephemeral_low.saturating_sub(REPLICA_PORT_MIN));
    let start = u32::from(rand::random::<u16>());
    for i in 0..span {
        let port = REPLICA_PORT_MIN + ((start + i) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            assert!(port >= REPLICA_PORT_MIN && port < ephemeral_low);
            return Ok(port);
        }
    }
    // A kernel whose ephemeral range starts this low (tuned to 1024-65535, say) leaves no port
    // outside it: take one of its own, as before.
    tracing::warn!(ephemeral_low, "no free port below the ephemeral range: the replica's port is one of it");
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The kernel's ephemeral port range; Linux's default if it cannot be read.
pub fn ephemeral_port_range() -> (u16, u16) {
    let read = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok();
    let range = read.and_then(|text| {
        let mut parts = text.split_whitespace().map(|p| p.parse::<u16>().ok());
        Some((parts.next()??, parts.next()??))
    });
    range.unwrap_or((32_768, 60_999))
}

/// The data file of the co-located replica in a data dir.
pub fn data_file(data_dir: &Path) -> PathBuf {
    data_dir.join("0_0.tigerbeetle")
}

/// Where TigerBeetle is for a server or an audit: its addresses, its cluster id, and the
/// supervisor of the co-located replica if there is one.
pub struct Tigerbeetle {
    pub supervisor: Option<Supervisor>,
    pub addresses: String,
    pub cluster: u128,
}

/// The operator's cluster (`external`, with `external_cluster`), or a replica of `data_dir`
/// started and supervised here, formatted first if it has no data file. Returns at once: the
/// replica may take seconds to listen (a server answers 503 meanwhile).
pub fn spawn_unless_external(
    external: Option<&str>,
    external_cluster: u128,
    bin: &Path,
    data_dir: &Path,
    profile: TbProfile,
    cache_grid: Option<&str>,
) -> anyhow::Result<Tigerbeetle> {
    if let Some(addresses) = external {
        return Ok(Tigerbeetle { supervisor: None, addresses: addresses.to_string(), cluster: external_cluster });
    }
    let cluster = cluster_id(data_dir)?;
    profile.claim_data_dir(data_dir, data_file(data_dir).exists())?;
    let options = ReplicaOptions {
        bin: bin.to_path_buf(),
        data_file: data_file(data_dir),
        cluster,
        start_flags: profile.start_flags(cache_grid),
        log_file: data_dir.join("tigerbeetle.log"),
        port: None,
    };
    let supervisor = Supervisor::spawn(options)?;
    let addresses = supervisor.address.to_string();
    Ok(Tigerbeetle { supervisor: Some(supervisor), addresses, cluster })
}

/// As `spawn_unless_external`, and waits until the replica (if ours) listens.
pub async fn start_unless_external(
    external: Option<&str>,
    external_cluster: u128,
    bin: &Path,
    data_dir: &Path,
    profile: TbProfile,
    cache_grid: Option<&str>,
) -> anyhow::Result<Tigerbeetle> {
    let tigerbeetle = spawn_unless_external(external, external_cluster, bin, data_dir, profile, cache_grid)?;
    match tigerbeetle.supervisor {
        None => Ok(tigerbeetle),
        Some(supervisor) => {
            let supervisor = tokio::task::spawn_blocking(move || {
                let listening = supervisor.wait_listening(Duration::from_millis(START_TIMEOUT_MS));
                listening.map(|()| supervisor)
            })
            .await??;
            Ok(Tigerbeetle { supervisor: Some(supervisor), ..tigerbeetle })
        }
    }
}

pub struct Supervisor {
    pub address: SocketAddr,
    child: Arc<ChildState>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the supervisor thread and `stop` share. The lock is held from the check of `stopping`
/// to the pid's store, so `stop` either comes first (and no child is started) or finds the pid
/// (and signals it): it can never fall between a spawn and the store of its pid, where the
/// signal would be missed and `stop` would wait for a replica that keeps running.
#[derive(Default)]
struct ChildState {
    inner: Mutex<Child>,
    /// A copy of `Child::pid` for readers that must not take the lock (`/metrics`).
    pid_published: Arc<AtomicI32>,
}

#[derive(Default)]
struct Child {
    stopping: bool,
    /// The running replica's pid; 0 when none runs.
    pid: i32,
}

impl Supervisor {
    /// Starts the replica (formatting its data file first if there is none) and returns at once.
    pub fn spawn(options: ReplicaOptions) -> anyhow::Result<Supervisor> {
        if !options.bin.exists() {
            bail!("TigerBeetle binary not found at {} (set --tigerbeetle-bin)", options.bin.display());
        }
        let port = match options.port {
            Some(port) => port,
            None => free_loopback_port()?,
        };
        let address: SocketAddr = ([127, 0, 0, 1], port).into();
        let child = Arc::new(ChildState::default());
        let thread = {
            let child = child.clone();
            std::thread::Builder::new()
                .name("replica-supervisor".into())
                .spawn(move || supervise(options, address, &child))
                .context("spawning the replica supervisor")?
        };
        Ok(Supervisor { address, child, thread: Some(thread) })
    }

    /// Starts the replica and waits until it accepts connections.
    pub fn start(options: ReplicaOptions) -> anyhow::Result<Supervisor> {
        let supervisor = Supervisor::spawn(options)?;
        supervisor.wait_listening(Duration::from_millis(START_TIMEOUT_MS))?;
        Ok(supervisor)
    }

    /// The running replica's pid (0 while none runs), kept current by the supervisor.
    pub fn pid_handle(&self) -> Arc<AtomicI32> {
        self.child.pid_published.clone()
    }

    /// Waits until the replica accepts connections, at most `timeout`.
    pub fn wait_listening(&self, timeout: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        while TcpStream::connect_timeout(&self.address, Duration::from_millis(200)).is_err() {
            if started.elapsed() > timeout {
                bail!("TigerBeetle replica did not listen on {} within {} ms", self.address, timeout.as_millis());
            }
            if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
                bail!("TigerBeetle replica supervisor stopped");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        tracing::info!(address = %self.address, "TigerBeetle replica is listening");
        Ok(())
    }

    /// Stops the replica (SIGTERM) and waits for it.
    pub fn stop(mut self) {
        {
            let mut child = self.child.inner.lock().expect("replica state lock poisoned");
            child.stopping = true;
            if child.pid > 0 {
                // SAFETY: plain syscall on a pid we spawned and have not reaped yet (the
                // supervisor reaps it only after clearing the pid under this lock).
                unsafe {
                    libc::kill(child.pid, libc::SIGTERM);
                }
            }
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        tracing::info!("TigerBeetle replica stopped");
    }
}

fn supervise(options: ReplicaOptions, address: SocketAddr, state: &ChildState) {
    let mut backoff_ms = 250;
    loop {
        let started = Instant::now();
        let status = {
            let mut child = state.inner.lock().expect("replica state lock poisoned");
            if child.stopping {
                break;
            }
            let formatted = format_if_missing(&options.bin, &options.data_file, options.cluster);
            match formatted.and_then(|()| replica_command(&options, address).spawn().context("could not start")) {
                Ok(spawned) => {
                    child.pid = spawned.id() as i32;
                    state.pid_published.store(child.pid, Relaxed);
                    tracing::info!(pid = spawned.id(), %address, "TigerBeetle replica started");
                    Ok(spawned)
                }
                Err(e) => Err(format!("{e:#}")),
            }
        };
        let status = match status {
            Ok(mut spawned) => {
                // Wait for the exit without reaping the child, so its pid stays ours (never a
                // reused one) until it is cleared under the lock; then reap it.
                wait_exited(spawned.id());
                state.inner.lock().expect("replica state lock poisoned").pid = 0;
                state.pid_published.store(0, Relaxed);
                let status = spawned.wait();
                status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string())
            }
            Err(why) => why,
        };
        if state.inner.lock().expect("replica state lock poisoned").stopping {
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

/// Blocks until the child `pid` has exited, leaving it unreaped (`WNOWAIT`).
fn wait_exited(pid: u32) {
    loop {
        // SAFETY: waitid writes into the struct we pass; WNOWAIT leaves the child to `wait`.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let waited = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if waited == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

/// `tigerbeetle start` for this replica, its output appended to its log, tied to our life.
fn replica_command(options: &ReplicaOptions, address: SocketAddr) -> Command {
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
        .args(&options.start_flags)
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
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_data_dir_gets_a_random_cluster_id_and_an_old_data_file_keeps_0() {
        let dir = std::env::temp_dir().join(format!("tigerfans-cluster-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let id = cluster_id(&dir).unwrap();
        assert_ne!(id, 0, "cluster 0 is TigerBeetle's testing cluster");
        assert_eq!(cluster_id(&dir).unwrap(), id, "kept");
        std::fs::remove_file(cluster_file(&dir)).unwrap();
        std::fs::write(data_file(&dir), b"formatted before the id was kept").unwrap();
        assert_eq!(cluster_id(&dir).unwrap(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_replica_port_is_outside_the_ephemeral_range() {
        let (low, high) = ephemeral_port_range();
        assert!(low <= high);
        for _ in 0..20 {
            let port = free_loopback_port().unwrap();
            assert!((REPLICA_PORT_MIN..low).contains(&port), "{port} in the ephemeral range {low}-{high}");
            TcpListener::bind(("127.0.0.1", port)).expect("free");
        }
    }
}

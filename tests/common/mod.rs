//! Test harness: one real TigerBeetle replica per test binary (it takes ~6 s to start), real
//! `tigerfans` server processes talking to it, and a small HTTP client. Tests isolate by ledger:
//! each server gets a ledger of its own, so its accounts are its own.

#![allow(dead_code)]

pub mod load;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

pub fn tigerbeetle_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("TIGERBEETLE_BIN") {
        return PathBuf::from(bin);
    }
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/bin/tigerbeetle");
    assert!(bin.is_file(), "{} missing: run scripts/bootstrap.sh (make test does)", bin.display());
    bin
}

/// Tests open thousands of connections; a fresh machine's soft limit may be 1024.
pub fn raise_fd_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A fresh directory under the target's tmp dir, named `NAME-PID-N`.
///
/// TigerBeetle data files are over 1 GiB each: the first call of a test process also removes
/// the directories of test processes that are gone (a run that was killed), and arranges for
/// this process's own to be removed when it exits.
pub fn scratch_dir(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    static CLEANED: OnceLock<()> = OnceLock::new();
    CLEANED.get_or_init(|| {
        remove_stale_scratch_dirs();
        // SAFETY: registers a plain function to run at exit; it only removes files.
        unsafe {
            libc::atexit(remove_own_scratch_dirs);
        }
    });
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// At exit (the test harness exits once every test has run): this process's scratch dirs. The
/// replica may still have its data file open; the kernel frees it when the replica ends with us.
extern "C" fn remove_own_scratch_dirs() {
    remove_scratch_dirs(|pid| pid == std::process::id());
}

fn remove_stale_scratch_dirs() {
    remove_scratch_dirs(|pid| pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists());
}

/// Removes the scratch dirs (`NAME-PID-N`) whose PID `matches`.
fn remove_scratch_dirs(matches: impl Fn(u32) -> bool) {
    let Ok(entries) = std::fs::read_dir(env!("CARGO_TARGET_TMPDIR")) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let mut parts = name.rsplitn(3, '-');
        let (Some(_n), Some(pid), Some(_prefix)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let Ok(pid) = pid.parse::<u32>() else { continue };
        if matches(pid) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

pub fn wait_for_port(port: u16, timeout: Duration) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < timeout, "port {port} not listening after {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The replica shared by every test of this binary: the appliance's own supervisor
/// (`tigerfans::replica`), production mode with a small cache (or the profile
/// `TIGERFANS_TB_PROFILE` names: `TIGERFANS_TB_PROFILE=small cargo test` runs everything, the
/// servers the tests start too, with the small profile's request limit and batches). It lives as long as the binary;
/// PR_SET_PDEATHSIG ends the replica with it.
pub fn replica_address() -> &'static str {
    static REPLICA: OnceLock<(tigerfans::replica::Supervisor, String)> = OnceLock::new();
    &REPLICA
        .get_or_init(|| {
            let dir = scratch_dir("replica");
            let supervisor = tigerfans::replica::Supervisor::start(tigerfans::replica::ReplicaOptions {
                bin: tigerbeetle_bin(),
                data_file: tigerfans::replica::data_file(&dir),
                cluster: 0,
                start_flags: test_tb_profile().start_flags(Some("128MiB")),
                log_file: dir.join("tigerbeetle.log"),
                port: None,
            })
            .expect("starting the shared TigerBeetle replica");
            let address = supervisor.address.to_string();
            (supervisor, address)
        })
        .1
}

/// A fresh ledger per server: isolation between tests on the shared replica.
pub fn next_ledger() -> u32 {
    static LEDGER: AtomicU32 = AtomicU32::new(100);
    LEDGER.fetch_add(1, Ordering::Relaxed)
}

pub const SECRET: &str = "test-webhook-secret";

/// An event config with one class `A` of `capacity` tickets.
pub fn config(capacity: u64, goodie_limit: u64, hold_timeout_s: u32) -> Value {
    json!({
        "ledger": next_ledger(),
        "currency": "EUR",
        "classes": [
            {"id": "A", "name": "Premium", "price_cents": 6500, "capacity": capacity},
            {"id": "B", "name": "Standard", "price_cents": 3500, "capacity": capacity},
        ],
        "goodie_limit": goodie_limit,
        "hold_timeout_s": hold_timeout_s,
        "webhook_secret": SECRET,
        // Off by default; the tests of the reference's accounting path use them.
        "accounting_endpoints": true,
    })
}

pub struct Server {
    child: Option<Child>,
    pub base: String,
    pub port: u16,
    pub data_dir: PathBuf,
    /// `serve`'s arguments, for the next (re)start.
    pub args: Vec<String>,
    pub http: Http,
}

impl Server {
    /// A server on the shared replica with this config.
    pub async fn start(config: Value) -> Server {
        Server::start_with_args(config, &[]).await
    }

    /// A server on the shared replica with this config and extra `serve` arguments.
    pub async fn start_with_args(config: Value, extra: &[&str]) -> Server {
        let data_dir = scratch_dir("server");
        let config_path = data_dir.join("event.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let args = vec![
            "serve".to_string(),
            format!("--data-dir={}", data_dir.display()),
            format!("--config={}", config_path.display()),
            format!("--tb-addresses={}", replica_address()),
            "--tb-timeout-ms=3000".to_string(),
        ];
        let args = args.into_iter().chain(extra.iter().map(|a| a.to_string())).collect();
        Server::start_with(data_dir, args).await
    }

    /// A server with the given arguments (appliance mode when no `--tb-addresses`).
    pub async fn start_with(data_dir: PathBuf, args: Vec<String>) -> Server {
        raise_fd_limit();
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let mut server = Server { child: None, base: base.clone(), port, data_dir, args, http: Http::new(&base) };
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.data_dir.join("tigerfans.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tigerfans"))
            .args(&self.args)
            .arg(format!("--listen=127.0.0.1:{}", self.port))
            .env("TIGERFANS_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting tigerfans");
        self.child = Some(child);
        self.wait_healthy(Duration::from_secs(90)).await;
    }

    pub async fn wait_healthy(&self, timeout: Duration) {
        let started = Instant::now();
        loop {
            if let Ok((StatusCode::OK, _)) = self.http.try_get("/healthz").await {
                return;
            }
            if started.elapsed() > timeout {
                let log = std::fs::read_to_string(self.data_dir.join("tigerfans.log")).unwrap_or_default();
                panic!("server not healthy after {timeout:?}; log:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait: the graceful path. Returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        child.wait().unwrap()
    }

    pub async fn restart(&mut self) {
        self.kill9();
        self.http = Http::new(&self.base);
        self.spawn().await;
    }
}

impl Server {
    /// `tigerfans audit --base` against this running server, as the admin: (passed, report).
    pub async fn audit(&self) -> (bool, Value) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tigerfans"));
        command
            .args(["audit", "--json", "--base", &self.base])
            .arg("--password-file")
            .arg(self.data_dir.join("admin-password"));
        run_audit(command).await
    }

    /// `tigerfans audit --data-dir` on this (stopped) server's data dir and its config.
    pub async fn audit_offline(&self) -> (bool, Value) {
        assert!(self.child.is_none(), "redb allows one process per file: stop the server first");
        let mut command = Command::new(env!("CARGO_BIN_EXE_tigerfans"));
        command.args(["audit", "--json"]).arg(format!("--data-dir={}", self.data_dir.display()));
        for arg in &self.args {
            if arg.starts_with("--config=") || arg.starts_with("--tb-addresses=") || arg.starts_with("--tb-cluster=") {
                command.arg(arg);
            }
        }
        if !self.args.iter().any(|a| a.starts_with("--tb-addresses=")) {
            command.arg(format!("--tigerbeetle-bin={}", tigerbeetle_bin().display()));
        }
        run_audit(command).await
    }

    /// The audit must pass; prints the report either way.
    pub async fn assert_audit_passes(&self) -> Value {
        let (ok, report) = self.audit().await;
        assert!(ok, "audit failed:\n{}", serde_json::to_string_pretty(&report).unwrap());
        report
    }
}

async fn run_audit(mut command: Command) -> (bool, Value) {
    let output = tokio::task::spawn_blocking(move || {
        command.env("TIGERFANS_LOG", "warn").output().expect("running tigerfans audit")
    })
    .await
    .unwrap();
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
        panic!(
            "audit printed no report ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let ok = report["ok"].as_bool().expect("report has ok");
    assert_eq!(
        output.status.code(),
        Some(if ok { 0 } else { 1 }),
        "exit status must say what the report says: {report}"
    );
    (ok, report)
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A keep-alive HTTP/1.1 client with JSON helpers.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    pub base: String,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

impl Http {
    pub fn new(base: &str) -> Http {
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build_http();
        Http { client, base: base.to_string() }
    }

    /// A client whose connections come from `local` (any of 127.0.0.0/8 on loopback): another
    /// client address, as the server sees it.
    pub fn from_address(base: &str, local: std::net::IpAddr) -> Http {
        let mut connector = HttpConnector::new();
        connector.set_local_address(Some(local));
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector);
        Http { client, base: base.to_string() }
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Reply, String> {
        let mut builder = Request::builder().method(method).uri(format!("{}{}", self.base, path));
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let request = builder.body(Full::new(Bytes::from(body))).unwrap();
        let response = tokio::time::timeout(Duration::from_secs(30), self.client.request(request))
            .await
            .map_err(|_| "timeout".to_string())?
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Reply { status, headers, body })
    }

    pub async fn try_get(&self, path: &str) -> Result<(StatusCode, Value), String> {
        let reply = self.request(Method::GET, path, &[], Vec::new()).await?;
        let value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        Ok((reply.status, value))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.try_get(path).await.unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let reply = self
            .request(Method::POST, path, &[("content-type", "application/json")], serde_json::to_vec(body).unwrap())
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        (reply.status, reply.json())
    }

    pub async fn try_checkout(&self, cls: &str, email: &str) -> Result<(StatusCode, Value), String> {
        let reply = self
            .request(
                Method::POST,
                "/api/checkout",
                &[("content-type", "application/json")],
                serde_json::to_vec(&json!({"cls": cls, "customer_email": email})).unwrap(),
            )
            .await?;
        Ok((reply.status, serde_json::from_slice(&reply.body).unwrap_or(Value::Null)))
    }

    pub async fn checkout(&self, cls: &str, email: &str) -> (StatusCode, Value) {
        self.try_checkout(cls, email).await.unwrap()
    }

    /// Delivers a signed webhook body (as MockPay or a real provider would).
    pub async fn try_webhook(&self, body: &[u8], secret: &str) -> Result<(StatusCode, Value), String> {
        let signature = tigerfans::payment::sign(secret.as_bytes(), body);
        let reply = self
            .request(
                Method::POST,
                "/payments/webhook",
                &[("content-type", "application/json"), ("x-mockpay-signature", &signature)],
                body.to_vec(),
            )
            .await?;
        Ok((reply.status, serde_json::from_slice(&reply.body).unwrap_or(Value::Null)))
    }

    pub async fn webhook(&self, body: &[u8]) -> (StatusCode, Value) {
        self.try_webhook(body, SECRET).await.unwrap()
    }

    pub async fn webhook_with_secret(&self, body: &[u8], secret: &str) -> (StatusCode, Value) {
        self.try_webhook(body, secret).await.unwrap()
    }

    pub async fn emit(&self, psid: &str, t: &str) -> Reply {
        self.request(
            Method::POST,
            &format!("/mockpay/{psid}/emit"),
            &[("content-type", "application/x-www-form-urlencoded")],
            format!("t={t}").into_bytes(),
        )
        .await
        .unwrap()
    }

    pub async fn order(&self, order_id: &str) -> Value {
        let (status, order) = self.get(&format!("/api/orders/{order_id}")).await;
        assert_eq!(status, StatusCode::OK, "order {order_id}: {order}");
        order
    }

    pub async fn inventory(&self) -> Value {
        let (status, inventory) = self.get("/api/inventory").await;
        assert_eq!(status, StatusCode::OK, "{inventory}");
        inventory
    }

    /// One unlabelled sample of `/metrics`, by its exact name.
    pub async fn metric(&self, name: &str) -> f64 {
        let reply = self.request(Method::GET, "/metrics", &[], Vec::new()).await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        let text = String::from_utf8_lossy(&reply.body);
        text.lines()
            .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
            .trim()
            .parse()
            .unwrap()
    }
}

/// The psid in a checkout's `redirect_url`.
pub fn psid_of(checkout: &Value) -> String {
    checkout["redirect_url"].as_str().unwrap().trim_start_matches("/mockpay/").to_string()
}

/// A webhook body for a checkout, as the provider would send it (the server's own definition of
/// the wire format, `tigerfans::payment::Event`).
pub fn event(kind: &str, checkout: &Value, key: &str) -> Vec<u8> {
    let event = tigerfans::payment::Event {
        kind: tigerfans::payment::EventType::from_button(kind).expect("succeeded, failed or canceled"),
        payment_session_id: psid_of(checkout),
        order_id: checkout["order_id"].as_str().expect("a checkout's order_id").to_string(),
        amount: checkout["amount"].as_u64().expect("a checkout's amount"),
        currency: checkout["currency"].as_str().expect("a checkout's currency").to_string(),
        created_at: "2026-11-23T00:00:00Z".into(),
        idempotency_key: key.into(),
    };
    serde_json::to_vec(&event).unwrap()
}

pub fn unique_key(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Polls `f` until it returns `Some`, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = f().await {
            return value;
        }
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The memory profile the tests' replicas and servers run with (`TIGERFANS_TB_PROFILE`, which the
/// servers read too).
pub fn test_tb_profile() -> tigerfans::tb_profile::TbProfile {
    match std::env::var("TIGERFANS_TB_PROFILE") {
        Ok(name) => name.parse().expect("TIGERFANS_TB_PROFILE"),
        Err(_) => tigerfans::tb_profile::TbProfile::Large,
    }
}

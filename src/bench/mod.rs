//! `tigerfans bench`: a load generator inside the binary, so any tigerfans server (a Raspberry Pi
//! at the venue included) can be measured with nothing else installed.
//!
//! Each of `--concurrency` workers owns one keep-alive connection and takes operation numbers
//! from a shared counter until `--total` is reached (or `--duration` is up). Latencies are kept
//! per worker and merged at the end; the only shared state on the hot path is two atomics.

mod report;
pub mod stats;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use self::report::{machine, print_footer, print_header, print_row};
use self::stats::{Errors, Latencies, ServerFigures};
use crate::http_client::Connection;

pub use self::report::{Machine, PhaseReport, Report};
use crate::clock::{now_ms, rfc3339_ms};
use crate::payment::{self, Event, EventType};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Checkout,
    Webhook,
    Reserve,
    Commit,
    Flow,
    All,
}

#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// `http://host:port` of the server.
    pub base: String,
    pub phase: Phase,
    pub total: u64,
    pub concurrency: usize,
    /// Share of payments that succeed (the rest fail), in webhook and flow phases.
    pub succeed_rate: f64,
    /// Stop each phase after this long even if `total` is not reached.
    pub duration_s: Option<f64>,
    pub json: Option<PathBuf>,
    /// The server's webhook secret; only the webhook phase needs it.
    pub secret: Option<String>,
    pub cls: String,
    /// Threads of the generator's own runtime.
    pub threads: usize,
    /// Operations per second to aim at (paced, open loop); `None`: as fast as the server goes.
    pub rate: Option<f64>,
    pub pay_order: PayOrder,
    /// A request without its whole answer after this long is an error (`timeout: ...`), and
    /// its connection is replaced.
    pub request_timeout_ms: u64,
}

/// Which sessions the webhook phase pays together. The store feels the difference: payments
/// of neighbouring orders rewrite neighbouring B-tree pages, scattered ones a page each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PayOrder {
    /// In a random order: in a real on-sale, customers pay anywhere from seconds to the whole
    /// hold time after checking out, so the orders paid at any moment are scattered over all
    /// open ones. The realistic case, and the default.
    Random,
    /// In the order the checkouts were made, as if every customer paid the same time later.
    Checkout,
}

/// Bounds that keep a typo from starting a runaway load.
pub const CONCURRENCY_MAX: usize = 16_384;
pub const TOTAL_MAX: u64 = 100_000_000;
/// An hour: beyond any answer worth waiting for.
pub const REQUEST_TIMEOUT_MS_MAX: u64 = 3_600_000;
/// A flow polls its order at most this often before counting it as an error.
pub const FLOW_POLLS_MAX: u32 = 100;

/// What a checkout created, for the webhook phase.
#[derive(Debug, Clone, Deserialize)]
struct Checkout {
    order_id: String,
    redirect_url: String,
    amount: u64,
    currency: String,
}

#[derive(Debug, Clone, Deserialize)]
struct Reserved {
    tb_transfer_id: String,
    goodie_tb_transfer_id: Option<String>,
}

#[derive(Default)]
struct WorkerOut {
    /// Per successful operation: when it ended (ms since the phase started) and its latency (µs).
    samples: Vec<(u32, u32)>,
    /// When each failed operation ended (ms since the phase started).
    error_ms: Vec<u32>,
    errors: Errors,
    ok: u64,
    checkouts: Vec<Checkout>,
    reserved: Vec<Reserved>,
}

/// Inputs of a phase and its shared progress counters.
struct PhaseInput {
    kind: Phase,
    total: u64,
    deadline: Option<Instant>,
    started: Instant,
    next: AtomicU64,
    done_ok: AtomicU64,
    done_err: AtomicU64,
    checkouts: Vec<Checkout>,
    reserved: Vec<Reserved>,
    options: BenchOptions,
    run_id: String,
}

pub fn run(options: BenchOptions) -> anyhow::Result<()> {
    if !(1..=CONCURRENCY_MAX).contains(&options.concurrency) {
        bail!("--concurrency must be between 1 and {CONCURRENCY_MAX}");
    }
    if !(1..=TOTAL_MAX).contains(&options.total) {
        bail!("--total must be between 1 and {TOTAL_MAX}");
    }
    if options.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        bail!("--rate must be a positive number of operations per second");
    }
    if !(1..=REQUEST_TIMEOUT_MS_MAX).contains(&options.request_timeout_ms) {
        bail!("--request-timeout-ms must be between 1 and {REQUEST_TIMEOUT_MS_MAX}");
    }
    if !(0.0..=1.0).contains(&options.succeed_rate) {
        bail!("--succeed-rate must be between 0 and 1");
    }
    if phases(options.phase).contains(&Phase::Webhook) && options.secret.is_none() {
        bail!(
            "the webhook phase signs events with the server's webhook secret: give --secret-file \
             DATA_DIR/webhook-secret, --secret or TIGERFANS_WEBHOOK_SECRET"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.threads.max(1))
        .enable_all()
        .build()
        .context("building the generator's runtime")?;
    runtime.block_on(run_async(options))
}

fn authority(base: &str) -> anyhow::Result<String> {
    let rest = base.strip_prefix("http://").context("--base must start with http://")?;
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        bail!("--base must look like http://host:port");
    }
    Ok(if authority.contains(':') { authority.to_string() } else { format!("{authority}:80") })
}

async fn run_async(options: BenchOptions) -> anyhow::Result<()> {
    let authority = authority(&options.base)?;
    let request_timeout = Duration::from_millis(options.request_timeout_ms);
    let mut probe = Connection::new(&authority, request_timeout);
    let server_version = health(&mut probe, &options.base).await?;
    let run_id = format!("{:x}", now_ms());
    let mut report = Report {
        tigerfans_version: env!("CARGO_PKG_VERSION"),
        server_version,
        base: options.base.clone(),
        machine: machine(),
        phases: Vec::new(),
    };
    let mut checkouts = Vec::new();
    let mut reserved = Vec::new();
    print_header();
    for kind in phases(options.phase) {
        let total = match kind {
            Phase::Webhook => checkouts.len() as u64,
            Phase::Commit => reserved.len() as u64,
            _ => options.total,
        };
        if total == 0 {
            eprintln!("[{kind:?}] nothing to do (the phase before it created nothing)");
            continue;
        }
        let input = Arc::new(PhaseInput {
            kind,
            total,
            deadline: options.duration_s.map(|s| Instant::now() + Duration::from_secs_f64(s)),
            started: Instant::now(),
            next: AtomicU64::new(0),
            done_ok: AtomicU64::new(0),
            done_err: AtomicU64::new(0),
            checkouts: if kind == Phase::Webhook { std::mem::take(&mut checkouts) } else { Vec::new() },
            reserved: if kind == Phase::Commit { std::mem::take(&mut reserved) } else { Vec::new() },
            options: options.clone(),
            run_id: run_id.clone(),
        });
        let before = server_figures(&mut probe).await;
        let (mut phase_report, out) = run_phase(&authority, input).await;
        if let (Some(before), Some(after)) = (before, server_figures(&mut probe).await) {
            add_server_figures(&mut phase_report, kind, &before, &after);
        }
        print_row(&phase_report);
        report.phases.push(phase_report);
        checkouts.extend(out.checkouts);
        // Order ids are 12 hex digits of creation time (ms), then 20 of randomness.
        match options.pay_order {
            PayOrder::Checkout => checkouts.sort_unstable_by(|a, b| a.order_id.cmp(&b.order_id)),
            PayOrder::Random => checkouts.sort_unstable_by(|a, b| a.order_id[12..].cmp(&b.order_id[12..])),
        }
        reserved.extend(out.reserved);
    }
    print_footer(&report);
    if let Some(path) = &options.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// The server's `/healthz`: an error unless it is up; its version if it says.
async fn health(probe: &mut Connection, base: &str) -> anyhow::Result<Option<String>> {
    let health = probe
        .request(Method::GET, "/healthz", &[], Bytes::new())
        .await
        .map_err(|e| anyhow::anyhow!("{base} is not reachable: {e}"))?;
    if health.status != StatusCode::OK {
        bail!("{base} is not healthy: {}", String::from_utf8_lossy(&health.body));
    }
    Ok(serde_json::from_slice::<serde_json::Value>(&health.body)
        .ok()
        .and_then(|v| v["version"].as_str().map(str::to_string)))
}

/// The phases a `--phase` runs, in order.
fn phases(phase: Phase) -> Vec<Phase> {
    match phase {
        Phase::All => vec![Phase::Checkout, Phase::Webhook, Phase::Reserve, Phase::Commit, Phase::Flow],
        // Webhooks need sessions and commits need holds: make them first, and report them too.
        Phase::Webhook => vec![Phase::Checkout, Phase::Webhook],
        Phase::Commit => vec![Phase::Reserve, Phase::Commit],
        one => vec![one],
    }
}

/// What the server's `/metrics` moved by during a phase: its handler and stage times, batch
/// and group-commit sizes, and its memory after.
fn add_server_figures(report: &mut PhaseReport, kind: Phase, b: &ServerFigures, a: &ServerFigures) {
    let route = match kind {
        Phase::Checkout => Some(("checkout", "checkout")),
        Phase::Webhook => Some(("webhook", "webhook")),
        Phase::Reserve => Some(("reserve", "")),
        Phase::Commit => Some(("commit", "")),
        _ => None,
    };
    if let Some((route, stage_prefix)) = route {
        let label = format!("route=\"{route}\"");
        if let Some(ms) = stats::histogram_avg_ms(b, a, "tigerfans_http_request_microseconds", &label) {
            report.breakdown_ms.insert("server_handler".into(), ms);
        }
        for stage in crate::metrics::STAGES.iter().filter(|s| !stage_prefix.is_empty() && s.starts_with(stage_prefix)) {
            let label = format!("stage=\"{stage}\"");
            if let Some(ms) = stats::histogram_avg_ms(b, a, "tigerfans_stage_microseconds", &label) {
                report.breakdown_ms.insert(stage.to_string(), ms);
            }
        }
    }
    report.tb_batch_avg = stats::average(b.tb_transfers, a.tb_transfers, b.tb_calls, a.tb_calls);
    report.store_commit_avg = stats::average(b.store_writes, a.store_writes, b.store_commits, a.store_commits);
    report.server_rss_bytes = (a.rss_bytes > 0.0).then_some(a.rss_bytes);
    let ops = report.total;
    let cpu = |name: &str| (a.all.contains_key(name)).then(|| a.get(name) - b.get(name));
    report.server_cpu_us_per_op = cpu("process_cpu_seconds_total").and_then(|s| per_op_us(s, ops));
    report.replica_cpu_us_per_op = cpu("tigerfans_replica_cpu_seconds_total").and_then(|s| per_op_us(s, ops));
    let replica_rss = a.get("tigerfans_replica_resident_memory_bytes");
    report.replica_rss_bytes = (replica_rss > 0.0).then_some(replica_rss);
}

/// CPU microseconds per operation; `None` for a phase that did nothing.
fn per_op_us(cpu_s: f64, ops: u64) -> Option<f64> {
    (ops > 0).then(|| cpu_s * 1e6 / ops as f64)
}

async fn server_figures(probe: &mut Connection) -> Option<ServerFigures> {
    let answer = probe.request(Method::GET, "/metrics", &[], Bytes::new()).await.ok()?;
    (answer.status == StatusCode::OK).then(|| stats::parse_metrics(&String::from_utf8_lossy(&answer.body)))
}

async fn run_phase(authority: &str, input: Arc<PhaseInput>) -> (PhaseReport, WorkerOut) {
    let started = Instant::now();
    let cpu_before = crate::process::self_cpu_seconds();
    let finished = Arc::new(AtomicBool::new(false));
    let progress = tokio::spawn(progress(input.clone(), finished.clone()));
    let mut workers = Vec::with_capacity(input.options.concurrency);
    for _ in 0..input.options.concurrency.min(input.total as usize) {
        let (input, authority) = (input.clone(), authority.to_string());
        let timeout = Duration::from_millis(input.options.request_timeout_ms);
        workers.push(tokio::spawn(async move { worker(input, Connection::new(&authority, timeout)).await }));
    }
    let mut merged = WorkerOut::default();
    let mut latencies = Latencies::default();
    let (mut samples, mut error_ms) = (Vec::new(), Vec::new());
    for worker in workers {
        let out = worker.await.expect("bench worker panicked");
        latencies.extend(out.samples.iter().map(|&(_, us)| us).collect());
        samples.extend(out.samples);
        error_ms.extend(out.error_ms);
        stats::merge_errors(&mut merged.errors, out.errors);
        merged.ok += out.ok;
        merged.checkouts.extend(out.checkouts);
        merged.reserved.extend(out.reserved);
    }
    let wall_s = started.elapsed().as_secs_f64();
    let cpu_s = crate::process::self_cpu_seconds() - cpu_before;
    finished.store(true, Relaxed);
    let _ = progress.await;
    let percentiles = latencies.percentiles_ms(&[50.0, 90.0, 99.0, 100.0]);
    let mean_ms = latencies.mean_ms();
    let errors_total: u64 = merged.errors.values().sum();
    let report = PhaseReport {
        phase: format!("{:?}", input.kind).to_lowercase(),
        total: merged.ok + errors_total,
        ok: merged.ok,
        errors: merged.errors.clone(),
        wall_s,
        throughput: merged.ok as f64 / wall_s,
        p50_ms: percentiles[0],
        p90_ms: percentiles[1],
        p99_ms: percentiles[2],
        max_ms: percentiles[3],
        concurrency: input.options.concurrency,
        tb_batch_avg: None,
        store_commit_avg: None,
        server_rss_bytes: None,
        generator_cpu_cores: cpu_s / wall_s,
        generator_cpu_us_per_op: per_op_us(cpu_s, merged.ok + errors_total),
        server_cpu_us_per_op: None,
        replica_cpu_us_per_op: None,
        replica_rss_bytes: None,
        breakdown_ms: BTreeMap::new(),
        mean_ms,
        timeline: stats::timeline(&mut samples, &mut error_ms),
    };
    (report, merged)
}

async fn progress(input: Arc<PhaseInput>, finished: Arc<AtomicBool>) {
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while !finished.load(Relaxed) {
        tick.tick().await;
        let ok = input.done_ok.load(Relaxed);
        let err = input.done_err.load(Relaxed);
        eprintln!(
            "  [{:?}] {}/{} ok {} errors {} ({:.0} ops/s)",
            input.kind,
            ok + err,
            input.total,
            ok,
            err,
            ok as f64 / started.elapsed().as_secs_f64()
        );
    }
}

fn succeeds(index: u64, rate: f64) -> bool {
    // A fixed spread (Knuth's multiplicative hash) instead of randomness: runs are repeatable.
    ((index.wrapping_mul(2_654_435_761) % 1000) as f64) < rate * 1000.0
}

async fn worker(input: Arc<PhaseInput>, mut connection: Connection) -> WorkerOut {
    let mut out = WorkerOut::default();
    loop {
        let index = input.next.fetch_add(1, Relaxed);
        if index >= input.total || input.deadline.is_some_and(|d| Instant::now() >= d) {
            return out;
        }
        // Paced: operation `index` is due at index / rate. Its latency counts from when it was
        // due, so a server that falls behind shows it (no coordinated omission).
        let started = match input.options.rate {
            Some(rate) => {
                let due = input.started + Duration::from_secs_f64(index as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
                if input.deadline.is_some_and(|d| Instant::now() >= d) {
                    return out;
                }
                due
            }
            None => Instant::now(),
        };
        let result = match input.kind {
            Phase::Checkout => checkout(&mut connection, &input, index).await.map(|c| out.checkouts.push(c)),
            Phase::Webhook => webhook(&mut connection, &input, index).await,
            Phase::Reserve => reserve(&mut connection, &input).await.map(|r| out.reserved.push(r)),
            Phase::Commit => commit(&mut connection, &input, index).await,
            Phase::Flow => flow(&mut connection, &input, index).await,
            Phase::All => unreachable!("all is expanded into phases"),
        };
        let elapsed_us = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
        let ended_ms = u32::try_from(input.started.elapsed().as_millis()).unwrap_or(u32::MAX);
        match result {
            Ok(()) => {
                out.ok += 1;
                out.samples.push((ended_ms, elapsed_us));
                input.done_ok.fetch_add(1, Relaxed);
            }
            Err(kind) => {
                *out.errors.entry(kind).or_default() += 1;
                out.error_ms.push(ended_ms);
                input.done_err.fetch_add(1, Relaxed);
            }
        }
    }
}

fn expect(status: StatusCode, expected: StatusCode, body: &[u8]) -> Result<(), String> {
    if status == expected {
        return Ok(());
    }
    let detail = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["detail"].as_str().map(str::to_string))
        .unwrap_or_default();
    Err(format!("HTTP {} {}", status.as_u16(), detail).trim_end().to_string())
}

async fn checkout(connection: &mut Connection, input: &PhaseInput, index: u64) -> Result<Checkout, String> {
    let body = format!(r#"{{"cls":"{}","customer_email":"bench{index}@example.com"}}"#, input.options.cls);
    let answer = connection
        .request(Method::POST, "/api/checkout", &[("content-type", "application/json")], Bytes::from(body))
        .await?;
    expect(answer.status, StatusCode::OK, &answer.body)?;
    serde_json::from_slice(&answer.body).map_err(|e| format!("bad checkout JSON: {e}"))
}

async fn webhook(connection: &mut Connection, input: &PhaseInput, index: u64) -> Result<(), String> {
    let session = &input.checkouts[index as usize];
    let kind = if succeeds(index, input.options.succeed_rate) { EventType::Succeeded } else { EventType::Failed };
    let event = Event {
        kind,
        payment_session_id: session.redirect_url.trim_start_matches("/mockpay/").to_string(),
        order_id: session.order_id.clone(),
        amount: session.amount,
        currency: session.currency.clone(),
        created_at: rfc3339_ms(now_ms()),
        idempotency_key: format!("bench-{}-{index}", input.run_id),
    };
    let secret = input.options.secret.as_deref().expect("checked before the phases ran");
    let (body, signature) = event.encode_signed(secret.as_bytes());
    let answer = connection
        .request(
            Method::POST,
            "/payments/webhook",
            &[("content-type", "application/json"), (payment::SIGNATURE_HEADER, &signature)],
            Bytes::from(body),
        )
        .await?;
    expect(answer.status, StatusCode::OK, &answer.body)
}

async fn reserve(connection: &mut Connection, input: &PhaseInput) -> Result<Reserved, String> {
    let path = format!("/api/accounting/reserve?cls={}", input.options.cls);
    let answer = connection.request(Method::GET, &path, &[], Bytes::new()).await?;
    expect(answer.status, StatusCode::OK, &answer.body)?;
    serde_json::from_slice(&answer.body).map_err(|e| format!("bad reserve JSON: {e}"))
}

async fn commit(connection: &mut Connection, input: &PhaseInput, index: u64) -> Result<(), String> {
    let reserved = &input.reserved[index as usize];
    let mut path = format!("/api/accounting/commit?tb_transfer_id={}", reserved.tb_transfer_id);
    if let Some(goodie) = &reserved.goodie_tb_transfer_id {
        path.push_str("&goodie_tb_transfer_id=");
        path.push_str(goodie);
    }
    let answer = connection.request(Method::GET, &path, &[], Bytes::new()).await?;
    expect(answer.status, StatusCode::OK, &answer.body)
}

/// What a browser does: checkout, press a MockPay button, poll the order until it is final.
async fn flow(connection: &mut Connection, input: &PhaseInput, index: u64) -> Result<(), String> {
    let created = checkout(connection, input, index).await?;
    let t = if succeeds(index, input.options.succeed_rate) { "t=succeeded" } else { "t=failed" };
    let emit = format!("{}/emit", created.redirect_url);
    let answer = connection
        .request(
            Method::POST,
            &emit,
            &[("content-type", "application/x-www-form-urlencoded")],
            Bytes::from_static(t.as_bytes()),
        )
        .await?;
    expect(answer.status, StatusCode::SEE_OTHER, &answer.body)?;
    let order_path = format!("/api/orders/{}", created.order_id);
    for _ in 0..FLOW_POLLS_MAX {
        let answer = connection.request(Method::GET, &order_path, &[], Bytes::new()).await?;
        expect(answer.status, StatusCode::OK, &answer.body)?;
        #[derive(Deserialize)]
        struct Status<'a> {
            status: &'a str,
        }
        let order: Status = serde_json::from_slice(&answer.body).map_err(|e| format!("bad order JSON: {e}"))?;
        if order.status != "PENDING" {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err("order not final after polling".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(authority("http://127.0.0.1:8000").unwrap(), "127.0.0.1:8000");
        assert_eq!(authority("http://pi.local/").unwrap(), "pi.local:80");
        assert!(authority("https://x").is_err());
        assert!(authority("http://x/y").is_err());
    }

    #[test]
    fn succeed_rate_is_respected_roughly() {
        let n = (0..10_000).filter(|&i| succeeds(i, 0.7)).count();
        assert!((6_800..7_200).contains(&n), "{n}");
        assert_eq!((0..1000).filter(|&i| succeeds(i, 1.0)).count(), 1000);
        assert_eq!((0..1000).filter(|&i| succeeds(i, 0.0)).count(), 0);
    }
}

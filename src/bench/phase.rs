//! One phase of a run: `concurrency` workers, each on one keep-alive connection, take operation
//! numbers from a shared counter until the phase's total is reached, its deadline passes or its
//! run is stopped; then their latencies are merged into the phase's report. The operations
//! themselves (a checkout, a signed webhook, a reserve, a commit, a browser's whole flow) are
//! here too.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde::Deserialize;

use super::live::Control;
use super::options::{BenchOptions, Phase};
use super::report::PhaseReport;
use super::stats::{self, Errors, Latencies};
use crate::clock::{now_ms, rfc3339_ms};
use crate::http_client::Connection;
use crate::payment::{self, Event, EventType};

/// A flow polls its order at most this often before counting it as an error.
pub const FLOW_POLLS_MAX: u32 = 100;

/// What a checkout created, for the webhook phase.
#[derive(Debug, Clone, Deserialize)]
pub struct Checkout {
    pub order_id: String,
    redirect_url: String,
    amount: u64,
    currency: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Reserved {
    tb_transfer_id: String,
    goodie_tb_transfer_id: Option<String>,
}

#[derive(Default)]
pub struct WorkerOut {
    /// Per successful operation: when it ended (ms since the phase started) and its latency (µs).
    samples: Vec<(u32, u32)>,
    /// When each failed operation ended (ms since the phase started).
    error_ms: Vec<u32>,
    errors: Errors,
    ok: u64,
    pub checkouts: Vec<Checkout>,
    pub reserved: Vec<Reserved>,
}

/// Inputs of a phase and its shared progress counters.
pub struct PhaseInput {
    pub kind: Phase,
    pub total: u64,
    /// No operation starts after this (`--duration`).
    pub deadline: Option<Instant>,
    pub started: Instant,
    pub next: AtomicU64,
    pub done_ok: AtomicU64,
    pub done_err: AtomicU64,
    /// What the webhook and commit phases pay and post.
    pub checkouts: Vec<Checkout>,
    pub reserved: Vec<Reserved>,
    /// Keep what the checkouts created (a webhook phase follows), else only count them.
    pub keep_checkouts: bool,
    pub options: BenchOptions,
    pub run_id: String,
    pub control: Arc<Control>,
}

pub async fn run_phase(authority: &str, input: Arc<PhaseInput>) -> (PhaseReport, WorkerOut) {
    let started = Instant::now();
    let cpu_before = crate::process::self_cpu_seconds();
    let finished = Arc::new(AtomicBool::new(false));
    let progress = input.control.print.then(|| tokio::spawn(progress(input.clone(), finished.clone())));
    let mut workers = Vec::with_capacity(input.options.concurrency);
    for _ in 0..input.options.concurrency.min(input.total as usize) {
        let (input, authority) = (input.clone(), authority.to_string());
        let timeout = Duration::from_millis(input.options.request_timeout_ms);
        workers.push(tokio::spawn(async move { worker(input, Connection::new(&authority, timeout)).await }));
    }
    let mut outs = Vec::with_capacity(workers.len());
    for worker in workers {
        outs.push(worker.await.expect("bench worker panicked"));
    }
    let wall_s = started.elapsed().as_secs_f64();
    let cpu_s = crate::process::self_cpu_seconds() - cpu_before;
    finished.store(true, Relaxed);
    if let Some(progress) = progress {
        let _ = progress.await;
    }
    // Sorting millions of samples takes a while: not on a thread that serves requests (the
    // kiosk's runs share the server's).
    let summary = tokio::task::spawn_blocking(move || summarize(&input, outs, wall_s, cpu_s));
    summary.await.expect("summarizing a phase panicked")
}

/// The phase's report from its workers' outputs.
fn summarize(input: &PhaseInput, outs: Vec<WorkerOut>, wall_s: f64, cpu_s: f64) -> (PhaseReport, WorkerOut) {
    let mut merged = WorkerOut::default();
    let mut latencies = Latencies::default();
    let (mut samples, mut error_ms) = (Vec::new(), Vec::new());
    for out in outs {
        latencies.extend(out.samples.iter().map(|&(_, us)| us).collect());
        samples.extend(out.samples);
        error_ms.extend(out.error_ms);
        stats::merge_errors(&mut merged.errors, out.errors);
        merged.ok += out.ok;
        merged.checkouts.extend(out.checkouts);
        merged.reserved.extend(out.reserved);
    }
    let percentiles = latencies.percentiles_ms(&[50.0, 90.0, 99.0, 100.0]);
    let errors_total: u64 = merged.errors.values().sum();
    let report = PhaseReport {
        phase: input.kind.name().to_string(),
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
        generator_cpu_us_per_op: stats::per_op_us(cpu_s, merged.ok + errors_total),
        server_cpu_us_per_op: None,
        replica_cpu_us_per_op: None,
        replica_rss_bytes: None,
        breakdown_ms: BTreeMap::new(),
        mean_ms: latencies.mean_ms(),
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
    let live = input.control.live.as_ref();
    loop {
        let index = input.next.fetch_add(1, Relaxed);
        let late = || input.deadline.is_some_and(|d| Instant::now() >= d) || !input.control.goes_on();
        if index >= input.total || late() {
            return out;
        }
        // Paced: operation `index` is due at index / rate. Its latency counts from when it was
        // due, so a server that falls behind shows it (no coordinated omission).
        let started = match input.options.rate {
            Some(rate) => {
                let due = input.started + Duration::from_secs_f64(index as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
                if late() {
                    return out;
                }
                due
            }
            None => Instant::now(),
        };
        let result = match input.kind {
            Phase::Checkout => checkout(&mut connection, &input, index).await.map(|c| {
                if input.keep_checkouts {
                    out.checkouts.push(c)
                }
            }),
            Phase::Webhook => webhook(&mut connection, &input, index).await,
            Phase::Reserve => reserve(&mut connection, &input).await.map(|r| out.reserved.push(r)),
            Phase::Commit => commit(&mut connection, &input, index).await,
            Phase::Flow => flow(&mut connection, &input, index).await,
            Phase::All => Err("all is expanded into phases".to_string()),
        };
        let elapsed_us = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
        let ended_ms = u32::try_from(input.started.elapsed().as_millis()).unwrap_or(u32::MAX);
        if let Some(live) = live {
            live.record(result.is_ok(), elapsed_us);
        }
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
    let session = input.checkouts.get(index as usize).ok_or("no checkout to pay")?;
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
    let secret = input.options.secret.as_deref().ok_or("no webhook secret")?;
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
    let reserved = input.reserved.get(index as usize).ok_or("no reserve to commit")?;
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
    fn succeed_rate_is_respected_roughly() {
        let n = (0..10_000).filter(|&i| succeeds(i, 0.7)).count();
        assert!((6_800..7_200).contains(&n), "{n}");
        assert_eq!((0..1000).filter(|&i| succeeds(i, 1.0)).count(), 1000);
        assert_eq!((0..1000).filter(|&i| succeeds(i, 0.0)).count(), 0);
    }
}

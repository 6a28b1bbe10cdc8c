//! `tigerfans bench`: a load generator inside the binary, so any tigerfans server (a Raspberry Pi
//! at the venue included) can be measured with nothing else installed; and the library behind
//! the kiosk's own runs on `/bench` (`measure`, steered and watched through a `Control`).
//!
//! Each of `--concurrency` workers owns one keep-alive connection and takes operation numbers
//! from a shared counter until `--total` is reached (or `--duration` is up, or the run is
//! stopped). Latencies are kept per worker and merged at the end; the only shared state on the
//! hot path is a few atomics (`phase`).

mod live;
mod options;
mod phase;
pub mod reference;
mod report;
pub mod stats;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use hyper::{Method, StatusCode};

use self::phase::{run_phase, Checkout, PhaseInput};
use self::report::{machine, print_footer, print_header, print_row};
use self::stats::ServerFigures;
use crate::clock::now_ms;
use crate::http_client::Connection;

pub use self::live::{Control, Live, LIVE_SECONDS_MAX};
pub use self::options::{BenchOptions, PayOrder, Phase, CONCURRENCY_MAX, REQUEST_TIMEOUT_MS_MAX, TOTAL_MAX};
pub use self::phase::FLOW_POLLS_MAX;
pub use self::report::{Machine, PhaseReport, Report};

pub fn run(options: BenchOptions) -> anyhow::Result<()> {
    options.validate()?;
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
    let report = measure(options.clone(), Arc::new(Control::printing())).await?;
    print_footer(&report);
    if let Some(path) = &options.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Runs the phases of `options` against its server and reports each: until their totals, their
/// `duration_s`, or what `control` says (stopped, past its deadline); a phase that has not
/// started when the run stops does not run. `control`'s live timeline ends with it.
pub async fn measure(options: BenchOptions, control: Arc<Control>) -> anyhow::Result<Report> {
    let result = measure_phases(&options, &control).await;
    if let Some(live) = &control.live {
        live.end();
    }
    result
}

async fn measure_phases(options: &BenchOptions, control: &Arc<Control>) -> anyhow::Result<Report> {
    options.validate()?;
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
    let (mut checkouts, mut reserved) = (Vec::new(), Vec::new());
    if control.print {
        print_header();
    }
    let phases = options.phase.expand();
    for (at, &kind) in phases.iter().enumerate() {
        if !control.goes_on() {
            break;
        }
        let total = match kind {
            Phase::Webhook => checkouts.len() as u64,
            Phase::Commit => reserved.len() as u64,
            _ => options.total,
        };
        if total == 0 {
            if control.print {
                eprintln!("[{kind:?}] nothing to do (the phase before it created nothing)");
            }
            continue;
        }
        control.set_phase(kind);
        let input = Arc::new(PhaseInput {
            kind,
            total,
            deadline: options.duration_s.and_then(|s| Instant::now().checked_add(Duration::try_from_secs_f64(s).ok()?)),
            started: Instant::now(),
            next: AtomicU64::new(0),
            done_ok: AtomicU64::new(0),
            done_err: AtomicU64::new(0),
            checkouts: if kind == Phase::Webhook { std::mem::take(&mut checkouts) } else { Vec::new() },
            reserved: if kind == Phase::Commit { std::mem::take(&mut reserved) } else { Vec::new() },
            keep_checkouts: kind == Phase::Checkout && phases[at + 1..].contains(&Phase::Webhook),
            options: options.clone(),
            run_id: run_id.clone(),
            control: control.clone(),
        });
        let before = server_figures(&mut probe).await;
        let (mut phase_report, out) = run_phase(&authority, input).await;
        if let (Some(before), Some(after)) = (before, server_figures(&mut probe).await) {
            add_server_figures(&mut phase_report, kind, &before, &after);
        }
        if control.print {
            print_row(&phase_report);
        }
        report.phases.push(phase_report);
        checkouts.extend(out.checkouts);
        checkouts = in_pay_order(checkouts, options.pay_order).await;
        reserved.extend(out.reserved);
    }
    Ok(report)
}

/// The checkouts in the order the webhook phase pays them (sorted off the async threads).
async fn in_pay_order(mut checkouts: Vec<Checkout>, order: PayOrder) -> Vec<Checkout> {
    if checkouts.is_empty() {
        return checkouts;
    }
    tokio::task::spawn_blocking(move || {
        // Order ids are 12 hex digits of creation time (ms), then 20 of randomness.
        fn random(c: &Checkout) -> &str {
            c.order_id.get(12..).unwrap_or("")
        }
        match order {
            PayOrder::Checkout => checkouts.sort_unstable_by(|a, b| a.order_id.cmp(&b.order_id)),
            PayOrder::Random => checkouts.sort_unstable_by(|a, b| random(a).cmp(random(b))),
        }
        checkouts
    })
    .await
    .expect("sorting checkouts panicked")
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
    report.server_cpu_us_per_op = cpu("process_cpu_seconds_total").and_then(|s| stats::per_op_us(s, ops));
    report.replica_cpu_us_per_op = cpu("tigerfans_replica_cpu_seconds_total").and_then(|s| stats::per_op_us(s, ops));
    let replica_rss = a.get("tigerfans_replica_resident_memory_bytes");
    report.replica_rss_bytes = (replica_rss > 0.0).then_some(replica_rss);
}

async fn server_figures(probe: &mut Connection) -> Option<ServerFigures> {
    let answer = probe.request(Method::GET, "/metrics", &[], Bytes::new()).await.ok()?;
    (answer.status == StatusCode::OK).then(|| stats::parse_metrics(&String::from_utf8_lossy(&answer.body)))
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
}

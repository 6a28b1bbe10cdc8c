//! What `tigerfans bench` reports: per phase throughput, latency, the server's batch sizes and
//! memory, and the generator's own CPU; as a table on stdout and as JSON (`--json`).

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    pub phase: String,
    pub total: u64,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    pub wall_s: f64,
    /// Successful operations per second.
    pub throughput: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub concurrency: usize,
    pub tb_batch_avg: Option<f64>,
    pub store_commit_avg: Option<f64>,
    pub server_rss_bytes: Option<f64>,
    /// CPU seconds the generator itself spent, per second of wall time.
    pub generator_cpu_cores: f64,
    /// CPU time per operation (answered, ok or not) of each process, in µs: the generator's
    /// own, the server's and its co-located replica's (from `/metrics`; `None` if it does not
    /// say). It drifts less than throughput between machines and hours.
    pub generator_cpu_us_per_op: Option<f64>,
    pub server_cpu_us_per_op: Option<f64>,
    pub replica_cpu_us_per_op: Option<f64>,
    pub replica_rss_bytes: Option<f64>,
    /// Average server time per stage in this phase (ms), and the server's whole handler time:
    /// where the time goes.
    pub breakdown_ms: BTreeMap<String, f64>,
    pub mean_ms: f64,
    /// Per second of the phase (by when operations ended): answers and latency.
    pub timeline: Vec<super::stats::Second>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu_model: String,
    pub kernel: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub tigerfans_version: &'static str,
    pub server_version: Option<String>,
    pub base: String,
    pub machine: Machine,
    pub phases: Vec<PhaseReport>,
}

pub fn machine() -> Machine {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name") || l.starts_with("Model"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string());
    let kernel =
        std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default();
    Machine { cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1), cpu_model, kernel }
}

pub fn print_header() {
    println!(
        "{:<9} {:>9} {:>9} {:>7} {:>7} {:>9} {:>7} {:>7} {:>7} {:>7} {:>8} {:>7} {:>8} {:>9}",
        "phase",
        "total",
        "ok",
        "errors",
        "wall_s",
        "ops/s",
        "p50ms",
        "p90ms",
        "p99ms",
        "maxms",
        "tb_batch",
        "commit",
        "rss_MiB",
        "gen_cores"
    );
}

pub fn print_row(r: &PhaseReport) {
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
    println!(
        "{:<9} {:>9} {:>9} {:>7} {:>7.2} {:>9.0} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>8} {:>7} {:>8} {:>9.2}",
        r.phase,
        r.total,
        r.ok,
        r.errors.values().sum::<u64>(),
        r.wall_s,
        r.throughput,
        r.p50_ms,
        r.p90_ms,
        r.p99_ms,
        r.max_ms,
        opt(r.tb_batch_avg),
        opt(r.store_commit_avg),
        opt(r.server_rss_bytes.map(|b| b / 1024.0 / 1024.0)),
        r.generator_cpu_cores,
    );
    for (kind, n) in &r.errors {
        println!("  error: {kind}: {n}");
    }
    if !r.breakdown_ms.is_empty() {
        let stages: Vec<String> = r.breakdown_ms.iter().map(|(k, v)| format!("{k} {v:.2}")).collect();
        println!("  where the time goes (mean ms): client {:.2} | {}", r.mean_ms, stages.join(" | "));
    }
    let cpu = [
        ("server", r.server_cpu_us_per_op),
        ("replica", r.replica_cpu_us_per_op),
        ("generator", r.generator_cpu_us_per_op),
    ];
    let cpu: Vec<String> = cpu.iter().filter_map(|(who, us)| us.map(|us| format!("{who} {us:.1}"))).collect();
    if !cpu.is_empty() {
        println!("  CPU per operation (µs): {}", cpu.join(" | "));
    }
}

pub fn print_footer(report: &Report) {
    println!(
        "machine: {} cores, {}; kernel {}; tigerfans {} (server {})",
        report.machine.cores,
        report.machine.cpu_model,
        report.machine.kernel,
        report.tigerfans_version,
        report.server_version.as_deref().unwrap_or("unknown")
    );
    for r in &report.phases {
        if r.throughput > 0.0 {
            println!(
                "  generator CPU for {}: {:.2} cores at {:.0} ops/s = {:.2} cores per 10k ops/s",
                r.phase,
                r.generator_cpu_cores,
                r.throughput,
                r.generator_cpu_cores / (r.throughput / 10_000.0)
            );
        }
    }
}

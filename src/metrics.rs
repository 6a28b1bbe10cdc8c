//! Counters and histograms on atomics: cheap enough to leave on (no lock on the hot path),
//! rendered as Prometheus text at `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crate::process;

#[derive(Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Relaxed)
    }
}

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Buckets at powers of two: bucket `i` counts values `<= 2^i`; the last one is +Inf.
pub const HISTOGRAM_BUCKETS: usize = 28;

pub struct Histogram {
    buckets: [AtomicU64; HISTOGRAM_BUCKETS],
    sum: AtomicU64,
    count: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn observe(&self, value: u64) {
        let index = if value <= 1 { 0 } else { (64 - (value - 1).leading_zeros()) as usize };
        self.buckets[index.min(HISTOGRAM_BUCKETS - 1)].fetch_add(1, Relaxed);
        self.sum.fetch_add(value, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    pub fn sum(&self) -> u64 {
        self.sum.load(Relaxed)
    }

    /// One labelled series of a histogram family (the caller writes the family's TYPE line).
    fn render_labeled(&self, out: &mut String, name: &str, label: &str, value: &str) {
        let mut cumulative = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Relaxed);
            let le = if i + 1 == HISTOGRAM_BUCKETS { "+Inf".to_string() } else { (1u64 << i).to_string() };
            let _ = writeln!(out, "{name}_bucket{{{label}=\"{value}\",le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_sum{{{label}=\"{value}\"}} {}", self.sum());
        let _ = writeln!(out, "{name}_count{{{label}=\"{value}\"}} {}", self.count());
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Relaxed);
            if i + 1 == HISTOGRAM_BUCKETS {
                let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
            } else {
                let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {cumulative}", 1u64 << i);
            }
        }
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", self.sum(), self.count());
    }
}

/// The labels requests are counted under (a fixed set: labels never grow with input). The
/// router gives every route one (`http::router::Route::label`); the order here is the order of
/// `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteLabel {
    Page,
    MockPay,
    Emit,
    Static,
    Checkout,
    Webhook,
    Order,
    Session,
    Inventory,
    Reserve,
    Commit,
    Healthz,
    Metrics,
    NotFound,
    MethodNotAllowed,
    Qr,
    Event,
    AdminPage,
    AdminLogin,
    AdminEvents,
    AdminApi,
    BenchResults,
    DoorScan,
    BoxOffice,
    StaffApi,
    Export,
}

impl RouteLabel {
    pub const ALL: [RouteLabel; 26] = [
        RouteLabel::Page,
        RouteLabel::MockPay,
        RouteLabel::Emit,
        RouteLabel::Static,
        RouteLabel::Checkout,
        RouteLabel::Webhook,
        RouteLabel::Order,
        RouteLabel::Session,
        RouteLabel::Inventory,
        RouteLabel::Reserve,
        RouteLabel::Commit,
        RouteLabel::Healthz,
        RouteLabel::Metrics,
        RouteLabel::NotFound,
        RouteLabel::MethodNotAllowed,
        RouteLabel::Qr,
        RouteLabel::Event,
        RouteLabel::AdminPage,
        RouteLabel::AdminLogin,
        RouteLabel::AdminEvents,
        RouteLabel::AdminApi,
        RouteLabel::BenchResults,
        RouteLabel::DoorScan,
        RouteLabel::BoxOffice,
        RouteLabel::StaffApi,
        RouteLabel::Export,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RouteLabel::Page => "page",
            RouteLabel::MockPay => "mockpay",
            RouteLabel::Emit => "emit",
            RouteLabel::Static => "static",
            RouteLabel::Checkout => "checkout",
            RouteLabel::Webhook => "webhook",
            RouteLabel::Order => "order",
            RouteLabel::Session => "session",
            RouteLabel::Inventory => "inventory",
            RouteLabel::Reserve => "reserve",
            RouteLabel::Commit => "commit",
            RouteLabel::Healthz => "healthz",
            RouteLabel::Metrics => "metrics",
            RouteLabel::NotFound => "not_found",
            RouteLabel::MethodNotAllowed => "method_not_allowed",
            RouteLabel::Qr => "qr",
            RouteLabel::Event => "event",
            RouteLabel::AdminPage => "admin_page",
            RouteLabel::AdminLogin => "admin_login",
            RouteLabel::AdminEvents => "admin_events",
            RouteLabel::AdminApi => "admin_api",
            RouteLabel::BenchResults => "bench_results",
            RouteLabel::DoorScan => "door_scan",
            RouteLabel::BoxOffice => "box_office",
            RouteLabel::StaffApi => "staff_api",
            RouteLabel::Export => "export",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Status codes counted individually (every one this server answers); anything else is counted
/// under `other` (0).
pub const STATUSES: [u16; 17] = [200, 303, 400, 401, 403, 404, 405, 408, 409, 413, 415, 421, 429, 431, 500, 503, 0];

fn status_index(status: u16) -> usize {
    STATUSES.iter().position(|s| *s == status).unwrap_or(STATUSES.len() - 1)
}

/// Where a checkout's and a webhook's time goes (the Amdahl breakdown in the README).
pub const STAGES: [&str; 6] = [
    "checkout_validate",
    "checkout_tigerbeetle",
    "checkout_store",
    "webhook_verify_read",
    "webhook_tigerbeetle",
    "webhook_store",
];

pub mod stage {
    pub const CHECKOUT_VALIDATE: usize = 0;
    pub const CHECKOUT_TIGERBEETLE: usize = 1;
    pub const CHECKOUT_STORE: usize = 2;
    pub const WEBHOOK_VERIFY_READ: usize = 3;
    pub const WEBHOOK_TIGERBEETLE: usize = 4;
    pub const WEBHOOK_STORE: usize = 5;
}

#[derive(Default)]
pub struct RouteMetrics {
    pub latency_us: Histogram,
    pub statuses: [Counter; STATUSES.len()],
}

/// Every figure the appliance records. One instance per process, shared by `Arc`.
#[derive(Default)]
pub struct Metrics {
    pub routes: [RouteMetrics; RouteLabel::ALL.len()],
    pub stages_us: [Histogram; STAGES.len()],
    pub tb_batch_transfers: Histogram,
    pub tb_call_us: Histogram,
    pub tb_in_flight: Gauge,
    pub store_commit_writes: Histogram,
    pub store_commit_us: Histogram,
    pub store_checkpoint_us: Histogram,
    pub store_flush_us: Histogram,
    pub checkouts: Counter,
    /// Checkouts refused by the per-client limits (429).
    pub checkouts_throttled: Counter,
    pub sold_out: Counter,
    pub payment_events: Counter,
    pub expired: Counter,
    /// Payments that succeeded after they had failed or been canceled (booked late, or to refund).
    pub late_successes: Counter,
    /// Tickets let in at the door (scans answered `admitted`).
    pub admissions: Counter,
    /// Shop requests answered 503 at once because too many were in flight (`http::shed`).
    pub shed: Counter,
    /// The co-located replica's pid while it runs (0: none, or an external cluster), kept by
    /// its supervisor: `/metrics` reports its CPU time and memory beside the server's.
    pub replica_pid: Arc<AtomicI32>,
}

impl Metrics {
    /// Records the time since `started` under a stage, and restarts the clock.
    pub fn stage(&self, stage: usize, started: &mut std::time::Instant) {
        let now = std::time::Instant::now();
        self.stages_us[stage].observe(now.duration_since(*started).as_micros() as u64);
        *started = now;
    }

    /// Records one HTTP request under its route's label.
    pub fn request(&self, route: RouteLabel, status: u16, elapsed_us: u64) {
        let route = &self.routes[route.index()];
        route.latency_us.observe(elapsed_us);
        route.statuses[status_index(status)].add(1);
    }

    /// Prometheus text. `extra` gauges are computed by the caller at scrape time.
    pub fn render(&self, extra: &[(&str, &str, i64)]) -> String {
        let mut out = String::with_capacity(32 * 1024);
        let _ = writeln!(out, "# TYPE tigerfans_http_requests_total counter");
        for (label, route) in RouteLabel::ALL.iter().zip(&self.routes) {
            let name = label.as_str();
            for (status, counter) in STATUSES.iter().zip(&route.statuses) {
                let n = counter.get();
                if n > 0 {
                    let status = if *status == 0 { "other".to_string() } else { status.to_string() };
                    let _ = writeln!(out, "tigerfans_http_requests_total{{route=\"{name}\",status=\"{status}\"}} {n}");
                }
            }
        }
        let _ = writeln!(out, "# TYPE tigerfans_stage_microseconds histogram");
        for (name, histogram) in STAGES.iter().zip(&self.stages_us) {
            histogram.render_labeled(&mut out, "tigerfans_stage_microseconds", "stage", name);
        }
        let _ = writeln!(out, "# TYPE tigerfans_http_request_microseconds histogram");
        for (label, route) in RouteLabel::ALL.iter().zip(&self.routes) {
            let name = label.as_str();
            if route.latency_us.count() > 0 {
                route.latency_us.render_labeled(&mut out, "tigerfans_http_request_microseconds", "route", name);
            }
        }
        let mut last_family = "";
        for (name, help, value) in extra {
            let family = name.split('{').next().unwrap_or(name);
            if family != last_family {
                let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} gauge");
                last_family = family;
            }
            let _ = writeln!(out, "{name} {value}");
        }
        self.tb_batch_transfers.render(
            &mut out,
            "tigerfans_tb_batch_transfers",
            "Transfers per create_transfers call.",
        );
        self.tb_call_us.render(&mut out, "tigerfans_tb_call_microseconds", "Latency of create_transfers calls.");
        let _ =
            writeln!(out, "# TYPE tigerfans_tb_in_flight gauge\ntigerfans_tb_in_flight {}", self.tb_in_flight.get());
        self.store_commit_writes.render(&mut out, "tigerfans_store_commit_writes", "Writes per group commit.");
        self.store_commit_us.render(
            &mut out,
            "tigerfans_store_commit_microseconds",
            "Latency of a group commit, including the redo log's fdatasync.",
        );
        self.store_checkpoint_us.render(
            &mut out,
            "tigerfans_store_checkpoint_microseconds",
            "Latency of a store checkpoint (a durable redb commit, after which the redo log starts over).",
        );
        self.store_flush_us.render(
            &mut out,
            "tigerfans_store_flush_microseconds",
            "Latency of the store's background fdatasync of its redb file (off the writer's path).",
        );
        self.render_totals(&mut out);
        out
    }

    /// The counters, and the process's memory.
    fn render_totals(&self, out: &mut String) {
        for (name, counter) in [
            ("tigerfans_checkouts_total", &self.checkouts),
            ("tigerfans_checkouts_throttled_total", &self.checkouts_throttled),
            ("tigerfans_sold_out_total", &self.sold_out),
            ("tigerfans_payment_events_total", &self.payment_events),
            ("tigerfans_expired_total", &self.expired),
            ("tigerfans_late_successes_total", &self.late_successes),
            ("tigerfans_admissions_total", &self.admissions),
            ("tigerfans_shed_total", &self.shed),
        ] {
            let _ = writeln!(out, "# TYPE {name} counter\n{name} {}", counter.get());
        }
        self.render_processes(out);
    }

    /// What this process and the co-located replica cost: CPU seconds and resident memory,
    /// so a benchmark can divide them by the operations of a phase (a figure that drifts less
    /// than throughput between machines and hours).
    fn render_processes(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {:.6}",
            process::self_cpu_seconds()
        );
        if let Some(rss) = process::self_rss_bytes() {
            let _ = writeln!(out, "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {rss}");
        }
        let pid = self.replica_pid.load(Relaxed);
        if let Some(usage) = (pid > 0).then(|| process::usage(pid)).flatten() {
            let _ = writeln!(
                out,
                "# TYPE tigerfans_replica_cpu_seconds_total counter\ntigerfans_replica_cpu_seconds_total {:.6}\n\
                 # TYPE tigerfans_replica_resident_memory_bytes gauge\ntigerfans_replica_resident_memory_bytes {}",
                usage.cpu_seconds, usage.rss_bytes
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_labels_are_listed_in_their_own_order() {
        for (i, label) in RouteLabel::ALL.iter().enumerate() {
            assert_eq!(label.index(), i, "{}", label.as_str());
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative_powers_of_two() {
        let h = Histogram::default();
        for v in [0, 1, 2, 3, 4, 5, 1000] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"1\"} 2\n"));
        assert!(out.contains("x_bucket{le=\"2\"} 3\n"));
        assert!(out.contains("x_bucket{le=\"4\"} 5\n"));
        assert!(out.contains("x_bucket{le=\"8\"} 6\n"));
        assert!(out.contains("x_bucket{le=\"+Inf\"} 7\n"));
        assert!(out.contains("x_count 7\n"));
        assert_eq!(h.sum(), 1015);
    }
}

//! Counters and histograms on atomics: cheap enough to leave on (no lock on the hot path),
//! rendered as Prometheus text at `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

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

/// Every figure the appliance records. One instance per process, shared by `Arc`.
#[derive(Default)]
pub struct Metrics {
    pub tb_batch_transfers: Histogram,
    pub tb_call_us: Histogram,
    pub tb_in_flight: Gauge,
    pub store_commit_writes: Histogram,
    pub store_commit_us: Histogram,
    pub http_requests: Counter,
    pub http_request_us: Histogram,
    pub http_errors_4xx: Counter,
    pub http_errors_5xx: Counter,
    pub checkouts: Counter,
    pub sold_out: Counter,
    pub payment_events: Counter,
    pub expired: Counter,
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        self.tb_batch_transfers.render(&mut out, "tigerfans_tb_batch_transfers", "Transfers per create_transfers call.");
        self.tb_call_us.render(&mut out, "tigerfans_tb_call_microseconds", "Latency of create_transfers calls.");
        let _ = writeln!(out, "# TYPE tigerfans_tb_in_flight gauge\ntigerfans_tb_in_flight {}", self.tb_in_flight.get());
        self.store_commit_writes.render(&mut out, "tigerfans_store_commit_writes", "Writes per group commit.");
        self.store_commit_us.render(&mut out, "tigerfans_store_commit_microseconds", "Latency of a group commit including fsync.");
        self.http_request_us.render(&mut out, "tigerfans_http_request_microseconds", "HTTP request latency.");
        for (name, counter) in [
            ("tigerfans_http_requests_total", &self.http_requests),
            ("tigerfans_http_4xx_total", &self.http_errors_4xx),
            ("tigerfans_http_5xx_total", &self.http_errors_5xx),
            ("tigerfans_checkouts_total", &self.checkouts),
            ("tigerfans_sold_out_total", &self.sold_out),
            ("tigerfans_payment_events_total", &self.payment_events),
            ("tigerfans_expired_total", &self.expired),
        ] {
            let _ = writeln!(out, "# TYPE {name} counter\n{name} {}", counter.get());
        }
        if let Some(rss) = process_rss_bytes() {
            let _ = writeln!(out, "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {rss}");
        }
        out
    }
}

/// Resident set size from /proc (Linux only).
pub fn process_rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

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

//! Latency percentiles, error tallies, and the server's own figures read from `/metrics`.

use std::collections::BTreeMap;

/// Latencies of one phase in microseconds, merged from every worker.
#[derive(Default)]
pub struct Latencies {
    samples_us: Vec<u32>,
}

impl Latencies {
    pub fn extend(&mut self, other: Vec<u32>) {
        self.samples_us.extend(other);
    }

    pub fn len(&self) -> usize {
        self.samples_us.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples_us.is_empty()
    }

    pub fn mean_ms(&self) -> f64 {
        if self.samples_us.is_empty() {
            return 0.0;
        }
        self.samples_us.iter().map(|&v| f64::from(v)).sum::<f64>() / self.samples_us.len() as f64 / 1000.0
    }

    /// Percentiles in milliseconds (nearest rank), after sorting once.
    pub fn percentiles_ms(&mut self, ps: &[f64]) -> Vec<f64> {
        self.samples_us.sort_unstable();
        ps.iter()
            .map(|p| {
                if self.samples_us.is_empty() {
                    return 0.0;
                }
                let rank = ((p / 100.0) * self.samples_us.len() as f64).ceil() as usize;
                let index = rank.clamp(1, self.samples_us.len()) - 1;
                f64::from(self.samples_us[index]) / 1000.0
            })
            .collect()
    }
}

pub type Errors = BTreeMap<String, u64>;

/// One second of a phase: what ended in it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Second {
    /// Seconds since the phase started.
    pub t_s: u32,
    pub ok: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Per second, from `(ended ms, latency µs)` of each success and the end of each error: how a
/// rush and its passing look from the client (a phase total hides the recovery).
pub fn timeline(samples: &mut [(u32, u32)], error_ms: &mut [u32]) -> Vec<Second> {
    samples.sort_unstable_by_key(|&(ended_ms, _)| ended_ms);
    error_ms.sort_unstable();
    let last_ms = samples.last().map(|s| s.0).into_iter().chain(error_ms.last().copied()).max();
    let Some(last_ms) = last_ms else { return Vec::new() };
    let (mut ok_at, mut err_at) = (0, 0);
    (0..=last_ms / 1000)
        .map(|t_s| {
            let end_ms = (t_s + 1).saturating_mul(1000);
            let ok_from = ok_at;
            while ok_at < samples.len() && samples[ok_at].0 < end_ms {
                ok_at += 1;
            }
            let err_from = err_at;
            while err_at < error_ms.len() && error_ms[err_at] < end_ms {
                err_at += 1;
            }
            let mut second = Latencies { samples_us: samples[ok_from..ok_at].iter().map(|s| s.1).collect() };
            let p = second.percentiles_ms(&[50.0, 99.0]);
            Second { t_s, ok: (ok_at - ok_from) as u64, errors: (err_at - err_from) as u64, p50_ms: p[0], p99_ms: p[1] }
        })
        .collect()
}

pub fn merge_errors(into: &mut Errors, from: Errors) {
    for (kind, n) in from {
        *into.entry(kind).or_default() += n;
    }
}

/// The server figures the benchmark reports, from Prometheus text.
#[derive(Debug, Default, Clone)]
pub struct ServerFigures {
    pub tb_transfers: f64,
    pub tb_calls: f64,
    pub store_writes: f64,
    pub store_commits: f64,
    pub rss_bytes: f64,
    /// Every sample line, by its full name (labels included).
    pub all: std::collections::HashMap<String, f64>,
}

impl ServerFigures {
    pub fn get(&self, name: &str) -> f64 {
        self.all.get(name).copied().unwrap_or(0.0)
    }
}

pub fn parse_metrics(text: &str) -> ServerFigures {
    let all: std::collections::HashMap<String, f64> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            Some((key.to_string(), value.trim().parse().ok()?))
        })
        .collect();
    let value = |name: &str| all.get(name).copied().unwrap_or(0.0);
    ServerFigures {
        tb_transfers: value("tigerfans_tb_batch_transfers_sum"),
        tb_calls: value("tigerfans_tb_batch_transfers_count"),
        store_writes: value("tigerfans_store_commit_writes_sum"),
        store_commits: value("tigerfans_store_commit_writes_count"),
        rss_bytes: value("process_resident_memory_bytes"),
        all,
    }
}

/// Average of a labelled histogram over a phase, in milliseconds.
pub fn histogram_avg_ms(before: &ServerFigures, after: &ServerFigures, family: &str, label: &str) -> Option<f64> {
    let sum = format!("{family}_sum{{{label}}}");
    let count = format!("{family}_count{{{label}}}");
    average(before.get(&sum), after.get(&sum), before.get(&count), after.get(&count)).map(|us| us / 1000.0)
}

/// CPU microseconds per operation; `None` for a phase that did nothing.
pub fn per_op_us(cpu_s: f64, ops: u64) -> Option<f64> {
    (ops > 0).then(|| cpu_s * 1e6 / ops as f64)
}

/// Average size over a phase: (sum after - sum before) / (count after - count before).
pub fn average(sum_before: f64, sum_after: f64, count_before: f64, count_after: f64) -> Option<f64> {
    let calls = count_after - count_before;
    (calls > 0.0).then(|| (sum_after - sum_before) / calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut l = Latencies::default();
        l.extend((1..=100).map(|ms| ms * 1000).collect());
        assert_eq!(l.percentiles_ms(&[50.0, 90.0, 99.0, 100.0]), vec![50.0, 90.0, 99.0, 100.0]);
        assert_eq!(Latencies::default().percentiles_ms(&[50.0]), vec![0.0]);
    }

    #[test]
    fn the_timeline_buckets_by_the_second_an_operation_ended() {
        let mut samples = vec![(2_500, 30_000), (10, 1_000), (990, 3_000), (1_000, 7_000)];
        let mut errors = vec![2_999, 1_500];
        let seconds = timeline(&mut samples, &mut errors);
        let at = |t_s, ok, errors, p50_ms, p99_ms| Second { t_s, ok, errors, p50_ms, p99_ms };
        assert_eq!(seconds, vec![at(0, 2, 0, 1.0, 3.0), at(1, 1, 1, 7.0, 7.0), at(2, 1, 1, 30.0, 30.0)]);
        assert!(timeline(&mut [], &mut []).is_empty());
    }

    #[test]
    fn metrics_are_read_by_exact_name() {
        let text = "tigerfans_tb_batch_transfers_sum 300\ntigerfans_tb_batch_transfers_count 3\nprocess_resident_memory_bytes 1024\n";
        let f = parse_metrics(text);
        assert_eq!(f.tb_transfers, 300.0);
        assert_eq!(f.tb_calls, 3.0);
        assert_eq!(f.rss_bytes, 1024.0);
        assert_eq!(average(0.0, 300.0, 0.0, 3.0), Some(100.0));
        assert_eq!(average(1.0, 1.0, 2.0, 2.0), None);
    }
}

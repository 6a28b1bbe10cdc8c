//! What a caller sees and steers of a run while it goes (the kiosk's run on `/bench`): a stop
//! flag and a deadline that every worker checks before each operation, the phase running, and
//! a per-second timeline of answers and latency, kept in fixed histograms so that it costs the
//! same at any rate. The command line's runs only print.
//!
//! The timeline's percentiles come from log-linear buckets (8 per power of two: within 6% of
//! the exact value); the report written at the end keeps its exact ones (`stats::timeline`).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::options::Phase;
use super::stats::Second;

pub struct Control {
    stop: AtomicBool,
    /// No operation starts after this, in any phase: the bound of a whole run.
    pub deadline: Option<Instant>,
    /// Print the table and a progress line a second (the command line).
    pub print: bool,
    pub live: Option<Live>,
    phase: Mutex<Option<Phase>>,
}

impl Control {
    /// The command line's: prints, keeps no timeline, ends when its phases do.
    pub fn printing() -> Control {
        Control { stop: AtomicBool::new(false), deadline: None, print: true, live: None, phase: Mutex::new(None) }
    }

    /// A run watched while it goes: silent, with a live timeline, over by `deadline`.
    pub fn watched(deadline: Instant) -> Control {
        Control {
            stop: AtomicBool::new(false),
            deadline: Some(deadline),
            print: false,
            live: Some(Live::new()),
            phase: Mutex::new(None),
        }
    }

    /// No worker starts another operation, no further phase starts; those in flight finish.
    pub fn stop(&self) {
        self.stop.store(true, Relaxed);
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Relaxed)
    }

    /// Whether another operation may start now.
    pub fn goes_on(&self) -> bool {
        !self.stopped() && !self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    pub fn set_phase(&self, phase: Phase) {
        *self.phase.lock().unwrap_or_else(|p| p.into_inner()) = Some(phase);
    }

    /// The phase running (or the last one, once the run is over).
    pub fn phase(&self) -> Option<Phase> {
        *self.phase.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Seconds of timeline kept; operations that end later are counted in the totals only.
pub const LIVE_SECONDS_MAX: usize = 240;
/// Latencies below this (µs) have a bucket each.
const EXACT_US: u32 = 16;
/// Buckets per power of two above `EXACT_US`: 2^3.
const SUB_BITS: u32 = 3;
/// 16 exact buckets, then 8 for each power of two from 2^4 to 2^31 µs.
pub const BUCKETS: usize = EXACT_US as usize + (32 - 4) * (1 << SUB_BITS);

struct LiveSecond {
    ok: AtomicU64,
    errors: AtomicU64,
    latency: [AtomicU32; BUCKETS],
}

pub struct Live {
    started: Instant,
    /// When the run ended, in ms after `started` (0 while it runs).
    ended_ms: AtomicU64,
    seconds: Box<[LiveSecond]>,
    ok: AtomicU64,
    errors: AtomicU64,
}

impl Default for Live {
    fn default() -> Self {
        Live::new()
    }
}

impl Live {
    pub fn new() -> Live {
        let second = || LiveSecond {
            ok: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU32::new(0)),
        };
        Live {
            started: Instant::now(),
            ended_ms: AtomicU64::new(0),
            seconds: (0..LIVE_SECONDS_MAX).map(|_| second()).collect(),
            ok: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }

    /// One operation ended now: answered as expected (with its latency) or not.
    pub fn record(&self, ok: bool, latency_us: u32) {
        let at = self.started.elapsed().as_secs() as usize;
        let second = self.seconds.get(at);
        if ok {
            self.ok.fetch_add(1, Relaxed);
            if let Some(s) = second {
                s.ok.fetch_add(1, Relaxed);
                s.latency[bucket(latency_us)].fetch_add(1, Relaxed);
            }
        } else {
            self.errors.fetch_add(1, Relaxed);
            if let Some(s) = second {
                s.errors.fetch_add(1, Relaxed);
            }
        }
    }

    /// The run is over: the timeline and `elapsed` stop here.
    pub fn end(&self) {
        let ms = (self.started.elapsed().as_millis() as u64).max(1);
        let _ = self.ended_ms.compare_exchange(0, ms, Relaxed, Relaxed);
    }

    /// Since the start, up to now or to the end.
    pub fn elapsed(&self) -> Duration {
        match self.ended_ms.load(Relaxed) {
            0 => self.started.elapsed(),
            ms => Duration::from_millis(ms),
        }
    }

    /// (successes, errors) so far.
    pub fn totals(&self) -> (u64, u64) {
        (self.ok.load(Relaxed), self.errors.load(Relaxed))
    }

    /// Every second so far, the one going on included.
    pub fn timeline(&self) -> Vec<Second> {
        let last = (self.elapsed().as_secs() as usize).min(LIVE_SECONDS_MAX - 1);
        self.seconds[..=last]
            .iter()
            .enumerate()
            .map(|(t_s, s)| {
                let counts: Vec<u32> = s.latency.iter().map(|b| b.load(Relaxed)).collect();
                Second {
                    t_s: t_s as u32,
                    ok: s.ok.load(Relaxed),
                    errors: s.errors.load(Relaxed),
                    p50_ms: percentile_ms(&counts, 50.0),
                    p99_ms: percentile_ms(&counts, 99.0),
                }
            })
            .collect()
    }
}

fn bucket(us: u32) -> usize {
    if us < EXACT_US {
        return us as usize;
    }
    let top = 31 - us.leading_zeros(); // 4..=31
    let sub = (us >> (top - SUB_BITS)) & ((1 << SUB_BITS) - 1);
    (EXACT_US + (top - 4) * (1 << SUB_BITS) + sub) as usize
}

/// The middle of the latencies (µs) that fall in bucket `index`.
fn bucket_middle_us(index: usize) -> f64 {
    if index < EXACT_US as usize {
        return index as f64;
    }
    let per = 1usize << SUB_BITS;
    let top = ((index - EXACT_US as usize) / per) as u32 + 4;
    let sub = ((index - EXACT_US as usize) % per) as u64;
    let width = 1u64 << (top - SUB_BITS);
    let low = (per as u64 + sub) << (top - SUB_BITS);
    low as f64 + (width - 1) as f64 / 2.0
}

/// Nearest-rank percentile of a histogram, in ms (0 when it is empty).
fn percentile_ms(counts: &[u32], p: f64) -> f64 {
    let n: u64 = counts.iter().map(|&c| u64::from(c)).sum();
    if n == 0 {
        return 0.0;
    }
    let rank = ((p / 100.0) * n as f64).ceil().clamp(1.0, n as f64) as u64;
    let mut seen = 0;
    for (index, &count) in counts.iter().enumerate() {
        seen += u64::from(count);
        if seen >= rank {
            return bucket_middle_us(index) / 1000.0;
        }
    }
    bucket_middle_us(counts.len().saturating_sub(1)) / 1000.0 // not reached: the rank is at most n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_latency_falls_in_a_bucket_whose_middle_is_within_6_percent() {
        assert_eq!(BUCKETS, 240);
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(15), 15);
        assert_eq!(bucket(16), 16);
        assert_eq!(bucket(u32::MAX), BUCKETS - 1);
        let mut previous = 0;
        for us in (1..u32::MAX).step_by(7_919).chain([17, 31, 32, 1_000, 65_535, 65_536]) {
            let index = bucket(us);
            assert!(index < BUCKETS);
            let middle = bucket_middle_us(index);
            assert!((middle - f64::from(us)).abs() <= f64::from(us) / 16.0, "{us} µs: bucket {index}, {middle}");
            if us > 65_536 {
                assert!(index >= previous, "buckets grow with the latency");
                previous = index;
            }
        }
    }

    #[test]
    fn percentiles_are_read_from_the_buckets_by_rank() {
        let mut counts = vec![0u32; BUCKETS];
        counts[bucket(1_000)] = 98; // 1 ms
        counts[bucket(50_000)] = 2; // 50 ms
        assert!((percentile_ms(&counts, 50.0) - 1.0).abs() < 0.06);
        assert!((percentile_ms(&counts, 98.0) - 1.0).abs() < 0.06);
        assert!((percentile_ms(&counts, 99.0) - 50.0).abs() < 3.0);
        assert_eq!(percentile_ms(&vec![0; BUCKETS], 99.0), 0.0);
    }

    #[test]
    fn the_timeline_counts_by_second_and_stops_at_the_end() {
        let live = Live::new();
        live.record(true, 2_000);
        live.record(true, 4_000);
        live.record(false, 0);
        live.end();
        assert_eq!(live.totals(), (2, 1));
        let seconds = live.timeline();
        assert_eq!(seconds.len(), 1, "{seconds:?}");
        assert_eq!((seconds[0].ok, seconds[0].errors), (2, 1));
        assert!((seconds[0].p99_ms - 4.0).abs() < 0.25, "{:?}", seconds[0]);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(live.elapsed(), live.elapsed(), "elapsed stops at the end");
    }

    #[test]
    fn a_stopped_or_late_control_lets_no_operation_start() {
        let control = Control::watched(Instant::now() + Duration::from_secs(60));
        assert!(control.goes_on());
        control.stop();
        assert!(!control.goes_on() && control.stopped());
        assert!(!Control::watched(Instant::now()).goes_on(), "past its deadline");
        assert!(Control::printing().goes_on());
    }
}

//! What a bench run is asked to do, and the bounds that keep a typo from starting a runaway load.

use std::path::PathBuf;

use anyhow::bail;
use serde::Serialize;

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

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Checkout => "checkout",
            Phase::Webhook => "webhook",
            Phase::Reserve => "reserve",
            Phase::Commit => "commit",
            Phase::Flow => "flow",
            Phase::All => "all",
        }
    }

    /// The phases a `--phase` runs, in order.
    pub fn expand(self) -> Vec<Phase> {
        match self {
            Phase::All => vec![Phase::Checkout, Phase::Webhook, Phase::Reserve, Phase::Commit, Phase::Flow],
            // Webhooks need sessions and commits need holds: make them first, and report them too.
            Phase::Webhook => vec![Phase::Checkout, Phase::Webhook],
            Phase::Commit => vec![Phase::Reserve, Phase::Commit],
            one => vec![one],
        }
    }
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
/// The slowest pace: one operation every 1,000 s (a slower one overflowed the pacing's Duration,
/// operation index / rate, and panicked).
pub const RATE_MIN: f64 = 0.001;
/// An hour: beyond any answer worth waiting for.
pub const REQUEST_TIMEOUT_MS_MAX: u64 = 3_600_000;

impl BenchOptions {
    /// Every bound, and the secret a webhook phase needs.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(1..=CONCURRENCY_MAX).contains(&self.concurrency) {
            bail!("--concurrency must be between 1 and {CONCURRENCY_MAX}");
        }
        if !(1..=TOTAL_MAX).contains(&self.total) {
            bail!("--total must be between 1 and {TOTAL_MAX}");
        }
        if self.rate.is_some_and(|r| !(r.is_finite() && r >= RATE_MIN)) {
            bail!("--rate must be at least {RATE_MIN} operations per second");
        }
        if self.duration_s.is_some_and(|s| !(s.is_finite() && s > 0.0)) {
            bail!("--duration must be a positive number of seconds");
        }
        if !(1..=REQUEST_TIMEOUT_MS_MAX).contains(&self.request_timeout_ms) {
            bail!("--request-timeout-ms must be between 1 and {REQUEST_TIMEOUT_MS_MAX}");
        }
        if !(0.0..=1.0).contains(&self.succeed_rate) {
            bail!("--succeed-rate must be between 0 and 1");
        }
        if self.phase.expand().contains(&Phase::Webhook) && self.secret.is_none() {
            bail!(
                "the webhook phase signs events with the server's webhook secret: give --secret-file \
                 DATA_DIR/webhook-secret, --secret or TIGERFANS_WEBHOOK_SECRET"
            );
        }
        Ok(())
    }
}

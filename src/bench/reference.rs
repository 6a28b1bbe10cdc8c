//! The reference design's published figures, the one place they are kept: the `/bench` page
//! shows every result against them (`GET /api/bench/results` carries them).
//!
//! The reference is the Python/FastAPI TigerFans (one uvicorn worker, TigerBeetle for the
//! accounting, Redis for payment sessions, PostgreSQL for orders, its LiveBatcher in front of
//! TigerBeetle). Its talk, "From Double-Entry Accounting to 977 Tickets per Second" (the
//! workspace's shared/reference/tigerfans-talk.txt, slides "Batching Results", "The
//! Single-Worker Paradox" and "Final Performance Snapshot"), gives 977 reservations per second
//! with TigerBeetle batches of 5 to 6 transfers (5.3 on average). The talk does not say on what
//! machine; 4 vCPUs is the figure the kiosk's issue gives for it. Measured side by side with
//! tigerfans on this project's 2-vCPU machine, it made 818 to 1,079 checkouts/s
//! (shared/reference/peer-measurements.md, docs/benchmarks.md).

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Reference {
    pub name: &'static str,
    /// The phase of `tigerfans bench` that does what the figure measures (a reservation is a
    /// checkout: the ticket's hold, the order and its payment session).
    pub phase: &'static str,
    pub reservations_per_s: f64,
    pub batch_min: f64,
    pub batch_max: f64,
    pub batch_avg: f64,
    pub vcpus: u32,
    pub source: &'static str,
}

pub const REFERENCE: Reference = Reference {
    name: "reference design (Python, 1 worker)",
    phase: "checkout",
    reservations_per_s: 977.0,
    batch_min: 5.0,
    batch_max: 6.0,
    batch_avg: 5.3,
    vcpus: 4,
    source: "977 reservations/s and batches of 5-6 (5.3 on average): the TigerFans talk \
             (\"Batching Results\", \"Final Performance Snapshot\"); 4 vCPUs: as the kiosk's issue \
             gives it (the talk does not name the machine)",
};

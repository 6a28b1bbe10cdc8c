//! The HTTP edge's limits, all explicit: a client that breaks one gets a clear status and the
//! server keeps serving everyone else.

/// Measured on a 2-core machine (docs/benchmarks.md, "2026-12-04: the rush"): 256 in flight
/// already reach the server's throughput; 512 leaves room for bursts and still answers within
/// about 50 ms at p99.
pub const SHOP_IN_FLIGHT_MAX_DEFAULT: usize = 512;

#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Connections served at once; more are accepted and closed at once.
    pub connections_max: usize,
    /// A client must send its request headers within this time.
    pub header_read_timeout_ms: u64,
    /// ... and its body within this time.
    pub body_read_timeout_ms: u64,
    /// Request bodies larger than this get 413.
    pub body_bytes_max: usize,
    /// Read buffer; request heads larger than this get 431.
    pub header_bytes_max: usize,
    /// In-flight requests get this long to finish at shutdown.
    pub drain_timeout_ms: u64,
    /// Shop requests that start a sale (checkout, reserve) in flight at once, and as many
    /// again that finish one (payment, commit); more get 503 at once (`shed`).
    pub shop_in_flight_max: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            connections_max: 4096,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 10_000,
            body_bytes_max: 64 * 1024,
            header_bytes_max: 16 * 1024,
            drain_timeout_ms: 10_000,
            shop_in_flight_max: SHOP_IN_FLIGHT_MAX_DEFAULT,
        }
    }
}

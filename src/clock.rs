//! Wall-clock time, in the one unit the store and the API use: milliseconds since the Unix
//! epoch. Everyone may use this module; it imports nothing of ours.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis() as u64
}

/// `2026-11-23T00:00:00.000Z`: how the API shows a time.
pub fn rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

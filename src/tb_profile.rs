//! Memory profiles of the co-located TigerBeetle replica, one per size of board.
//!
//! The replica allocates all of its memory when it starts, and most of it is fixed at compile
//! time; what `tigerbeetle start` can still change is the grid cache and, behind
//! `--experimental`, the request size limit, the request queue, the object caches and the LSM's
//! working memory. Each profile is one set of those flags, measured (docs/pi.md, "The replica's
//! memory": `scripts/tb-memory.sh` for the RSS, `scripts/tb-profiles.sh` for the throughput).
//!
//! A smaller request limit means smaller batches: the batcher must never send more transfers than
//! the replica accepts, so the profile also decides `batch_transfers_max`. And a replica must not
//! be restarted with a smaller limit than its journal was written with (TigerBeetle: shrinking the
//! batch size of an existing cluster is "possible, but not recommended"): the data dir remembers
//! the largest limit it ran with (`REQUEST_LIMIT_FILE`) and a smaller profile is refused.

use std::path::Path;

use anyhow::{bail, Context};

use crate::accounting::BATCH_TRANSFERS_MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TbProfile {
    /// A 2 GB board: replica and tigerfans under 1.5 GiB.
    Small,
    /// A 4 GB board with a kiosk browser beside the appliance.
    Medium,
    /// 8 GB and up, and servers: TigerBeetle's production defaults, a 256 MiB grid cache.
    Large,
}

/// Where the data dir keeps the largest request limit (bytes) its replica ever ran with.
pub const REQUEST_LIMIT_FILE: &str = "tigerbeetle-request-limit";

/// TigerBeetle's message header, which the request limit includes.
const HEADER_BYTES: u32 = 256;
const TRANSFER_BYTES: u32 = 128;
const KIB: u32 = 1024;

/// The object caches off, the LSM's compaction and manifest memory at TigerBeetle's minimum, and
/// no request queue beyond the pipeline (tigerfans has one client with one request in flight).
const LEAN: [&str; 6] = [
    "--cache-accounts=0",
    "--cache-transfers=0",
    "--cache-transfers-pending=0",
    "--memory-lsm-compaction=10752KiB",
    "--memory-lsm-manifest=1MiB",
    "--limit-pipeline-requests=0",
];

impl TbProfile {
    pub const ALL: [TbProfile; 3] = [TbProfile::Small, TbProfile::Medium, TbProfile::Large];

    pub fn name(self) -> &'static str {
        match self {
            TbProfile::Small => "small",
            TbProfile::Medium => "medium",
            TbProfile::Large => "large",
        }
    }

    /// The grid cache, unless the operator sets one (`--tb-cache-grid`).
    pub fn cache_grid(self) -> &'static str {
        match self {
            TbProfile::Small | TbProfile::Medium => "64MiB",
            TbProfile::Large => "256MiB",
        }
    }

    /// The largest request the replica accepts, header included (`--limit-request`).
    pub fn request_bytes_max(self) -> u32 {
        match self {
            TbProfile::Small => 32 * KIB,
            TbProfile::Medium => 256 * KIB,
            TbProfile::Large => 1024 * KIB,
        }
    }

    /// Transfers in one `create_transfers` request at this limit: TigerBeetle's `event_max`
    /// (the body less one element's room for the multi-batch trailer).
    pub fn batch_transfers_max(self) -> usize {
        let transfers = ((self.request_bytes_max() - HEADER_BYTES) / TRANSFER_BYTES - 1) as usize;
        assert!(transfers > 0 && transfers <= BATCH_TRANSFERS_MAX);
        transfers
    }

    /// The arguments of `tigerbeetle start` before the data file.
    pub fn start_flags(self, cache_grid: Option<&str>) -> Vec<String> {
        let grid = format!("--cache-grid={}", cache_grid.unwrap_or(self.cache_grid()));
        if self == TbProfile::Large {
            return vec![grid];
        }
        let mut flags = vec!["--experimental".to_string(), grid];
        flags.push(format!("--limit-request={}KiB", self.request_bytes_max() / KIB));
        flags.extend(LEAN.iter().map(|flag| flag.to_string()));
        flags
    }

    /// Refuses a profile whose request limit is below one this data dir's replica ran with, and
    /// records this one's if it is the largest yet. Call before the replica starts. A data file
    /// `formatted` before profiles were recorded ran with TigerBeetle's default, the largest.
    pub fn claim_data_dir(self, data_dir: &Path, formatted: bool) -> anyhow::Result<()> {
        let file = data_dir.join(REQUEST_LIMIT_FILE);
        let unrecorded = formatted.then(|| TbProfile::Large.request_bytes_max());
        let recorded = recorded_request_bytes(data_dir)?.or(unrecorded);
        let limit = self.request_bytes_max();
        match recorded {
            Some(recorded) if recorded > limit => bail!(
                "this data dir's replica ran with requests of up to {} KiB; the {} profile allows {} KiB, and a \
                 replica must not replay its journal with a smaller limit: use --tb-profile {} (or larger)",
                recorded / KIB,
                self.name(),
                limit / KIB,
                TbProfile::smallest_allowing(recorded).name()
            ),
            Some(recorded) if recorded == limit => Ok(()),
            _ => std::fs::write(&file, format!("{limit}\n")).with_context(|| format!("writing {}", file.display())),
        }
    }

    /// The smallest profile this data dir's replica may run with (an offline audit's default):
    /// the one it ran with, or `Large` if none was recorded.
    pub fn of_data_dir(data_dir: &Path) -> TbProfile {
        match recorded_request_bytes(data_dir) {
            Ok(Some(request_bytes)) => TbProfile::smallest_allowing(request_bytes),
            _ => TbProfile::Large,
        }
    }

    fn smallest_allowing(request_bytes: u32) -> TbProfile {
        let fits = TbProfile::ALL.into_iter().find(|p| p.request_bytes_max() >= request_bytes);
        fits.unwrap_or(TbProfile::Large)
    }
}

/// The largest request limit (bytes) recorded in the data dir, `None` if none was.
fn recorded_request_bytes(data_dir: &Path) -> anyhow::Result<Option<u32>> {
    let file = data_dir.join(REQUEST_LIMIT_FILE);
    match std::fs::read_to_string(&file) {
        Ok(text) => Ok(Some(text.trim().parse::<u32>().with_context(|| format!("reading {}", file.display()))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", file.display())),
    }
}

impl std::str::FromStr for TbProfile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TbProfile::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown TigerBeetle profile {s:?} (small, medium or large)"))
    }
}

impl std::fmt::Display for TbProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_sizes_are_tigerbeetles_event_max() {
        assert_eq!(TbProfile::Large.batch_transfers_max(), BATCH_TRANSFERS_MAX, "1 MiB: 8189");
        assert_eq!(TbProfile::Medium.batch_transfers_max(), 2045);
        assert_eq!(TbProfile::Small.batch_transfers_max(), 253);
    }

    #[test]
    fn large_is_production_mode_and_the_others_are_experimental() {
        assert_eq!(TbProfile::Large.start_flags(None), vec!["--cache-grid=256MiB"]);
        assert_eq!(TbProfile::Large.start_flags(Some("1GiB")), vec!["--cache-grid=1GiB"]);
        let small = TbProfile::Small.start_flags(None);
        assert_eq!(small[..3], ["--experimental", "--cache-grid=64MiB", "--limit-request=32KiB"]);
        assert!(small.contains(&"--cache-accounts=0".to_string()));
        assert_eq!("medium".parse::<TbProfile>(), Ok(TbProfile::Medium));
        assert!("tiny".parse::<TbProfile>().unwrap_err().contains("small, medium or large"));
    }

    #[test]
    fn a_data_dir_can_grow_its_profile_but_not_shrink_it() {
        let dir = std::env::temp_dir().join(format!("tigerfans-profile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TbProfile::Small.claim_data_dir(&dir, false).unwrap();
        TbProfile::Small.claim_data_dir(&dir, true).unwrap();
        TbProfile::Medium.claim_data_dir(&dir, true).unwrap();
        assert_eq!(TbProfile::of_data_dir(&dir), TbProfile::Medium);
        let refused = TbProfile::Small.claim_data_dir(&dir, true).unwrap_err().to_string();
        assert!(refused.contains("use --tb-profile medium"), "{refused}");
        TbProfile::Large.claim_data_dir(&dir, true).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join(REQUEST_LIMIT_FILE)).unwrap().trim(), "1048576");
        assert!(TbProfile::Medium.claim_data_dir(&dir, true).is_err());
        assert_eq!(TbProfile::of_data_dir(&dir), TbProfile::Large);
        std::fs::remove_file(dir.join(REQUEST_LIMIT_FILE)).unwrap();
        let unrecorded = TbProfile::Small.claim_data_dir(&dir, true).unwrap_err().to_string();
        assert!(unrecorded.contains("use --tb-profile large"), "a data file from before profiles: {unrecorded}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

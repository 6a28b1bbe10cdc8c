//! What a process costs, from the kernel: CPU time and resident memory, of this process or of
//! another one (the co-located replica). Linux only; `None` where /proc does not answer.

/// Resident memory and CPU time of one process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// User plus system time of all its threads so far.
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
}

/// Resident set size of this process, in bytes. `statm` counts pages, and a page is not always
/// 4 KiB: the Raspberry Pi 5's default kernel uses 16 KiB pages.
pub fn self_rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size_bytes())
}

/// User plus system CPU time of this process (every thread), in seconds.
pub fn self_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let status = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    assert_eq!(status, 0, "getrusage(RUSAGE_SELF) failed");
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// CPU time and resident memory of process `pid`, from `/proc/PID/stat`; `None` if it is gone.
pub fn usage(pid: i32) -> Option<Usage> {
    assert!(pid > 0);
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?, clock_ticks_per_second(), page_size_bytes())
}

/// `/proc/PID/stat`: the command name (field 2) is in parentheses and may hold spaces and
/// parentheses itself, so the fields are counted after its last `)`. utime and stime are
/// fields 14 and 15 (clock ticks), rss field 24 (pages).
fn parse_stat(stat: &str, ticks_per_second: u64, page_bytes: u64) -> Option<Usage> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // The first field after the name is field 3 (state).
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    let ticks = field(14)? + field(15)?;
    Some(Usage { cpu_seconds: ticks as f64 / ticks_per_second as f64, rss_bytes: field(24)? * page_bytes })
}

/// The kernel's page size.
pub fn page_size_bytes() -> u64 {
    // SAFETY: sysconf reads a constant of the running kernel.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    assert!(size > 0, "sysconf(_SC_PAGESIZE) failed");
    size as u64
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf reads a constant of the running kernel.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    assert!(ticks > 0, "sysconf(_SC_CLK_TCK) failed");
    ticks as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_counts_in_the_kernel_s_pages() {
        let page = page_size_bytes();
        assert!(page.is_power_of_two() && page >= 4096, "{page}");
        // /proc/self/status says the same in kB (rounded down to whole kB there).
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let kb: u64 = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let rss = self_rss_bytes().unwrap();
        assert!(rss % page == 0 && rss / 1024 + 1024 >= kb && kb + 1024 >= rss / 1024, "statm {rss} B, status {kb} kB");
    }

    #[test]
    fn stat_fields_are_counted_after_the_name() {
        // A name with a space and a parenthesis; utime 250, stime 50 ticks; rss 1000 pages.
        let stat = "42 (tiger (beetle) 1) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 \
                    1234 567890 1000 18446744073709551615";
        let usage = parse_stat(stat, 100, 4096).unwrap();
        assert_eq!(usage, Usage { cpu_seconds: 3.0, rss_bytes: 4_096_000 });
        assert_eq!(parse_stat("42 (x) S 1", 100, 4096), None);
    }

    #[test]
    fn another_process_is_read_as_this_one_reads_itself() {
        // This process through /proc/PID/stat against getrusage and statm.
        let own = usage(std::process::id() as i32).unwrap();
        let cpu = self_cpu_seconds();
        assert!(own.cpu_seconds <= cpu + 0.02 && own.rss_bytes > 0, "{own:?} against {cpu}");
        // Spend 200 ms of CPU (by getrusage, however busy the machine is) and see the ticks
        // move by as much, within two ticks of /proc's rounding.
        let before = usage(std::process::id() as i32).unwrap().cpu_seconds;
        let cpu_before = self_cpu_seconds();
        while self_cpu_seconds() - cpu_before < 0.2 {
            std::hint::black_box(self_cpu_seconds());
        }
        let after = usage(std::process::id() as i32).unwrap().cpu_seconds;
        let tick = 1.0 / clock_ticks_per_second() as f64;
        assert!(after - before >= 0.2 - 2.0 * tick, "{before} -> {after}");
    }
}

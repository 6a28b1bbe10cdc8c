//! Per-client limits on anonymous checkouts, against hold-squatting: without them one client
//! can hold every ticket of a class for the hold time, again and again, keeping it "sold out"
//! while nothing is sold (what bots do at an on-sale). A client is an IPv4 address or an IPv6
//! /64 (one subscriber's prefix: rotating addresses within it gains nothing).
//!
//! Two limits, both per client: checkouts begun per minute, and holds placed within the last
//! hold time (an upper bound on the holds it has open: a hold paid meanwhile still counts until
//! its time is up, so a buyer who pays is limited the same way, by the same numbers). Behind a
//! NAT (a carrier's, an office's, a venue's Wi-Fi) many buyers share one address; the defaults
//! are set for that (a person buys a few tickets a minute, not dozens) and are configurable.
//!
//! Pure bookkeeping, no IO; bounded: at most `CLIENTS_MAX` clients are tracked (the least
//! recently seen are forgotten first), each with at most its limit of hold times.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

/// Clients tracked at most.
pub const CLIENTS_MAX: usize = 16_384;
const MINUTE_MS: u64 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleLimits {
    /// Checkouts a client may begin per minute; 0 turns the limit off.
    pub checkouts_per_minute: u32,
    /// Holds a client may have placed within the last `hold_ms`; 0 turns the limit off.
    pub holds_max: u32,
    /// How long a hold lasts (the event's hold time).
    pub hold_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Refused: try again in this many seconds.
    Refused {
        retry_after_s: u64,
        why: &'static str,
    },
}

#[derive(Default)]
struct Client {
    minute_started_ms: u64,
    in_minute: u32,
    /// When each recent hold was placed, oldest first.
    holds_ms: VecDeque<u64>,
    seen_ms: u64,
}

pub struct Throttle {
    limits: ThrottleLimits,
    clients: Mutex<HashMap<IpAddr, Client>>,
}

/// The key a client is known by: its IPv4 address, or its IPv6 /64.
pub fn client_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        },
        v4 => v4,
    }
}

impl Throttle {
    pub fn new(limits: ThrottleLimits) -> Throttle {
        Throttle { limits, clients: Mutex::new(HashMap::new()) }
    }

    /// Before a checkout: allowed (and counted: the checkout in the minute, and its hold, held
    /// from now on, so that checkouts sent at the same moment cannot all pass), or refused with
    /// when to try again. A checkout that then places no hold gives it back (`no_hold`).
    pub fn admit(&self, address: IpAddr, now_ms: u64) -> Verdict {
        let ThrottleLimits { checkouts_per_minute, holds_max, hold_ms } = self.limits;
        let mut clients = self.clients.lock().expect("throttle lock poisoned");
        if clients.len() >= CLIENTS_MAX && !clients.contains_key(&client_key(address)) {
            forget_oldest(&mut clients, now_ms, hold_ms);
        }
        let client = clients.entry(client_key(address)).or_default();
        client.seen_ms = now_ms;
        while client.holds_ms.front().is_some_and(|at| at + hold_ms <= now_ms) {
            client.holds_ms.pop_front();
        }
        if holds_max > 0 && client.holds_ms.len() >= holds_max as usize {
            let oldest = *client.holds_ms.front().expect("at the limit, so not empty");
            let retry_after_s = (oldest + hold_ms - now_ms).div_ceil(1000).max(1);
            return Verdict::Refused { retry_after_s, why: "too many tickets on hold from this address" };
        }
        if now_ms >= client.minute_started_ms + MINUTE_MS {
            (client.minute_started_ms, client.in_minute) = (now_ms, 0);
        }
        if checkouts_per_minute > 0 && client.in_minute >= checkouts_per_minute {
            let retry_after_s = (client.minute_started_ms + MINUTE_MS - now_ms).div_ceil(1000).max(1);
            return Verdict::Refused { retry_after_s, why: "too many checkouts from this address" };
        }
        client.in_minute += 1;
        if holds_max > 0 {
            client.holds_ms.push_back(now_ms);
            assert!(client.holds_ms.len() <= holds_max as usize);
        }
        Verdict::Allowed
    }

    /// A checkout admitted at `admitted_ms` placed no hold (refused, sold out): its place is free.
    pub fn no_hold(&self, address: IpAddr, admitted_ms: u64) {
        let mut clients = self.clients.lock().expect("throttle lock poisoned");
        if let Some(client) = clients.get_mut(&client_key(address)) {
            if let Some(at) = client.holds_ms.iter().rposition(|at| *at == admitted_ms) {
                client.holds_ms.remove(at);
            }
        }
    }
}

/// Makes room: clients with nothing in their windows first, else the least recently seen.
fn forget_oldest(clients: &mut HashMap<IpAddr, Client>, now_ms: u64, hold_ms: u64) {
    clients.retain(|_, c| c.seen_ms + MINUTE_MS.max(hold_ms) > now_ms);
    if clients.len() >= CLIENTS_MAX {
        let oldest = clients.iter().min_by_key(|(_, c)| c.seen_ms).map(|(k, _)| *k).expect("full, so not empty");
        clients.remove(&oldest);
    }
    assert!(clients.len() < CLIENTS_MAX);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(per_minute: u32, holds: u32) -> Throttle {
        Throttle::new(ThrottleLimits { checkouts_per_minute: per_minute, holds_max: holds, hold_ms: 300_000 })
    }

    #[test]
    fn holds_per_client_are_bounded_and_free_up_as_they_expire() {
        let t = throttle(0, 3);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..3 {
            assert_eq!(t.admit(a, 1_000), Verdict::Allowed, "held at once: concurrent checkouts count");
        }
        assert!(matches!(t.admit(a, 2_000), Verdict::Refused { retry_after_s: 299, .. }));
        assert_eq!(t.admit(b, 2_000), Verdict::Allowed, "others still buy");
        assert_eq!(t.admit(a, 301_000), Verdict::Allowed, "the holds' time is up");
        assert!(matches!(t.admit(b, 2_001), Verdict::Allowed));
        t.no_hold(b, 2_001);
        assert_eq!(
            t.clients.lock().unwrap()[&client_key(b)].holds_ms.len(),
            1,
            "a checkout without a hold gives its place back"
        );
    }

    #[test]
    fn checkouts_per_minute_and_ipv6_prefixes() {
        let t = throttle(2, 0);
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_prefix: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(t.admit(one, 0), Verdict::Allowed);
        assert_eq!(t.admit(same_prefix, 10), Verdict::Allowed);
        assert!(matches!(t.admit(one, 20), Verdict::Refused { retry_after_s: 60, .. }), "one /64, one client");
        assert_eq!(t.admit("2001:db8:1:3::1".parse().unwrap(), 30), Verdict::Allowed);
        assert_eq!(t.admit(one, 60_000), Verdict::Allowed, "a new minute");
        assert_eq!(client_key("::ffff:10.1.2.3".parse().unwrap()), "10.1.2.3".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn the_table_is_bounded() {
        let t = throttle(1, 1);
        for i in 0..(CLIENTS_MAX as u32 + 100) {
            t.admit(IpAddr::V4(i.into()), 1);
        }
        assert!(t.clients.lock().unwrap().len() <= CLIENTS_MAX);
    }
}

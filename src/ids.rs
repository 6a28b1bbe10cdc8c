//! Random ids: orders, holds, payment sessions, ticket codes. Imports only the clock.

use crate::clock::now_ms;

/// Random bytes for ids, session ids and ticket codes, from rand's thread-local CSPRNG (ChaCha,
/// seeded and periodically reseeded from the OS). Asking the OS for each id was a `getrandom`
/// system call per id, four per checkout: 1.7% of all CPU samples in a profile of the reserve
/// phase (server, replica and generator), for two ids per request.
fn random_bytes<const N: usize>() -> [u8; N] {
    use rand::RngCore;
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
}

/// Payment session ids are capabilities (whoever has one can pay or cancel): 128 random bits,
/// after a millisecond timestamp so that new sessions land at the right edge of the store's
/// B-tree (few dirty pages per group commit) instead of all over it.
pub fn new_psid() -> String {
    let mut s = String::with_capacity(3 + 12 + 32);
    s.push_str("ps_");
    push_hex(&mut s, &now_ms().to_be_bytes()[2..]);
    push_hex(&mut s, &random_bytes::<16>());
    s
}

/// `TCK-` and 10 characters from an alphabet without look-alikes (0/O, 1/I): 50 random bits.
pub fn new_ticket_code() -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut code = String::with_capacity(14);
    code.push_str("TCK-");
    for b in random_bytes::<10>() {
        code.push(ALPHABET[(b & 31) as usize] as char);
    }
    code
}

/// A new id for orders and holds: a millisecond timestamp (48 bits, so ids sort by time and
/// land at the right edge of B-trees) and 80 random bits (a CSPRNG the OS seeds, see
/// `random_bytes`). Unlike TigerBeetle's `id()` (sequential within a millisecond), neighbours
/// cannot be guessed: an order id is what reads an order and its ticket code.
pub fn new_id() -> u128 {
    let random = random_bytes::<10>();
    let mut low = [0u8; 16];
    low[6..].copy_from_slice(&random);
    let id = (u128::from(now_ms()) << 80) | u128::from_be_bytes(low);
    assert!(id != 0 && id != u128::MAX);
    id
}

/// The creation time (Unix ms) an id made by `new_id` begins with.
pub fn id_created_at_ms(id: u128) -> u64 {
    (id >> 80) as u64
}

pub fn format_order_id(id: u128) -> String {
    format!("{id:032x}")
}

pub fn parse_order_id(order_id: &str) -> Option<u128> {
    (order_id.len() == 32).then(|| u128::from_str_radix(order_id, 16).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_ids() {
        let code = new_ticket_code();
        assert_eq!(code.len(), 14);
        assert!(code.starts_with("TCK-"));
        assert_ne!(new_ticket_code(), new_ticket_code());
        let psid = new_psid();
        assert_eq!(psid.len(), 47);
        assert!(psid[..15] <= new_psid()[..15], "time-ordered prefix");
        assert_eq!(parse_order_id(&format_order_id(12345)), Some(12345));
        let (a, b) = (new_id(), new_id());
        assert_ne!(a, b);
        assert!(b.abs_diff(a) > 1 << 20 || (a >> 80) != (b >> 80), "not sequential");
        assert!(id_created_at_ms(a) <= id_created_at_ms(b), "time-ordered");
        assert!(id_created_at_ms(a).abs_diff(now_ms()) < 60_000);
        assert_eq!(parse_order_id("zz"), None);
    }
}

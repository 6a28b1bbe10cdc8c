//! What a ticket carries to the door: its QR code holds a signed payload (the order id and an
//! HMAC under the install's own key, `DATA_DIR/ticket-secret`), so a forged, altered or
//! mistyped code is refused before anything is looked up, and order ids cannot be guessed at
//! the door. The printed `TCK-` code still works typed by hand, at a bounded rate per session.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::secrets::{hex, random_hex, read_or_create};

/// The payload's version prefix: `TF1.<order id, 32 hex>.<MAC, 24 hex>`.
pub const QR_PREFIX: &str = "TF1.";
/// 96 bits of HMAC-SHA256: forging one is 2^96 guesses, each a request.
const MAC_HEX_LEN: usize = 24;
/// A scanned or typed code longer than this is refused unread.
pub const CODE_LEN_MAX: usize = 128;
/// Codes typed by hand (each a lookup by ticket code) per staff session and minute.
pub const MANUAL_CODES_PER_MINUTE: u32 = 30;
const MANUAL_WINDOW_MS: u64 = 60_000;
/// Sessions the manual-code limiter tracks at most.
const MANUAL_SESSIONS_MAX: usize = 1024;

/// What a scanned or typed code is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    /// A QR payload with a valid MAC: the order id.
    Signed(String),
    /// A printed ticket code, normalized (`TCK-` and 10 capitals or digits).
    Printed(String),
    /// Neither: forged, altered, damaged, or not ours.
    Invalid(&'static str),
}

pub struct TicketKey {
    secret: Vec<u8>,
}

impl TicketKey {
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<TicketKey> {
        let (secret, _) = read_or_create(&data_dir.join("ticket-secret"), || random_hex(32))?;
        Ok(TicketKey::new(secret.as_bytes()))
    }

    pub fn new(secret: &[u8]) -> TicketKey {
        assert!(!secret.is_empty());
        TicketKey { secret: secret.to_vec() }
    }

    fn mac(&self, order_id: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("any key length");
        mac.update(b"ticket\x00");
        mac.update(order_id.as_bytes());
        let mut text = hex(&mac.finalize().into_bytes());
        text.truncate(MAC_HEX_LEN);
        text
    }

    /// The payload a ticket's QR code holds.
    pub fn payload(&self, order_id: &str) -> String {
        format!("{QR_PREFIX}{order_id}.{}", self.mac(order_id))
    }

    /// Reads a scanned or typed code.
    pub fn read(&self, code: &str) -> Code {
        let code = code.trim();
        if code.len() > CODE_LEN_MAX {
            return Code::Invalid("the code is too long to be a ticket");
        }
        if let Some(rest) = code.strip_prefix(QR_PREFIX) {
            let Some((order_id, mac)) = rest.split_once('.') else {
                return Code::Invalid("the QR code is damaged");
            };
            if crate::ids::parse_order_id(order_id).is_none() || mac.len() != MAC_HEX_LEN {
                return Code::Invalid("the QR code is damaged");
            }
            let expected = self.mac(order_id);
            if !bool::from(expected.as_bytes().ct_eq(mac.as_bytes())) {
                return Code::Invalid("the QR code's signature does not match (forged, or of another event)");
            }
            return Code::Signed(order_id.to_string());
        }
        let typed: String = code.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_uppercase();
        let printed = typed.strip_prefix("TCK-").is_some_and(|rest| {
            rest.len() == 10 && rest.bytes().all(|b| b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789".contains(&b))
        });
        if printed {
            Code::Printed(typed)
        } else {
            Code::Invalid("not a ticket code (a QR payload or TCK- and 10 characters)")
        }
    }
}

/// Counts the codes each staff session types by hand (`MANUAL_CODES_PER_MINUTE`): printed codes
/// carry 50 random bits, and this keeps a stolen door session from trying them in bulk.
#[derive(Default)]
pub struct ManualCodes {
    windows: Mutex<HashMap<String, (u32, u64)>>,
}

impl ManualCodes {
    /// Whether this session may look up one more typed code now (and counts it).
    pub fn allow(&self, session: &str, now_ms: u64) -> bool {
        let mut windows = self.windows.lock().expect("manual codes lock");
        if windows.len() >= MANUAL_SESSIONS_MAX && !windows.contains_key(session) {
            windows.retain(|_, (_, since)| now_ms < *since + MANUAL_WINDOW_MS);
            if windows.len() >= MANUAL_SESSIONS_MAX {
                return false;
            }
        }
        let entry = windows.entry(session.to_string()).or_insert((0, now_ms));
        if now_ms >= entry.1 + MANUAL_WINDOW_MS {
            *entry = (0, now_ms);
        }
        entry.0 += 1;
        entry.0 <= MANUAL_CODES_PER_MINUTE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_signed_and_codes_read() {
        let key = TicketKey::new(b"k1");
        let order = crate::ids::format_order_id(12345);
        let payload = key.payload(&order);
        assert_eq!(key.read(&payload), Code::Signed(order.clone()));
        assert_eq!(key.read(&format!(" {payload}\n")), Code::Signed(order.clone()));
        assert!(matches!(TicketKey::new(b"k2").read(&payload), Code::Invalid(_)), "another install's key");
        let other = crate::ids::format_order_id(12346);
        let altered = payload.replace(&order, &other);
        assert!(matches!(key.read(&altered), Code::Invalid(_)), "another order under the same MAC");
        let mut flipped = payload.clone();
        let last = flipped.pop().unwrap();
        flipped.push(if last == '0' { '1' } else { '0' });
        assert!(matches!(key.read(&flipped), Code::Invalid(_)));
        assert!(matches!(key.read("TF1.zz.00"), Code::Invalid(_)));
        assert_eq!(key.read("tck-abcd efgh23"), Code::Printed("TCK-ABCDEFGH23".into()));
        assert!(matches!(key.read("TCK-ABCDEFGH2"), Code::Invalid(_)), "too short");
        assert!(matches!(key.read("TCK-ABCDEFGH10"), Code::Invalid(_)), "no 1 or 0 in codes");
        assert!(matches!(key.read(&"x".repeat(200)), Code::Invalid(_)));
        assert!(matches!(key.read(""), Code::Invalid(_)));
    }

    #[test]
    fn typed_codes_are_limited_per_session() {
        let limiter = ManualCodes::default();
        for _ in 0..MANUAL_CODES_PER_MINUTE {
            assert!(limiter.allow("s1", 0));
        }
        assert!(!limiter.allow("s1", 1));
        assert!(limiter.allow("s2", 1), "per session");
        assert!(limiter.allow("s1", MANUAL_WINDOW_MS), "the window passes");
    }
}

//! MockPay: the stand-in payment provider. It signs events the way a real provider would
//! (base64 of HMAC-SHA256 over the raw body, in `x-mockpay-signature`), and the webhook handler
//! verifies them in constant time before trusting a byte of the body.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

pub const SIGNATURE_HEADER: &str = "x-mockpay-signature";

type HmacSha256 = Hmac<Sha256>;

/// base64(HMAC-SHA256(secret, body)).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(body);
    BASE64.encode(mac.finalize().into_bytes())
}

/// Constant-time check of a signature header against the body.
pub fn verify(secret: &[u8], body: &[u8], signature_b64: &str) -> bool {
    let Ok(signature) = BASE64.decode(signature_b64.trim()) else {
        return false;
    };
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "payment.succeeded")]
    Succeeded,
    #[serde(rename = "payment.failed")]
    Failed,
    #[serde(rename = "payment.canceled")]
    Canceled,
}

impl EventType {
    /// The form value of the MockPay page's buttons: `succeeded`, `failed`, `canceled`.
    pub fn from_button(t: &str) -> Option<EventType> {
        match t {
            "succeeded" => Some(EventType::Succeeded),
            "failed" => Some(EventType::Failed),
            "canceled" => Some(EventType::Canceled),
            _ => None,
        }
    }
}

/// The webhook body. Unknown fields are ignored (providers add fields over time).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: EventType,
    pub payment_session_id: String,
    pub order_id: String,
    pub amount: u64,
    pub currency: String,
    /// When the provider made the event: a string (RFC 3339 here), or an integer Unix time as
    /// the reference design's MockPay sends (`int(time.time())`), kept as its decimal text.
    /// Only shown, never computed with.
    #[serde(deserialize_with = "text_or_integer")]
    pub created_at: String,
    pub idempotency_key: String,
}

/// A JSON string, or an integer turned into its decimal text.
fn text_or_integer<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum TextOrInteger {
        Text(String),
        Unsigned(u64),
        Signed(i64),
    }
    Ok(
        match TextOrInteger::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom("invalid type: created_at must be a string or an integer Unix time")
        })? {
            TextOrInteger::Text(text) => text,
            TextOrInteger::Unsigned(n) => n.to_string(),
            TextOrInteger::Signed(n) => n.to_string(),
        },
    )
}

/// Field length bound: anything longer is not ours.
pub const EVENT_FIELD_LEN_MAX: usize = 128;

impl Event {
    /// The body and its signature header's value, as the provider sends them: the one
    /// definition of the wire format (MockPay's buttons, the load generator and the tests
    /// all send events made here). `decode_event` is its inverse.
    pub fn encode_signed(&self, secret: &[u8]) -> (Vec<u8>, String) {
        let body = serde_json::to_vec(self).expect("events serialize");
        let signature = sign(secret, &body);
        (body, signature)
    }

    pub fn check_lengths(&self) -> Result<(), &'static str> {
        for (field, name) in [
            (&self.payment_session_id, "payment_session_id"),
            (&self.order_id, "order_id"),
            (&self.currency, "currency"),
            (&self.created_at, "created_at"),
            (&self.idempotency_key, "idempotency_key"),
        ] {
            if field.len() > EVENT_FIELD_LEN_MAX {
                return Err(name);
            }
        }
        if self.idempotency_key.is_empty() {
            return Err("idempotency_key");
        }
        Ok(())
    }
}

/// The webhook's front door: signature first (constant time), then JSON, then field bounds. The
/// error is the 400's detail.
pub fn decode_event(secret: &[u8], body: &[u8], signature: Option<&str>) -> Result<Event, String> {
    let signature = signature.ok_or_else(|| format!("missing {SIGNATURE_HEADER}"))?;
    if !verify(secret, body, signature) {
        return Err("invalid signature".into());
    }
    let event: Event = serde_json::from_slice(body).map_err(|e| format!("invalid event JSON: {e}"))?;
    event.check_lengths().map_err(|field| format!("invalid event field {field}"))?;
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_verify() {
        let body = br#"{"type":"payment.succeeded"}"#;
        let sig = sign(b"secret-key", body);
        assert!(verify(b"secret-key", body, &sig));
        assert!(!verify(b"other-key", body, &sig));
        assert!(!verify(b"secret-key", b"{}", &sig));
        assert!(!verify(b"secret-key", body, "not base64!"));
        assert!(!verify(b"secret-key", body, ""));
    }

    #[test]
    fn a_signed_event_decodes_to_itself() {
        let event = Event {
            kind: EventType::Succeeded,
            payment_session_id: "ps_1".into(),
            order_id: "o1".into(),
            amount: 6500,
            currency: "EUR".into(),
            created_at: "2026-11-23T00:00:00Z".into(),
            idempotency_key: "k1".into(),
        };
        let (body, signature) = event.encode_signed(b"secret");
        assert_eq!(
            String::from_utf8(body.clone()).unwrap(),
            r#"{"type":"payment.succeeded","payment_session_id":"ps_1","order_id":"o1","amount":6500,"currency":"EUR","created_at":"2026-11-23T00:00:00Z","idempotency_key":"k1"}"#
        );
        let decoded = decode_event(b"secret", &body, Some(&signature)).unwrap();
        assert_eq!((decoded.kind, decoded.idempotency_key.as_str()), (EventType::Succeeded, "k1"));
        assert_eq!(decode_event(b"other", &body, Some(&signature)).unwrap_err(), "invalid signature");
    }

    #[test]
    fn created_at_is_a_string_or_an_integer_unix_time() {
        let body = |created_at: &str| {
            format!(
                r#"{{"type":"payment.failed","payment_session_id":"p","order_id":"o","amount":1,"currency":"EUR","created_at":{created_at},"idempotency_key":"k"}}"#
            )
        };
        let event = |created_at: &str| serde_json::from_str::<Event>(&body(created_at));
        assert_eq!(event("\"2026-12-03T06:00:00Z\"").unwrap().created_at, "2026-12-03T06:00:00Z");
        assert_eq!(event("1764741600").unwrap().created_at, "1764741600");
        assert_eq!(event("-1").unwrap().created_at, "-1");
        for bad in ["1.5", "null", "[1]", "{}", "true"] {
            let e = event(bad).unwrap_err().to_string();
            assert!(e.contains("created_at must be a string or an integer"), "{bad}: {e}");
        }
        // Through the webhook's front door, signed.
        let raw = body("1764741600");
        let signature = sign(b"s", raw.as_bytes());
        assert_eq!(decode_event(b"s", raw.as_bytes(), Some(&signature)).unwrap().created_at, "1764741600");
    }

    #[test]
    fn event_types_use_the_wire_names() {
        let e: Event = serde_json::from_str(
            r#"{"type":"payment.canceled","payment_session_id":"p","order_id":"o","amount":1,
                "currency":"EUR","created_at":"t","idempotency_key":"k","extra":1}"#,
        )
        .unwrap();
        assert_eq!(e.kind, EventType::Canceled);
        assert!(serde_json::from_str::<Event>(r#"{"type":"payment.refunded"}"#).is_err());
        assert_eq!(EventType::from_button("failed"), Some(EventType::Failed));
        assert_eq!(EventType::from_button("x"), None);
    }
}

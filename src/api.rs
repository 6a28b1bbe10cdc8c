//! The JSON API's request bodies, decoded and validated without IO: the first thing untrusted
//! bytes meet, so it is kept pure and fuzzed (`fuzz/`).

use serde::Deserialize;

/// Email addresses: syntactically valid per RFC 5322 (the `email_address` crate), with a dotted
/// domain, as a checkout form would require.
pub const EMAIL_LEN_MAX: usize = 254;
/// Longer class names are not ours (ids are at most 8 bytes); the bound keeps error text short.
pub const CLS_LEN_MAX: usize = 64;

pub fn is_valid_email(email: &str) -> bool {
    email.len() <= EMAIL_LEN_MAX
        && email_address::EmailAddress::parse_with_options(
            email,
            email_address::Options::default().without_display_text(),
        )
        .map(|e| e.domain().contains('.') && !e.domain().starts_with('[') && !e.domain().ends_with('.'))
        .unwrap_or(false)
}

/// `POST /api/checkout`. Unknown fields are refused: a client sending `"qty": 5` would otherwise
/// be sold one ticket without a word.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    pub cls: String,
    pub customer_email: String,
}

/// Decodes and validates a checkout body; the error is the 400's detail.
pub fn decode_checkout(body: &[u8]) -> Result<CheckoutRequest, String> {
    let mut request: CheckoutRequest = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    if request.cls.is_empty() || request.cls.len() > CLS_LEN_MAX {
        return Err("invalid cls".into());
    }
    request.customer_email = request.customer_email.trim().to_string();
    if !is_valid_email(&request.customer_email) {
        return Err("invalid customer_email".into());
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for ok in ["x@y.z", "first.last+tag@example.co.uk"] {
            assert!(is_valid_email(ok), "{ok}");
        }
        for bad in ["", "x", "x@y", "@y.z", "x@", "x y@z.w", "Name <x@y.z>", &format!("{}@y.z", "a".repeat(300))] {
            assert!(!is_valid_email(bad), "{bad}");
        }
    }

    #[test]
    fn checkout_bodies() {
        let ok = decode_checkout(br#"{"cls":"A","customer_email":" a@b.co "}"#).unwrap();
        assert_eq!((ok.cls.as_str(), ok.customer_email.as_str()), ("A", "a@b.co"));
        for bad in [
            &b""[..],
            b"{}",
            b"[1]",
            b"{\"cls\":\"A\"}",
            b"{\"cls\":\"\",\"customer_email\":\"a@b.co\"}",
            b"{\"cls\":\"A\",\"customer_email\":\"nope\"}",
            b"\xff\xfe",
            b"{\"cls\":\"A\",\"customer_email\":\"a@b.co\",\"qty\":5}",
        ] {
            assert!(decode_checkout(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(decode_checkout(deep.as_bytes()).is_err());
    }
}

//! `api::decode_checkout` on arbitrary bytes: whatever it accepts is a request the server may act
//! on, so every accepted request must satisfy the documented bounds, and decoding must be stable
//! (the accepted request, encoded again, decodes to itself).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tigerfans_fuzz::api;

fuzz_target!(|data: &[u8]| {
    let request = match api::decode_checkout(data) {
        Ok(request) => request,
        Err(detail) => {
            assert!(!detail.is_empty(), "an error needs a detail for the 400");
            return;
        }
    };
    let email = request.customer_email.as_str();
    assert!(api::is_valid_email(email), "accepted invalid email {email:?}");
    assert_eq!(email, email.trim(), "accepted email is not trimmed");
    assert!(email.len() <= api::EMAIL_LEN_MAX, "email of {} bytes", email.len());
    // A dotted, non-literal domain: what is_valid_email promises on top of RFC 5322 syntax.
    let domain = &email[email.rfind('@').expect("an email has an @") + 1..];
    assert!(domain.contains('.') && !domain.ends_with('.') && !domain.starts_with('['), "domain {domain:?}");
    assert!(!request.cls.is_empty(), "accepted empty cls");
    assert!(request.cls.len() <= api::CLS_LEN_MAX, "accepted cls of {} bytes", request.cls.len());

    // Stable: the accepted request, sent again, is accepted unchanged.
    let again = serde_json::to_vec(&serde_json::json!({"cls": request.cls, "customer_email": email})).unwrap();
    let again = api::decode_checkout(&again).expect("re-encoded accepted request is refused");
    assert_eq!((again.cls.as_str(), again.customer_email.as_str()), (request.cls.as_str(), email));
});

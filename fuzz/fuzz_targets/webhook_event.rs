//! `payment::decode_event` / `verify` / `sign`: the webhook's front door.
//!
//! Input layout: `[mode, secret_len, p0, p1, secret.., rest..]`. In mode 0 `rest` is
//! `signature '\n' body` (an arbitrary signature header); otherwise `rest` is the body and the
//! signature is the correct one, mutated according to `mode`, `p0`, `p1`.
//!
//! Properties:
//! - with the correct signature, `decode_event` is Ok iff the body is an `Event` in JSON that
//!   passes `check_lengths`, and then yields that event;
//! - any signature header other than the correct one (up to surrounding whitespace) is refused,
//!   and so is a missing one;
//! - a signature never verifies a different body, nor under a different secret (one bit flipped);
//! - an accepted event, serialized again (and signed), decodes to an equal event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tigerfans_fuzz::payment::{self, Event};

fn fields(e: &Event) -> (payment::EventType, &str, &str, u64, &str, &str, &str) {
    (
        e.kind,
        &e.payment_session_id,
        &e.order_id,
        e.amount,
        &e.currency,
        &e.created_at,
        &e.idempotency_key,
    )
}

fuzz_target!(|data: &[u8]| {
    let &[mode, secret_len, p0, p1, ref rest @ ..] = data else {
        return;
    };
    let secret_len = (secret_len as usize % 100).min(rest.len());
    let (secret, rest) = rest.split_at(secret_len);

    let (signature, body): (String, &[u8]) = if mode % 4 == 0 {
        let newline = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let signature = String::from_utf8_lossy(&rest[..newline]).into_owned();
        (signature, rest.get(newline + 1..).unwrap_or(&[]))
    } else {
        (String::new(), rest)
    };
    let good = payment::sign(secret, body);
    assert_eq!(good.len(), 44, "base64 of 32 bytes");
    let signature = match mode % 4 {
        0 => signature,
        // One character of the correct signature replaced.
        1 => {
            let mut s = good.clone().into_bytes();
            let i = p0 as usize % s.len();
            s[i] = p1 & 0x7f;
            String::from_utf8(s).unwrap()
        }
        // Characters added around the correct signature, or some cut off its end.
        2 => {
            let c = char::from(p1 & 0x7f);
            match p0 % 3 {
                0 => format!("{c}{good}"),
                1 => format!("{good}{c}"),
                _ => good[..p1 as usize % good.len()].to_string(),
            }
        }
        _ => good.clone(),
    };

    // The reference: plain JSON decoding, then the length checks.
    let reference: Option<Event> =
        serde_json::from_slice::<Event>(body).ok().filter(|e| e.check_lengths().is_ok());

    // Correct signature: Ok exactly when the reference accepts, with the same event.
    match (payment::decode_event(secret, body, Some(&good)), &reference) {
        (Ok(event), Some(expected)) => assert_eq!(fields(&event), fields(expected)),
        (Err(_), None) => {}
        (got, expected) => panic!("decode_event {got:?}, reference {expected:?}"),
    }
    assert!(payment::decode_event(secret, body, None).is_err(), "accepted without signature");

    // Any other signature header is refused; the correct one with whitespace around is not "other"
    // (verify trims the header).
    let accepted = payment::verify(secret, body, &signature);
    assert_eq!(accepted, signature.trim() == good, "verify({signature:?}), correct is {good:?}");
    if signature.trim() != good {
        assert!(payment::decode_event(secret, body, Some(&signature)).is_err(), "accepted {signature:?}");
    }

    // A signature is for one body and one secret.
    let mut other_body = body.to_vec();
    match other_body.get_mut(p0 as usize) {
        Some(b) => *b ^= 1 << (p1 % 8),
        None => other_body.push(p1),
    }
    assert!(!payment::verify(secret, &other_body, &good), "signature verifies a different body");
    if !secret.is_empty() {
        let mut other_secret = secret.to_vec();
        other_secret[p1 as usize % secret.len()] ^= 1 << (p0 % 8);
        assert!(!payment::verify(&other_secret, body, &good), "signature verifies under another secret");
    }

    // Round trip: an accepted event, serialized and signed again, decodes to an equal event.
    if let Some(event) = &reference {
        let json = serde_json::to_vec(event).unwrap();
        let decoded: Event = serde_json::from_slice(&json).expect("serialized event does not decode");
        assert_eq!(fields(&decoded), fields(event));
        let signed = payment::decode_event(secret, &json, Some(&payment::sign(secret, &json)))
            .expect("serialized accepted event is refused");
        assert_eq!(fields(&signed), fields(event));
    }
});

//! The reference design's clients, pinned: each request as its load tools
//! (`load_phases.py`, `load_client.py`) and its MockPay send it, and each answer's shape as they
//! read it back. Two of its four phases failed against tigerfans before these were pinned: its
//! webhooks (an integer `created_at`) and its commit phase (it reads the ids back).

use hyper::StatusCode;
use serde_json::{json, Value};

use crate::common::*;

/// The keys of a JSON object, sorted.
fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> =
        value.as_object().unwrap_or_else(|| panic!("not an object: {value}")).keys().map(|k| k.as_str()).collect();
    keys.sort_unstable();
    keys
}

/// A webhook body as the reference's MockPay and load tools build it: `created_at` an integer
/// Unix time (`int(time.time())`), the currency as the checkout answered it or lowercase.
fn reference_event(kind: &str, checkout: &Value, key: &str, currency: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "type": format!("payment.{kind}"),
        "payment_session_id": psid_of(checkout),
        "order_id": checkout["order_id"],
        "amount": checkout["amount"],
        "currency": currency,
        "created_at": 1_764_741_600u64,
        "idempotency_key": key,
    }))
    .unwrap()
}

#[tokio::test]
async fn checkout_webhook_order_and_inventory_in_the_reference_s_shapes() {
    let server = Server::start(config(100, 10, 300)).await;
    let http = &server.http;
    // Checkout: {"cls", "customer_email"} → {order_id, redirect_url, amount, currency}.
    let (status, checkout) = http.checkout("A", "ref@example.com").await;
    assert_eq!(status, StatusCode::OK, "{checkout}");
    assert_eq!(keys(&checkout), ["amount", "currency", "order_id", "redirect_url"]);
    assert!(checkout["redirect_url"].as_str().unwrap().starts_with("/mockpay/ps_"));
    assert_eq!((checkout["amount"].as_u64(), checkout["currency"].as_str()), (Some(6500), Some("EUR")));

    // The webhook with an integer created_at: applied; its replay: idempotent.
    let key = unique_key("ref");
    let body = reference_event("succeeded", &checkout, &key, "EUR");
    let (status, reply) = http.webhook(&body).await;
    assert_eq!((status, reply.clone()), (StatusCode::OK, json!({"ok": true, "order_status": "PAID"})));
    let (status, reply) = http.webhook(&body).await;
    assert_eq!((status, reply), (StatusCode::OK, json!({"ok": true, "idempotent": true})));

    // The order as its clients poll it.
    let order = http.order(checkout["order_id"].as_str().unwrap()).await;
    assert_eq!(
        keys(&order),
        ["amount", "cls", "currency", "got_goodie", "order_id", "paid_at", "qty", "status", "ticket_code"]
    );
    assert_eq!(
        (order["status"].as_str(), order["qty"].as_u64(), order["got_goodie"].as_bool()),
        (Some("PAID"), Some(1), Some(true))
    );
    assert!(order["ticket_code"].as_str().unwrap().starts_with("TCK-"));

    // A currency in another case is the same currency; another amount is not.
    let (_, second) = http.checkout("B", "ref2@example.com").await;
    let (status, reply) = http.webhook(&reference_event("failed", &second, &unique_key("ref"), "eur")).await;
    assert_eq!((status, reply["order_status"].as_str()), (StatusCode::OK, Some("FAILED")), "{reply}");

    // Inventory: per class id, and the goodie pool.
    let inventory = http.inventory().await;
    assert_eq!(keys(&inventory), ["A", "B", "goodies"]);
    assert_eq!(
        keys(&inventory["A"]),
        ["active_holds", "available", "capacity", "name", "price", "sold", "sold_out", "timestamp"]
    );
    assert_eq!(keys(&inventory["goodies"]), ["active_holds", "available", "limit", "timestamp", "used"]);
    assert_eq!((inventory["A"]["sold"].as_u64(), inventory["goodies"]["used"].as_u64()), (Some(1), Some(1)));
}

#[tokio::test]
async fn mockpay_s_emit_answers_with_the_reference_s_redirects() {
    let server = Server::start(config(100, 10, 300)).await;
    let (_, checkout) = server.http.checkout("A", "emit@example.com").await;
    let order_id = checkout["order_id"].as_str().unwrap();
    let reply = server.http.emit(&psid_of(&checkout), "succeeded").await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.headers["location"], format!("/demo/success?order_id={order_id}").as_str());
    let (_, checkout) = server.http.checkout("A", "emit2@example.com").await;
    let reply = server.http.emit(&psid_of(&checkout), "canceled").await;
    let order_id = checkout["order_id"].as_str().unwrap();
    assert_eq!(reply.headers["location"], format!("/demo/checkout?status=canceled&order_id={order_id}").as_str());
}

#[tokio::test]
async fn reserve_and_commit_answer_the_ids_the_reference_s_benchmark_reads_back() {
    // One goodie: the second reserve finds none left.
    let server = Server::start(config(100, 1, 300)).await;
    let http = &server.http;
    let (status, first) = http.get("/api/accounting/reserve?cls=A").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(keys(&first), ["goodie_tb_transfer_id", "tb_transfer_id"]);
    let (ticket, goodie) =
        (first["tb_transfer_id"].as_str().unwrap(), first["goodie_tb_transfer_id"].as_str().unwrap());
    assert!(ticket.parse::<u128>().is_ok() && goodie.parse::<u128>().is_ok(), "decimal ids: {first}");
    let (status, second) = http.get("/api/accounting/reserve?cls=A").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(second["goodie_tb_transfer_id"], Value::Null, "no goodie left: {second}");

    let (status, committed) =
        http.get(&format!("/api/accounting/commit?tb_transfer_id={ticket}&goodie_tb_transfer_id={goodie}")).await;
    assert_eq!(status, StatusCode::OK, "{committed}");
    assert_eq!(keys(&committed), ["goodie", "goodie_tb_transfer_id", "ok", "tb_transfer_id", "ticket"]);
    assert_eq!(
        (committed["tb_transfer_id"].as_str(), committed["goodie_tb_transfer_id"].as_str()),
        (Some(ticket), Some(goodie))
    );
    assert_eq!((committed["ok"].as_bool(), committed["ticket"].as_str()), (Some(true), Some("Created")));

    // Without a goodie: the parameter left out, or as a Python client spells nothing.
    let ticket = second["tb_transfer_id"].as_str().unwrap();
    for query in [format!("tb_transfer_id={ticket}"), format!("tb_transfer_id={ticket}&goodie_tb_transfer_id=None")] {
        let (status, committed) = http.get(&format!("/api/accounting/commit?{query}")).await;
        assert_eq!(status, StatusCode::OK, "{query}: {committed}");
        assert_eq!(committed["tb_transfer_id"].as_str(), Some(ticket));
        assert_eq!(
            (committed["goodie"].clone(), committed["goodie_tb_transfer_id"].clone()),
            (Value::Null, Value::Null)
        );
    }
    // A repeated id is not guessed at.
    let (status, reply) = http.get(&format!("/api/accounting/commit?tb_transfer_id={ticket}&tb_transfer_id=1")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
}

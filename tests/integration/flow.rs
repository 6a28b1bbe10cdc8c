//! The whole flow over HTTP against a real replica and a real redb file: checkout → MockPay →
//! webhook → order, for every outcome, and every way a request can be wrong.

use crate::common::*;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

fn class<'a>(inventory: &'a Value, cls: &str) -> &'a Value {
    &inventory[cls]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_then_payment_succeeded_gives_a_paid_ticket() {
    let server = Server::start(config(10, 100, 300)).await;
    let http = &server.http;
    let (status, checkout) = http.checkout("A", "fan@example.com").await;
    assert_eq!(status, StatusCode::OK, "{checkout}");
    assert_eq!(checkout["amount"], 6500);
    assert_eq!(checkout["currency"], "EUR");
    assert!(checkout["redirect_url"].as_str().unwrap().starts_with("/mockpay/ps_"));
    let order_id = checkout["order_id"].as_str().unwrap();

    let order = http.order(order_id).await;
    assert_eq!(order["status"], "PENDING");
    let inventory = http.inventory().await;
    assert_eq!(class(&inventory, "A")["active_holds"], 1);
    assert_eq!(class(&inventory, "A")["available"], 9);
    assert_eq!(inventory["goodies"]["active_holds"], 1);

    // The MockPay page exists for this session, and its button pays.
    let page = http.request(Method::GET, checkout["redirect_url"].as_str().unwrap(), &[], vec![]).await.unwrap();
    assert_eq!(page.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&page.body).contains("MockPay"));
    let reply = http.emit(&psid_of(&checkout), "succeeded").await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.headers["location"], format!("/demo/success?order_id={order_id}"));

    let order = http.order(order_id).await;
    assert_eq!(order["status"], "PAID");
    assert_eq!(order["cls"], "A");
    assert_eq!(order["qty"], 1);
    assert_eq!(order["amount"], 6500);
    assert_eq!(order["got_goodie"], true);
    let code = order["ticket_code"].as_str().unwrap();
    assert!(code.starts_with("TCK-") && code.len() == 14, "{code}");
    assert!(order["paid_at"].as_str().unwrap().ends_with('Z'));
    // "Cancel" after paying (a second tab, the back button) changes nothing, and MockPay's
    // redirect follows the order, not the button.
    let reply = http.emit(&psid_of(&checkout), "canceled").await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.headers["location"], format!("/demo/success?order_id={order_id}"));
    assert_eq!(http.order(order_id).await["status"], "PAID");
    let not_a_form = http
        .request(Method::POST, &format!("/mockpay/{}/emit", psid_of(&checkout)), &[], b"t=failed".to_vec())
        .await
        .unwrap();
    assert_eq!(not_a_form.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let inventory = http.inventory().await;
    assert_eq!(class(&inventory, "A")["sold"], 1);
    assert_eq!(class(&inventory, "A")["active_holds"], 0);
    assert_eq!(class(&inventory, "A")["available"], 9);
    assert_eq!(inventory["goodies"]["used"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_canceled_payments_release_the_holds() {
    let server = Server::start(config(10, 100, 300)).await;
    let http = &server.http;
    for (button, status) in [("failed", "FAILED"), ("canceled", "CANCELED")] {
        let (_, checkout) = http.checkout("B", "fan@example.com").await;
        let order_id = checkout["order_id"].as_str().unwrap();
        let reply = http.emit(&psid_of(&checkout), button).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER);
        assert_eq!(reply.headers["location"], format!("/demo/checkout?status={button}&order_id={order_id}"));
        let order = http.order(order_id).await;
        assert_eq!(order["status"], status);
        assert_eq!(order["ticket_code"], Value::Null);
        assert_eq!(order["got_goodie"], false);
    }
    let inventory = http.inventory().await;
    assert_eq!(class(&inventory, "B")["sold"], 0);
    assert_eq!(class(&inventory, "B")["active_holds"], 0);
    assert_eq!(class(&inventory, "B")["available"], 10);
    assert_eq!(inventory["goodies"]["active_holds"], 0);
    assert_eq!(inventory["goodies"]["used"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_replays_and_concurrent_deliveries_make_one_order() {
    let server = Server::start(config(10, 100, 300)).await;
    let http = server.http.clone();
    let (_, checkout) = http.checkout("A", "fan@example.com").await;
    let body = event("succeeded", &checkout, &unique_key("evt"));

    let mut deliveries = Vec::new();
    for _ in 0..10 {
        let (http, body) = (http.clone(), body.clone());
        deliveries.push(tokio::spawn(async move { http.webhook(&body).await }));
    }
    let mut applied = 0;
    for delivery in deliveries {
        let (status, reply) = delivery.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{reply}");
        assert_eq!(reply["ok"], true);
        if reply["idempotent"] == true {
            continue;
        }
        assert_eq!(reply["order_status"], "PAID");
        applied += 1;
    }
    assert_eq!(applied, 1, "exactly one delivery applies the event");
    let first_code = http.order(checkout["order_id"].as_str().unwrap()).await["ticket_code"].clone();

    // A later replay is recognised as such and changes nothing.
    let (status, reply) = http.webhook(&body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(reply, json!({"ok": true, "idempotent": true}));
    let order = http.order(checkout["order_id"].as_str().unwrap()).await;
    assert_eq!(order["status"], "PAID");
    assert_eq!(order["ticket_code"], first_code);
    assert_eq!(http.inventory().await["A"]["sold"], 1);
    server.assert_audit_passes().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_is_never_lost_and_otherwise_the_first_outcome_is_final() {
    let server = Server::start(config(10, 100, 300)).await;
    let http = &server.http;

    // succeeded, then failed: stays PAID and the ticket stays sold.
    let (_, paid) = http.checkout("A", "a@example.com").await;
    assert_eq!(http.webhook(&event("succeeded", &paid, &unique_key("e"))).await.1["order_status"], "PAID");
    let (status, reply) = http.webhook(&event("failed", &paid, &unique_key("e"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(reply["order_status"], "PAID");

    // failed, then succeeded: the money was taken after all, so the ticket is booked late.
    let (_, failed) = http.checkout("A", "b@example.com").await;
    assert_eq!(http.webhook(&event("failed", &failed, &unique_key("e"))).await.1["order_status"], "FAILED");
    let (_, reply) = http.webhook(&event("succeeded", &failed, &unique_key("e"))).await;
    assert_eq!(reply["order_status"], "PAID", "{reply}");
    let late = http.order(failed["order_id"].as_str().unwrap()).await;
    assert!(late["ticket_code"].as_str().is_some_and(|c| c.starts_with("TCK-")), "{late}");
    // failed, then canceled: the first answer stands.
    let (_, canceled) = http.checkout("A", "c@example.com").await;
    assert_eq!(http.webhook(&event("failed", &canceled, &unique_key("e"))).await.1["order_status"], "FAILED");
    assert_eq!(http.webhook(&event("canceled", &canceled, &unique_key("e"))).await.1["order_status"], "FAILED");

    // succeeded and canceled racing: whichever comes first, the success stands.
    let (_, raced) = http.checkout("A", "d@example.com").await;
    let (succeeded, canceled_event) =
        (event("succeeded", &raced, &unique_key("e")), event("canceled", &raced, &unique_key("e")));
    let (a, b) = tokio::join!(http.webhook(&succeeded), http.webhook(&canceled_event));
    assert_eq!((a.0, b.0), (StatusCode::OK, StatusCode::OK));
    assert_eq!(http.order(raced["order_id"].as_str().unwrap()).await["status"], "PAID");

    let inventory = http.inventory().await;
    assert_eq!(inventory["A"]["sold"], 3);
    assert_eq!(inventory["A"]["active_holds"], 0);
    let metrics = http.request(hyper::Method::GET, "/metrics", &[], vec![]).await.unwrap();
    let late_successes = String::from_utf8_lossy(&metrics.body)
        .lines()
        .any(|l| l == "tigerfans_late_successes_total 1" || l == "tigerfans_late_successes_total 2");
    assert!(late_successes, "late successes are counted");
    server.assert_audit_passes().await;
}

/// A success after a failure when the class has sold out meanwhile: paid, no ticket, to refund.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_success_for_a_sold_out_class_is_paid_unfulfilled() {
    let server = Server::start(config(1, 100, 300)).await;
    let http = &server.http;
    let (_, failed) = http.checkout("A", "first@example.com").await;
    assert_eq!(http.webhook(&event("failed", &failed, &unique_key("e"))).await.1["order_status"], "FAILED");
    let (_, bought) = http.checkout("A", "second@example.com").await;
    assert_eq!(http.webhook(&event("succeeded", &bought, &unique_key("e"))).await.1["order_status"], "PAID");
    let key = unique_key("late");
    let (_, reply) = http.webhook(&event("succeeded", &failed, &key)).await;
    assert_eq!(reply["order_status"], "PAID_UNFULFILLED", "{reply}");
    let order = http.order(failed["order_id"].as_str().unwrap()).await;
    assert_eq!((order["status"].as_str(), order["ticket_code"].as_str()), (Some("PAID_UNFULFILLED"), None));
    // The provider's retry of it changes nothing; one ticket sold, never two.
    assert_eq!(http.webhook(&event("succeeded", &failed, &key)).await.1, json!({"ok": true, "idempotent": true}));
    assert_eq!(http.inventory().await["A"]["sold"], 1);
    server.assert_audit_passes().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_webhooks_get_4xx_and_change_nothing() {
    let server = Server::start(config(10, 100, 300)).await;
    let http = &server.http;
    let (_, checkout) = http.checkout("A", "fan@example.com").await;
    let order_id = checkout["order_id"].as_str().unwrap();
    let good = event("succeeded", &checkout, &unique_key("e"));

    // Wrong secret, missing signature, garbage signature.
    let (status, reply) = http.try_webhook(&good, "not-the-secret").await.unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(reply["detail"], "invalid signature");
    let unsigned = http
        .request(Method::POST, "/payments/webhook", &[("content-type", "application/json")], good.clone())
        .await
        .unwrap();
    assert_eq!(unsigned.status, StatusCode::BAD_REQUEST);
    let garbage = http
        .request(
            Method::POST,
            "/payments/webhook",
            &[("content-type", "application/json"), ("x-mockpay-signature", "AAAA")],
            good.clone(),
        )
        .await
        .unwrap();
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST);

    // Correctly signed, but not valid JSON / not an event / deeply nested.
    for body in [b"{not json".to_vec(), b"{\"type\": \"payment.refunded\"}".to_vec(), vec![b'['; 10_000]] {
        let (status, reply) = http.webhook(&body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
        assert!(reply["detail"].as_str().unwrap().contains("invalid"), "{reply}");
    }

    // Unknown session.
    let mut unknown: Value = serde_json::from_slice(&good).unwrap();
    unknown["payment_session_id"] = json!("ps_00000000000000000000000000000000");
    let (status, reply) = http.webhook(&serde_json::to_vec(&unknown).unwrap()).await;
    assert_eq!((status, &reply["detail"]), (StatusCode::NOT_FOUND, &json!("unknown payment session")), "{reply}");

    // Another order's session with this order's id, and this session with another order's id:
    // the order is read by its id, so the session it names must be the event's.
    let (_, other) = http.checkout("A", "other@example.com").await;
    for (field, value) in [("payment_session_id", json!(psid_of(&other))), ("order_id", other["order_id"].clone())] {
        let mut crossed: Value = serde_json::from_slice(&good).unwrap();
        crossed[field] = value;
        let (status, reply) = http.webhook(&serde_json::to_vec(&crossed).unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {reply}");
        assert_eq!(reply["detail"], "order_id does not match the payment session", "{field}: {reply}");
    }

    // Amount or currency not matching the session.
    for (field, value) in [("amount", json!(1)), ("currency", json!("USD")), ("order_id", json!("nope"))] {
        let mut wrong: Value = serde_json::from_slice(&good).unwrap();
        wrong[field] = value;
        let (status, reply) = http.webhook(&serde_json::to_vec(&wrong).unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {reply}");
    }

    // Oversized body: 413 before anything is parsed.
    let huge = vec![b' '; 65 * 1024];
    let (status, reply) = Http::new(&server.base).try_webhook(&huge, SECRET).await.unwrap();
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{reply}");

    // Nothing changed: the order is still pending, its hold still held.
    assert_eq!(http.order(order_id).await["status"], "PENDING");
    let inventory = http.inventory().await;
    assert_eq!(inventory["A"]["active_holds"], 2);
    assert_eq!(inventory["A"]["sold"], 0);

    // And the good event still works afterwards.
    assert_eq!(http.webhook(&good).await.1["order_status"], "PAID");
    server.assert_audit_passes().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_checkouts_and_routes_get_clear_json_errors() {
    let server = Server::start(config(10, 100, 300)).await;
    let http = &server.http;
    for (body, why) in [
        (json!({"cls": "Z", "customer_email": "x@y.zz"}), "class"),
        (json!({"cls": "A", "customer_email": "not-an-email"}), "email"),
        (json!({"cls": "A"}), "JSON"),
        (json!({"cls": "A", "customer_email": "x@y.zz", "qty": 5}), "unknown field `qty`"),
        (json!(["A"]), "JSON"),
    ] {
        let (status, reply) = http.post_json("/api/checkout", &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {reply}");
        assert!(reply["detail"].as_str().unwrap().contains(why), "{reply}");
    }
    let json_type = [("content-type", "application/json; charset=utf-8")];
    let raw = http.request(Method::POST, "/api/checkout", &json_type, b"\xff\xfe".to_vec()).await.unwrap();
    assert_eq!(raw.status, StatusCode::BAD_REQUEST);
    // A body that is not declared JSON (a cross-site form, a client that forgot the header).
    let valid = br#"{"cls": "A", "customer_email": "x@y.zz"}"#.to_vec();
    for headers in
        [&[][..], &[("content-type", "text/plain")][..], &[("content-type", "application/x-www-form-urlencoded")][..]]
    {
        let reply = http.request(Method::POST, "/api/checkout", headers, valid.clone()).await.unwrap();
        assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{headers:?}");
        assert_eq!(reply.json()["detail"], "content-type must be application/json");
    }
    // The server answers 413 without reading the body and closes that connection, so this goes
    // over a client of its own rather than the shared keep-alive pool.
    let huge = Http::new(&server.base)
        .request(Method::POST, "/api/checkout", &json_type, vec![b'x'; 64 * 1024 + 1])
        .await
        .unwrap();
    assert_eq!(huge.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(huge.json()["detail"].is_string());

    let (status, reply) = http.get("/no/such/route").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(reply["detail"], "not found");
    let wrong_method = http.request(Method::GET, "/api/checkout", &[], vec![]).await.unwrap();
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.headers["allow"], "POST");
    assert!(wrong_method.json()["detail"].is_string());
    let wrong_method = http.request(Method::DELETE, "/api/inventory", &[], vec![]).await.unwrap();
    assert_eq!(wrong_method.headers["allow"], "GET, HEAD");
    // GETs that change state (the reference's accounting API) do not answer HEAD, which clients
    // send expecting no effect.
    let head = http.request(Method::HEAD, "/api/accounting/reserve", &[], vec![]).await.unwrap();
    assert_eq!(head.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(head.headers["allow"], "GET");
    let (status, _) = http.get("/api/orders/ffffffffffffffffffffffffffffffff").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = http.get("/mockpay/ps_unknown").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let bad_emit = http.emit("ps_unknown", "succeeded").await;
    assert_eq!(bad_emit.status, StatusCode::NOT_FOUND);

    // Nothing was held by any of that.
    assert_eq!(http.inventory().await["A"]["active_holds"], 0);

    // Pages and health.
    for page in ["/", "/demo/checkout", "/demo/success?order_id=x", "/static/style.css"] {
        let reply = http.request(Method::GET, page, &[], vec![]).await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{page}");
    }
    assert_eq!(http.get("/healthz").await.0, StatusCode::OK);
    let metrics = http.request(Method::GET, "/metrics", &[], vec![]).await.unwrap();
    assert!(String::from_utf8_lossy(&metrics.body).contains("tigerfans_tb_batch_transfers_count"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goodies_go_to_the_first_orders_only() {
    let server = Server::start(config(10, 2, 300)).await;
    let http = &server.http;
    let mut got = Vec::new();
    for i in 0..3 {
        let (_, checkout) = http.checkout("A", &format!("fan{i}@example.com")).await;
        http.webhook(&event("succeeded", &checkout, &unique_key("e"))).await;
        got.push(http.order(checkout["order_id"].as_str().unwrap()).await["got_goodie"].clone());
    }
    assert_eq!(got, vec![json!(true), json!(true), json!(false)]);
    let inventory = http.inventory().await;
    assert_eq!(inventory["goodies"]["used"], 2);
    assert_eq!(inventory["goodies"]["available"], 0);
    assert_eq!(inventory["A"]["sold"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounting_endpoints_reserve_and_commit() {
    let server = Server::start(config(10, 100, 300)).await;
    let http = &server.http;
    let (status, reserved) = http.get("/api/accounting/reserve").await;
    assert_eq!(status, StatusCode::OK, "{reserved}");
    let ticket = reserved["tb_transfer_id"].as_str().unwrap();
    let goodie = reserved["goodie_tb_transfer_id"].as_str().unwrap();
    assert!(ticket.parse::<u128>().is_ok() && goodie.parse::<u128>().is_ok());
    assert_eq!(http.inventory().await["A"]["active_holds"], 1);

    let path = format!("/api/accounting/commit?tb_transfer_id={ticket}&goodie_tb_transfer_id={goodie}");
    let (status, committed) = http.get(&path).await;
    assert_eq!(status, StatusCode::OK, "{committed}");
    assert_eq!(committed["ok"], true);
    // Committing twice is idempotent (the post id derives from the hold id).
    let (status, again) = http.get(&path).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["ticket"], "Exists");
    let inventory = http.inventory().await;
    assert_eq!(inventory["A"]["sold"], 1);
    assert_eq!(inventory["goodies"]["used"], 1);

    let (status, _) = http.get("/api/accounting/commit?tb_transfer_id=abc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = http.get("/api/accounting/commit?tb_transfer_id=12345").await;
    assert_eq!(status, StatusCode::CONFLICT);
}

//! Holds expire: an unpaid checkout ends EXPIRED and its ticket returns; a payment arriving
//! after the hold expired books immediately if a ticket is left, else it is PAID_UNFULFILLED.

use std::time::Duration;

use crate::common::*;
use hyper::StatusCode;

async fn wait_expired(http: &Http, order_id: &str) {
    eventually(Duration::from_secs(15), "order to expire", || async {
        (http.order(order_id).await["status"] == "EXPIRED").then_some(())
    })
    .await;
}

async fn wait_available(http: &Http, cls: &str, available: u64) {
    eventually(Duration::from_secs(15), "ticket back in inventory", || async {
        let inventory = http.inventory().await;
        (inventory[cls]["available"] == available && inventory[cls]["active_holds"] == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpaid_checkout_expires_and_a_late_payment_books_immediately() {
    let server = Server::start(config(1, 100, 2)).await;
    let http = &server.http;
    // One buyer pays at once; their order's expiry entry stays for the sweeper to pass over.
    let (_, paid) = http.checkout("B", "prompt@example.com").await;
    let (status, reply) = http.webhook(&event("succeeded", &paid, &unique_key("e"))).await;
    assert_eq!((status, reply["order_status"].as_str()), (StatusCode::OK, Some("PAID")), "{reply}");
    let (status, checkout) = http.checkout("A", "late@example.com").await;
    assert_eq!(status, StatusCode::OK);
    let order_id = checkout["order_id"].as_str().unwrap();
    assert_eq!(http.inventory().await["A"]["available"], 0);
    assert_eq!(http.checkout("A", "other@example.com").await.0, StatusCode::CONFLICT);

    wait_expired(http, order_id).await;
    wait_available(http, "A", 1).await;
    // The sweeper reached the paid order's entry first (it fell due first) and left it PAID.
    assert_eq!(http.order(paid["order_id"].as_str().unwrap()).await["status"], "PAID");
    assert_eq!(http.inventory().await["B"]["sold"], 1);
    let metrics = http.request(hyper::Method::GET, "/metrics", &[], vec![]).await.unwrap();
    let metrics = String::from_utf8_lossy(&metrics.body);
    assert!(metrics.lines().any(|l| l == "tigerfans_expired_total 1"), "only the unpaid order expired:\n{metrics}");

    // The payment arrives late; a ticket is free, so it is booked directly.
    let (status, reply) = http.webhook(&event("succeeded", &checkout, &unique_key("e"))).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["order_status"], "PAID");
    let order = http.order(order_id).await;
    assert_eq!(order["status"], "PAID");
    assert!(order["ticket_code"].as_str().unwrap().starts_with("TCK-"));
    assert_eq!(order["got_goodie"], false, "the goodie hold expired too");
    let inventory = http.inventory().await;
    assert_eq!(inventory["A"]["sold"], 1);
    assert_eq!(inventory["A"]["available"], 0);
    server.assert_audit_passes().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_payment_after_the_ticket_was_resold_is_paid_unfulfilled() {
    let server = Server::start(config(1, 100, 2)).await;
    let http = &server.http;
    let (_, first) = http.checkout("A", "first@example.com").await;
    let first_id = first["order_id"].as_str().unwrap();
    wait_expired(http, first_id).await;
    wait_available(http, "A", 1).await;

    // Someone else takes the last ticket, then the first buyer's payment arrives.
    let (status, second) = http.checkout("A", "second@example.com").await;
    assert_eq!(status, StatusCode::OK);
    let (status, reply) = http.webhook(&event("succeeded", &first, &unique_key("e"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(reply["order_status"], "PAID_UNFULFILLED");
    let order = http.order(first_id).await;
    assert_eq!(order["status"], "PAID_UNFULFILLED");
    assert_eq!(order["ticket_code"], serde_json::Value::Null);

    // The second buyer still gets the ticket; nothing is oversold.
    let (_, reply) = http.webhook(&event("succeeded", &second, &unique_key("e"))).await;
    assert_eq!(reply["order_status"], "PAID");
    let inventory = http.inventory().await;
    assert_eq!(inventory["A"]["sold"], 1);
    assert_eq!(inventory["A"]["active_holds"], 0);

    // A retried late event gets the same answer (TigerBeetle remembers the failed booking).
    let (_, reply) = http.webhook(&event("succeeded", &first, &unique_key("e"))).await;
    assert_eq!(reply["order_status"], "PAID_UNFULFILLED");
    server.assert_audit_passes().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_expiry_succeeded_and_failed_racing_end_paid_with_balanced_books() {
    let server = Server::start(config(5, 100, 2)).await;
    let http = &server.http;
    let mut checkouts = Vec::new();
    for i in 0..5 {
        let (status, checkout) = http.checkout("A", &format!("race{i}@example.com")).await;
        assert_eq!(status, StatusCode::OK);
        checkouts.push(checkout);
    }
    for checkout in &checkouts {
        wait_expired(http, checkout["order_id"].as_str().unwrap()).await;
    }
    wait_available(http, "A", 5).await;
    // Each expired order gets a succeeded and a failed event at the same moment.
    let mut races = Vec::new();
    for checkout in &checkouts {
        let (a, b) = (event("succeeded", checkout, &unique_key("e")), event("failed", checkout, &unique_key("e")));
        let (h1, h2) = (http.clone(), http.clone());
        races.push(tokio::spawn(async move { h1.webhook(&a).await }));
        races.push(tokio::spawn(async move { h2.webhook(&b).await }));
    }
    for race in races {
        assert_eq!(race.await.unwrap().0, StatusCode::OK);
    }
    let mut paid = 0;
    for checkout in &checkouts {
        let status = http.order(checkout["order_id"].as_str().unwrap()).await["status"].clone();
        // Whichever came first, the success stands: booked late, a unit being left for each.
        assert_eq!(status, "PAID");
        paid += 1;
    }
    let inventory = http.inventory().await;
    assert_eq!(inventory["A"]["sold"], paid, "TigerBeetle sold exactly the PAID orders");
    server.assert_audit_passes().await;
}

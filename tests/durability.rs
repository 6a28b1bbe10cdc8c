//! Durability: kill -9 the server while checkouts and webhooks are being acknowledged, restart
//! it on the same data dir, and find everything that was acknowledged.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use hyper::StatusCode;
use serde_json::Value;

#[derive(Default)]
struct Acknowledged {
    /// Checkouts answered 200: (checkout reply, the webhook body sent for it, if any).
    checkouts: Vec<(Value, Option<Vec<u8>>)>,
    /// Webhooks answered 200 with a status: (order id, status).
    payments: Vec<(String, String)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_acknowledged() {
    let mut server = Server::start(config(1_000_000, 100, 300)).await;
    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    let mut workers = Vec::new();
    for worker in 0..32 {
        let http = server.http.clone();
        let acked = acked.clone();
        workers.push(tokio::spawn(async move {
            for i in 0.. {
                let Ok((StatusCode::OK, checkout)) = http.try_checkout("A", &format!("w{worker}@example.com")).await
                else {
                    return; // the server is gone
                };
                let kind = ["succeeded", "failed", "canceled", "succeeded"][(worker + i) % 4];
                let body = event(kind, &checkout, &unique_key("e"));
                acked.lock().unwrap().checkouts.push((checkout.clone(), Some(body.clone())));
                match http.try_webhook(&body, SECRET).await {
                    Ok((StatusCode::OK, reply)) => {
                        let status = reply["order_status"].as_str().unwrap().to_string();
                        let order_id = checkout["order_id"].as_str().unwrap().to_string();
                        acked.lock().unwrap().payments.push((order_id, status));
                    }
                    _ => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill9();
    for worker in workers {
        worker.await.unwrap();
    }
    let acked = Arc::try_unwrap(acked).ok().unwrap().into_inner().unwrap();
    assert!(acked.checkouts.len() > 50, "load too light to mean anything: {}", acked.checkouts.len());
    println!("acknowledged before kill -9: {} checkouts, {} payments", acked.checkouts.len(), acked.payments.len());

    server.restart().await;
    let http = &server.http;

    // Every acknowledged checkout has its order and session; every acknowledged payment its status.
    for (checkout, _) in &acked.checkouts {
        let order = http.order(checkout["order_id"].as_str().unwrap()).await;
        assert!(order["status"].is_string());
        let (status, _) = http.get(&format!("/api/sessions/{}", psid_of(checkout))).await;
        assert_eq!(status, StatusCode::OK);
    }
    for (order_id, status) in &acked.payments {
        assert_eq!(&http.order(order_id).await["status"], status, "order {order_id}");
    }

    // The provider redelivers every event (it never saw some answers). Afterwards the store and
    // TigerBeetle agree: tickets sold = PAID orders, and no ticket is held by a settled order.
    let mut paid = 0;
    for (checkout, body) in &acked.checkouts {
        let (status, reply) = http.webhook(body.as_ref().unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        let order = http.order(checkout["order_id"].as_str().unwrap()).await;
        if order["status"] == "PAID" {
            paid += 1;
        }
        assert!(["PAID", "FAILED", "CANCELED"].contains(&order["status"].as_str().unwrap()), "{order}");
    }
    let inventory = http.inventory().await;
    assert_eq!(inventory["A"]["sold"], paid, "TigerBeetle's sold count equals the PAID orders");
}

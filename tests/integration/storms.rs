//! Webhook storms: a payment provider retries for days, in parallel, and out of order. Whatever
//! arrives, each order gets exactly one final state (PAID if any success arrived: money taken is
//! never dropped; else the first valid event's), forged or mismatched events change nothing, and
//! the ledger agrees with the store (audit).

use std::collections::HashMap;

use crate::common::*;
use hyper::StatusCode;
use serde_json::{json, Value};

fn outcome(kind: &str) -> &'static str {
    match kind {
        "succeeded" => "PAID",
        "failed" => "FAILED",
        "canceled" => "CANCELED",
        other => panic!("{other}"),
    }
}

/// Delivers every body concurrently; returns (status, reply) in the same order.
async fn deliver_all(http: &Http, bodies: Vec<Vec<u8>>) -> Vec<(StatusCode, Value)> {
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let http = http.clone();
            tokio::spawn(async move { http.webhook(&body).await })
        })
        .collect();
    let mut replies = Vec::with_capacity(tasks.len());
    for task in tasks {
        replies.push(task.await.unwrap());
    }
    replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storms_of_duplicates_and_contradictions_leave_one_final_state_per_order() {
    const ORDERS: usize = 40;
    let server = Server::start(config(1000, 10, 300)).await;
    let http = &server.http;
    let kinds = ["succeeded", "failed", "canceled"];

    let mut checkouts = Vec::new();
    for i in 0..ORDERS {
        let (status, checkout) = http.checkout("A", &format!("storm{i}@example.com")).await;
        assert_eq!(status, StatusCode::OK, "{checkout}");
        checkouts.push(checkout);
    }
    // Per order: one event ten times, a contradicting event five times, and a correctly signed
    // event whose amount does not match the session; all at once, all orders interleaved.
    let mut bodies = Vec::new();
    let mut owner = Vec::new();
    let mut kinds_of = Vec::new();
    for (i, checkout) in checkouts.iter().enumerate() {
        let (first, second) = (kinds[i % 3], kinds[(i + 1) % 3]);
        let (a, b) = (event(first, checkout, &unique_key("a")), event(second, checkout, &unique_key("b")));
        let mut forged: Value = serde_json::from_slice(&event("succeeded", checkout, &unique_key("f"))).unwrap();
        forged["amount"] = json!(1);
        for _ in 0..10 {
            bodies.push(a.clone());
            owner.push(i);
            kinds_of.push(Some(first));
        }
        for _ in 0..5 {
            bodies.push(b.clone());
            owner.push(i);
            kinds_of.push(Some(second));
        }
        bodies.push(serde_json::to_vec(&forged).unwrap());
        owner.push(i);
        kinds_of.push(None);
    }
    // Interleave deterministically so orders' storms overlap.
    let mut order: Vec<usize> = (0..bodies.len()).collect();
    order.sort_by_key(|&k| (k.wrapping_mul(2_654_435_761)) % 1_000_003);
    let shuffled: Vec<Vec<u8>> = order.iter().map(|&k| bodies[k].clone()).collect();
    let replies = deliver_all(http, shuffled).await;

    let mut applied: HashMap<usize, Vec<&str>> = HashMap::new();
    let mut reported: HashMap<usize, Vec<String>> = HashMap::new();
    for (&k, (status, reply)) in order.iter().zip(&replies) {
        let i = owner[k];
        match kinds_of[k] {
            None => {
                assert_eq!(*status, StatusCode::BAD_REQUEST, "{reply}");
                assert_eq!(reply["detail"], "amount or currency does not match the payment session");
            }
            Some(kind) => {
                assert_eq!(*status, StatusCode::OK, "{reply}");
                if reply["idempotent"] != true {
                    applied.entry(i).or_default().push(kind);
                    reported.entry(i).or_default().push(reply["order_status"].as_str().unwrap().to_string());
                }
            }
        }
    }
    let mut paid = 0;
    for (i, checkout) in checkouts.iter().enumerate() {
        let order = http.order(checkout["order_id"].as_str().unwrap()).await;
        let status = order["status"].as_str().unwrap().to_string();
        let events = &applied[&i];
        // Each distinct event is recorded once (its duplicates are replays): two events per order.
        assert_eq!(events.len(), 2, "order {i}: {events:?}");
        if events.contains(&"succeeded") {
            // A success wins whenever it came: before the other event, or after it (booked late).
            assert_eq!(status, "PAID", "order {i}: events {events:?}");
        } else {
            assert!(events.iter().any(|k| outcome(k) == status), "order {i} ended {status}, events {events:?}");
            // Every non-replay answer already told the final state: nothing flipped it afterwards.
            assert!(reported[&i].iter().all(|s| *s == status), "order {i}: answers {:?}, final {status}", reported[&i]);
        }
        paid += u64::from(status == "PAID");
    }
    let inventory = http.inventory().await;
    assert_eq!(inventory["A"]["sold"], paid);
    assert_eq!(inventory["A"]["active_holds"], 0);
    server.assert_audit_passes().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storms_after_expiry_and_for_unknown_sessions() {
    let server = Server::start(config(1000, 10, 1)).await;
    let http = &server.http;
    let mut checkouts = Vec::new();
    for i in 0..20 {
        let (status, checkout) = http.checkout("A", &format!("late{i}@example.com")).await;
        assert_eq!(status, StatusCode::OK, "{checkout}");
        checkouts.push(checkout);
    }
    // Let every hold expire and the sweeper mark the orders.
    for checkout in &checkouts {
        let order_id = checkout["order_id"].as_str().unwrap().to_string();
        eventually(std::time::Duration::from_secs(15), "expiry", || {
            let order_id = order_id.clone();
            async move { (http.order(&order_id).await["status"] == "EXPIRED").then_some(()) }
        })
        .await;
    }
    // Late succeeded and failed events race (5 copies each) per expired order, plus events for
    // sessions that never existed.
    let mut bodies = Vec::new();
    for checkout in &checkouts {
        let (s, f) = (event("succeeded", checkout, &unique_key("s")), event("failed", checkout, &unique_key("f")));
        for _ in 0..5 {
            bodies.push(s.clone());
            bodies.push(f.clone());
        }
        let mut unknown: Value = serde_json::from_slice(&s).unwrap();
        unknown["payment_session_id"] = json!(format!("ps_{}", unique_key("nope")));
        // Its own event id: a seen id is answered as a replay before the session is looked up.
        unknown["idempotency_key"] = json!(unique_key("u"));
        bodies.push(serde_json::to_vec(&unknown).unwrap());
    }
    let replies = deliver_all(http, bodies).await;
    let unknown = replies.iter().filter(|(s, _)| *s == StatusCode::NOT_FOUND).count();
    let odd: Vec<_> = replies.iter().filter(|(s, _)| *s != StatusCode::OK && *s != StatusCode::NOT_FOUND).collect();
    assert!(odd.is_empty(), "{odd:?}");
    assert_eq!(unknown, checkouts.len());

    let mut paid = 0;
    for checkout in &checkouts {
        let status = http.order(checkout["order_id"].as_str().unwrap()).await["status"].as_str().unwrap().to_string();
        // Whichever of the two came first, the success stands (capacity is plentiful).
        assert_eq!(status, "PAID");
        paid += 1;
    }
    // A late success books a ticket directly, so sold = PAID exactly.
    assert_eq!(http.inventory().await["A"]["sold"], paid);
    server.assert_audit_passes().await;
}

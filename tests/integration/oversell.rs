//! No overselling: many more buyers than tickets, paying concurrently with random outcomes.
//! TigerBeetle refuses every hold beyond capacity; the store and the ledger agree afterwards.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::common::*;
use hyper::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_50_with_500_concurrent_buyers_sells_exactly_50() {
    const CAPACITY: u64 = 50;
    const BUYERS: usize = 500;
    let server = Server::start(config(CAPACITY, 100, 300)).await;
    let sold_out = Arc::new(AtomicU64::new(0));
    let mut buyers = Vec::new();
    for buyer in 0..BUYERS {
        let http = server.http.clone();
        let sold_out = sold_out.clone();
        buyers.push(tokio::spawn(async move {
            // Each buyer keeps trying until it holds a paid ticket or the class is sold out;
            // roughly one payment in four fails, which returns the ticket to the pool.
            let mut orders = Vec::new();
            loop {
                let (status, checkout) = http.checkout("A", &format!("buyer{buyer}@example.com")).await;
                match status {
                    StatusCode::CONFLICT => {
                        assert_eq!(checkout["detail"], "sold out");
                        sold_out.fetch_add(1, Ordering::Relaxed);
                        return orders;
                    }
                    StatusCode::OK => {}
                    other => panic!("checkout answered {other}: {checkout}"),
                }
                let kind = if (buyer + orders.len()) % 4 == 0 { "failed" } else { "succeeded" };
                let (status, reply) = http.webhook(&event(kind, &checkout, &unique_key("e"))).await;
                assert_eq!(status, StatusCode::OK, "{reply}");
                let order_id = checkout["order_id"].as_str().unwrap().to_string();
                orders.push(order_id);
                if kind == "succeeded" {
                    return orders;
                }
            }
        }));
    }
    let mut all_orders = Vec::new();
    for buyer in buyers {
        all_orders.extend(buyer.await.unwrap());
    }

    let http = &server.http;
    let mut paid = 0;
    let mut goodies = 0;
    for order_id in &all_orders {
        let order = http.order(order_id).await;
        match order["status"].as_str().unwrap() {
            "PAID" => {
                paid += 1;
                if order["got_goodie"] == true {
                    goodies += 1;
                }
            }
            "FAILED" => {}
            other => panic!("order {order_id} ended {other}"),
        }
    }
    assert_eq!(paid, CAPACITY, "exactly the capacity is sold");
    assert!(sold_out.load(Ordering::Relaxed) >= (BUYERS as u64 - CAPACITY), "the rest were told: sold out");

    // TigerBeetle agrees with the store: sold = PAID, nothing left held (sold-out checkouts gave
    // their goodie holds back at once, failed payments voided theirs).
    let inventory = http.inventory().await;
    assert_eq!(inventory["A"]["sold"], paid);
    assert_eq!(inventory["A"]["active_holds"], 0);
    assert_eq!(inventory["A"]["available"], 0);
    assert_eq!(inventory["A"]["sold_out"], true);
    assert_eq!(inventory["goodies"]["used"], goodies);
    assert_eq!(inventory["goodies"]["active_holds"], 0);
    assert_eq!(goodies, CAPACITY, "all 50 paid orders are within the first 100 goodies");

    // The batcher really batched: fewer TigerBeetle calls than transfers.
    let calls = http.metric("tigerfans_tb_batch_transfers_count").await;
    let transfers = http.metric("tigerfans_tb_batch_transfers_sum").await;
    println!("TigerBeetle calls: {calls}, transfers: {transfers}, average batch {:.1}", transfers / calls);
    assert!(transfers > calls, "no batching: {calls} calls for {transfers} transfers");
    server.assert_audit_passes().await;
}

/// Issue 6's contention case: capacity 100, 5,000 checkouts at once, each paid, failed, canceled
/// or abandoned at random. Never more than 100 PAID; once the holds expire, exactly
/// capacity − PAID is available again, and the audit agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_100_with_5000_concurrent_checkouts_and_random_outcomes() {
    const CAPACITY: u64 = 100;
    const CHECKOUTS: usize = 5000;
    const HOLD_TIMEOUT_S: u32 = 3;
    // All 5,000 reach the ledger at once: the contention is the point, so the shop's bound on
    // checkouts in flight (which would shed most of them, tests/integration/overload.rs) is off.
    let args = ["--max-connections=8192", "--shop-in-flight-max=8192"];
    let server = Server::start_with_args(config(CAPACITY, 20, HOLD_TIMEOUT_S), &args).await;
    let start = Arc::new(tokio::sync::Barrier::new(CHECKOUTS));
    let mut tasks = Vec::new();
    for i in 0..CHECKOUTS {
        let http = server.http.clone();
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let (status, checkout) = http.checkout("A", &format!("rush{i}@example.com")).await;
            match status {
                StatusCode::OK => {}
                StatusCode::CONFLICT => return None,
                other => panic!("checkout answered {other}: {checkout}"),
            }
            // A cheap, reproducible "random" outcome per buyer.
            let kind = match (i.wrapping_mul(2_654_435_761)) % 4 {
                0 => "succeeded",
                1 => "failed",
                2 => "canceled",
                _ => return Some((checkout, "abandoned")),
            };
            let (status, reply) = http.webhook(&event(kind, &checkout, &unique_key("e"))).await;
            assert_eq!(status, StatusCode::OK, "{reply}");
            Some((checkout, kind))
        }));
    }
    let mut held = Vec::new();
    for task in tasks {
        if let Some(result) = task.await.unwrap() {
            held.push(result);
        }
    }
    let paid = held.iter().filter(|(_, kind)| *kind == "succeeded").count() as u64;
    println!("{} of {CHECKOUTS} checkouts held a ticket; {paid} paid", held.len());
    assert!(held.len() as u64 >= CAPACITY, "the first wave alone takes all {CAPACITY} tickets");
    assert!(paid <= CAPACITY);

    let http = &server.http;
    let inventory = http.inventory().await;
    assert_eq!(inventory["A"]["sold"], paid);
    assert!(inventory["A"]["sold"].as_u64().unwrap() + inventory["A"]["active_holds"].as_u64().unwrap() <= CAPACITY);

    // The abandoned holds expire: everything not PAID is back.
    let available = eventually(std::time::Duration::from_secs(30), "holds expire", || async {
        let inventory = http.inventory().await;
        (inventory["A"]["active_holds"] == 0).then(|| inventory["A"]["available"].as_u64().unwrap())
    })
    .await;
    assert_eq!(available, CAPACITY - paid);
    for (checkout, kind) in &held {
        let order = http.order(checkout["order_id"].as_str().unwrap()).await;
        let expected = match *kind {
            "succeeded" => "PAID",
            "failed" => "FAILED",
            "canceled" => "CANCELED",
            _ => "EXPIRED",
        };
        if *kind == "abandoned" {
            // The sweeper marks it within its interval once the hold is due.
            eventually(std::time::Duration::from_secs(10), "sweeper", || async {
                (http.order(checkout["order_id"].as_str().unwrap()).await["status"] == expected).then_some(())
            })
            .await;
        } else {
            assert_eq!(order["status"], expected, "{order}");
        }
    }
    server.assert_audit_passes().await;
}

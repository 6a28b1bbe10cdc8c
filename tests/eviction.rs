//! A replica keeps 64 client sessions and evicts the least recently used one when a new client
//! registers. This binary owns its replica (evicting clients on the shared one would break the
//! other tests' servers): the server's own client is evicted on purpose, and service must come
//! back by itself; live audits must not open a client each (70 of them evicted the server's).

mod common;

use std::time::{Duration, Instant};

use common::*;
use hyper::StatusCode;

/// Sessions a production replica keeps (TigerBeetle's `clients_max`), and a few more.
const NEW_CLIENTS: usize = 70;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_client_is_replaced_and_service_comes_back_by_itself() {
    let server = Server::start(config(1_000, 10, 300)).await;
    let (status, paid_later) = server.http.checkout("A", "before@example.com").await;
    assert_eq!(status, StatusCode::OK, "{paid_later}");

    // Other clients register while the server is idle: its session is the least recently used.
    // Each goes away after its request (its session stays registered; its connection does not:
    // a replica also bounds its connections, and the server's must stay).
    for _ in 0..NEW_CLIENTS {
        let ledger = tigerfans::ledger::Ledger::connect(0, replica_address()).unwrap();
        tokio::time::timeout(Duration::from_secs(30), ledger.ping())
            .await
            .expect("a new client registers")
            .expect("a new client's first request");
    }
    let evicted_at = Instant::now();
    let http = server.http.clone();
    eventually(Duration::from_secs(10), "a checkout after the server's client was evicted", || async {
        (http.checkout("A", "after@example.com").await.0 == StatusCode::OK).then_some(())
    })
    .await;
    println!("service back {:?} after the eviction", evicted_at.elapsed());
    let metrics = server.http.request(hyper::Method::GET, "/metrics", &[], vec![]).await.unwrap();
    let metrics = String::from_utf8_lossy(&metrics.body).to_string();
    let reconnects: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tigerfans_tb_client_reconnects "))
        .expect("reconnects in /metrics")
        .parse()
        .unwrap();
    assert!(reconnects >= 1, "the server replaced its evicted client: {reconnects}");
    let (status, reply) = server.http.webhook(&event("succeeded", &paid_later, &unique_key("e"))).await;
    assert_eq!((status, reply["order_status"].as_str()), (StatusCode::OK, Some("PAID")), "{reply}");

    // Many live audits reuse one client: none of them evicts the server's.
    for _ in 0..NEW_CLIENTS {
        let (ok, report) = server.audit().await;
        assert!(ok, "{report}");
    }
    let (status, health) = server.http.get("/healthz").await;
    assert_eq!(status, StatusCode::OK, "{health}");
    let (status, _) = server.http.checkout("A", "last@example.com").await;
    assert_eq!(status, StatusCode::OK);
}

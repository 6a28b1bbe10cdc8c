//! Durability: kill -9 the server while checkouts and webhooks are being acknowledged, restart
//! it on the same data dir, and find everything that was acknowledged; then the audit passes.

use std::time::Duration;

use crate::common::load::{verify_nothing_lost, Load, Record};
use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_acknowledged() {
    let mut server = Server::start(config(1_000_000, 100, 300)).await;
    let load = Load::start(&server.http, 32, SECRET);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill9();
    let record = load.stop().await;
    assert!(record.checkouts.len() > 50, "load too light to mean anything: {}", record.checkouts.len());
    println!("acknowledged before kill -9: {} checkouts, {} payments", record.checkouts.len(), record.payments.len());
    server.restart().await;
    verify_nothing_lost(&server, &record, SECRET).await;
}

/// Five crashes in a row under mixed load (checkouts, payments, failures, cancels, abandoned
/// carts), each restart on the same data dir. After every restart, everything acknowledged in
/// every cycle so far is there and the audit passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_kill_9_cycles_under_mixed_load() {
    let mut server = Server::start(config(1_000_000, 50, 300)).await;
    let mut all = Record::default();
    for cycle in 0..5 {
        let load = Load::start(&server.http, 24, SECRET);
        // Vary the moment of the crash so it lands in different phases of the group commit.
        tokio::time::sleep(Duration::from_millis(700 + 150 * cycle)).await;
        server.kill9();
        let record = load.stop().await;
        println!(
            "cycle {cycle}: {} checkouts and {} payments acknowledged before kill -9; answers {:?}, {} cut off",
            record.checkouts.len(),
            record.payments.len(),
            record.statuses,
            record.transport_errors
        );
        assert!(record.checkouts.len() > 20, "cycle {cycle}: load too light: {}", record.checkouts.len());
        all.extend(record);
        server.restart().await;
        verify_nothing_lost(&server, &all, SECRET).await;
    }
}

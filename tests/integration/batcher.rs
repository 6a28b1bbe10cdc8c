//! The auto-batcher against a real replica: many concurrent submitters, each with its own mix of
//! valid and invalid transfers, each gets exactly its own results back.

use std::sync::Arc;

use crate::common::*;
use tigerbeetle_unofficial as tb;
use tigerfans::accounting::{self, Resource, TransferResult};
use tigerfans::batcher::{Batcher, BatcherOptions};
use tigerfans::config::Config;
use tigerfans::ledger::Ledger;
use tigerfans::metrics::Metrics;

/// Batches no larger than the shared replica's profile accepts (with `TIGERFANS_TB_PROFILE=small`
/// a default-sized batch is refused whole: that is what the profile's batch size is for).
fn test_batcher_options() -> BatcherOptions {
    BatcherOptions { batch_transfers_max: test_tb_profile().batch_transfers_max(), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submitters_get_their_own_results_from_tigerbeetle() {
    let mut config = Config { ledger: next_ledger(), ..Default::default() };
    config.classes.truncate(1);
    config.classes[0].capacity = 1_000_000;
    let ledger = Arc::new(Ledger::connect(0, replica_address()).unwrap());
    ledger.ensure_event(&config).await.unwrap();
    let metrics = Arc::new(Metrics::default());
    let batcher = Batcher::spawn(ledger.clone(), test_batcher_options(), metrics.clone());
    let class = Resource::class("A");
    let l = config.ledger;

    const SUBMITTERS: u64 = 400;
    let mut tasks = Vec::new();
    for submitter in 0..SUBMITTERS {
        let batcher = batcher.clone();
        tasks.push(tokio::spawn(async move {
            // A deterministic mix per submitter: valid holds, holds on a missing account, posts
            // of holds that do not exist, at positions that differ between submitters.
            let len = (submitter % 6 + 1) as usize;
            let mut transfers = Vec::new();
            let mut expected = Vec::new();
            for position in 0..len {
                let id = tb::id();
                match (submitter as usize + position * 7) % 3 {
                    0 => {
                        transfers.push(accounting::hold(l, class, id, id, 300));
                        expected.push(TransferResult::Created);
                    }
                    1 => {
                        transfers.push(accounting::post(id)); // no such pending transfer
                        expected.push(TransferResult::PendingNotFound);
                    }
                    _ => {
                        let mut t = accounting::hold(l, class, id, id, 300);
                        t.set_debit_account_id(u128::MAX - 1 - u128::from(submitter)); // no such account
                        transfers.push(t);
                        expected.push(TransferResult::Other(21)); // debit_account_not_found
                    }
                }
            }
            let results = batcher.submit(transfers).await.unwrap();
            assert_eq!(results, expected, "submitter {submitter}");
            expected.iter().filter(|r| **r == TransferResult::Created).count() as u64
        }));
    }
    let mut created = 0;
    for task in tasks {
        created += task.await.unwrap();
    }
    let (classes, _) = ledger.inventory(&config).await.unwrap();
    assert_eq!(classes[0].active_holds, created, "TigerBeetle holds exactly the valid transfers");
    let calls = metrics.tb_batch_transfers.count();
    let transfers = metrics.tb_batch_transfers.sum();
    println!("{transfers} transfers in {calls} calls");
    assert!(calls < SUBMITTERS, "submissions were batched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn funding_is_idempotent_and_raises_only_the_difference() {
    let mut config = Config { ledger: next_ledger(), ..Default::default() };
    config.classes.truncate(1);
    config.classes[0].capacity = 50;
    config.goodie_limit = 10;
    let ledger = Ledger::connect(0, replica_address()).unwrap();
    ledger.ensure_event(&config).await.unwrap();
    ledger.ensure_event(&config).await.unwrap(); // a restart: nothing funded twice
    let (classes, goodies) = ledger.inventory(&config).await.unwrap();
    assert_eq!(classes[0].capacity, 50);
    assert_eq!(goodies.capacity, 10);

    config.classes[0].capacity = 80;
    ledger.ensure_event(&config).await.unwrap();
    ledger.ensure_event(&config).await.unwrap();
    assert_eq!(ledger.inventory(&config).await.unwrap().0[0].capacity, 80);

    config.classes[0].capacity = 60; // lowering is refused (logged), not applied
    ledger.ensure_event(&config).await.unwrap();
    assert_eq!(ledger.inventory(&config).await.unwrap().0[0].capacity, 80);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bare_accounting_path_cannot_post_a_customers_hold() {
    let mut config = Config { ledger: next_ledger(), ..Default::default() };
    config.classes.truncate(1);
    let ledger = Arc::new(Ledger::connect(0, replica_address()).unwrap());
    ledger.ensure_event(&config).await.unwrap();
    let batcher = Batcher::spawn(ledger.clone(), test_batcher_options(), Arc::new(Metrics::default()));
    let class = Resource::class("A");
    let (customer, bench) = (tigerfans::ids::new_id(), tigerfans::ids::new_id());
    let results = batcher
        .submit(vec![
            accounting::hold(config.ledger, class, customer, customer, 300),
            accounting::bench_hold(config.ledger, class, bench, 300),
        ])
        .await
        .unwrap();
    assert_eq!(results, vec![TransferResult::Created, TransferResult::Created]);
    // 30 = pending_transfer_has_different_code: /api/accounting/commit cannot sell a customer's hold.
    let results = batcher.submit(vec![accounting::bench_post(customer), accounting::bench_post(bench)]).await.unwrap();
    assert_eq!(results, vec![TransferResult::Other(30), TransferResult::Created]);
    // The customer's own payment still posts it.
    assert_eq!(batcher.submit(vec![accounting::post(customer)]).await.unwrap(), vec![TransferResult::Created]);
}

//! The store's own tests: durability through the redo log and checkpoints, the flusher, the
//! write timeout, and payment idempotency.

use std::time::Instant;

use super::schema::redo_path;
use super::*;
use crate::order::ORDER_EVENT_KEYS_MAX;

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tigerfans-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn order_and_session(n: u32) -> (Session, Order) {
    let (psid, order_id) = (format!("ps_{n:04}"), format!("{n:032x}"));
    let session = Session {
        psid,
        order_id,
        cls: "A".into(),
        email: "a@b.co".into(),
        amount: 1,
        currency: "EUR".into(),
        ticket_hold_id: 1,
        goodie_hold_id: None,
        created_at_ms: 1,
        expires_at_ms: 1000,
    };
    let order = Order::pending(&session);
    (session, order)
}

async fn pay(store: &Store, order_id: &str, key: &str, status: OrderStatus) -> Result<PaymentRecorded, StoreError> {
    store.record_payment(order_id, key, Some(Outcome::without_ticket(status)), None).await
}

/// Copies the store's two files as a kill -9 would leave them (from the page cache, so not a
/// power loss): redb as of its last durable commit, the redo log with every acknowledged
/// group since.
fn crash_copy(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap();
    std::fs::copy(redo_path(from), redo_path(to)).unwrap();
}

/// How many orders a store's redb file holds by itself, without its redo log: what
/// checkpoints made durable.
fn orders_without_the_log(path: &Path) -> usize {
    let bare = path.with_file_name("bare.redb");
    std::fs::copy(path, &bare).unwrap();
    let _ = std::fs::remove_file(redo_path(&bare));
    let (store, writer) = Store::open(&bare, Default::default()).unwrap();
    let orders = store.audit_snapshot().unwrap().orders.len();
    drop(store);
    writer.join();
    orders
}

#[tokio::test]
async fn acknowledged_writes_survive_a_crash_before_any_checkpoint_through_the_redo_log() {
    let dir = scratch("redo");
    let path = dir.join("s.redb");
    let (store, writer) = Store::open(&path, Default::default()).unwrap();
    // One of every kind of write: checkouts, a payment, an expiry, a bench result.
    let mut ids = Vec::new();
    for n in 0..3 {
        let (mut session, mut order) = order_and_session(n);
        session.expires_at_ms = 1_000 + u64::from(n);
        order.email = format!("fan{n}@example.com");
        store.checkout(&session, &order).await.unwrap();
        ids.push(order.order_id);
    }
    pay(&store, &ids[0], "e0", OrderStatus::Paid).await.unwrap();
    let due = store.due_expiries(2_000, 10).unwrap();
    assert_eq!(due.len(), 3);
    assert_eq!(store.expire(due, 2_000).await, Ok(2));
    let report = b"{\"phases\":[]}".to_vec();
    assert_eq!(store.save_bench_result("run-1".into(), report.clone()).await, Ok(true));
    let before = store.audit_snapshot().unwrap();

    // The crash: the files as they are now (the log is far from a checkpoint).
    let crashed = dir.join("crashed.redb");
    crash_copy(&path, &crashed);
    // Without its redo log the database has none of it: the log is what made it durable.
    assert_eq!(orders_without_the_log(&path), 0, "redb alone is checkpointed only");

    let (replayed, replayed_writer) = Store::open(&crashed, Default::default()).unwrap();
    let after = replayed.audit_snapshot().unwrap();
    let orders = |s: &AuditSnapshot| s.orders.iter().map(|o| serde_json::to_string(o).unwrap()).collect::<Vec<_>>();
    let sessions = |s: &AuditSnapshot| s.sessions.iter().map(|o| serde_json::to_string(o).unwrap()).collect::<Vec<_>>();
    assert_eq!(orders(&after), orders(&before));
    assert_eq!(sessions(&after), sessions(&before));
    assert_eq!(after.expiry, before.expiry);
    assert_eq!(after.counts, before.counts);
    assert!(after.counts.contains(&(OrderStatus::Expired, 2)) && after.counts.contains(&(OrderStatus::Paid, 1)));
    assert_eq!(replayed.recent_expired(10).unwrap().len(), 2);
    assert_eq!(replayed.bench_results().unwrap(), vec![("run-1".to_string(), report)]);
    // Replayed and checkpointed: new writes follow, and a second crash replays only those.
    let (session, order) = order_and_session(9);
    replayed.checkout(&session, &order).await.unwrap();
    let again = dir.join("again.redb");
    crash_copy(&crashed, &again);
    let (second, second_writer) = Store::open(&again, Default::default()).unwrap();
    assert_eq!(second.audit_snapshot().unwrap().orders.len(), 4);
    assert_eq!(second.order(&order.order_id).unwrap().unwrap().status, OrderStatus::Pending);

    // A clean stop checkpoints: redb alone then holds everything.
    drop((store, replayed, second));
    writer.join();
    replayed_writer.join();
    second_writer.join();
    let stopped = dir.join("stopped.redb");
    std::fs::copy(&path, &stopped).unwrap();
    let (stopped_store, stopped_writer) = Store::open(&stopped, Default::default()).unwrap();
    assert_eq!(stopped_store.audit_snapshot().unwrap().orders.len(), 3);
    drop(stopped_store);
    stopped_writer.join();
    // Reopened with its own log, whose records the database already holds: none is applied
    // again, and the store takes new writes after them.
    let (reopened, reopened_writer) = Store::open(&path, Default::default()).unwrap();
    assert_eq!(reopened.audit_snapshot().unwrap().counts, before.counts);
    let (session, order) = order_and_session(10);
    reopened.checkout(&session, &order).await.unwrap();
    assert_eq!(reopened.audit_snapshot().unwrap().orders.len(), 4);
    drop(reopened);
    reopened_writer.join();

    // A log that does not belong to the database is refused, not half applied.
    let fresh = dir.join("fresh.redb");
    std::fs::copy(redo_path(&again), redo_path(&fresh)).unwrap();
    let refused = Store::open(&fresh, Default::default()).err().expect("a foreign log is refused");
    assert!(format!("{refused:#}").contains("do not belong together"), "{refused:#}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn checkpoints_make_redb_durable_and_a_crash_after_them_replays_only_the_rest() {
    let dir = scratch("checkpoints");
    let path = dir.join("s.redb");
    let metrics = Arc::new(Metrics::default());
    // A checkpoint once the log holds 2 KiB: every few checkouts here (23 of them, a
    // prime, so that the last few are in the log only, whatever a record's exact size).
    let (store, writer) = Store::open_with_checkpoints(&path, metrics.clone(), CACHE_BYTES, 2048).unwrap();
    let log_bytes = std::fs::metadata(redo_path(&path)).unwrap().len();
    assert_eq!(log_bytes, 2048 + 2048 / 8, "the log is given a generation's size up front");
    for n in 0..23 {
        let (session, order) = order_and_session(n);
        store.checkout(&session, &order).await.unwrap();
    }
    let checkpoints = metrics.store_checkpoint_us.count();
    assert!(checkpoints >= 3, "{checkpoints} checkpoints");
    let before = store.audit_snapshot().unwrap();
    let crashed = dir.join("crashed.redb");
    crash_copy(&path, &crashed);
    let checkpointed = orders_without_the_log(&path);
    assert!((10..23).contains(&checkpointed), "redb alone holds what was checkpointed: {checkpointed}");
    let (replayed, replayed_writer) = Store::open(&crashed, Default::default()).unwrap();
    let after = replayed.audit_snapshot().unwrap();
    assert_eq!(after.orders.len(), 23);
    assert_eq!((after.expiry, after.counts), (before.expiry, before.counts));
    drop((store, replayed));
    writer.join();
    replayed_writer.join();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The background flusher syncs the redb file after commits, not while the store is idle, and
/// the writer's end stops it (a flusher that ignored its stop would hang `join`).
#[tokio::test]
async fn the_flusher_syncs_the_redb_file_after_commits_only() {
    let dir = scratch("flusher");
    let metrics = Arc::new(Metrics::default());
    let (store, writer) = Store::open(&dir.join("s.redb"), metrics.clone()).unwrap();
    let interval = std::time::Duration::from_millis(flusher::FLUSH_INTERVAL_MS);
    tokio::time::sleep(interval * 3).await;
    assert_eq!(metrics.store_flush_us.count(), 0, "an idle store is not synced");
    let (session, order) = order_and_session(1);
    store.checkout(&session, &order).await.unwrap();
    let deadline = Instant::now() + interval * 10;
    while metrics.store_flush_us.count() == 0 {
        assert!(Instant::now() < deadline, "no background sync after a commit");
        tokio::time::sleep(interval / 10).await;
    }
    let synced = metrics.store_flush_us.count();
    tokio::time::sleep(interval * 3).await;
    assert_eq!(metrics.store_flush_us.count(), synced, "no new commit, no new sync");
    drop(store);
    writer.join();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
#[allow(clippy::await_holding_lock)] // holding the lock across the write is the point
async fn a_write_not_committed_in_time_answers_timeout_and_may_still_commit() {
    let dir = scratch("timeout");
    let (store, writer) = Store::open(&dir.join("s.redb"), Default::default()).unwrap();
    let impatient = Store { write_timeout_ms: 50, ..store.clone() };
    let (session, order) = order_and_session(3);
    // The stand-in for a disk that stalls: the writer waits for the database handle, which
    // this test holds (as a reopen after a disk error would).
    let stalled = store.db.write().unwrap();
    assert_eq!(impatient.checkout(&session, &order).await, Err(StoreError::Timeout(50)));
    assert!(StoreError::Timeout(50).to_string().contains("outcome unknown"));
    drop(stalled);
    // The write stayed queued: its outcome was unknown, not failed.
    store.flush().await.unwrap();
    assert_eq!(store.order(&order.order_id).unwrap().unwrap().status, OrderStatus::Pending);
    drop((store, impatient));
    writer.join();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn first_outcome_wins_replays_are_recognised_and_event_ids_stay_bounded() {
    let dir = scratch("events");
    let (store, writer) = Store::open(&dir.join("s.redb"), Default::default()).unwrap();
    let (session, order) = order_and_session(7);
    let id = order.order_id.clone();
    assert_eq!(store.checkout(&session, &order).await, Ok(()));
    assert_eq!(pay(&store, &id, "e0", OrderStatus::Paid).await, Ok(PaymentRecorded::Order(OrderStatus::Paid)));
    assert_eq!(pay(&store, &id, "e0", OrderStatus::Paid).await, Ok(PaymentRecorded::Replay));
    // A later contradicting event is recorded but changes nothing.
    assert_eq!(pay(&store, &id, "e1", OrderStatus::Failed).await, Ok(PaymentRecorded::Order(OrderStatus::Paid)));
    for i in 2..40 {
        pay(&store, &id, &format!("e{i}"), OrderStatus::Failed).await.unwrap();
    }
    let stored = store.order(&id).unwrap().unwrap();
    assert_eq!(stored.status, OrderStatus::Paid);
    assert_eq!(stored.event_keys.len(), ORDER_EVENT_KEYS_MAX, "a storm cannot grow an order without bound");
    assert_eq!(stored.event_keys.last().unwrap(), "e39");
    assert_eq!(pay(&store, &id, "e39", OrderStatus::Failed).await, Ok(PaymentRecorded::Replay));
    // The counts followed the one real change; the expiry entry waits for the sweeper.
    let snapshot = store.audit_snapshot().unwrap();
    assert_eq!(snapshot.expiry, std::slice::from_ref(&id));
    assert!(snapshot.counts.contains(&(OrderStatus::Paid, 1)) && snapshot.counts.contains(&(OrderStatus::Pending, 0)));
    assert_eq!(pay(&store, "nope", "e", OrderStatus::Paid).await, Ok(PaymentRecorded::NotFound));

    // The handler-prepared fast path, and its fallback when the order changed underneath.
    let (session, order) = order_and_session(8);
    let id = order.order_id.clone();
    store.checkout(&session, &order).await.unwrap();
    let record = serde_json::to_vec(&order).unwrap();
    let stale = order.prepare_payment(b"not the record".to_vec(), "s1", None);
    let write = |key: &'static str, prepared: PreparedOrder, status: OrderStatus| {
        store.record_payment(&id, key, Some(Outcome::without_ticket(status)), Some(prepared))
    };
    let outcome = Outcome::without_ticket(OrderStatus::Canceled);
    let fresh = order.prepare_payment(record, "p1", Some(&outcome));
    assert_eq!(fresh.changed, Some((OrderStatus::Pending, OrderStatus::Canceled)));
    assert_eq!(write("p1", fresh, OrderStatus::Canceled).await, Ok(PaymentRecorded::Order(OrderStatus::Canceled)));
    // Stale bytes: the writer decodes the current order and applies the event itself: a failure
    // after a cancel changes nothing...
    assert_eq!(write("s1", stale, OrderStatus::Failed).await, Ok(PaymentRecorded::Order(OrderStatus::Canceled)));
    let stored = store.order(&id).unwrap().unwrap();
    assert_eq!((stored.status, stored.event_keys.clone()), (OrderStatus::Canceled, vec!["p1".into(), "s1".into()]));
    let counts = store.audit_snapshot().unwrap().counts;
    assert!(counts.contains(&(OrderStatus::Canceled, 1)) && counts.contains(&(OrderStatus::Pending, 0)));
    // ... and a success after it (booked late by the handler) is never dropped.
    let late =
        Outcome { status: OrderStatus::PaidUnfulfilled, paid_at_ms: Some(5), ticket_code: None, got_goodie: false };
    let recorded = store.record_payment(&id, "l1", Some(late), None).await;
    assert_eq!(recorded, Ok(PaymentRecorded::Order(OrderStatus::PaidUnfulfilled)));
    drop(store);
    writer.join();
    let _ = std::fs::remove_dir_all(&dir);
}

fn expired_log_len(store: &Store) -> u64 {
    use redb::ReadableTableMetadata;
    let tx = store.db().unwrap().begin_read().unwrap();
    tx.open_table(super::schema::EXPIRED_LOG).unwrap().len().unwrap()
}

/// A session and its order made at `created_ms`, with a session id carrying that time as
/// `ids::new_psid` does.
fn made_at(n: u64, created_ms: u64) -> (Session, Order) {
    let (mut session, _) = order_and_session(0);
    session.psid = format!("{}{n:032x}", super::apply::psid_floor(created_ms));
    session.order_id = format!("{:032x}", (u128::from(created_ms) << 80) | u128::from(n));
    session.created_at_ms = created_ms;
    session.expires_at_ms = created_ms + 1_000;
    let order = Order::pending(&session);
    (session, order)
}

#[tokio::test]
async fn retention_deletes_old_sessions_and_expiry_log_entries_and_keeps_every_order() {
    let dir = scratch("retention");
    let path = dir.join("s.redb");
    let (store, writer) = Store::open(&path, Default::default()).unwrap();
    let made: Vec<(Session, Order)> = (0..40).map(|n| made_at(n, 1_000 + n * 1_000)).collect();
    for (session, order) in &made {
        store.checkout(session, order).await.unwrap();
    }
    // Half of them expire at 30 s, the rest at 70 s: the expiry log says when.
    // Holds end a second after they are made: 20 are due by 21 s.
    let due = store.due_expiries(21_000, 100).unwrap();
    assert_eq!(store.expire(due, 30_000).await, Ok(20));
    let due = store.due_expiries(u64::MAX - 1, 100).unwrap();
    assert_eq!(store.expire(due, 70_000).await, Ok(20));
    // At 100 s, keeping 60 s: sessions made before 40 s and expiries logged before 40 s go.
    assert_eq!(store.prune(100_000, 60_000, 60_000).await, Ok((39, 20)));
    assert_eq!(store.prune(100_000, 60_000, 60_000).await, Ok((0, 0)), "nothing left to prune");
    let kept = |s: &AuditSnapshot| s.sessions.iter().map(|s| s.psid.clone()).collect::<Vec<_>>();
    let snapshot = store.audit_snapshot().unwrap();
    assert_eq!(kept(&snapshot), [made[39].0.psid.clone()]);
    assert_eq!(snapshot.orders.len(), 40, "orders are kept for good");
    assert!(snapshot.counts.contains(&(OrderStatus::Expired, 40)));
    assert_eq!(store.recent_expired(100).unwrap().len(), 20);
    // The deletions are in the redo log like every change: a crash replays them.
    let crashed = dir.join("crashed.redb");
    crash_copy(&path, &crashed);
    let (replayed, replayed_writer) = Store::open(&crashed, Default::default()).unwrap();
    assert_eq!(kept(&replayed.audit_snapshot().unwrap()), kept(&snapshot));
    assert_eq!(replayed.recent_expired(100).unwrap().len(), 20);
    drop((store, replayed));
    writer.join();
    replayed_writer.join();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A long-running appliance's store: orders over `days` days (set TIGERFANS_RETENTION_ORDERS for
/// a larger run), every one expired, pruned as the sweeper does. Sessions and the expiry log stay
/// within their retention however many orders there were; the orders stay. Prints the figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_bounds_sessions_and_the_expiry_log_at_scale() {
    let orders: u64 = std::env::var("TIGERFANS_RETENTION_ORDERS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let days = 10;
    let day_ms = 24 * 60 * 60 * 1000;
    let step_ms = days * day_ms / orders;
    let dir = scratch("retention-scale");
    let path = dir.join("s.redb");
    let (store, writer) = Store::open(&path, Default::default()).unwrap();
    let started = Instant::now();
    for chunk in (0..orders).collect::<Vec<_>>().chunks(4096) {
        let writes = chunk.iter().map(|&n| {
            let store = store.clone();
            let (session, order) = made_at(n, 1 + n * step_ms);
            tokio::spawn(async move { store.checkout(&session, &order).await })
        });
        for write in writes.collect::<Vec<_>>() {
            write.await.unwrap().unwrap();
        }
    }
    let now_ms = 1 + orders * step_ms;
    let mut expired = 0;
    loop {
        // Every hold, the last ones too (they end a second after they were made).
        let due = store.due_expiries(u64::MAX - 1, 4096).unwrap();
        if due.is_empty() {
            break;
        }
        // Each expires a second after it was made; the log says so, as the sweeper's would.
        let at = due[0].0 + 1;
        expired += store.expire(due, at).await.unwrap();
    }
    assert_eq!(expired as u64, orders);
    let mut pruned = (0, 0);
    loop {
        let (sessions, logged) = store.prune(now_ms, SESSION_RETENTION_MS, EXPIRED_LOG_RETENTION_MS).await.unwrap();
        pruned = (pruned.0 + sessions, pruned.1 + logged);
        if sessions.max(logged) < PRUNE_BATCH_MAX {
            break;
        }
    }
    let snapshot = store.audit_snapshot().unwrap();
    let per_day = orders / days;
    println!(
        "retention: {orders} orders over {days} days in {:?}: {} sessions and {} expiry log entries kept \
         (pruned {} and {}), {} orders; redb file {} MiB",
        started.elapsed(),
        snapshot.sessions.len(),
        expired_log_len(&store),
        pruned.0,
        pruned.1,
        snapshot.orders.len(),
        std::fs::metadata(&path).unwrap().len() >> 20
    );
    assert_eq!(snapshot.orders.len() as u64, orders);
    assert!(snapshot.sessions.len() as u64 <= 2 * per_day + 1, "two days of sessions: {}", snapshot.sessions.len());
    assert!(pruned.0 as u64 >= orders - 2 * per_day - 1);
    assert!(pruned.1 as u64 >= orders - per_day - 1, "one day of expiries kept");
    assert!(expired_log_len(&store) <= per_day + 1, "{}", expired_log_len(&store));
    drop(store);
    writer.join();
    let _ = std::fs::remove_dir_all(&dir);
}

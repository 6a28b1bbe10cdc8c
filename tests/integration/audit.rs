//! `tigerfans audit`: passes on books that agree, fails (exit 1) with the order ids when the store
//! and the ledger disagree, both on a running server (admin endpoint) and on a stopped data dir.

use crate::common::*;
use hyper::StatusCode;
use serde_json::Value;
use tigerfans::order::{OrderStatus, Outcome};
use tigerfans::store::Store;

fn finding<'a>(report: &'a Value, check: &str) -> Option<&'a Value> {
    report["mismatches"].as_array().unwrap().iter().find(|f| f["check"] == check)
}

#[tokio::test]
async fn audit_passes_on_agreeing_books_and_names_the_orders_that_disagree() {
    let mut server = Server::start(config(10, 3, 300)).await;
    let http = &server.http;
    let mut checkouts = Vec::new();
    for i in 0..6 {
        let (status, checkout) = http.checkout("A", &format!("fan{i}@example.com")).await;
        assert_eq!(status, StatusCode::OK, "{checkout}");
        checkouts.push(checkout);
    }
    for (checkout, kind) in checkouts.iter().zip(["succeeded", "succeeded", "failed", "canceled"]) {
        let (status, reply) = http.webhook(&event(kind, checkout, &unique_key("evt"))).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
    }
    // Two orders stay PENDING with live holds.

    // Without a session the endpoint is closed.
    assert_eq!(http.get("/api/admin/audit").await.0, StatusCode::UNAUTHORIZED);

    let report = server.assert_audit_passes().await;
    let class_a = &report["resources"][0];
    assert_eq!(class_a["resource"], "class A");
    assert_eq!((class_a["sold_ledger"].as_u64(), class_a["sold_orders"].as_u64()), (Some(2), Some(2)));
    assert_eq!((class_a["held_ledger"].as_u64(), class_a["held_orders"].as_u64()), (Some(2), Some(2)));
    let goodies = &report["resources"][2];
    assert_eq!(goodies["sold_ledger"].as_u64(), Some(2), "the first two orders paid and kept their goodies");
    assert_eq!(report["order_counts"]["PAID"].as_u64(), Some(2));

    // The same books offline, from the stopped data dir.
    assert!(server.terminate().success());
    let (ok, offline) = server.audit_offline().await;
    assert!(ok, "{offline}");
    assert_eq!(offline["live"], false);
    assert_eq!(offline["resources"][0]["sold_ledger"].as_u64(), Some(2));

    // Now make the store lie: a PENDING order marked PAID without its hold being posted.
    let tampered = checkouts[4]["order_id"].as_str().unwrap().to_string();
    {
        let (store, writer) =
            Store::open(&server.data_dir.join("tigerfans.redb"), Default::default()).expect("opening the store");
        assert!(store.session(&psid_of(&checkouts[4])).unwrap().is_some());
        let outcome = Outcome {
            status: OrderStatus::Paid,
            paid_at_ms: Some(1),
            ticket_code: Some("TCK-TAMPERED".into()),
            got_goodie: false,
        };
        store.record_payment(&tampered, "tampered", Some(outcome), None).await.expect("tampering");
        drop(store);
        writer.join();
    }
    let (ok, report) = server.audit_offline().await;
    assert!(!ok, "a PAID order with no unit sold must fail the audit: {report}");
    let paid_not_sold = finding(&report, "paid_not_sold").unwrap_or_else(|| panic!("{report}"));
    assert_eq!(paid_not_sold["ids"][0], tampered.as_str());
    assert!(finding(&report, "sold").is_some(), "totals disagree too: {report}");

    // And live, through the admin endpoint.
    server.restart().await;
    let (ok, report) = server.audit().await;
    assert!(!ok);
    assert_eq!(finding(&report, "paid_not_sold").unwrap()["ids"][0], tampered.as_str());
}

#[tokio::test]
async fn audit_refuses_a_data_dir_without_a_store() {
    let dir = scratch_dir("audit-empty");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tigerfans"))
        .args(["audit", "--tb-addresses", replica_address()])
        .arg(format!("--data-dir={}", dir.display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "an audit that could not be made is not a mismatch: {stderr}");
    assert!(stderr.contains("no store at"), "{stderr}");
    assert!(!dir.join("tigerfans.redb").exists(), "an audit must not create a store");
}

/// On a running server under load, requests between TigerBeetle and the store are in flight,
/// not mismatches: the live audit passes while checkouts and payments keep coming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_audit_under_load_passes() {
    use crate::common::load::{verify_nothing_lost, Load};
    let server = Server::start(config(1_000_000, 50, 300)).await;
    let load = Load::start(&server.http, 16, SECRET);
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    for _ in 0..3 {
        let (ok, report) = server.audit().await;
        assert!(ok, "live audit under load failed:\n{}", serde_json::to_string_pretty(&report).unwrap());
    }
    let record = load.stop().await;
    assert!(record.checkouts.len() > 100, "load too light: {}", record.checkouts.len());
    verify_nothing_lost(&server, &record, SECRET).await;
}

/// The live audit runs inside the serving appliance: it reads at most a bounded number of orders
/// and transfers into memory, and says how to audit a larger event instead.
#[tokio::test]
async fn a_live_audit_beyond_its_memory_bound_is_refused_and_the_offline_audit_still_reads_it() {
    let mut server = Server::start_with_args(config(100, 10, 300), &["--live-audit-orders-max=3"]).await;
    for i in 0..4 {
        assert_eq!(server.http.checkout("A", &format!("big{i}@example.com")).await.0, StatusCode::OK);
    }
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tigerfans"));
    command
        .args(["audit", "--json", "--base", &server.base])
        .arg("--password-file")
        .arg(server.data_dir.join("admin-password"));
    let output = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "could not be made, not a mismatch: {stderr}");
    assert!(
        stderr.contains("4 orders: more than this audit reads (3)") && stderr.contains("audit --data-dir"),
        "{stderr}"
    );
    assert!(server.terminate().success());
    let (ok, report) = server.audit_offline().await;
    assert!(ok, "{report}");
    assert_eq!(report["orders"], 4);
}

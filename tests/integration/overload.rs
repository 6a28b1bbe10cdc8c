//! The on-sale rush, short and small: a server whose shop takes 8 checkouts in flight, rushed by
//! 96 connections as fast as they go. What it must do is checked, not how fast: it sheds what it
//! cannot take at once (503 with the detail and Retry-After, never a timeout or a dropped
//! connection), payments for tickets already held go through during the rush, memory stays put,
//! it serves normally the moment the rush passes, and nothing it acknowledged is lost (the
//! audit). The figures of the full-size rush: docs/benchmarks.md, "The rush".

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use hyper::StatusCode;
use serde_json::Value;

const IN_FLIGHT_MAX: u64 = 8;
const BUSY: &str = "HTTP 503 the shop is busy (8 checkouts in progress): try again in a moment";

fn bench_command(server: &Server, name: &str, args: &[&str]) -> (Command, std::path::PathBuf) {
    let json = server.data_dir.join(format!("{name}.json"));
    let mut command = Command::new(env!("CARGO_BIN_EXE_tigerfans"));
    command.args(["bench", "--base", &server.base, "--cls", "A"]).args(args).arg("--json").arg(&json);
    (command, json)
}

fn phase_of(json: &std::path::Path) -> Value {
    let report: Value = serde_json::from_slice(&std::fs::read(json).expect("bench wrote its report")).unwrap();
    report["phases"][0].clone()
}

/// Checkouts of our own into the rush until one is shed: its answer, and how many got through.
async fn one_shed_answer(server: &Server) -> (Reply, u64) {
    let body = br#"{"cls":"A","customer_email":"probe@example.com"}"#.to_vec();
    let headers = [("content-type", "application/json")];
    for through in 0..1_000 {
        let reply = server.http.request(hyper::Method::POST, "/api/checkout", &headers, body.clone()).await.unwrap();
        if reply.status != StatusCode::OK {
            return (reply, through);
        }
    }
    panic!("1,000 checkouts into the rush and none shed");
}

#[tokio::test]
async fn a_rush_is_shed_at_once_payments_still_go_through_and_nothing_is_lost() {
    let limit = IN_FLIGHT_MAX.to_string();
    let server = Server::start_with_args(config(1_000_000, 10, 300), &["--shop-in-flight-max", &limit]).await;
    // Customers who checked out before the rush; they pay during it.
    let mut held = Vec::new();
    for i in 0..40 {
        let (status, checkout) = server.http.checkout("A", &format!("early{i}@example.com")).await;
        assert_eq!(status, StatusCode::OK, "{checkout}");
        held.push(checkout);
    }
    let rss_before = server.http.metric("process_resident_memory_bytes").await;

    let (mut rush, rush_json) = bench_command(
        &server,
        "rush",
        &["--phase", "checkout", "--total", "10000000", "--duration", "6", "--concurrency", "96"],
    );
    let rush = tokio::task::spawn_blocking(move || rush.output().expect("running the rush"));
    eventually(Duration::from_secs(20), "the rush to be shed", || async {
        (server.http.metric("tigerfans_shed_total").await > 0.0).then_some(())
    })
    .await;
    let (shed, probes_through) = one_shed_answer(&server).await;
    assert_eq!(shed.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(shed.headers.get("retry-after").map(|v| v.to_str().unwrap()), Some("1"));
    assert_eq!(format!("HTTP 503 {}", shed.json()["detail"].as_str().unwrap()), BUSY);
    // Payments have a bound of their own: one at a time is never shed, whatever checkouts do.
    for (i, checkout) in held.iter().enumerate() {
        let kind = if i % 2 == 0 { "succeeded" } else { "failed" };
        let (status, answer) = server.http.webhook(&event(kind, checkout, &unique_key("rush-pay"))).await;
        assert_eq!(status, StatusCode::OK, "a payment during the rush: {answer}");
    }
    let shed_while_paying = server.http.metric("tigerfans_shed_total").await;
    let rush = rush.await.unwrap();
    assert!(rush.status.success(), "{}", String::from_utf8_lossy(&rush.stderr));
    let rush = phase_of(&rush_json);
    let shed_total = server.http.metric("tigerfans_shed_total").await;
    assert!(shed_total > shed_while_paying, "the rush went on while the payments were made");

    // Shed, not queued or dropped: every refusal is the busy answer, counted by the server too.
    let errors = rush["errors"].as_object().unwrap();
    assert_eq!(errors.keys().collect::<Vec<_>>(), [BUSY], "{rush}");
    assert_eq!(errors[BUSY].as_f64().unwrap() + 1.0, shed_total, "the rush's and the probe's: {rush}");
    let ok = rush["ok"].as_u64().unwrap();
    assert!(ok > 0, "{rush}");
    let rss_after = server.http.metric("process_resident_memory_bytes").await;
    assert!(rss_after < rss_before + 64.0 * 1024.0 * 1024.0, "RSS {rss_before} -> {rss_after}");

    // The moment it passes, a load within the bound is served whole.
    let started = Instant::now();
    let (mut after, after_json) =
        bench_command(&server, "after", &["--phase", "checkout", "--total", "400", "--concurrency", "8"]);
    let output = tokio::task::spawn_blocking(move || after.output().unwrap()).await.unwrap();
    assert!(output.status.success());
    let after = phase_of(&after_json);
    assert_eq!((after["ok"].as_u64(), &after["errors"]), (Some(400), &serde_json::json!({})), "{after}");
    eprintln!(
        "rush: {ok} checkouts, {shed_total} shed, RSS {:.0} -> {:.0} MiB; then 400 in {:?}",
        rss_before / 1048576.0,
        rss_after / 1048576.0,
        started.elapsed()
    );

    // Every acknowledged checkout is an order, every shed one is not, and the books agree.
    let audit = server.assert_audit_passes().await;
    let orders: u64 = audit["order_counts"].as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(orders, 40 + ok + probes_through + 400, "{audit}");
    assert_eq!(audit["order_counts"]["PAID"].as_u64(), Some(20), "{audit}");
}

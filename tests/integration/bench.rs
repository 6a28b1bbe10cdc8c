//! `tigerfans bench` against a real server, through the generator's own HTTP client: every phase
//! runs to its total, the server's figures come back from /metrics, refusals are counted by kind,
//! and what the load bought shows in the audit. (How the client frames responses and reuses
//! connections is tested against a scripted server in `src/http_client.rs`.)

use std::process::Command;

use crate::common::*;
use serde_json::Value;

/// Runs `tigerfans bench` against `server` and returns its `--json` report.
async fn bench(server: &Server, name: &str, args: &[&str]) -> Value {
    let json = server.data_dir.join(format!("{name}.json"));
    let mut command = Command::new(env!("CARGO_BIN_EXE_tigerfans"));
    command.args(["bench", "--base", &server.base]).args(args).arg("--json").arg(&json);
    let output = tokio::task::spawn_blocking(move || command.output().expect("running tigerfans bench")).await.unwrap();
    assert!(output.status.success(), "bench failed ({}):\n{}", output.status, String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&std::fs::read(&json).expect("bench wrote its report")).unwrap()
}

fn phase<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phase"] == name)
        .unwrap_or_else(|| panic!("no {name} phase"))
}

#[tokio::test]
async fn every_phase_runs_to_its_total_and_the_books_agree() {
    let server = Server::start(config(100_000, 10, 300)).await;
    let args = ["--phase", "all", "--total", "400", "--concurrency", "16", "--secret", SECRET, "--cls", "A"];
    let report = bench(&server, "all", &args).await;

    let names: Vec<&str> = report["phases"].as_array().unwrap().iter().map(|p| p["phase"].as_str().unwrap()).collect();
    assert_eq!(names, ["checkout", "webhook", "reserve", "commit", "flow"]);
    for name in names {
        let p = phase(&report, name);
        assert_eq!((p["total"].as_u64(), p["ok"].as_u64()), (Some(400), Some(400)), "{name}: {p}");
        assert_eq!(p["errors"], serde_json::json!({}), "{name}");
        assert!(p["throughput"].as_f64().unwrap() > 0.0, "{name}");
        let (p50, p99, max) =
            (p["p50_ms"].as_f64().unwrap(), p["p99_ms"].as_f64().unwrap(), p["max_ms"].as_f64().unwrap());
        assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{name}: {p50} {p99} {max}");
        // Read from /metrics before and after the phase (a second connection, the probe's).
        assert!(p["tb_batch_avg"].as_f64().unwrap() >= 1.0, "{name}: {p}");
        assert!(p["server_rss_bytes"].as_f64().unwrap() > 0.0, "{name}");
    }
    for name in ["checkout", "webhook", "flow"] {
        assert!(phase(&report, name)["store_commit_avg"].as_f64().unwrap() >= 1.0, "{name}");
    }

    // 400 checkouts paid or failed by webhook, 400 more through MockPay; 400 benchmark holds
    // posted by the commit phase. The audit reconciles all of it with the ledger.
    let audit = server.assert_audit_passes().await;
    let orders: u64 = audit["order_counts"].as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(orders, 800, "{audit}");
    assert_eq!(audit["order_counts"]["PENDING"].as_u64().unwrap_or(0), 0, "every order is final: {audit}");
    let class_a = &audit["resources"][0];
    assert_eq!(class_a["resource"], "class A");
    assert_eq!(class_a["sold_bench"].as_u64(), Some(400), "{audit}");
}

#[tokio::test]
async fn refused_operations_are_counted_by_kind() {
    let server = Server::start(config(1_000, 3, 300)).await;
    let args =
        ["--phase", "webhook", "--total", "40", "--concurrency", "4", "--secret", "not-the-secret", "--cls", "A"];
    let report = bench(&server, "wrong-secret", &args).await;
    assert_eq!(phase(&report, "checkout")["ok"].as_u64(), Some(40));
    let webhook = phase(&report, "webhook");
    assert_eq!(webhook["ok"].as_u64(), Some(0), "{webhook}");
    assert_eq!(webhook["errors"], serde_json::json!({"HTTP 400 invalid signature": 40}), "{webhook}");

    // A sold-out class: the first 5 reserves get the tickets, the rest a 409 with its detail.
    let server = Server::start(config(5, 0, 300)).await;
    let report =
        bench(&server, "sold-out", &["--phase", "reserve", "--total", "12", "--concurrency", "3", "--cls", "B"]).await;
    let reserve = phase(&report, "reserve");
    assert_eq!(reserve["ok"].as_u64(), Some(5), "{reserve}");
    assert_eq!(reserve["errors"], serde_json::json!({"HTTP 409 sold out": 7}), "{reserve}");
}

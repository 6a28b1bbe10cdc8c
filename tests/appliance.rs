//! Appliance mode: tigerfans formats and supervises its own replica. The replica is restarted
//! when it dies, dies when tigerfans is killed, and stops cleanly on SIGTERM.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use hyper::StatusCode;

/// Children of `pid`, from /proc.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else { continue };
        // Field 4 (after the parenthesised command) is the parent pid.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let ppid: u32 = after.split(' ').nth(1).unwrap().parse().unwrap();
        if ppid == pid {
            out.push(child);
        }
    }
    out
}

fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat[stat.rfind(')').unwrap() + 2..].starts_with('Z'),
        Err(_) => false,
    }
}

fn replica_of(server: &Server) -> u32 {
    let kids = children(server.pid());
    assert_eq!(kids.len(), 1, "one replica child, found {kids:?}");
    kids[0]
}

fn wait_dead(pid: u32, timeout: Duration) {
    let started = Instant::now();
    while is_alive(pid) {
        assert!(started.elapsed() < timeout, "process {pid} still alive after {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The webhook secret an appliance without one configured generated in its data dir.
fn generated_secret(data_dir: &Path) -> String {
    let secret = std::fs::read_to_string(data_dir.join("webhook-secret")).expect("a generated webhook secret");
    secret.trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appliance_supervises_its_replica() {
    let data_dir = scratch_dir("appliance");
    let args = vec![
        "serve".to_string(),
        format!("--data-dir={}", data_dir.display()),
        format!("--tigerbeetle-bin={}", tigerbeetle_bin().display()),
        "--tb-cache-grid=128MiB".to_string(),
        // The supervisor waits at least 250 ms before restarting a replica, so a request sent
        // right after the kill cannot be answered within 100 ms: it must get a 503.
        "--tb-timeout-ms=100".to_string(),
    ];
    let mut server = Server::start_with(data_dir.clone(), args).await;
    assert!(Path::new(&data_dir.join("0_0.tigerbeetle")).is_file(), "data file formatted");
    // With a cluster id of its own, not TigerBeetle's testing cluster 0, kept beside the data.
    let cluster = std::fs::read_to_string(data_dir.join("tigerbeetle-cluster")).expect("the cluster id is kept");
    let cluster: u128 = cluster.trim().parse().unwrap();
    assert_ne!(cluster, 0);
    let replica_log = std::fs::read_to_string(data_dir.join("tigerbeetle.log")).unwrap();
    assert!(replica_log.contains(&cluster.to_string()), "the replica runs with cluster {cluster}");
    let (status, checkout) = server.http.checkout("A", "fan@example.com").await;
    assert_eq!(status, StatusCode::OK, "{checkout}");
    let order_id = checkout["order_id"].as_str().unwrap().to_string();
    // No webhook secret in the config: the appliance made its own, not a default anyone knows.
    let paid = event("succeeded", &checkout, &unique_key("e"));
    let (status, reply) = server.http.webhook_with_secret(&paid, "mockpay-demo-secret").await;
    assert_eq!((status, reply["detail"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid signature")));
    let (_, reply) = server.http.webhook_with_secret(&paid, &generated_secret(&data_dir)).await;
    assert_eq!(reply["order_status"], "PAID");

    // The replica dies: requests get a clear 503 instead of hanging, and service comes back.
    let replica = replica_of(&server);
    unsafe {
        libc::kill(replica as i32, libc::SIGKILL);
    }
    wait_dead(replica, Duration::from_secs(5));
    let (status, reply) = server.http.checkout("A", "during@example.com").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{reply}");
    assert!(reply["detail"].as_str().unwrap().contains("TigerBeetle"), "{reply}");
    let http = server.http.clone();
    eventually(Duration::from_secs(60), "checkouts after the replica restart", || async {
        (http.checkout("A", "after@example.com").await.0 == StatusCode::OK).then_some(())
    })
    .await;
    let restarted = replica_of(&server);
    assert_ne!(restarted, replica);

    // tigerfans is killed: its replica goes with it, and a restart finds the data file free.
    server.kill9();
    wait_dead(restarted, Duration::from_secs(5));
    server.restart().await;
    let order = server.http.order(&order_id).await;
    assert_eq!(order["status"], "PAID");
    assert_eq!(server.http.inventory().await["A"]["sold"], 1);

    // SIGTERM: a clean exit, and no replica left behind.
    let replica = replica_of(&server);
    let status = server.terminate();
    assert!(status.success(), "exit status {status}");
    wait_dead(replica, Duration::from_secs(5));
}

/// The supervised replica is SIGKILLed under mixed load: the supervisor restarts it, requests in
/// flight either complete or get 503 (never a 500, never a dropped connection), nothing
/// acknowledged is lost, and the audit passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_sigkill_under_load_loses_nothing() {
    use common::load::{verify_nothing_lost, Load};
    let data_dir = scratch_dir("appliance-load");
    let args = vec![
        "serve".to_string(),
        format!("--data-dir={}", data_dir.display()),
        format!("--tigerbeetle-bin={}", tigerbeetle_bin().display()),
        "--tb-cache-grid=128MiB".to_string(),
        "--tb-timeout-ms=2000".to_string(),
    ];
    let server = Server::start_with(data_dir.clone(), args).await;
    // The load's workers outlive this scope's borrows.
    let secret: &'static str = Box::leak(generated_secret(&data_dir).into_boxed_str());
    let load = Load::start(&server.http, 24, secret);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let replica = replica_of(&server);
    unsafe {
        libc::kill(replica as i32, libc::SIGKILL);
    }
    wait_dead(replica, Duration::from_secs(5));
    // Keep the load on until the restarted replica has answered for a while.
    let http = server.http.clone();
    eventually(Duration::from_secs(60), "a checkout after the replica restart", || async {
        (http.checkout("A", "after@example.com").await.0 == StatusCode::OK).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let record = load.stop().await;
    println!(
        "{} checkouts and {} payments acknowledged; answers {:?}; {} without an answer",
        record.checkouts.len(),
        record.payments.len(),
        record.statuses,
        record.transport_errors
    );
    assert_ne!(replica_of(&server), replica, "the supervisor started a new replica");
    assert_eq!(record.transport_errors, 0, "the server kept answering");
    for status in record.statuses.keys() {
        assert!([200, 503].contains(status), "answers: {:?}", record.statuses);
    }
    // Whether any request got a 503 depends on how fast the replica came back (usually within
    // the 2 s request timeout, so the requests just waited): both outcomes are allowed.
    verify_nothing_lost(&server, &record, secret).await;
}

/// The small memory profile (a 2 GB board): the replica runs with its lean flags and a 32 KiB
/// request limit, so the batcher must cut batches at 253 transfers; a rush of checkouts bigger
/// than one batch is all served, and the audit passes. The data dir then moves to the large
/// profile, and refuses to go back (a replica must not replay its journal with a smaller limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_small_profile_cuts_batches_and_a_data_dir_never_shrinks_its_profile() {
    let data_dir = scratch_dir("appliance-small");
    let args = |profile: &str| {
        vec![
            "serve".to_string(),
            format!("--data-dir={}", data_dir.display()),
            format!("--tigerbeetle-bin={}", tigerbeetle_bin().display()),
            format!("--tb-profile={profile}"),
            // All 600 checkouts below must reach the batcher at once, none shed (512 by default).
            "--shop-in-flight-max=2048".to_string(),
        ]
    };
    let mut server = Server::start_with(data_dir.clone(), args("small")).await;
    let replica = replica_of(&server);
    let cmdline = std::fs::read_to_string(format!("/proc/{replica}/cmdline")).unwrap().replace('\0', " ");
    assert!(cmdline.contains("--experimental --cache-grid=64MiB --limit-request=32KiB"), "{cmdline}");
    assert!(cmdline.contains("--cache-accounts=0"), "{cmdline}");
    // 600 checkouts at once: 1,200 transfers, more than four batches of the small profile's 253.
    let checkouts: Vec<_> = (0..600)
        .map(|i| {
            let http = server.http.clone();
            let cls = if i % 2 == 0 { "A" } else { "B" };
            tokio::spawn(async move { http.checkout(cls, &format!("f{i}@example.com")).await })
        })
        .collect();
    for checkout in checkouts {
        let (status, reply) = checkout.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{reply}");
    }
    let rss_mib = server.http.metric("tigerfans_replica_resident_memory_bytes").await / 1048576.0;
    let own_mib = server.http.metric("process_resident_memory_bytes").await / 1048576.0;
    eprintln!("small profile: replica RSS {rss_mib:.0} MiB, tigerfans {own_mib:.0} MiB");
    server.assert_audit_passes().await;
    assert!(server.terminate().success());

    // Larger is allowed; smaller again is refused at start, with the profile to use.
    server.args = args("large");
    server.restart().await;
    let cmdline = std::fs::read_to_string(format!("/proc/{}/cmdline", replica_of(&server))).unwrap();
    let flags: Vec<&str> =
        cmdline.split('\0').filter(|a| a.starts_with("--") && !a.starts_with("--addresses")).collect();
    assert_eq!(flags, ["--cache-grid=256MiB"], "production mode, TigerBeetle's defaults");
    assert!(server.terminate().success());
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_tigerfans"))
        .args(args("small"))
        .arg(format!("--listen=127.0.0.1:{}", free_port()))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("use --tb-profile large"), "{stderr}");
}

//! The kiosk's own bench run (`/api/admin/bench/run`): the admin starts the built-in load
//! generator against the server itself, watches its per-second status, stops it; it is bounded,
//! one at a time, refused to other roles, and its result is stored beside uploaded ones. What
//! it buys is checked in the ledger: real orders and holds, no ticket sold.

use std::time::{Duration, Instant};

use crate::common::*;
use crate::door::{door_config, door_server, Staff};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

const RUN: &str = "/api/admin/bench/run";
const STOP: &str = "/api/admin/bench/run/stop";

async fn status(admin: &Staff) -> Value {
    let reply = admin.get(RUN).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.json()
}

/// Polls the run's status until `done` says so.
async fn until(admin: &Staff, what: &str, timeout: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let status = status(admin).await;
        if done(&status["run"]) {
            return status["run"].clone();
        }
        assert!(started.elapsed() < timeout, "timed out waiting for {what}: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn ended(admin: &Staff, timeout: Duration) -> Value {
    until(admin, "the run's end", timeout, |run| run["state"] != "running").await
}

async fn results(server: &Server) -> Value {
    let (status, listed) = server.http.get("/api/bench/results").await;
    assert_eq!(status, StatusCode::OK);
    listed
}

fn stored<'a>(listed: &'a Value, name: &str) -> &'a Value {
    let all = listed["results"].as_array().unwrap();
    all.iter().find(|r| r["name"] == name).unwrap_or_else(|| panic!("no result {name} in {listed}"))
}

fn class<'a>(inventory: &'a Value, cls: &str) -> &'a Value {
    &inventory[cls]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kiosk_runs_are_for_the_admin_and_their_limits_are_explicit() {
    let server = door_server(door_config(1_000)).await;
    let http = &server.http;
    // Without a session: 401, whatever the method.
    assert_eq!(http.get(RUN).await.0, StatusCode::UNAUTHORIZED);
    let body = json!({"phase": "flow", "duration_s": 2, "concurrency": 4});
    assert_eq!(http.post_json(RUN, &body).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(http.post_json(STOP, &json!({})).await.0, StatusCode::UNAUTHORIZED);

    let admin = Staff::admin(&server).await;
    for role in ["door", "box_office"] {
        let other = admin.add_staff(&format!("kiosk-{role}").replace('_', "-"), role).await;
        assert_eq!(other.get(RUN).await.status, StatusCode::FORBIDDEN, "{role}");
        let (status, refused) = other.post(RUN, &body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{role}: {refused}");
        assert!(refused["detail"].as_str().unwrap().contains("admin"), "{refused}");
        assert_eq!(other.post(STOP, &json!({})).await.0, StatusCode::FORBIDDEN, "{role}");
    }

    let first = status(&admin).await;
    assert_eq!(first["run"], Value::Null, "no run yet: {first}");
    assert_eq!(first["limits"]["duration_s_max"], 120);
    assert_eq!(first["limits"]["concurrency_max"], 256);
    assert_eq!(first["limits"]["phases"], json!(["checkout", "webhook", "flow"]));
    assert_eq!(first["limits"]["cls"], "B");
    assert_eq!(first["reference"]["reservations_per_s"], 977.0);

    let bad = [
        json!({"phase": "reserve", "duration_s": 2, "concurrency": 4}),
        json!({"phase": "flow", "duration_s": 0, "concurrency": 4}),
        json!({"phase": "flow", "duration_s": 121, "concurrency": 4}),
        json!({"phase": "flow", "duration_s": 2.5, "concurrency": 4}),
        json!({"phase": "flow", "duration_s": 2, "concurrency": 0}),
        json!({"phase": "flow", "duration_s": 2, "concurrency": 257}),
        json!({"phase": "flow", "duration_s": 2}),
        json!({"phase": "flow", "duration_s": 2, "concurrency": 4, "cls": "Z"}),
        json!({"phase": "flow", "duration_s": 2, "concurrency": 4, "rate": 10}),
        json!([1, 2]),
    ];
    for body in bad {
        let (status, refused) = admin.post(RUN, &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {refused}");
        assert!(refused["detail"].as_str().is_some_and(|d| !d.is_empty()), "{refused}");
    }
    // A staff JSON write: its CSRF token and its media type.
    let headers = [("cookie", admin.cookie.as_str()), ("content-type", "application/json")];
    let no_token = http.request(Method::POST, RUN, &headers, serde_json::to_vec(&body).unwrap()).await.unwrap();
    assert_eq!(no_token.status, StatusCode::FORBIDDEN, "{:?}", no_token.body);
    let headers = [("cookie", admin.cookie.as_str()), ("content-type", "text/plain"), ("x-csrf-token", &admin.csrf)];
    let text = http.request(Method::POST, RUN, &headers, serde_json::to_vec(&body).unwrap()).await.unwrap();
    assert_eq!(text.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Nothing to stop; nothing was started by any of the above.
    let (status, refused) = admin.post(STOP, &json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_eq!(status_of(&admin).await, Value::Null);
    assert_eq!(results(&server).await["results"], json!([]));

    // At a real event (MockPay off) a run would have nothing to buy with: 403.
    let mut real = door_config(1_000);
    real["mockpay"] = json!(false);
    let real = door_server(real).await;
    let (status, refused) = Staff::admin(&real).await.post(RUN, &body).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert!(refused["detail"].as_str().unwrap().contains("mockpay = false"), "{refused}");
}

async fn status_of(admin: &Staff) -> Value {
    status(admin).await["run"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_shows_its_progress_is_alone_and_stops_early_when_told() {
    let server = door_server(door_config(1_000_000)).await;
    let admin = Staff::admin(&server).await;
    let long = json!({"phase": "checkout", "duration_s": 60, "concurrency": 4});
    let started = Instant::now();
    let (status, accepted) = admin.post(RUN, &long).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert_eq!(accepted["run"]["state"], "running", "{accepted}");
    assert_eq!((accepted["run"]["cls"].as_str(), accepted["run"]["concurrency"].as_u64()), (Some("B"), Some(4)));

    // Its status fills second by second.
    let running = until(&admin, "answers in the timeline", Duration::from_secs(20), |run| {
        let timeline = run["timeline"].as_array().unwrap();
        timeline.len() >= 2 && timeline[0]["ok"].as_u64().unwrap() > 0
    })
    .await;
    assert_eq!(running["state"], "running");
    assert_eq!(running["phase"], "checkout");
    let first = &running["timeline"][0];
    assert!(first["p50_ms"].as_f64().unwrap() > 0.0 && first["p50_ms"].as_f64() <= first["p99_ms"].as_f64(), "{first}");
    assert!(running["ok"].as_u64().unwrap() >= first["ok"].as_u64().unwrap());
    assert!(running["elapsed_s"].as_f64().unwrap() >= 1.0, "{running}");

    // One at a time.
    let (status, refused) = admin.post(RUN, &json!({"phase": "flow", "duration_s": 2, "concurrency": 4})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(refused["detail"].as_str().unwrap().contains("running"), "{refused}");

    let (status, stopping) = admin.post(STOP, &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{stopping}");
    let run = ended(&admin, Duration::from_secs(20)).await;
    assert!(started.elapsed() < Duration::from_secs(30), "stopped well before its 60 s: {:?}", started.elapsed());
    assert_eq!(run["state"], "stopped", "{run}");
    assert!(run["elapsed_s"].as_f64().unwrap() < 30.0, "{run}");
    assert_eq!(run["result"], "kiosk-01", "{run}");
    let checkouts = run["phases"][0]["ok"].as_u64().unwrap();
    assert!(checkouts > 0 && run["phases"][0]["phase"] == "checkout", "{run}");

    // Stored like an upload, marked as the kiosk's, listed with the reference's figures.
    let listed = results(&server).await;
    let result = stored(&listed, "kiosk-01");
    assert_eq!(result["source"], "kiosk");
    assert_eq!(
        result["run"],
        json!({"phase": "checkout", "cls": "B", "duration_s": 60, "concurrency": 4, "succeed_rate": 0.0, "state": "stopped"})
    );
    let phase = &result["report"]["phases"][0];
    assert_eq!((phase["phase"].as_str(), phase["ok"].as_u64()), (Some("checkout"), Some(checkouts)), "{result}");
    assert!(phase["tb_batch_avg"].as_f64().unwrap() >= 1.0, "read from the server's own /metrics: {phase}");
    assert!(result["report"]["base"].as_str().unwrap().starts_with("http://127.0.0.1:"), "over loopback: {result}");
    assert_eq!(listed["reference"]["reservations_per_s"], 977.0);
    assert_eq!(
        (listed["reference"]["batch_min"].as_f64(), listed["reference"]["batch_max"].as_f64()),
        (Some(5.0), Some(6.0))
    );

    // What it bought: a hold on class B for each checkout, nothing sold; the admin's activity
    // log says who started and stopped it.
    let inventory = server.http.inventory().await;
    assert_eq!(class(&inventory, "B")["active_holds"].as_u64(), Some(checkouts), "{inventory}");
    assert_eq!(class(&inventory, "B")["sold"].as_u64(), Some(0), "{inventory}");
    assert_eq!(class(&inventory, "A")["active_holds"].as_u64(), Some(0), "{inventory}");
    let activity = admin.get("/api/admin/activity").await.json();
    let actions: Vec<&str> =
        activity["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"kiosk_run") && actions.contains(&"kiosk_run_stopped"), "{activity}");
    server.assert_audit_passes().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_end_by_themselves_are_stored_and_sell_no_ticket() {
    let server = door_server(door_config(1_000_000)).await;
    let admin = Staff::admin(&server).await;
    for (phase, name) in [("flow", "kiosk-01"), ("webhook", "kiosk-02")] {
        let started = Instant::now();
        let (status, accepted) = admin.post(RUN, &json!({"phase": phase, "duration_s": 2, "concurrency": 4})).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
        let run = ended(&admin, Duration::from_secs(40)).await;
        assert_eq!(run["state"], "finished", "{run}");
        assert_eq!(run["result"], name, "{run}");
        // Its 2 s (a webhook run: its checkouts' second, then as long as paying them takes, up
        // to a second), then what was in flight and the /metrics read after it: within the
        // bound a run gets to end (else it would be `failed`).
        let elapsed = run["elapsed_s"].as_f64().unwrap();
        let least = if phase == "flow" { 2.0 } else { 1.0 };
        let bound = 2.0 + tigerfans::http::kiosk::KIOSK_WIND_DOWN_MS as f64 / 1000.0;
        assert!((least..bound).contains(&elapsed), "{phase}: {elapsed} s, {:?} since its start", started.elapsed());
        let listed = results(&server).await;
        let phases = stored(&listed, name)["report"]["phases"].as_array().unwrap().clone();
        let names: Vec<&str> = phases.iter().map(|p| p["phase"].as_str().unwrap()).collect();
        assert_eq!(names, if phase == "flow" { vec!["flow"] } else { vec!["checkout", "webhook"] }, "{phase}");
        for p in &phases {
            assert!(p["ok"].as_u64().unwrap() > 0, "{phase}: {p}");
            assert_eq!(p["errors"], json!({}), "{phase}: every answer as expected: {p}");
        }
        // The run's per-second timeline holds every answer of its report.
        let answered: u64 = run["timeline"].as_array().unwrap().iter().map(|s| s["ok"].as_u64().unwrap()).sum();
        let reported: u64 = phases.iter().map(|p| p["ok"].as_u64().unwrap()).sum();
        assert_eq!(answered, reported, "{run}");
    }
    // Every payment was declined: no ticket and no goodie sold, the orders FAILED (or still
    // PENDING: a webhook run's checkouts it had no time left to pay).
    let inventory = server.http.inventory().await;
    assert_eq!(class(&inventory, "B")["sold"].as_u64(), Some(0), "{inventory}");
    assert_eq!(inventory["goodies"]["used"].as_u64(), Some(0), "{inventory}");
    let audit = server.assert_audit_passes().await;
    assert!(audit["order_counts"]["FAILED"].as_u64().unwrap() > 0, "{audit}");
    assert_eq!(audit["order_counts"]["PAID"].as_u64().unwrap_or(0), 0, "{audit}");
}

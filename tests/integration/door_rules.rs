//! The door's and the box office's rules, one by one: every refusal reason, forged and altered
//! codes, roles, refunds (idempotent; refused after admission unless forced), a box-office sale
//! racing online checkouts for the last tickets, exports a spreadsheet opens, MockPay off.

use crate::common::*;
use crate::door::{door_config, door_server, qr_payload, Staff};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

/// A checkout paid through MockPay's emit: (checkout, order id).
async fn paid_online(http: &Http, email: &str) -> String {
    let (status, checkout) = http.checkout("A", email).await;
    assert_eq!(status, StatusCode::OK, "{checkout}");
    assert_eq!(http.emit(&psid_of(&checkout), "succeeded").await.status, StatusCode::SEE_OTHER);
    checkout["order_id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_reason_and_every_forgery() {
    let server = door_server(door_config(10)).await;
    let admin = Staff::admin(&server).await;
    let door = admin.add_staff("frontdoor", "door").await;
    let (_, sold) = admin.sell("A", "card").await;
    let order_id = sold["order_id"].as_str().unwrap().to_string();
    let payload = qr_payload(&server, &order_id);
    let result = |v: &Value| v["result"].as_str().unwrap_or("").to_string();

    // Forged: another install's key; altered: the same MAC on another order id, one flipped character.
    let forged = tigerfans::ticket::TicketKey::new(b"another install").payload(&order_id);
    let other_order = tigerfans::ids::format_order_id(tigerfans::ids::new_id());
    let altered = payload.replace(&order_id, &other_order);
    let mut flipped = payload.clone();
    let last = flipped.pop().unwrap();
    flipped.push(if last == 'a' { 'b' } else { 'a' });
    for code in [forged.as_str(), altered.as_str(), flipped.as_str(), "hello", "TF1.x.y", &"9".repeat(500)] {
        let (status, answer) = door.scan(code, "north").await;
        assert_eq!((status, result(&answer)), (StatusCode::OK, "invalid".into()), "{code}: {answer}");
    }
    // Signed but unknown (a genuine payload for an order this store does not have), a printed
    // code nobody holds.
    let (_, answer) = door.scan(&qr_payload(&server, &other_order), "north").await;
    assert_eq!(result(&answer), "unknown");
    let (_, answer) = door.scan("TCK-AAAAAAAAAA", "north").await;
    assert_eq!(result(&answer), "unknown");
    // Not paid: a PENDING checkout; then its FAILED payment.
    let (_, pending) = server.http.checkout("A", "p@example.com").await;
    let pending_id = pending["order_id"].as_str().unwrap();
    let (_, answer) = door.scan(&qr_payload(&server, pending_id), "north").await;
    assert_eq!((result(&answer), answer["status"].as_str()), ("not_paid".into(), Some("PENDING")));
    server.http.emit(&psid_of(&pending), "failed").await;
    let (_, answer) = door.scan(&qr_payload(&server, pending_id), "north").await;
    assert_eq!((result(&answer), answer["status"].as_str()), ("not_paid".into(), Some("FAILED")));
    // The printed code typed by hand (lower case, with a space) gets in; then the QR is a second entry.
    let typed = sold["ticket_code"].as_str().unwrap().to_lowercase().replacen('-', "- ", 1);
    let (_, answer) = door.scan(&typed, "north").await;
    assert_eq!(
        (result(&answer), answer["door"].as_str(), answer["staff"].as_str()),
        ("admitted".into(), Some("north"), Some("frontdoor"))
    );
    let (_, again) = door.scan(&payload, "south").await;
    assert_eq!((result(&again), again["door"].as_str()), ("already_admitted".into(), Some("north")));
    // Refunded (forced: it got in), then scanned.
    let (status, _) =
        admin.post(&format!("/api/admin/orders/{order_id}/refund"), &json!({"reason": "t", "force": true})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, answer) = door.scan(&payload, "north").await;
    assert_eq!(result(&answer), "refunded");

    // Malformed requests are 4xx, never a verdict.
    assert_eq!(door.scan(&payload, "North Gate").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(door.post("/api/door/scan", &json!({"code": 5, "door": "north"})).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(door.post("/api/door/scan", &json!({"door": "north"})).await.0, StatusCode::BAD_REQUEST);
    let headers =
        [("cookie", door.cookie.as_str()), ("content-type", "application/json"), ("x-csrf-token", door.csrf.as_str())];
    let broken = server.http.request(Method::POST, "/api/door/scan", &headers, b"{".to_vec()).await.unwrap();
    assert_eq!(broken.status, StatusCode::BAD_REQUEST);
    let no_csrf = Staff { csrf: "nope".into(), ..door.clone() };
    assert_eq!(no_csrf.scan(&payload, "north").await.0, StatusCode::FORBIDDEN);
    let (status, _) = server.http.post_json("/api/door/scan", &json!({"code": payload, "door": "north"})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no session");
    let (status, _) = server.http.post_json("/api/admin/staff", &json!({"name": "x"})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a POST without a session is a 401, not a 405");

    // Typed codes are limited per session (30 a minute); the QR is not.
    let mut limited = false;
    for _ in 0..40 {
        let (status, _) = door.scan("TCK-BBBBBBBBBB", "north").await;
        limited |= status == StatusCode::TOO_MANY_REQUESTS;
    }
    assert!(limited, "typing codes by hand is rate-limited");
    assert_eq!(door.scan(&payload, "north").await.0, StatusCode::OK);

    // A door account sees the scanner only: no admin data, no sales.
    for path in ["/api/admin/orders", "/api/admin/staff", "/api/admin/export/orders.csv", "/api/box-office/report"] {
        assert_eq!(door.get(path).await.status, StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(door.sell("A", "cash").await.0, StatusCode::FORBIDDEN);
    let refund = door.post(&format!("/api/admin/orders/{order_id}/refund"), &json!({})).await;
    assert_eq!(refund.0, StatusCode::FORBIDDEN);
    let me = door.get("/api/staff/me").await.json();
    assert_eq!((me["name"].as_str(), me["role"].as_str()), (Some("frontdoor"), Some("door")));
    server.assert_audit_passes().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_accounts_roles_removal_and_the_activity_log() {
    let server = door_server(door_config(10)).await;
    let admin = Staff::admin(&server).await;
    let add = |name: &str, password: &str, role: &str| {
        let admin = admin.clone();
        let body = json!({"name": name, "password": password, "role": role});
        async move { admin.post("/api/admin/staff", &body).await }
    };
    assert_eq!(add("bob", "short", "door").await.0, StatusCode::BAD_REQUEST, "8 bytes at least");
    assert_eq!(add("bob", "long-enough", "janitor").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(add("b b", "long-enough", "door").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(add("admin", "long-enough", "door").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(add("bob", "long-enough", "box_office").await.0, StatusCode::OK);
    assert_eq!(add("bob", "other-pass", "door").await.0, StatusCode::CONFLICT);
    // Passwords are kept as Argon2 hashes, never as they are.
    let store = std::fs::read(server.data_dir.join("tigerfans.redo")).unwrap_or_default();
    assert!(!String::from_utf8_lossy(&store).contains("long-enough"));

    let (location, cookie) = crate::admin::login(&server.http, "bob", "long-enough").await;
    assert_eq!(location, "/box-office");
    assert!(crate::admin::login(&server.http, "bob", "wrong-pass").await.1.is_none());
    assert!(crate::admin::login(&server.http, "nobody", "long-enough").await.1.is_none());
    let bob = Staff::login(&server.http, "bob", "long-enough").await;
    let (status, sale) = bob.sell("A", "cash").await;
    assert_eq!(status, StatusCode::OK, "{sale}");
    assert_eq!(bob.get("/api/admin/orders").await.status, StatusCode::FORBIDDEN);
    assert_eq!(bob.scan("TCK-AAAAAAAAAA", "north").await.0, StatusCode::FORBIDDEN);
    let report = bob.get("/api/box-office/report").await.json();
    assert_eq!(
        report["staff"],
        json!([{"name": "bob", "tickets": 1, "cash_count": 1, "cash_amount": 6500, "card_count": 0, "card_amount": 0}])
    );
    let page = server.http.request(Method::GET, "/admin", &[("cookie", &bob.cookie)], vec![]).await.unwrap();
    assert_eq!(page.headers["location"], "/box-office", "the admin page sends bob to his own");

    // Removal ends the account's sessions at once and for good.
    let (status, _) = admin.post("/api/admin/staff/bob/remove", &json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bob.get("/api/box-office/report").await.status, StatusCode::UNAUTHORIZED);
    let old = cookie.unwrap();
    assert_eq!(
        server.http.request(Method::GET, "/api/staff/me", &[("cookie", &old)], vec![]).await.unwrap().status,
        StatusCode::UNAUTHORIZED
    );
    assert!(crate::admin::login(&server.http, "bob", "long-enough").await.1.is_none());
    let staff = admin.get("/api/admin/staff").await.json();
    assert!(staff["staff"].as_array().unwrap().iter().all(|s| s["name"] != "bob"));
    // The name may be given to a new account; the old account's sessions stay ended.
    assert_eq!(add("bob", "new-password", "door").await.0, StatusCode::OK);
    assert_eq!(
        server.http.request(Method::GET, "/api/staff/me", &[("cookie", &old)], vec![]).await.unwrap().status,
        StatusCode::UNAUTHORIZED
    );
    assert!(crate::admin::login(&server.http, "bob", "new-password").await.1.is_some());
    // A door account's logout ends its own sessions, not the admin's.
    let door = admin.add_staff("dora", "door").await;
    let body = format!("csrf={}", door.csrf);
    let headers = [("cookie", door.cookie.as_str()), ("content-type", "application/x-www-form-urlencoded")];
    let out = server.http.request(Method::POST, "/admin/logout", &headers, body.into_bytes()).await.unwrap();
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(door.get("/api/staff/me").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(admin.get("/api/staff/me").await.status, StatusCode::OK);

    let activity = admin.get("/api/admin/activity").await.json();
    let actions: Vec<&str> =
        activity["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["staff_created", "staff_created", "staff_removed", "sale", "staff_created"], "newest first");
    server.assert_audit_passes().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn box_office_sales_racing_online_checkouts_never_oversell() {
    let server = door_server(door_config(20)).await;
    let admin = Staff::admin(&server).await;
    let mut tasks = Vec::new();
    for i in 0..30 {
        let (admin, http) = (admin.clone(), server.http.clone());
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                let (status, _) = admin.sell("A", "cash").await;
                (true, status)
            } else {
                let (status, checkout) = http.checkout("A", &format!("fan{i}@example.com")).await;
                if status == StatusCode::OK {
                    http.emit(&psid_of(&checkout), "succeeded").await;
                }
                (false, status)
            }
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    let ok = results.iter().filter(|(_, s)| *s == StatusCode::OK).count();
    let sold_out = results.iter().filter(|(_, s)| *s == StatusCode::CONFLICT).count();
    assert_eq!((ok, sold_out), (20, 10), "{results:?}");
    assert!(results.iter().any(|(box_office, s)| *box_office && *s == StatusCode::OK));
    let inventory = server.http.inventory().await;
    assert_eq!((inventory["A"]["sold"].as_u64(), inventory["A"]["available"].as_u64()), (Some(20), Some(0)));
    server.assert_audit_passes().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_are_idempotent_and_an_admitted_ticket_needs_force() {
    let server = door_server(door_config(3)).await;
    let admin = Staff::admin(&server).await;
    let door = admin.add_staff("gate", "door").await;
    let online = paid_online(&server.http, "online@example.com").await;
    let refund_path = format!("/api/admin/orders/{online}/refund");
    // The same refund twice at once: both 200, one refund in the ledger.
    let reason = json!({"reason": "changed plans"});
    let (a, b) = tokio::join!(admin.post(&refund_path, &reason), admin.post(&refund_path, &reason));
    assert_eq!((a.0, b.0), (StatusCode::OK, StatusCode::OK), "{a:?} {b:?}");
    assert_eq!(a.1["status"], "REFUNDED");
    assert!(a.1["instruction"].as_str().unwrap().contains("MockPay"));
    assert_eq!(admin.post(&refund_path, &json!({})).await.0, StatusCode::OK, "and again later");
    let inventory = server.http.inventory().await;
    assert_eq!(
        (inventory["A"]["sold"].as_u64(), inventory["A"]["available"].as_u64()),
        (Some(0), Some(3)),
        "back on sale"
    );

    // Admitted: refused, then forced (the admission is taken back with it).
    let (_, sold) = admin.sell("A", "cash").await;
    let order_id = sold["order_id"].as_str().unwrap();
    assert_eq!(door.scan(&qr_payload(&server, order_id), "main").await.1["result"], "admitted");
    let path = format!("/api/admin/orders/{order_id}/refund");
    let (status, refused) = admin.post(&path, &json!({"reason": "x"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    let (status, forced) = admin.post(&path, &json!({"reason": "left early", "force": true})).await;
    assert_eq!(status, StatusCode::OK, "{forced}");
    assert_eq!(
        (forced["forced"].as_bool(), forced["instruction"].as_str().map(|s| s.contains("cash"))),
        (Some(true), Some(true))
    );
    let counts = admin.get("/api/door/counts").await.json();
    assert_eq!(counts["classes"][0]["admitted"], 0, "nobody inside on a refunded ticket");
    // Refunds of orders that were never paid are refused.
    let (_, pending) = server.http.checkout("A", "p@example.com").await;
    let path = format!("/api/admin/orders/{}/refund", pending["order_id"].as_str().unwrap());
    assert_eq!(admin.post(&path, &json!({})).await.0, StatusCode::CONFLICT);
    assert_eq!(
        admin.post("/api/admin/orders/00000000000000000000000000000000/refund", &json!({})).await.0,
        StatusCode::NOT_FOUND
    );
    server.assert_audit_passes().await;

    // Refunds are Budget's credits too, not funding: a restart funds nothing, a raised capacity
    // funds exactly the difference.
    let mut server = server;
    server.restart().await;
    let log = std::fs::read_to_string(server.data_dir.join("tigerfans.log")).unwrap();
    assert!(!log.contains("capacity lowered"), "refunds are not funding");
    let path = server.data_dir.join("event.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["classes"][0]["capacity"] = json!(5);
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    server.restart().await;
    let inventory = server.http.inventory().await;
    assert_eq!((inventory["A"]["capacity"].as_u64(), inventory["A"]["sold"].as_u64()), (Some(5), Some(0)));
    server.assert_audit_passes().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_unfulfilled_order_is_refunded_without_moving_units() {
    let server = door_server(door_config(1)).await;
    let admin = Staff::admin(&server).await;
    let http = &server.http;
    let (_, late) = http.checkout("A", "late@example.com").await;
    http.emit(&psid_of(&late), "failed").await;
    paid_online(http, "first@example.com").await;
    // The provider took the money after all: no ticket left, so PAID_UNFULFILLED, to refund.
    http.emit(&psid_of(&late), "succeeded").await;
    let late_id = late["order_id"].as_str().unwrap();
    assert_eq!(http.order(late_id).await["status"], "PAID_UNFULFILLED");
    let to_refund = admin.get("/api/admin/orders?status=PAID_UNFULFILLED").await.json();
    assert_eq!(to_refund["orders"][0]["order_id"], late_id);
    let (status, body) =
        admin.post(&format!("/api/admin/orders/{late_id}/refund"), &json!({"reason": "sold out"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(http.inventory().await["A"]["sold"], 1, "the other ticket stays sold");
    server.assert_audit_passes().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_stream_csv_a_spreadsheet_opens_safely() {
    let server = door_server(door_config(10)).await;
    let admin = Staff::admin(&server).await;
    let door = admin.add_staff("exp", "door").await;
    // An email a spreadsheet would run as a formula.
    let (_, checkout) = server.http.checkout("A", "=cmd@example.com").await;
    server.http.emit(&psid_of(&checkout), "succeeded").await;
    let (_, sold) = admin.sell("A", "card").await;
    let order_id = sold["order_id"].as_str().unwrap();
    door.scan(&qr_payload(&server, order_id), "north").await;

    let reply = admin.get("/api/admin/export/orders.csv").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.headers["content-type"].to_str().unwrap().starts_with("text/csv"));
    assert!(reply.headers["content-disposition"].to_str().unwrap().contains("orders.csv"));
    let mut rows = csv::Reader::from_reader(reply.body.as_ref());
    let header = rows.headers().unwrap().clone();
    let records: Vec<csv::StringRecord> = rows.records().map(|r| r.unwrap()).collect();
    assert_eq!(records.len(), 2);
    let email = header.iter().position(|h| h == "email").unwrap();
    assert!(records.iter().any(|r| &r[email] == "'=cmd@example.com"), "formula neutralised");
    let payment = header.iter().position(|h| h == "payment").unwrap();
    assert!(records.iter().any(|r| &r[payment] == "card") && records.iter().any(|r| &r[payment] == "online"));
    let only_a_failed = admin.get("/api/admin/export/orders.csv?status=FAILED&cls=A").await;
    assert_eq!(csv::Reader::from_reader(only_a_failed.body.as_ref()).records().count(), 0);
    assert_eq!(admin.get("/api/admin/export/orders.csv?status=NOPE").await.status, StatusCode::BAD_REQUEST);

    let checkins = admin.get("/api/admin/export/checkins.csv").await;
    let records: Vec<csv::StringRecord> =
        csv::Reader::from_reader(checkins.body.as_ref()).records().map(|r| r.unwrap()).collect();
    assert_eq!(records.len(), 1);
    assert_eq!((&records[0][0], &records[0][3], &records[0][4]), (order_id, "north", "exp"));
    let activity = admin.get("/api/admin/export/activity.csv").await;
    assert!(csv::Reader::from_reader(activity.body.as_ref()).records().count() >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_mockpay_off_online_sales_close_and_the_box_office_and_door_work() {
    let mut config = door_config(10);
    config["mockpay"] = json!(false);
    let server = door_server(config).await;
    let (status, body) = server.http.checkout("A", "a@example.com").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["detail"], "online sales are closed; tickets are sold at the box office");
    let page = server.http.request(Method::GET, "/mockpay/ps_x", &[], vec![]).await.unwrap();
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    let admin = Staff::admin(&server).await;
    let (status, sold) = admin.sell("A", "cash").await;
    assert_eq!(status, StatusCode::OK, "{sold}");
    let order_id = sold["order_id"].as_str().unwrap();
    assert_eq!(
        admin.scan(&qr_payload(&server, order_id), "main").await.1["result"],
        "admitted",
        "the admin may scan too"
    );
    server.assert_audit_passes().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_re_entry_a_ticket_that_left_comes_back_once_and_is_never_inside_twice() {
    let mut config = door_config(10);
    config["re_entry"] = json!(true);
    let server = door_server(config).await;
    let admin = Staff::admin(&server).await;
    let door = admin.add_staff("reentry", "door").await;
    let (_, sold) = admin.sell("A", "cash").await;
    let payload = qr_payload(&server, sold["order_id"].as_str().unwrap());
    let pass = |direction: &'static str| {
        let (door, payload) = (door.clone(), payload.clone());
        async move {
            let (status, answer) =
                door.post("/api/door/scan", &json!({"code": payload, "door": "north", "direction": direction})).await;
            assert_eq!(status, StatusCode::OK, "{answer}");
            answer["result"].as_str().unwrap().to_string()
        }
    };
    let inside = || {
        let admin = admin.clone();
        async move { admin.get("/api/door/counts").await.json()["classes"][0]["admitted"].as_u64().unwrap() }
    };
    assert_eq!(pass("out").await, "not_inside", "not in yet");
    assert_eq!(pass("in").await, "admitted");
    assert_eq!(pass("in").await, "already_admitted");
    assert_eq!(pass("out").await, "exited");
    assert_eq!(inside().await, 0);
    assert_eq!(pass("out").await, "not_inside");
    // Two doors let it back in at the same moment: one entry.
    let (a, b) = tokio::join!(pass("in"), pass("in"));
    let mut both = [a, b];
    both.sort();
    assert_eq!(both, ["admitted".to_string(), "already_admitted".to_string()]);
    assert_eq!(inside().await, 1, "at most one unit inside per ticket");
    server.assert_audit_passes().await;
    // Refunded while inside (forced): the entry is taken back; refunded while outside: nothing to take.
    let (status, _) = admin
        .post(&format!("/api/admin/orders/{}/refund", sold["order_id"].as_str().unwrap()), &json!({"force": true}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(inside().await, 0);
    let (_, other) = admin.sell("A", "card").await;
    let other_payload = qr_payload(&server, other["order_id"].as_str().unwrap());
    for direction in ["in", "out"] {
        let body = json!({"code": other_payload, "door": "north", "direction": direction});
        assert_eq!(door.post("/api/door/scan", &body).await.0, StatusCode::OK);
    }
    let path = format!("/api/admin/orders/{}/refund", other["order_id"].as_str().unwrap());
    assert_eq!(admin.post(&path, &json!({})).await.0, StatusCode::CONFLICT, "it got in once: force needed");
    assert_eq!(admin.post(&path, &json!({"force": true})).await.0, StatusCode::OK);
    assert_eq!(inside().await, 0);
    server.assert_audit_passes().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_re_entry_an_exit_scan_is_refused() {
    let server = door_server(door_config(10)).await;
    let admin = Staff::admin(&server).await;
    let (_, sold) = admin.sell("A", "cash").await;
    let payload = qr_payload(&server, sold["order_id"].as_str().unwrap());
    let body = json!({"code": payload, "door": "north", "direction": "out"});
    assert_eq!(admin.post("/api/door/scan", &body).await.0, StatusCode::BAD_REQUEST);
    let body = json!({"code": payload, "door": "north", "direction": "sideways"});
    assert_eq!(admin.post("/api/door/scan", &body).await.0, StatusCode::BAD_REQUEST);
}

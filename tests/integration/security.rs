//! What a browser is told about every page and answer (a Content-Security-Policy that forbids
//! framing and inline script, no MIME sniffing, no referrer, no caching of the admin's pages),
//! and requests whose meaning is ambiguous (a repeated form field or query parameter) refused.

use hyper::{Method, StatusCode};
use serde_json::json;

use crate::admin::login;
use crate::common::*;

const PASSWORD: &str = "security-test-admin";

fn assert_secure(path: &str, reply: &Reply, admin: bool) {
    let header = |name: &str| reply.headers.get(name).map(|v| v.to_str().unwrap().to_string());
    let csp = header("content-security-policy").unwrap_or_else(|| panic!("{path}: no Content-Security-Policy"));
    for directive in ["frame-ancestors 'none'", "script-src 'self'", "object-src 'none'", "base-uri 'none'"] {
        assert!(csp.contains(directive), "{path}: {csp} lacks {directive}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{path}: {csp}");
    assert_eq!(header("x-frame-options").as_deref(), Some("DENY"), "{path}");
    assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"), "{path}");
    assert_eq!(header("referrer-policy").as_deref(), Some("no-referrer"), "{path}");
    if admin {
        assert_eq!(header("cache-control").as_deref(), Some("no-store"), "{path}: the admin's pages are not cached");
    }
}

#[tokio::test]
async fn every_page_and_answer_carries_the_security_headers() {
    let mut config = config(10, 10, 300);
    config["admin_password"] = json!(PASSWORD);
    let server = Server::start(config).await;
    let http = &server.http;
    let (_, checkout) = http.checkout("A", "sec@example.com").await;
    let psid = psid_of(&checkout);
    let order_id = checkout["order_id"].as_str().unwrap().to_string();
    let public = [
        "/".to_string(),
        "/demo/checkout".into(),
        "/demo/success".into(),
        "/bench".into(),
        format!("/mockpay/{psid}"),
        "/static/app.js".into(),
        "/static/style.css".into(),
        "/api/event".into(),
        format!("/api/orders/{order_id}"),
        "/healthz".into(),
        "/no/such/page".into(),
    ];
    for path in &public {
        let reply = http.request(Method::GET, path, &[], vec![]).await.unwrap();
        assert_secure(path, &reply, false);
    }
    // The sign-in page, then the admin's page and JSON with a session.
    let reply = http.request(Method::GET, "/admin/login", &[], vec![]).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_secure("/admin/login", &reply, true);
    let (_, cookie) = login(http, "admin", PASSWORD).await;
    let cookie = cookie.expect("signed in");
    for path in ["/admin", "/api/admin/orders", "/api/pending", "/api/admin/goodies", "/api/admin/csrf"] {
        let reply = http.request(Method::GET, path, &[("cookie", &cookie)], vec![]).await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_secure(path, &reply, true);
    }
    // The admin's search finds an order by its id, as the page's own filter does.
    let path = format!("/api/admin/orders?q={}", &order_id[8..24]);
    let reply = http.request(Method::GET, &path, &[("cookie", &cookie)], vec![]).await.unwrap();
    assert_eq!(reply.json()["orders"][0]["order_id"], order_id.as_str(), "{path}");
}

#[tokio::test]
async fn a_repeated_form_field_or_query_parameter_is_refused_not_guessed() {
    let server = Server::start(config(10, 10, 300)).await;
    let http = &server.http;
    let (_, checkout) = http.checkout("A", "twice@example.com").await;
    let reply = http
        .request(
            Method::POST,
            &format!("/mockpay/{}/emit", psid_of(&checkout)),
            &[("content-type", "application/x-www-form-urlencoded")],
            b"t=canceled&t=succeeded".to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["detail"], "form field t is given more than once");
    let order = http.order(checkout["order_id"].as_str().unwrap()).await;
    assert_eq!(order["status"], "PENDING", "nothing was paid or canceled");
    let (status, reply) = http.get("/api/accounting/reserve?cls=A&cls=B").await;
    assert_eq!(
        (status, reply["detail"].as_str()),
        (StatusCode::BAD_REQUEST, Some("query parameter cls is given more than once"))
    );
}

#[tokio::test]
async fn the_data_dir_and_its_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let mut server = Server::start(config(10, 10, 300)).await;
    let (status, _) = server.http.checkout("A", "private@example.com").await;
    assert_eq!(status, StatusCode::OK);
    assert!(server.terminate().success());
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&server.data_dir), 0o700, "the data dir");
    let mut files = 0;
    for entry in std::fs::read_dir(&server.data_dir).unwrap() {
        let path = entry.unwrap().path();
        // The harness's own files (the config it wrote, the server's log it captured) are not the server's.
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name == "event.json" || name == "tigerfans.log" {
            continue;
        }
        assert_eq!(mode(&path) & 0o077, 0, "{name} is {:o}", mode(&path));
        files += 1;
    }
    assert!(files >= 4, "the store, its redo log and the admin files: {files}");
}

#[tokio::test]
async fn the_accounting_endpoints_are_off_unless_asked_for() {
    let mut config = config(10, 10, 300);
    config.as_object_mut().unwrap().remove("accounting_endpoints");
    let server = Server::start(config).await;
    for path in ["/api/accounting/reserve?cls=A", "/api/accounting/commit?tb_transfer_id=1"] {
        let (status, reply) = server.http.get(path).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {reply}");
        assert!(reply["detail"].as_str().unwrap().contains("serve --accounting-endpoints"), "{reply}");
    }
    assert_eq!(server.http.inventory().await["A"]["active_holds"], 0, "no hold was placed");
    let mut config = crate::common::config(10, 10, 300);
    config.as_object_mut().unwrap().remove("accounting_endpoints");
    let on = Server::start_with_args(config, &["--accounting-endpoints"]).await;
    let (status, reply) = on.http.get("/api/accounting/reserve?cls=A").await;
    assert_eq!(status, StatusCode::OK, "{reply}");
}

/// DNS rebinding: another site's name pointed at the appliance's address is refused.
#[tokio::test]
async fn a_host_name_that_is_not_the_appliance_s_is_misdirected() {
    let mut config = config(10, 10, 300);
    config["allowed_hosts"] = json!(["tickets.venue.lan"]);
    let server = Server::start(config).await;
    let port = server.port;
    for host in ["evil.example".to_string(), format!("evil.example:{port}"), format!("127.0.0.1.nip.io:{port}")] {
        let reply = server.http.request(Method::GET, "/api/event", &[("host", &host)], vec![]).await.unwrap();
        assert_eq!(reply.status, StatusCode::MISDIRECTED_REQUEST, "{host}");
        assert!(reply.json()["detail"].as_str().unwrap().contains("allowed_hosts"), "{host}");
    }
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("tickets.venue.lan:{port}"),
        format!("[::1]:{port}"),
    ] {
        let reply = server.http.request(Method::GET, "/api/event", &[("host", &host)], vec![]).await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{host}");
    }
}

/// Hold-squatting: one address cannot hold more than its share while other addresses still buy.
#[tokio::test]
async fn one_address_cannot_hold_more_than_its_share_while_others_still_buy() {
    let mut config = config(20, 10, 300);
    config["holds_per_client"] = json!(3);
    let server = Server::start(config).await;
    let from = |n: u8| Http::from_address(&server.base, std::net::IpAddr::from([127, 0, 0, n]));
    let squatter = from(2);
    for i in 0..3 {
        let (status, reply) = squatter.checkout("A", &format!("bot{i}@example.com")).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
    }
    let reply = squatter
        .request(
            Method::POST,
            "/api/checkout",
            &[("content-type", "application/json")],
            br#"{"cls":"A","customer_email":"bot9@example.com"}"#.to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = reply.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=300).contains(&retry_after), "{retry_after}");
    assert!(reply.json()["detail"].as_str().unwrap().starts_with("too many tickets on hold from this address"));
    for n in 3..8 {
        let (status, reply) = from(n).checkout("A", &format!("fan{n}@example.com")).await;
        assert_eq!(status, StatusCode::OK, "another address buys: {reply}");
    }
    // Sent at the same moment, a bot's checkouts cannot all pass either.
    let bot = from(20);
    let burst = (0..10).map(|i| {
        let bot = bot.clone();
        tokio::spawn(async move { bot.checkout("A", &format!("burst{i}@example.com")).await.0 })
    });
    let mut statuses = Vec::new();
    for checkout in burst.collect::<Vec<_>>() {
        statuses.push(checkout.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 3, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count(), 7);
    assert_eq!(server.http.inventory().await["A"]["active_holds"], 11, "3 + 3 held by two bots, 5 by others");
    let metrics = server.http.request(Method::GET, "/metrics", &[], vec![]).await.unwrap();
    let metrics = String::from_utf8_lossy(&metrics.body).to_string();
    assert!(metrics.contains("tigerfans_http_requests_total{route=\"checkout\",status=\"429\"} 8"), "{metrics}");
    assert!(metrics.contains("tigerfans_checkouts_throttled_total 8"));
}

#[tokio::test]
async fn checkouts_per_minute_are_limited_per_address() {
    let mut config = config(20, 10, 300);
    config["checkouts_per_minute_per_client"] = json!(2);
    let server = Server::start(config).await;
    let client = Http::from_address(&server.base, std::net::IpAddr::from([127, 0, 0, 9]));
    for i in 0..2 {
        assert_eq!(client.checkout("A", &format!("m{i}@example.com")).await.0, StatusCode::OK);
    }
    let (status, reply) = client.checkout("A", "m3@example.com").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{reply}");
    assert!(reply["detail"].as_str().unwrap().starts_with("too many checkouts from this address"));
    // The appliance's own address is not limited.
    for i in 0..5 {
        assert_eq!(server.http.checkout("A", &format!("local{i}@example.com")).await.0, StatusCode::OK);
    }
}

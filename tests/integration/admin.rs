//! The admin's security over plain HTTP: no default password, signed session cookies, CSRF on
//! forms, rate-limited logins, and every admin endpoint closed without a session.

use crate::common::*;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

pub async fn csrf(http: &Http, cookie: Option<&str>) -> String {
    let headers: Vec<(&str, &str)> = cookie.map(|c| vec![("cookie", c)]).unwrap_or_default();
    let reply = http.request(Method::GET, "/api/admin/csrf", &headers, vec![]).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    reply.json()["csrf"].as_str().unwrap().to_string()
}

/// Posts the login form; returns (redirect location, session cookie if one was set).
pub async fn login(http: &Http, user: &str, password: &str) -> (String, Option<String>) {
    let token = csrf(http, None).await;
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("username", user)
        .append_pair("password", password)
        .append_pair("csrf", &token)
        .finish();
    let reply = http
        .request(
            Method::POST,
            "/admin/login",
            &[("content-type", "application/x-www-form-urlencoded")],
            body.into_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let location = reply.headers["location"].to_str().unwrap().to_string();
    let cookie = reply.headers.get("set-cookie").map(|v| {
        let v = v.to_str().unwrap();
        assert!(v.contains("HttpOnly") && v.contains("SameSite=Strict"), "{v}");
        v.split(';').next().unwrap().to_string()
    });
    (location, cookie)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_configured_password_one_is_generated_and_kept() {
    let config = config(10, 10, 300); // no admin_password
    let mut server = Server::start(config).await;
    let file = server.data_dir.join("admin-password");
    let password = std::fs::read_to_string(&file).expect("generated password file").trim().to_string();
    assert!(password.len() >= 16, "a strong password: {password:?}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let log = std::fs::read_to_string(server.data_dir.join("tigerfans.log")).unwrap();
    assert_eq!(log.matches(password.as_str()).count(), 1, "printed once");

    // The generated password works, and there is no default one.
    assert!(login(&server.http, "admin", "admin").await.1.is_none());
    let (location, cookie) = login(&server.http, "admin", &password).await;
    assert_eq!(location, "/admin");
    assert!(cookie.is_some());

    // A restart keeps it and does not print it again.
    server.restart().await;
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), password);
    let log = std::fs::read_to_string(server.data_dir.join("tigerfans.log")).unwrap();
    assert_eq!(log.matches(password.as_str()).count(), 1, "not printed again");
    assert!(login(&server.http, "admin", &password).await.1.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_need_a_valid_session() {
    let mut config = config(10, 10, 300);
    config["admin_password"] = json!("correct-horse");
    let server = Server::start(config).await;
    let http = &server.http;
    let (_, checkout) = http.checkout("A", "secret-customer@example.com").await;

    // Closed without a session (the reference leaked customer emails here).
    for path in ["/api/admin/orders", "/api/admin/goodies", "/api/pending", "/api/admin/events"] {
        let reply = http.request(Method::GET, path, &[], vec![]).await.unwrap();
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(!String::from_utf8_lossy(&reply.body).contains("secret-customer"));
    }
    let page = http.request(Method::GET, "/admin", &[], vec![]).await.unwrap();
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.headers["location"], "/admin/login");

    // A forged or tampered cookie is no session.
    let forged = "tf_admin=99999999999999.00.00";
    let reply = http.request(Method::GET, "/api/admin/orders", &[("cookie", forged)], vec![]).await.unwrap();
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

    let (location, cookie) = login(http, "admin", "correct-horse").await;
    assert_eq!(location, "/admin");
    let cookie = cookie.unwrap();
    let with = [("cookie", cookie.as_str())];
    // Signed in, the login page sends you on to the admin page.
    let login_page = http.request(Method::GET, "/admin/login", &with, vec![]).await.unwrap();
    assert_eq!(login_page.status, StatusCode::SEE_OTHER);
    assert_eq!(login_page.headers["location"], "/admin");
    let tampered = format!("{}0", cookie);
    let reply = http.request(Method::GET, "/api/admin/orders", &[("cookie", tampered.as_str())], vec![]).await.unwrap();
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

    // With the session: orders (newest first, filterable), holds, goodies.
    let orders: Value = http.request(Method::GET, "/api/admin/orders?limit=10", &with, vec![]).await.unwrap().json();
    assert_eq!(orders["orders"][0]["order_id"], checkout["order_id"]);
    assert_eq!(orders["orders"][0]["email"], "secret-customer@example.com");
    let paid: Value = http.request(Method::GET, "/api/admin/orders?status=PAID", &with, vec![]).await.unwrap().json();
    assert_eq!(paid["orders"].as_array().unwrap().len(), 0);
    let found: Value =
        http.request(Method::GET, "/api/admin/orders?q=SECRET-cust", &with, vec![]).await.unwrap().json();
    assert_eq!(found["orders"].as_array().unwrap().len(), 1);
    let bad = http.request(Method::GET, "/api/admin/orders?status=NOPE", &with, vec![]).await.unwrap();
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let holds: Value = http.request(Method::GET, "/api/pending?limit=5", &with, vec![]).await.unwrap().json();
    assert_eq!(holds["holds"][0]["order_id"], checkout["order_id"]);
    assert!(holds["holds"][0]["expires_in_ms"].as_u64().unwrap() > 0);
    let goodies: Value = http.request(Method::GET, "/api/admin/goodies", &with, vec![]).await.unwrap().json();
    assert_eq!(goodies["limit"], 10);
    assert_eq!(goodies["active_holds"], 1);

    // Logout needs the session's CSRF token; the login form's token will not do.
    let login_token = csrf(http, None).await;
    let form = |t: &str| format!("csrf={t}").into_bytes();
    let reply = http
        .request(
            Method::POST,
            "/admin/logout",
            &[("cookie", cookie.as_str()), ("content-type", "application/x-www-form-urlencoded")],
            form(&login_token),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let token = csrf(http, Some(&cookie)).await;
    let reply = http
        .request(
            Method::POST,
            "/admin/logout",
            &[("cookie", cookie.as_str()), ("content-type", "application/x-www-form-urlencoded")],
            form(&token),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert!(reply.headers["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    // The logged-out cookie is dead on the server too (a copy of it, say), not only deleted.
    let reply = http.request(Method::GET, "/api/admin/orders", &with, vec![]).await.unwrap();
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

    // A login without the CSRF token is refused.
    let reply = http
        .request(
            Method::POST,
            "/admin/login",
            &[("content-type", "application/x-www-form-urlencoded")],
            b"username=admin&password=correct-horse".to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(reply.headers["location"], "/admin/login?error=csrf");
    assert!(reply.headers.get("set-cookie").is_none());

    // Another site's form posting to the logout (SameSite keeps the cookie out of it, so it
    // comes without a session, and without a token): refused, the cookie is not cleared.
    let reply = http
        .request(
            Method::POST,
            "/admin/logout",
            &[("content-type", "application/x-www-form-urlencoded"), ("origin", "https://evil.example")],
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(reply.headers.get("set-cookie").is_none(), "a cross-site post cannot clear the admin's cookie");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failed_logins_are_slowed_and_the_owner_still_signs_in() {
    let mut config = config(10, 10, 300);
    config["admin_password"] = json!("correct-horse");
    let server = Server::start(config).await;
    for _ in 0..tigerfans::admin::LOGIN_FAILURES_MAX {
        let (location, cookie) = login(&server.http, "admin", "guess").await;
        assert_eq!(location, "/admin/login?error=invalid");
        assert!(cookie.is_none());
    }
    // From the same address (behind one NAT, the owner's too): a guess now waits...
    let started = std::time::Instant::now();
    let (location, _) = login(&server.http, "admin", "guess").await;
    assert_eq!(location, "/admin/login?error=invalid");
    let waited = started.elapsed();
    assert!(waited >= std::time::Duration::from_millis(tigerfans::admin::LOGIN_DELAY_MS_MIN), "{waited:?}");
    // ... and the right password still signs in, after its wait; never locked out.
    let started = std::time::Instant::now();
    let (location, cookie) = login(&server.http, "admin", "correct-horse").await;
    assert_eq!(location, "/admin");
    assert!(cookie.is_some());
    assert!(started.elapsed() >= std::time::Duration::from_millis(2 * tigerfans::admin::LOGIN_DELAY_MS_MIN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_results_are_stored_for_the_admin_only() {
    let mut config = config(10, 10, 300);
    config["admin_password"] = json!("correct-horse");
    let server = Server::start(config).await;
    let http = &server.http;
    let report = json!({"tigerfans_version": "0.1.0", "machine": {"cores": 2}, "phases": [{"phase": "checkout", "throughput": 1000.0}]});
    let body = serde_json::to_vec(&report).unwrap();
    let reply = http
        .request(Method::POST, "/api/bench/results", &[("content-type", "application/json")], body.clone())
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let (_, cookie) = login(http, "admin", "correct-horse").await;
    let cookie = cookie.unwrap();
    let headers = [("cookie", cookie.as_str()), ("content-type", "application/json"), ("x-result-name", "pi5")];
    let reply = http.request(Method::POST, "/api/bench/results", &headers, body).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let bad = http.request(Method::POST, "/api/bench/results", &headers, b"{\"no\": 1}".to_vec()).await.unwrap();
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let (status, listed) = http.get("/api/bench/results").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["results"][0]["name"], "pi5");
    assert_eq!(listed["results"][0]["report"]["phases"][0]["throughput"], 1000.0);
}

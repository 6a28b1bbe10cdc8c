//! `tigerfans audit --base URL`: the audit of a running server, fetched through its admin API.

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use hyper::{Method, StatusCode};

use super::report::Report;
use crate::http_client::Connection;

/// How long `tigerfans audit --base` waits for each answer. The audit reads every transfer of the
/// event's accounts and every order: a few seconds for a venue, a few minutes for millions of
/// orders (the 10-minute soak's 3 million took about two).
pub const REMOTE_AUDIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// `tigerfans audit --base URL`: logs in as the admin and fetches the running server's audit.
pub async fn remote(base: &str, user: &str, password: &str) -> anyhow::Result<Report> {
    let authority = base.trim_start_matches("http://").trim_end_matches('/');
    if authority.contains('/') || base.starts_with("https://") {
        bail!("--base must look like http://HOST:PORT");
    }
    let mut conn = Connection::new(authority, REMOTE_AUDIT_TIMEOUT);
    let fail = |e: String| anyhow!("{base}: {e}");
    let csrf = conn.request(Method::GET, "/api/admin/csrf", &[], Bytes::new()).await.map_err(fail)?;
    let csrf: serde_json::Value = serde_json::from_slice(&csrf.body).context("reading the CSRF token")?;
    let token = csrf["csrf"].as_str().ok_or_else(|| anyhow!("no CSRF token from {base}"))?;
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("username", user)
        .append_pair("password", password)
        .append_pair("csrf", token)
        .finish();
    let login = conn
        .request(
            Method::POST,
            "/admin/login",
            &[("content-type", "application/x-www-form-urlencoded")],
            Bytes::from(form),
        )
        .await
        .map_err(fail)?;
    let cookie = login
        .header("set-cookie")
        .and_then(|v| v.split(';').next())
        .map(str::to_string)
        .ok_or_else(|| anyhow!("admin login refused (wrong user or password, or locked for a minute)"))?;
    let answer = conn
        .request(Method::GET, "/api/admin/audit", &[("cookie", cookie.as_str())], Bytes::new())
        .await
        .map_err(fail)?;
    if answer.status != StatusCode::OK {
        bail!("{base} answered {}: {}", answer.status, String::from_utf8_lossy(&answer.body));
    }
    serde_json::from_slice(&answer.body).context("reading the audit report")
}

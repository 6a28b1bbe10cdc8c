//! Staff sessions over HTTP: who a request's cookie belongs to, the login and logout forms, the
//! CSRF token, and the guard every staff JSON write passes (media type, CSRF header, body).

use std::net::SocketAddr;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};
use serde_json::json;

use super::limits::HttpLimits;
use super::request::{form_field, read_body, wrong_media_type, BadInput, JSON};
use super::response::{self, detail, json as json_response, page, Body};
use crate::admin::Admin;
use crate::clock::now_ms;
use crate::flow::App;
use crate::staff::{self, Role, StaffMember};
use crate::store::StaffOp;

/// The staff member a request's session cookie belongs to, if any. A store that cannot be read
/// is a 503 (the account behind a session cannot be checked).
pub fn staff_of(app: &App, request: &Request<Incoming>) -> Result<Option<StaffMember>, crate::flow::FlowError> {
    let cookies = request.headers().get(hyper::header::COOKIE).and_then(|v| v.to_str().ok());
    let Some((session, number)) = app.admin.session_from_cookies(cookies, now_ms()) else { return Ok(None) };
    app.staff_member(session, number)
}

/// The signed-in staff member, or `None` for no session and for a store that cannot tell.
pub fn session_of(app: &App, request: &Request<Incoming>) -> Option<StaffMember> {
    staff_of(app, request).ok().flatten()
}

pub fn unauthorized() -> Response<Body> {
    detail(StatusCode::UNAUTHORIZED, "staff login required")
}

pub fn forbidden(needed: Role) -> Response<Body> {
    detail(StatusCode::FORBIDDEN, &format!("this needs a staff account with the {} role", needed.as_str()))
}

fn with_cookie(mut response: Response<Body>, cookie: &str) -> Response<Body> {
    response
        .headers_mut()
        .insert(hyper::header::SET_COOKIE, HeaderValue::from_str(cookie).expect("cookies we build are valid"));
    response
}

/// A staff page: shown to a session of the role, else to the login.
pub fn staff_page(app: &App, request: &Request<Incoming>, needed: Role, file: &str) -> Response<Body> {
    match session_of(app, request) {
        Some(member) if member.role.may(needed) => page(file),
        Some(member) => response::see_other(member.role.home()),
        None => response::see_other("/admin/login"),
    }
}

pub fn csrf(app: &App, request: &Request<Incoming>) -> Response<Body> {
    let session = session_of(app, request).map(|m| m.session);
    json_response(StatusCode::OK, &json!({"csrf": app.admin.csrf_token(session.as_deref(), now_ms())}))
}

pub fn me(app: &App, member: &StaffMember) -> Response<Body> {
    let csrf = app.admin.csrf_token(Some(&member.session), now_ms());
    json_response(StatusCode::OK, &json!({"name": member.name, "role": member.role.as_str(), "csrf": csrf}))
}

/// The body of a staff JSON write: `application/json`, the session's CSRF token in
/// `x-csrf-token` (a cross-site page can send neither without a CORS preflight), within limits.
pub async fn json_body(
    app: &App,
    limits: &HttpLimits,
    member: &StaffMember,
    request: Request<Incoming>,
) -> Result<serde_json::Value, Response<Body>> {
    if let Some(refused) = wrong_media_type(&request, JSON) {
        return Err(refused);
    }
    let token = request.headers().get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !app.admin.csrf_valid(Some(&member.session), token, now_ms()) {
        return Err(detail(StatusCode::FORBIDDEN, "invalid CSRF token (x-csrf-token, from GET /api/admin/csrf)"));
    }
    let (_, body) = read_body(limits, request).await?;
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(value) if value.is_object() => Ok(value),
        Ok(_) => Err(detail(StatusCode::BAD_REQUEST, "the body must be a JSON object")),
        Err(e) => Err(detail(StatusCode::BAD_REQUEST, &format!("invalid JSON: {e}"))),
    }
}

/// Argon2 password checks running at once at most (each holds 19 MiB while it runs).
pub const PASSWORD_CHECKS_MAX: usize = 4;
static PASSWORD_CHECKS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A form's text field: empty when missing; a 400 when repeated.
fn text_field(body: &[u8], name: &str) -> Result<String, BadInput> {
    Ok(form_field(body, name)?.map(|v| v.into_owned()).unwrap_or_default())
}

/// Which staff number these credentials sign in as. The configured admin's are compared in
/// constant time; a staff account's password is checked against its Argon2 hash (an unknown
/// name against a dummy hash, so it takes as long).
async fn sign_in(app: &App, username: &str, password: &str) -> Result<Option<(u32, Role)>, Response<Body>> {
    if username == app.config.admin_user {
        return Ok(app.admin.credentials_match(username, password).then_some((staff::ADMIN_NUMBER, Role::Admin)));
    }
    let record = match app.store.staff(username) {
        Ok(record) => record.filter(|r| r.removed_at_ms.is_none()),
        Err(e) => return Err(response::store_unavailable(&e)),
    };
    if password.len() > staff::PASSWORD_LEN_MAX {
        return Ok(None);
    }
    // Each check takes 19 MiB for tens of ms: a few at a time, the rest are told to retry.
    let Some(slot) = crate::slots::take(&PASSWORD_CHECKS, PASSWORD_CHECKS_MAX) else {
        return Err(response::see_other("/admin/login?error=busy"));
    };
    let hash = record.as_ref().map_or_else(|| staff::dummy_hash().to_string(), |r| r.password_hash.clone());
    let password = password.to_string();
    let matches = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        staff::verify_password(&password, &hash)
    })
    .await
    .unwrap_or(false);
    Ok(record.filter(|_| matches).map(|r| (r.number, r.role)))
}

pub async fn login(app: &App, limits: &HttpLimits, peer: SocketAddr, request: Request<Incoming>) -> Response<Body> {
    let (_, body) = match read_body(limits, request).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let fields = (text_field(&body, "csrf"), text_field(&body, "username"), text_field(&body, "password"));
    let (csrf, username, password) = match fields {
        (Ok(csrf), Ok(username), Ok(password)) => (csrf, username, password),
        (Err(refused), _, _) | (_, Err(refused), _) | (_, _, Err(refused)) => return refused.into(),
    };
    let ip = peer.ip();
    // Repeated failures slow every later attempt from the address; they never lock it.
    let delay_ms = app.admin.login_delay_ms(ip, now_ms());
    let _slot = if delay_ms > 0 {
        let Some(slot) = app.admin.delayed_login_slot() else {
            return response::see_other("/admin/login?error=busy");
        };
        tracing::warn!(%ip, delay_ms, "login slowed: repeated failures from this address");
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        Some(slot)
    } else {
        None
    };
    if !app.admin.csrf_valid(None, &csrf, now_ms()) {
        return response::see_other("/admin/login?error=csrf");
    }
    match sign_in(app, &username, &password).await {
        Err(unavailable) => unavailable,
        Ok(Some((number, role))) => {
            app.admin.login_succeeded(ip);
            tracing::info!(%ip, user = %username, role = role.as_str(), "staff logged in");
            let cookie = Admin::session_cookie(&app.admin.new_session(now_ms(), number));
            with_cookie(response::see_other(role.home()), &cookie)
        }
        Ok(None) => {
            app.admin.login_failed(ip, now_ms());
            tracing::warn!(%ip, "login failed");
            response::see_other("/admin/login?error=invalid")
        }
    }
}

/// Ends the sessions of the account logging out: every admin session for the configured admin
/// (as before staff accounts existed), the account's own sessions for anyone else.
pub async fn logout(app: &App, limits: &HttpLimits, request: Request<Incoming>) -> Response<Body> {
    let member = session_of(app, &request);
    let (_, body) = match read_body(limits, request).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let csrf = match text_field(&body, "csrf") {
        Ok(csrf) => csrf,
        Err(refused) => return refused.into(),
    };
    // With or without a session: another site's form must not even clear the cookie.
    if !app.admin.csrf_valid(member.as_ref().map(|m| m.session.as_str()), &csrf, now_ms()) {
        return detail(StatusCode::FORBIDDEN, "invalid CSRF token");
    }
    match member {
        Some(m) if m.number == staff::ADMIN_NUMBER => {
            if let Err(e) = app.admin.end_all_sessions() {
                tracing::error!(error = %format!("{e:#}"), "admin sessions ended, but only until the next restart");
            }
        }
        Some(m) => {
            let op = StaffOp::EndSessions { name: m.name.clone(), at_ms: now_ms() + 1 };
            if let Err(e) = app.store.change_staff(op).await {
                return detail(StatusCode::SERVICE_UNAVAILABLE, &format!("the logout was not recorded: {e}"));
            }
        }
        None => {}
    }
    with_cookie(response::see_other("/admin/login"), &Admin::clear_cookie())
}

//! The router and handlers: parse and validate the request, call one use case in `flow`, encode
//! its answer. No business logic lives here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::CONTENT_LENGTH;
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use serde_json::json;

use super::admin;
use super::response::{self, detail, flow_error, json, Body};
use super::HttpLimits;
use crate::flow::{self, App, FlowError, PaymentOk};
use crate::metrics;
use crate::payment::{EventType, SIGNATURE_HEADER};
use crate::store::OrderStatus;
use crate::web;

pub async fn handle(
    app: Arc<App>,
    limits: &HttpLimits,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    let label = route_label(request.uri().path());
    let response = route(&app, limits, peer, request).await;
    let label = match response.status() {
        StatusCode::NOT_FOUND if label == "not_found" => label,
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        _ => label,
    };
    let index = metrics::ROUTES.iter().position(|r| *r == label).expect("labels are listed");
    app.metrics.request(index, response.status().as_u16(), started.elapsed().as_micros() as u64);
    response
}

/// The metrics label of a path: mirrors `route` below, without looking at the method.
fn route_label(path: &str) -> &'static str {
    let mut segments = path.trim_start_matches('/').split('/');
    match (segments.next(), segments.next(), segments.next(), segments.next()) {
        (Some("" | "index.html"), None, _, _) | (Some("demo"), Some("checkout" | "success"), None, _) => "page",
        (Some("mockpay"), Some(_), None, _) => "mockpay",
        (Some("mockpay"), Some(_), Some("emit"), None) => "emit",
        (Some("static"), Some(_), None, _) => "static",
        (Some("api"), Some("checkout"), None, _) => "checkout",
        (Some("payments"), Some("webhook"), None, _) => "webhook",
        (Some("api"), Some("orders"), Some(_), None) => "order",
        (Some("api"), Some("orders"), Some(_), Some("qr.svg")) => "qr",
        (Some("api"), Some("event"), None, _) => "event",
        (Some("admin"), None, _, _) => "admin_page",
        (Some("admin"), Some("login" | "logout"), None, _) => "admin_login",
        (Some("api"), Some("admin"), Some("events"), None) => "admin_events",
        (Some("api"), Some("admin"), Some(_), None) | (Some("api"), Some("pending"), None, _) => "admin_api",
        (Some("bench"), None, _, _) => "page",
        (Some("api"), Some("bench"), Some("results"), None) => "bench_results",
        (Some("api"), Some("sessions"), Some(_), None) => "session",
        (Some("api"), Some("inventory"), None, _) => "inventory",
        (Some("api"), Some("accounting"), Some("reserve"), None) => "reserve",
        (Some("api"), Some("accounting"), Some("commit"), None) => "commit",
        (Some("healthz"), None, _, _) => "healthz",
        (Some("metrics"), None, _, _) => "metrics",
        _ => "not_found",
    }
}

/// `Allow` header values for 405 answers (RFC 9110 requires one).
const ALLOW_GET_HEAD: &str = "GET, HEAD";
const ALLOW_POST: &str = "POST";
const ALLOW_GET_POST: &str = "GET, HEAD, POST";
/// Routes whose GET changes state (the reference's API, or an expensive audit): HEAD, which
/// clients and crawlers send expecting no effect, is refused rather than acted on.
const ALLOW_GET: &str = "GET";

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut response = detail(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    response.headers_mut().insert(hyper::header::ALLOW, hyper::header::HeaderValue::from_static(allow));
    response
}

async fn route(app: &Arc<App>, limits: &HttpLimits, peer: SocketAddr, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = request.method().clone();
    let get = method == Method::GET || method == Method::HEAD;
    let get_only = method == Method::GET;
    let post = method == Method::POST;
    match segments.as_slice() {
        [""] | ["index.html"] => {
            if get {
                page("index.html")
            } else {
                method_not_allowed(ALLOW_GET_HEAD)
            }
        }
        ["demo", "checkout"] => {
            if get {
                page("checkout.html")
            } else {
                method_not_allowed(ALLOW_GET_HEAD)
            }
        }
        ["demo", "success"] => {
            if get {
                page("success.html")
            } else {
                method_not_allowed(ALLOW_GET_HEAD)
            }
        }
        ["mockpay", psid] => {
            if get {
                mockpay_page(app, psid)
            } else {
                method_not_allowed(ALLOW_GET_HEAD)
            }
        }
        ["mockpay", psid, "emit"] => {
            if post {
                emit(app, limits, psid, request).await
            } else {
                method_not_allowed(ALLOW_POST)
            }
        }
        ["static", file] => {
            if get {
                asset(file)
            } else {
                method_not_allowed(ALLOW_GET_HEAD)
            }
        }
        ["api", "checkout"] => {
            if post {
                checkout(app, limits, request).await
            } else {
                method_not_allowed(ALLOW_POST)
            }
        }
        ["payments", "webhook"] => {
            if post {
                webhook(app, limits, request).await
            } else {
                method_not_allowed(ALLOW_POST)
            }
        }
        ["api", "orders", order_id] => {
            if get {
                order(app, order_id)
            } else {
                method_not_allowed(ALLOW_GET_HEAD)
            }
        }
        ["api", "orders", order_id, "qr.svg"] => {
            if get {
                qr(app, order_id)
            } else {
                method_not_allowed(ALLOW_GET_HEAD)
            }
        }
        ["api", "event"] => {
            if get {
                event(app)
            } else {
                method_not_allowed(ALLOW_GET_HEAD)
            }
        }
        ["bench"] => {
            if get {
                page("bench.html")
            } else {
                method_not_allowed(ALLOW_GET_HEAD)
            }
        }
        ["admin"] => {
            if get {
                admin::admin_page(app, &request)
            } else {
                method_not_allowed(ALLOW_GET_HEAD)
            }
        }
        ["admin", "login"] => {
            if get && admin::session_of(app, &request).is_some() {
                response::see_other("/admin")
            } else if get {
                page("admin-login.html")
            } else if post {
                admin::login(app, limits, peer, request).await
            } else {
                method_not_allowed(ALLOW_GET_POST)
            }
        }
        ["admin", "logout"] => {
            if post {
                admin::logout(app, limits, request).await
            } else {
                method_not_allowed(ALLOW_POST)
            }
        }
        ["api", "admin", "csrf"] => {
            if get {
                admin::csrf(app, &request)
            } else {
                method_not_allowed(ALLOW_GET_HEAD)
            }
        }
        ["api", "bench", "results"] => {
            if get {
                admin::bench_results(app)
            } else if post {
                if admin::session_of(app, &request).is_none() {
                    return admin::unauthorized();
                }
                admin::upload_bench_result(app, limits, request).await
            } else {
                method_not_allowed(ALLOW_GET_POST)
            }
        }
        ["api", "admin", _] | ["api", "pending"] if admin::session_of(app, &request).is_none() => {
            if get {
                admin::unauthorized()
            } else {
                method_not_allowed(ALLOW_GET_HEAD)
            }
        }
        ["api", "admin", "orders"] => {
            if get {
                admin::orders(app, request.uri().query())
            } else {
                method_not_allowed(ALLOW_GET_HEAD)
            }
        }
        ["api", "admin", "audit"] => {
            if get_only {
                admin::audit(app).await
            } else {
                method_not_allowed(ALLOW_GET)
            }
        }
        ["api", "admin", "goodies"] => {
            if get {
                admin::goodies(app).await
            } else {
                method_not_allowed(ALLOW_GET_HEAD)
            }
        }
        ["api", "admin", "events"] => {
            if get {
                match admin::session_of(app, &request) {
                    Some(session) => admin::events(app.clone(), session),
                    None => admin::unauthorized(),
                }
            } else {
                method_not_allowed(ALLOW_GET_HEAD)
            }
        }
        ["api", "pending"] => {
            if get {
                admin::pending(app, request.uri().query())
            } else {
                method_not_allowed(ALLOW_GET_HEAD)
            }
        }
        ["api", "sessions", psid] => {
            if get {
                session(app, psid)
            } else {
                method_not_allowed(ALLOW_GET_HEAD)
            }
        }
        ["api", "inventory"] => {
            if get {
                inventory(app).await
            } else {
                method_not_allowed(ALLOW_GET_HEAD)
            }
        }
        ["api", "accounting", _] if !app.config.accounting_endpoints => {
            detail(StatusCode::FORBIDDEN, "the accounting endpoints are disabled (accounting_endpoints = false)")
        }
        ["api", "accounting", "reserve"] => {
            if get_only {
                reserve(app, request.uri().query()).await
            } else {
                method_not_allowed(ALLOW_GET)
            }
        }
        ["api", "accounting", "commit"] => {
            if get_only {
                commit(app, request.uri().query()).await
            } else {
                method_not_allowed(ALLOW_GET)
            }
        }
        ["healthz"] => {
            if get {
                healthz(app).await
            } else {
                method_not_allowed(ALLOW_GET_HEAD)
            }
        }
        ["metrics"] => {
            if get {
                metrics_text(app).await
            } else {
                method_not_allowed(ALLOW_GET_HEAD)
            }
        }
        _ => detail(StatusCode::NOT_FOUND, "not found"),
    }
}

/// Reads a whole body within the size and time limits: 413 when too large (declared or actual,
/// chunked included), 408 when too slow.
pub(super) async fn read_body(
    limits: &HttpLimits,
    request: Request<Incoming>,
) -> Result<(hyper::http::request::Parts, Bytes), Response<Body>> {
    let too_large =
        || detail(StatusCode::PAYLOAD_TOO_LARGE, &format!("request body over {} bytes", limits.body_bytes_max));
    if let Some(length) = request.headers().get(CONTENT_LENGTH) {
        match length.to_str().ok().and_then(|v| v.parse::<u64>().ok()) {
            Some(length) if length > limits.body_bytes_max as u64 => return Err(too_large()),
            Some(_) => {}
            None => return Err(detail(StatusCode::BAD_REQUEST, "invalid content-length")),
        }
    }
    let (parts, body) = request.into_parts();
    let collect = Limited::new(body, limits.body_bytes_max).collect();
    match tokio::time::timeout(Duration::from_millis(limits.body_read_timeout_ms), collect).await {
        Err(_) => Err(detail(StatusCode::REQUEST_TIMEOUT, "request body not received in time")),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(e)) => Err(detail(StatusCode::BAD_REQUEST, &format!("could not read request body: {e}"))),
        Ok(Ok(collected)) => Ok((parts, collected.to_bytes())),
    }
}

pub const JSON: &str = "application/json";
pub const FORM: &str = "application/x-www-form-urlencoded";

/// A 415 unless the request's media type (parameters such as `charset` aside) is `expected`.
/// Beyond telling a client what it got wrong, this keeps other sites' pages out: a cross-site
/// form can send neither `application/json` nor a custom header without a CORS preflight.
pub(super) fn wrong_media_type(request: &Request<Incoming>, expected: &'static str) -> Option<Response<Body>> {
    let media_type = request
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim());
    match media_type {
        Some(media_type) if media_type.eq_ignore_ascii_case(expected) => None,
        _ => Some(detail(StatusCode::UNSUPPORTED_MEDIA_TYPE, &format!("content-type must be {expected}"))),
    }
}

pub(super) fn page(name: &str) -> Response<Body> {
    match web::get(name) {
        Some((content, mime)) => response::bytes(StatusCode::OK, mime, content),
        None => detail(StatusCode::NOT_FOUND, "not found"),
    }
}

fn asset(file: &str) -> Response<Body> {
    if file.starts_with('.') || file.ends_with(".html") {
        return detail(StatusCode::NOT_FOUND, "not found");
    }
    page(file)
}

fn mockpay_page(app: &App, psid: &str) -> Response<Body> {
    match app.store.session(psid) {
        Ok(Some(_)) => page("mockpay.html"),
        Ok(None) => detail(StatusCode::NOT_FOUND, "unknown payment session"),
        Err(e) => response::store_unavailable(&e),
    }
}

async fn checkout(app: &App, limits: &HttpLimits, request: Request<Incoming>) -> Response<Body> {
    if let Some(response) = wrong_media_type(&request, JSON) {
        return response;
    }
    let (_, body) = match read_body(limits, request).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let request = match crate::api::decode_checkout(&body) {
        Ok(request) => request,
        Err(why) => return detail(StatusCode::BAD_REQUEST, &why),
    };
    match app.checkout(&request.cls, &request.customer_email).await {
        Ok(ok) => json(
            StatusCode::OK,
            &CheckoutReply {
                order_id: &ok.order_id,
                redirect_url: format!("/mockpay/{}", ok.psid),
                amount: ok.amount,
                currency: &ok.currency,
            },
        ),
        Err(e) => flow_error(e),
    }
}

// The hot paths' replies: structs that borrow what they show, serialized straight to bytes (no
// `serde_json::Value` map per request).

#[derive(Serialize)]
struct CheckoutReply<'a> {
    order_id: &'a str,
    redirect_url: String,
    amount: u64,
    currency: &'a str,
}

#[derive(Serialize)]
struct PaymentReply {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    order_status: Option<&'static str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    idempotent: bool,
}

#[derive(Serialize)]
struct OrderReply<'a> {
    order_id: &'a str,
    status: &'static str,
    cls: &'a str,
    qty: u32,
    amount: u64,
    currency: &'a str,
    paid_at: Option<String>,
    ticket_code: Option<&'a str>,
    got_goodie: bool,
}

#[derive(Serialize)]
struct ReserveReply {
    tb_transfer_id: String,
    goodie_tb_transfer_id: Option<String>,
}

#[derive(Serialize)]
struct CommitReply {
    ok: bool,
    ticket: String,
    goodie: Option<String>,
}

async fn webhook(app: &App, limits: &HttpLimits, request: Request<Incoming>) -> Response<Body> {
    if let Some(response) = wrong_media_type(&request, JSON) {
        return response;
    }
    let (parts, body) = match read_body(limits, request).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    // A header that is not text is there and wrong, not missing.
    let signature = parts.headers.get(SIGNATURE_HEADER).map(|v| v.to_str().unwrap_or(""));
    match app.payment_event(&body, signature).await {
        Ok(PaymentOk::Applied(status)) => {
            json(StatusCode::OK, &PaymentReply { ok: true, order_status: Some(status.as_str()), idempotent: false })
        }
        Ok(PaymentOk::Replay) => json(StatusCode::OK, &PaymentReply { ok: true, order_status: None, idempotent: true }),
        Err(e) => flow_error(e),
    }
}

async fn emit(app: &App, limits: &HttpLimits, psid: &str, request: Request<Incoming>) -> Response<Body> {
    if let Some(response) = wrong_media_type(&request, FORM) {
        return response;
    }
    let (_, body) = match read_body(limits, request).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let kind = form_urlencoded::parse(&body).find(|(k, _)| k == "t").and_then(|(_, v)| EventType::from_button(&v));
    let Some(kind) = kind else {
        return detail(StatusCode::BAD_REQUEST, "form field t must be succeeded, failed or canceled");
    };
    match app.emit(psid, kind).await {
        Ok((session, outcome)) => {
            // Where to go follows what the order now is, not which button was pressed: a
            // "cancel" after a payment (a second tab, the back button) leaves the order PAID.
            let status = match outcome {
                PaymentOk::Applied(status) => Some(status),
                PaymentOk::Replay => app.store.order(&session.order_id).ok().flatten().map(|o| o.status),
            };
            let order_id = &session.order_id;
            response::see_other(&match status {
                Some(OrderStatus::Failed) => format!("/demo/checkout?status=failed&order_id={order_id}"),
                Some(OrderStatus::Canceled) => format!("/demo/checkout?status=canceled&order_id={order_id}"),
                // The success page polls the order and explains every other status.
                _ => format!("/demo/success?order_id={order_id}"),
            })
        }
        Err(e) => flow_error(e),
    }
}

fn order(app: &App, order_id: &str) -> Response<Body> {
    match app.store.order(order_id) {
        Ok(Some(order)) => json(
            StatusCode::OK,
            &OrderReply {
                order_id: &order.order_id,
                status: order.status.as_str(),
                cls: &order.cls,
                qty: order.qty,
                amount: order.amount,
                currency: &order.currency,
                paid_at: order.paid_at_ms.map(flow::rfc3339_ms),
                ticket_code: order.ticket_code.as_deref(),
                got_goodie: order.got_goodie,
            },
        ),
        Ok(None) => detail(StatusCode::NOT_FOUND, "unknown order"),
        Err(e) => response::store_unavailable(&e),
    }
}

/// What the MockPay page shows. The psid is the capability; the email is not exposed.
fn session(app: &App, psid: &str) -> Response<Body> {
    match app.store.session(psid) {
        Ok(Some(session)) => {
            let status = match app.store.order(&session.order_id) {
                Ok(order) => order.map(|o| o.status.as_str()),
                Err(e) => return response::store_unavailable(&e),
            };
            json(
                StatusCode::OK,
                &json!({
                    "psid": session.psid,
                    "order_id": session.order_id,
                    "cls": session.cls,
                    "amount": session.amount,
                    "currency": session.currency,
                    "expires_at": flow::rfc3339_ms(session.expires_at_ms),
                    "expires_in_ms": session.expires_at_ms.saturating_sub(flow::now_ms()),
                    "order_status": status,
                }),
            )
        }
        Ok(None) => detail(StatusCode::NOT_FOUND, "unknown payment session"),
        Err(e) => response::store_unavailable(&e),
    }
}

async fn inventory(app: &App) -> Response<Body> {
    match inventory_json(app).await {
        Ok(value) => json(StatusCode::OK, &value),
        Err(e) => flow_error(e),
    }
}

/// Inventory per class id, and the goodie pool, from TigerBeetle's balances.
pub(super) async fn inventory_json(app: &App) -> Result<serde_json::Value, FlowError> {
    let (classes, goodies) = app.inventory().await?;
    let timestamp = flow::now_ms();
    let mut out = serde_json::Map::new();
    for (class, inv) in app.config.classes.iter().zip(classes) {
        out.insert(
            class.id.clone(),
            json!({
                "name": class.name,
                "price": class.price_cents,
                "capacity": inv.capacity,
                "sold": inv.sold,
                "active_holds": inv.active_holds,
                "available": inv.available,
                "sold_out": inv.available == 0,
                "timestamp": timestamp,
            }),
        );
    }
    out.insert(
        "goodies".into(),
        json!({
            "limit": goodies.capacity,
            "used": goodies.sold,
            "active_holds": goodies.active_holds,
            "available": goodies.available,
            "timestamp": timestamp,
        }),
    );
    Ok(serde_json::Value::Object(out))
}

/// What the pages show about the event (no secrets).
fn event(app: &App) -> Response<Body> {
    let c = &app.config;
    json(
        StatusCode::OK,
        &json!({
            "event_name": c.event_name,
            "event_date": c.event_date,
            "event_tagline": c.event_tagline,
            "currency": c.currency,
            "goodie_limit": c.goodie_limit,
            "hold_timeout_s": c.hold_timeout_s,
            "classes": c.classes.iter().map(|k| json!({"id": k.id, "name": k.name, "price_cents": k.price_cents})).collect::<Vec<_>>(),
        }),
    )
}

/// The ticket code as a QR code (SVG), made here: no network needed to show a ticket.
fn qr(app: &App, order_id: &str) -> Response<Body> {
    let order = match app.store.order(order_id) {
        Ok(Some(order)) => order,
        Ok(None) => return detail(StatusCode::NOT_FOUND, "unknown order"),
        Err(e) => return response::store_unavailable(&e),
    };
    let Some(code) = order.ticket_code.filter(|_| order.status == crate::store::OrderStatus::Paid) else {
        return detail(StatusCode::NOT_FOUND, "this order has no ticket");
    };
    let qr = qrcode::QrCode::new(code.as_bytes()).expect("a 14-character code always fits a QR code");
    let svg = qr.render::<qrcode::render::svg::Color<'_>>().min_dimensions(256, 256).quiet_zone(true).build();
    let mut response = response::bytes(StatusCode::OK, "image/svg+xml", Bytes::from(svg));
    response
        .headers_mut()
        .insert(hyper::header::CACHE_CONTROL, hyper::header::HeaderValue::from_static("private, max-age=86400"));
    response
}

pub(super) fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<std::borrow::Cow<'a, str>> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v)
}

async fn reserve(app: &App, query: Option<&str>) -> Response<Body> {
    let cls = query_param(query, "cls");
    match app.reserve(cls.as_deref()).await {
        Ok((ticket, goodie)) => json(
            StatusCode::OK,
            &ReserveReply { tb_transfer_id: ticket.to_string(), goodie_tb_transfer_id: goodie.map(|g| g.to_string()) },
        ),
        Err(e) => flow_error(e),
    }
}

async fn commit(app: &App, query: Option<&str>) -> Response<Body> {
    let parse = |name: &str| -> Result<Option<u128>, Response<Body>> {
        match query_param(query, name) {
            None => Ok(None),
            Some(v) if v.is_empty() || v == "null" => Ok(None),
            Some(v) => match v.parse::<u128>() {
                Ok(id) if id != 0 && id != u128::MAX => Ok(Some(id)),
                _ => Err(detail(StatusCode::BAD_REQUEST, &format!("{name} must be a decimal transfer id"))),
            },
        }
    };
    let ticket = match parse("tb_transfer_id") {
        Ok(Some(id)) => id,
        Ok(None) => return detail(StatusCode::BAD_REQUEST, "tb_transfer_id is required"),
        Err(response) => return response,
    };
    let goodie = match parse("goodie_tb_transfer_id") {
        Ok(id) => id,
        Err(response) => return response,
    };
    match app.commit(ticket, goodie).await {
        Ok(results) => {
            let name = |r: &crate::accounting::TransferResult| format!("{r:?}");
            let ticket_ok = results[0].is_success();
            let status = if ticket_ok { StatusCode::OK } else { StatusCode::CONFLICT };
            json(status, &CommitReply { ok: ticket_ok, ticket: name(&results[0]), goodie: results.get(1).map(name) })
        }
        Err(e) => flow_error(e),
    }
}

async fn healthz(app: &App) -> Response<Body> {
    let tb = tokio::time::timeout(Duration::from_secs(2), app.ledger.ping()).await;
    let tb = match tb {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("TigerBeetle: {e:#}")),
        Err(_) => Err("TigerBeetle did not answer within 2000 ms".to_string()),
    };
    let store = app.store.order("healthz").map(|_| ()).map_err(|e| format!("store: {e:#}"));
    match (tb, store) {
        (Ok(()), Ok(())) => json(
            StatusCode::OK,
            &json!({"ok": true, "tigerbeetle": "ok", "store": "ok", "version": env!("CARGO_PKG_VERSION")}),
        ),
        (tb, store) => {
            let problems: Vec<String> = [tb.err(), store.err()].into_iter().flatten().collect();
            flow_error(FlowError::Unavailable(problems.join("; ")))
        }
    }
}

/// Prometheus text: the recorded metrics, plus gauges read at scrape time (holds from
/// TigerBeetle's balances, orders by status from the store's counters).
async fn metrics_text(app: &App) -> Response<Body> {
    let mut extra: Vec<(String, i64)> = Vec::new();
    if let Ok(Ok((classes, goodies))) =
        tokio::time::timeout(Duration::from_secs(1), app.ledger.inventory(&app.config)).await
    {
        let held: u64 = classes.iter().map(|c| c.active_holds).sum();
        extra.push(("tigerfans_holds_active".into(), held as i64));
        extra.push(("tigerfans_goodie_holds_active".into(), goodies.active_holds as i64));
        let sold: u64 = classes.iter().map(|c| c.sold).sum();
        extra.push(("tigerfans_tickets_sold".into(), sold as i64));
    }
    if let Ok(counts) = app.store.order_counts() {
        for (status, n) in counts {
            extra.push((format!("tigerfans_orders{{status=\"{}\"}}", status.as_str()), n as i64));
        }
    }
    let extra: Vec<(&str, &str, i64)> =
        extra.iter().map(|(name, v)| (name.as_str(), "Read at scrape time.", *v)).collect();
    response::bytes(StatusCode::OK, "text/plain; version=0.0.4", Bytes::from(app.metrics.render(&extra)))
}

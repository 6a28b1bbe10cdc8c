//! The admin's pages and JSON, behind a signed session cookie, and the live view: a
//! Server-Sent Events stream of snapshots, pushed every second and right after store commits.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::limits::HttpLimits;
use super::request::{limit_param, query_param, read_body, wrong_media_type, BadInput, JSON};
use super::response::{self, detail, json as json_response, Body};
use super::shop::inventory_json;
use crate::clock::{now_ms, rfc3339_ms};
use crate::flow::App;
use crate::order::{Order, OrderStatus};
use crate::slots;

/// Live admin views at once; more get 503 (each costs a snapshot per second).
pub const EVENT_STREAMS_MAX: usize = 16;
pub const SNAPSHOT_ORDERS: usize = 50;
pub const SNAPSHOT_HOLDS: usize = 50;
pub const SNAPSHOT_EXPIRED: usize = 20;
/// Commits come in bursts under load: push at most this often.
pub const SNAPSHOT_INTERVAL_MIN_MS: u64 = 250;

static EVENT_STREAMS: AtomicUsize = AtomicUsize::new(0);

/// Refunds a paid order (`flow::refund`); a retry answers the same.
pub async fn refund(
    app: &App,
    limits: &HttpLimits,
    by: &crate::staff::StaffMember,
    order_id: &str,
    request: Request<Incoming>,
) -> Response<Body> {
    let body = match super::session::json_body(app, limits, by, request).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let reason = match super::staff::string_field(&body, "reason") {
        Ok(reason) => reason.unwrap_or("").to_string(),
        Err(refused) => return refused.into(),
    };
    let force = match body.get("force") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(force)) => *force,
        Some(_) => return detail(StatusCode::BAD_REQUEST, "force must be true or false"),
    };
    let refunded = match app.refund(order_id, &reason, force, by).await {
        Ok(refunded) => refunded,
        Err(e) => return response::flow_error(e),
    };
    let order = &refunded.order;
    let money = format!("{}.{:02} {}", order.amount / 100, order.amount % 100, order.currency);
    let instruction = match order.sale.as_ref().map(|s| s.method) {
        Some(crate::order::PaymentMethod::Cash) => format!("pay back {money} in cash"),
        Some(crate::order::PaymentMethod::Card) => format!("refund {money} to the card at the terminal"),
        None => format!("MockPay refunds {money} to the customer (a demo of the provider's refund call)"),
    };
    if refunded.now && order.sale.is_none() {
        tracing::info!(order_id = %order.order_id, amount = order.amount, "MockPay: refund requested (demo)");
    }
    let r = order.refund.as_ref().expect("a refunded order says who refunded it");
    json_response(
        StatusCode::OK,
        &json!({
            "order_id": order.order_id,
            "status": order.status.as_str(),
            "refunded_at": rfc3339_ms(r.at_ms),
            "refunded_by": r.by,
            "reason": r.reason,
            "forced": r.forced,
            "instruction": instruction,
        }),
    )
}

pub fn order_json(order: &Order) -> Value {
    json!({
        "order_id": order.order_id,
        "status": order.status.as_str(),
        "cls": order.cls,
        "amount": order.amount,
        "currency": order.currency,
        "email": order.email,
        "created_at": rfc3339_ms(order.created_at_ms),
        "paid_at": order.paid_at_ms.map(rfc3339_ms),
        "ticket_code": order.ticket_code,
        "got_goodie": order.got_goodie,
        "payment_method": order.sale.as_ref().map(|s| s.method.as_str()),
        "sold_by": order.sale.as_ref().map(|s| s.staff.as_str()),
        "refunded_at": order.refund.as_ref().map(|r| rfc3339_ms(r.at_ms)),
        "refunded_by": order.refund.as_ref().map(|r| r.by.as_str()),
        "refund_reason": order.refund.as_ref().map(|r| r.reason.as_str()),
    })
}

fn hold_json(expires_at_ms: u64, order: &Order, now: u64) -> Value {
    json!({
        "order_id": order.order_id,
        "cls": order.cls,
        "email": order.email,
        "created_at": rfc3339_ms(order.created_at_ms),
        "expires_at": rfc3339_ms(expires_at_ms),
        "expires_in_ms": expires_at_ms.saturating_sub(now),
    })
}

/// A search's filters: how many, which status, what text.
fn search_params(query: Option<&str>) -> Result<(usize, Option<OrderStatus>, Option<String>), BadInput> {
    let limit = limit_param(query, 100)?;
    let status = match query_param(query, "status")?.filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => match OrderStatus::parse(&s) {
            Some(status) => Some(status),
            None => return Err(BadInput(format!("unknown status {s:?}"))),
        },
    };
    Ok((limit, status, query_param(query, "q")?.map(|q| q.into_owned())))
}

/// Searches at once; more get 503. Each decodes up to `ADMIN_SCAN_MAX` orders.
pub const SEARCHES_MAX: usize = 2;
static SEARCHES: AtomicUsize = AtomicUsize::new(0);

/// The admin's order search. It may decode up to `ADMIN_SCAN_MAX` orders (tens of ms): on a
/// blocking thread, not on an async worker that serves the shop, and `SEARCHES_MAX` at a time.
pub async fn orders(app: &App, query: Option<&str>) -> Response<Body> {
    let (limit, status, q) = match search_params(query) {
        Ok(params) => params,
        Err(refused) => return refused.into(),
    };
    let Some(slot) = slots::take(&SEARCHES, SEARCHES_MAX) else {
        return detail(StatusCode::SERVICE_UNAVAILABLE, "too many order searches at once; try again");
    };
    let store = app.store.clone();
    let searched = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        // Each PAID order with its admission, if it got in (at most `ADMIN_LIST_MAX` lookups).
        let orders = store.recent_orders(limit, status, q.as_deref())?;
        let mut listed = Vec::with_capacity(orders.len());
        for order in &orders {
            let mut value = order_json(order);
            if order.status == OrderStatus::Paid {
                if let Some(a) = store.admission(&order.order_id)? {
                    value["admitted_at"] = json!(rfc3339_ms(a.admitted_at_ms));
                    value["admitted_door"] = json!(a.door);
                }
            }
            listed.push(value);
        }
        anyhow::Ok(listed)
    })
    .await;
    match searched {
        Ok(Ok(orders)) => json_response(StatusCode::OK, &json!({"orders": orders})),
        Ok(Err(e)) => response::store_unavailable(&e),
        Err(e) => detail(StatusCode::INTERNAL_SERVER_ERROR, &format!("order search crashed: {e}")),
    }
}

pub fn pending(app: &App, query: Option<&str>) -> Response<Body> {
    let limit = match limit_param(query, 100) {
        Ok(limit) => limit,
        Err(refused) => return refused.into(),
    };
    let now = now_ms();
    match app.store.active_holds(limit) {
        Ok(holds) => json_response(
            StatusCode::OK,
            &json!({"holds": holds.iter().map(|(at, o)| hold_json(*at, o, now)).collect::<Vec<_>>()}),
        ),
        Err(e) => response::store_unavailable(&e),
    }
}

pub async fn goodies(app: &App) -> Response<Body> {
    match app.inventory().await {
        Ok((_, goodies)) => json_response(
            StatusCode::OK,
            &json!({
                "limit": goodies.capacity,
                "used": goodies.sold,
                "active_holds": goodies.active_holds,
                "available": goodies.available,
            }),
        ),
        Err(e) => response::flow_error(e),
    }
}

/// One audit at a time: it holds every order and every transfer in memory while it runs.
static AUDIT_RUNNING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// A live audit waits this long for TigerBeetle in all (it reads every transfer).
pub const AUDIT_TIMEOUT_MS: u64 = 120_000;

/// `tigerfans audit --base URL`: the audit of the running server. 200 with the report whether it
/// passed or not (`ok`); 503 if another audit runs or TigerBeetle does not answer.
pub async fn audit(app: &Arc<App>) -> Response<Body> {
    if AUDIT_RUNNING.swap(true, Ordering::AcqRel) {
        return detail(StatusCode::SERVICE_UNAVAILABLE, "an audit is already running");
    }
    // The audit runs in a task of its own that owns the guard: a client that goes away does not
    // free the slot while the audit still runs.
    let app = app.clone();
    let task = tokio::spawn(async move {
        struct Done;
        impl Drop for Done {
            fn drop(&mut self) {
                AUDIT_RUNNING.store(false, Ordering::Release);
            }
        }
        let _done = Done;
        let ledger = app.audit_ledger()?;
        let timeout = Duration::from_millis(AUDIT_TIMEOUT_MS);
        crate::audit::run(&app.config, &ledger, &app.store, true, app.audit_limits, timeout).await
    });
    match task.await {
        Ok(Ok(report)) => json_response(StatusCode::OK, &report),
        Ok(Err(e)) => detail(StatusCode::SERVICE_UNAVAILABLE, &format!("audit failed: {e:#}")),
        Err(e) => detail(StatusCode::INTERNAL_SERVER_ERROR, &format!("audit crashed: {e}")),
    }
}

/// Everything the admin page shows, in one JSON object.
async fn snapshot(app: &App) -> Value {
    let now = now_ms();
    let inventory = inventory_json(app).await.unwrap_or_else(|e| json!({"error": format!("{e:?}")}));
    let counts: serde_json::Map<String, Value> = app
        .store
        .order_counts()
        .unwrap_or_default()
        .into_iter()
        .map(|(s, n)| (s.as_str().to_string(), json!(n)))
        .collect();
    let orders = app.store.recent_orders(SNAPSHOT_ORDERS, None, None).unwrap_or_default();
    let holds = app.store.active_holds(SNAPSHOT_HOLDS).unwrap_or_default();
    let expired = app.store.recent_expired(SNAPSHOT_EXPIRED).unwrap_or_default();
    json!({
        "inventory": inventory,
        "counts": counts,
        "orders": orders.iter().map(order_json).collect::<Vec<_>>(),
        "holds": holds.iter().map(|(at, o)| hold_json(*at, o, now)).collect::<Vec<_>>(),
        "expired": expired
            .iter()
            .map(|(at, o)| json!({"order_id": o.order_id, "cls": o.cls, "email": o.email, "expired_at": rfc3339_ms(*at)}))
            .collect::<Vec<_>>(),
        "server_time": now,
    })
}

/// A frame the client has not taken within this time ends its stream: a client that stopped
/// reading must not hold one of the `EVENT_STREAMS_MAX` slots (nor its snapshots) for good.
pub const STREAM_WRITE_TIMEOUT_MS: u64 = 10_000;

/// What ends a live stream besides its client: the server's shutdown, and any logout.
struct StreamEnds {
    shutdown: tokio::sync::watch::Receiver<bool>,
    logouts: tokio::sync::watch::Receiver<u64>,
}

impl StreamEnds {
    /// Resolves when the stream must end.
    async fn ended(&mut self) {
        tokio::select! {
            _ = self.shutdown.changed() => {}
            _ = self.logouts.changed() => {}
        }
    }
}

/// Sends one frame, waiting at most `timeout` for the client to make room. False when the
/// stream must end: the client left or stalled, an admin logged out, or the server stops.
async fn send_frame(sender: &mpsc::Sender<Bytes>, frame: Bytes, timeout: Duration, ends: &mut StreamEnds) -> bool {
    tokio::select! {
        sent = tokio::time::timeout(timeout, sender.send(frame)) => matches!(sent, Ok(Ok(()))),
        _ = ends.ended() => false,
    }
}

/// Whether the live view's session still belongs to an admin: signed, not expired, and its
/// account neither removed nor logged out since (checked before every frame).
fn still_admin(app: &App, member: &crate::staff::StaffMember) -> bool {
    app.admin.session_still_valid(&member.session, now_ms())
        && matches!(app.staff_member(member.session.clone(), member.number),
            Ok(Some(m)) if m.role == crate::staff::Role::Admin)
}

/// `text/event-stream` of `snapshot` events until the client leaves or stalls, its session
/// expires, an admin logs out, or the server stops.
pub fn events(app: Arc<App>, member: crate::staff::StaffMember) -> Response<Body> {
    let Some(slot) = slots::take(&EVENT_STREAMS, EVENT_STREAMS_MAX) else {
        return detail(StatusCode::SERVICE_UNAVAILABLE, "too many live admin views");
    };
    let (sender, receiver) = mpsc::channel::<Bytes>(2);
    tokio::spawn(async move {
        let _slot = slot;
        let mut commits = app.store.commits();
        let mut ends = StreamEnds { shutdown: app.shutdown.clone(), logouts: app.admin.logouts() };
        let timeout = Duration::from_millis(STREAM_WRITE_TIMEOUT_MS);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Tell the browser how soon to reconnect if the stream breaks.
        if !send_frame(&sender, Bytes::from_static(b"retry: 2000\n\n"), timeout, &mut ends).await {
            return;
        }
        // The session may have expired or been replaced while the stream was open.
        while still_admin(&app, &member) && !*app.shutdown.borrow() {
            let data = serde_json::to_string(&snapshot(&app).await).expect("snapshots serialize");
            let frame = Bytes::from(format!("event: snapshot\ndata: {data}\n\n"));
            if !send_frame(&sender, frame, timeout, &mut ends).await {
                return;
            }
            tokio::select! {
                _ = tick.tick() => {}
                changed = commits.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(SNAPSHOT_INTERVAL_MIN_MS)).await;
                }
                _ = ends.ended() => return,
            }
        }
    });
    let mut response = Response::new(Body::Stream(receiver));
    let headers = response.headers_mut();
    headers.insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(hyper::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub async fn upload_bench_result(app: &App, limits: &HttpLimits, request: Request<Incoming>) -> Response<Body> {
    let name = request
        .headers()
        .get("x-result-name")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().chars().filter(|c| c.is_ascii_graphic() || *c == ' ').take(64).collect::<String>())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| format!("result-{}", now_ms()));
    if let Some(response) = wrong_media_type(&request, JSON) {
        return response;
    }
    let (_, body) = match read_body(limits, request).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let report: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return detail(StatusCode::BAD_REQUEST, &format!("invalid JSON: {e}")),
    };
    if !report["phases"].is_array() {
        return detail(StatusCode::BAD_REQUEST, "not a tigerfans bench --json report (no phases)");
    }
    let stored = json!({"uploaded_at": rfc3339_ms(now_ms()), "report": report});
    match app.store.save_bench_result(name, serde_json::to_vec(&stored).expect("encodes")).await {
        Ok(true) => json_response(StatusCode::OK, &json!({"ok": true})),
        Ok(false) => detail(StatusCode::CONFLICT, "too many stored results"),
        Err(e) => detail(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

pub fn bench_results(app: &App) -> Response<Body> {
    match app.store.bench_results() {
        Ok(results) => {
            let results: Vec<Value> = results
                .into_iter()
                .filter_map(|(name, bytes)| {
                    let mut v: Value = serde_json::from_slice(&bytes).ok()?;
                    v["name"] = json!(name);
                    Some(v)
                })
                .collect();
            json_response(StatusCode::OK, &json!({"results": results, "reference": crate::bench::reference::REFERENCE}))
        }
        Err(e) => response::store_unavailable(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ends() -> (StreamEnds, tokio::sync::watch::Sender<bool>, tokio::sync::watch::Sender<u64>) {
        let (shutdown_tx, shutdown) = tokio::sync::watch::channel(false);
        let (logouts_tx, logouts) = tokio::sync::watch::channel(0);
        (StreamEnds { shutdown, logouts }, shutdown_tx, logouts_tx)
    }

    #[tokio::test]
    async fn a_stream_whose_client_stopped_reading_ends_at_the_write_timeout() {
        let (sender, _unread) = mpsc::channel::<Bytes>(2);
        let (mut ends, _shutdown, _logouts) = ends();
        let timeout = Duration::from_millis(50);
        assert!(send_frame(&sender, Bytes::from_static(b"1"), timeout, &mut ends).await);
        assert!(send_frame(&sender, Bytes::from_static(b"2"), timeout, &mut ends).await);
        let started = std::time::Instant::now();
        assert!(!send_frame(&sender, Bytes::from_static(b"3"), timeout, &mut ends).await, "stalled");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_logout_ends_a_stalled_stream_at_once() {
        let (sender, _unread) = mpsc::channel::<Bytes>(1);
        let (mut ends, _shutdown, logouts) = ends();
        let long = Duration::from_secs(3600);
        assert!(send_frame(&sender, Bytes::from_static(b"1"), long, &mut ends).await);
        let stalled = tokio::spawn(async move { send_frame(&sender, Bytes::from_static(b"2"), long, &mut ends).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        logouts.send_modify(|n| *n += 1);
        let ended = tokio::time::timeout(Duration::from_secs(2), stalled).await.expect("ended at the logout");
        assert!(!ended.unwrap());
    }
}

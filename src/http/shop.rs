//! The shop's handlers: the customer's pages and JSON, MockPay's page and buttons, and the
//! payment provider's webhook. Each decodes its request, calls one use case, encodes its answer.

use bytes::Bytes;
use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::Serialize;
use serde_json::json;

use super::limits::HttpLimits;
use super::request::{form_field, read_body, wrong_media_type, FORM, JSON};
use super::response::{self, detail, flow_error, json, page, Body};
use crate::clock::{now_ms, rfc3339_ms};
use crate::flow::{App, CheckoutOk, FlowError, PaymentOk};
use crate::order::OrderStatus;
use crate::payment::{EventType, SIGNATURE_HEADER};
use crate::throttle::Verdict;

pub fn asset(file: &str) -> Response<Body> {
    if file.starts_with('.') || file.ends_with(".html") {
        return detail(StatusCode::NOT_FOUND, "not found");
    }
    page(file)
}

pub fn mockpay_page(app: &App, psid: &str) -> Response<Body> {
    match app.store.session(psid) {
        Ok(Some(_)) => page("mockpay.html"),
        Ok(None) => detail(StatusCode::NOT_FOUND, "unknown payment session"),
        Err(e) => response::store_unavailable(&e),
    }
}

pub async fn checkout(app: &App, limits: &HttpLimits, peer: SocketAddr, request: Request<Incoming>) -> Response<Body> {
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
    // The appliance's own kiosk and tools (127.0.0.1, ::1) are not limited; every other address
    // is, from here to the hold: the place is taken before the hold, so checkouts sent at the
    // same moment cannot all pass, and given back if no hold is placed.
    let limited = !is_local_tool(peer.ip());
    let admitted_ms = now_ms();
    if limited {
        if let Verdict::Refused { retry_after_s, why } = app.throttle.admit(peer.ip(), admitted_ms) {
            app.metrics.checkouts_throttled.add(1);
            let why = format!("{why}: try again in {retry_after_s} s");
            return response::detail_retry_after(StatusCode::TOO_MANY_REQUESTS, &why, retry_after_s);
        }
    }
    match app.checkout(&request.cls, &request.customer_email).await {
        Ok(ok) => checkout_reply(&ok),
        Err(e) => {
            if limited {
                app.throttle.no_hold(peer.ip(), admitted_ms);
            }
            flow_error(e)
        }
    }
}

/// The address a browser or a tool on the appliance itself comes from (also as an IPv4-mapped
/// address, on a dual-stack listener).
fn is_local_tool(address: std::net::IpAddr) -> bool {
    let address = crate::throttle::client_key(address);
    address == std::net::Ipv4Addr::LOCALHOST || address == std::net::Ipv6Addr::LOCALHOST
}

fn checkout_reply(ok: &CheckoutOk) -> Response<Body> {
    let reply = CheckoutReply {
        order_id: &ok.order_id,
        redirect_url: format!("/mockpay/{}", ok.psid),
        amount: ok.amount,
        currency: &ok.currency,
    };
    json(StatusCode::OK, &reply)
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

pub async fn webhook(app: &App, limits: &HttpLimits, request: Request<Incoming>) -> Response<Body> {
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

pub async fn emit(app: &App, limits: &HttpLimits, psid: &str, request: Request<Incoming>) -> Response<Body> {
    if let Some(response) = wrong_media_type(&request, FORM) {
        return response;
    }
    let (_, body) = match read_body(limits, request).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let t = match form_field(&body, "t") {
        Ok(t) => t,
        Err(refused) => return refused.into(),
    };
    let kind = t.and_then(|t| EventType::from_button(&t));
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

pub fn order(app: &App, order_id: &str) -> Response<Body> {
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
                paid_at: order.paid_at_ms.map(rfc3339_ms),
                ticket_code: order.ticket_code.as_deref(),
                got_goodie: order.got_goodie,
            },
        ),
        Ok(None) => detail(StatusCode::NOT_FOUND, "unknown order"),
        Err(e) => response::store_unavailable(&e),
    }
}

/// What the MockPay page shows. The psid is the capability; the email is not exposed.
pub fn session(app: &App, psid: &str) -> Response<Body> {
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
                    "expires_at": rfc3339_ms(session.expires_at_ms),
                    "expires_in_ms": session.expires_at_ms.saturating_sub(now_ms()),
                    "order_status": status,
                }),
            )
        }
        Ok(None) => detail(StatusCode::NOT_FOUND, "unknown payment session"),
        Err(e) => response::store_unavailable(&e),
    }
}

pub async fn inventory(app: &App) -> Response<Body> {
    match inventory_json(app).await {
        Ok(value) => json(StatusCode::OK, &value),
        Err(e) => flow_error(e),
    }
}

/// Inventory per class id, and the goodie pool, from TigerBeetle's balances.
pub async fn inventory_json(app: &App) -> Result<serde_json::Value, FlowError> {
    let (classes, goodies) = app.inventory().await?;
    let timestamp = now_ms();
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
pub fn event(app: &App) -> Response<Body> {
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
            "online_sales": c.mockpay,
            "re_entry": c.re_entry,
            "classes": c.classes.iter().map(|k| json!({"id": k.id, "name": k.name, "price_cents": k.price_cents})).collect::<Vec<_>>(),
        }),
    )
}

/// The ticket's QR code (SVG), made here: no network needed to show a ticket.
pub fn qr(app: &App, order_id: &str) -> Response<Body> {
    let order = match app.store.order(order_id) {
        Ok(Some(order)) => order,
        Ok(None) => return detail(StatusCode::NOT_FOUND, "unknown order"),
        Err(e) => return response::store_unavailable(&e),
    };
    if order.ticket_code.is_none() || order.status != OrderStatus::Paid {
        return detail(StatusCode::NOT_FOUND, "this order has no ticket");
    }
    // The signed payload (`ticket`), not the printed code: the door refuses a forged one unread.
    let payload = app.ticket_key.payload(&order.order_id);
    let qr = qrcode::QrCode::new(payload.as_bytes()).expect("a 69-character payload always fits a QR code");
    let svg = qr.render::<qrcode::render::svg::Color<'_>>().min_dimensions(256, 256).quiet_zone(true).build();
    let mut response = response::bytes(StatusCode::OK, "image/svg+xml", Bytes::from(svg));
    response
        .headers_mut()
        .insert(hyper::header::CACHE_CONTROL, hyper::header::HeaderValue::from_static("private, max-age=86400"));
    response
}

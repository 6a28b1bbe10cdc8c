//! The box office's JSON: a sale, and the end-of-shift report.

use std::collections::BTreeMap;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};

use super::limits::HttpLimits;
use super::response::{self, detail, flow_error, json as json_response, Body};
use super::session::json_body;
use super::staff::string_field;
use crate::flow::App;
use crate::order::{OrderStatus, PaymentMethod};
use crate::staff::{Role, StaffMember};

pub async fn sell(app: &App, limits: &HttpLimits, staff: &StaffMember, request: Request<Incoming>) -> Response<Body> {
    let body = match json_body(app, limits, staff, request).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let fields = (string_field(&body, "cls"), string_field(&body, "payment"), string_field(&body, "customer_email"));
    let (cls, payment, email) = match fields {
        (Ok(Some(cls)), Ok(Some(payment)), Ok(email)) => (cls, payment, email),
        (Err(refused), _, _) | (_, Err(refused), _) | (_, _, Err(refused)) => return refused.into(),
        _ => return detail(StatusCode::BAD_REQUEST, "cls and payment are required"),
    };
    let Some(method) = PaymentMethod::parse(payment) else {
        return detail(StatusCode::BAD_REQUEST, "payment must be cash or card");
    };
    match app.box_office_sale(cls, method, email, staff).await {
        Ok(order) => json_response(
            StatusCode::OK,
            &json!({
                "order_id": order.order_id,
                "ticket_code": order.ticket_code,
                "status": order.status.as_str(),
                "qr_url": format!("/api/orders/{}/qr.svg", order.order_id),
                "cls": order.cls,
                "amount": order.amount,
                "currency": order.currency,
                "payment": method.as_str(),
            }),
        ),
        Err(e) => flow_error(e),
    }
}

/// Per staff member: tickets sold and money taken by payment method (refunded sales not
/// counted). A box-office account sees its own line only. Reads every order (a shift report,
/// not a hot path), on a blocking thread.
pub async fn report(app: &App, staff: &StaffMember) -> Response<Body> {
    let store = app.store.clone();
    let only = (staff.role != Role::Admin).then(|| staff.name.clone());
    let tallied = tokio::task::spawn_blocking(move || {
        let mut lines: BTreeMap<String, [u64; 5]> = BTreeMap::new();
        store
            .each_order(|order| {
                let Some(sale) = order.sale.as_ref().filter(|_| order.status == OrderStatus::Paid) else { return true };
                if only.as_ref().is_some_and(|name| *name != sale.staff) {
                    return true;
                }
                let line = lines.entry(sale.staff.clone()).or_default();
                line[0] += 1;
                let at = if sale.method == PaymentMethod::Cash { 1 } else { 3 };
                line[at] += 1;
                line[at + 1] += order.amount;
                true
            })
            .map(|()| lines)
    })
    .await;
    let lines = match tallied {
        Ok(Ok(lines)) => lines,
        Ok(Err(e)) => return response::store_unavailable(&e),
        Err(e) => return detail(StatusCode::INTERNAL_SERVER_ERROR, &format!("the report crashed: {e}")),
    };
    let staff_lines: Vec<Value> = lines
        .iter()
        .map(|(name, [tickets, cash_count, cash_amount, card_count, card_amount])| {
            json!({"name": name, "tickets": tickets, "cash_count": cash_count, "cash_amount": cash_amount,
                   "card_count": card_count, "card_amount": card_amount})
        })
        .collect();
    json_response(StatusCode::OK, &json!({"currency": app.config.currency, "staff": staff_lines}))
}

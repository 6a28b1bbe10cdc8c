//! The door's JSON: a scan, and the live counts.

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};

use super::limits::HttpLimits;
use super::response::{flow_error, json as json_response, Body};
use super::session::json_body;
use super::staff::string_field;
use crate::clock::rfc3339_ms;
use crate::flow::{App, Direction, Scan};
use crate::order::Admission;
use crate::staff::StaffMember;

fn admission_json(result: &str, a: &Admission) -> Value {
    json!({
        "result": result,
        "order_id": a.order_id,
        "cls": a.cls,
        "admitted_at": rfc3339_ms(a.admitted_at_ms),
        "door": a.door,
        "staff": a.staff,
    })
}

/// Every decided scan is a 200 with its result; 4xx only for a malformed request, 503 when the
/// ledger or the store cannot answer (never a guess).
pub async fn scan(app: &App, limits: &HttpLimits, staff: &StaffMember, request: Request<Incoming>) -> Response<Body> {
    let body = match json_body(app, limits, staff, request).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let (code, door) = match (string_field(&body, "code"), string_field(&body, "door")) {
        (Ok(Some(code)), Ok(Some(door))) => (code, door),
        (Err(refused), _) | (_, Err(refused)) => return refused.into(),
        _ => return super::response::detail(StatusCode::BAD_REQUEST, "code and door are required"),
    };
    let direction = match string_field(&body, "direction") {
        Ok(None | Some("in")) => Direction::In,
        Ok(Some("out")) => Direction::Out,
        Ok(Some(_)) => return super::response::detail(StatusCode::BAD_REQUEST, "direction is in or out"),
        Err(refused) => return refused.into(),
    };
    let answer = match app.scan(code, door, direction, staff).await {
        Ok(Scan::Admitted(a)) => admission_json("admitted", &a),
        Ok(Scan::AlreadyAdmitted(a)) => admission_json("already_admitted", &a),
        Ok(Scan::NotPaid { order_id, status }) => {
            json!({"result": "not_paid", "order_id": order_id, "status": status.as_str()})
        }
        Ok(Scan::Refunded { order_id }) => json!({"result": "refunded", "order_id": order_id}),
        Ok(Scan::Unknown) => json!({"result": "unknown"}),
        Ok(Scan::Invalid(why)) => json!({"result": "invalid", "detail": why}),
        Ok(Scan::Exited(a)) => json!({
            "result": "exited", "order_id": a.order_id, "cls": a.cls, "exited_at": rfc3339_ms(a.admitted_at_ms),
            "door": a.door, "staff": a.staff,
        }),
        Ok(Scan::NotInside { order_id }) => json!({"result": "not_inside", "order_id": order_id}),
        Ok(Scan::EntriesUsedUp { order_id }) => json!({"result": "entries_used_up", "order_id": order_id}),
        Err(e) => return flow_error(e),
    };
    json_response(StatusCode::OK, &answer)
}

/// Admitted and sold per class, from the ledger's balances.
pub async fn counts(app: &App) -> Response<Body> {
    match app.inventory().await {
        Ok((classes, _)) => {
            let classes: Vec<Value> = app
                .config
                .classes
                .iter()
                .zip(classes)
                .map(|(c, inv)| json!({"cls": c.id, "name": c.name, "admitted": inv.admitted, "sold": inv.sold}))
                .collect();
            json_response(StatusCode::OK, &json!({"classes": classes}))
        }
        Err(e) => flow_error(e),
    }
}

//! The admin's staff accounts and the activity log, as JSON.

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};

use super::limits::HttpLimits;
use super::request::{limit_param, BadInput};
use super::response::{self, detail, flow_error, json as json_response, Body};
use super::session::json_body;
use crate::clock::rfc3339_ms;
use crate::flow::App;
use crate::staff::{Role, StaffMember};

/// A JSON object's string field: `None` when absent, a 400 when not a string.
pub fn string_field<'v>(body: &'v Value, name: &str) -> Result<Option<&'v str>, BadInput> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(BadInput(format!("{name} must be a string"))),
    }
}

pub fn list(app: &App) -> Response<Body> {
    match app.store.staff_list() {
        Ok(records) => {
            let staff: Vec<Value> = records
                .iter()
                .filter(|r| r.removed_at_ms.is_none())
                .map(|r| json!({"name": r.name, "role": r.role.as_str(), "created_at": rfc3339_ms(r.created_at_ms)}))
                .collect();
            json_response(StatusCode::OK, &json!({"staff": staff}))
        }
        Err(e) => response::store_unavailable(&e),
    }
}

pub async fn create(app: &App, limits: &HttpLimits, by: &StaffMember, request: Request<Incoming>) -> Response<Body> {
    let body = match json_body(app, limits, by, request).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let fields = (string_field(&body, "name"), string_field(&body, "password"), string_field(&body, "role"));
    let (name, password, role) = match fields {
        (Ok(n), Ok(p), Ok(r)) => (n.unwrap_or(""), p.unwrap_or(""), r.unwrap_or("")),
        (Err(refused), _, _) | (_, Err(refused), _) | (_, _, Err(refused)) => return refused.into(),
    };
    let Some(role) = Role::parse(role) else {
        return detail(StatusCode::BAD_REQUEST, "role must be admin, box_office or door");
    };
    match app.create_staff(by, name, password, role).await {
        Ok(record) => json_response(StatusCode::OK, &json!({"name": record.name, "role": record.role.as_str()})),
        Err(e) => flow_error(e),
    }
}

pub async fn remove(
    app: &App,
    limits: &HttpLimits,
    by: &StaffMember,
    name: &str,
    request: Request<Incoming>,
) -> Response<Body> {
    if let Err(refused) = json_body(app, limits, by, request).await {
        return refused;
    }
    match app.remove_staff(by, name).await {
        Ok(()) => json_response(StatusCode::OK, &json!({"removed": name})),
        Err(e) => flow_error(e),
    }
}

pub fn activity(app: &App, query: Option<&str>) -> Response<Body> {
    let limit = match limit_param(query, 100) {
        Ok(limit) => limit,
        Err(refused) => return refused.into(),
    };
    match app.store.recent_activity(limit) {
        Ok(entries) => {
            let entries: Vec<Value> = entries
                .iter()
                .map(|e| json!({"at": rfc3339_ms(e.at_ms), "staff": e.staff, "action": e.action, "detail": e.detail}))
                .collect();
            json_response(StatusCode::OK, &json!({"entries": entries}))
        }
        Err(e) => response::store_unavailable(&e),
    }
}

//! JSON and HTML responses, and the one mapping from a use case's refusal to an HTTP status.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use hyper::{Response, StatusCode};
use serde::Serialize;

use crate::flow::FlowError;

pub type Body = Full<Bytes>;

pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Body> {
    let body = serde_json::to_vec(value).expect("responses serialize");
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `{"detail": ...}` with the given status: every error this server gives looks like this.
pub fn detail(status: StatusCode, detail: &str) -> Response<Body> {
    json(status, &serde_json::json!({ "detail": detail }))
}

pub fn flow_error(error: FlowError) -> Response<Body> {
    match error {
        FlowError::BadRequest(d) => detail(StatusCode::BAD_REQUEST, &d),
        FlowError::NotFound(d) => detail(StatusCode::NOT_FOUND, &d),
        FlowError::SoldOut { cls } => {
            json(StatusCode::CONFLICT, &serde_json::json!({ "detail": "sold out", "cls": cls }))
        }
        FlowError::Unavailable(d) => detail(StatusCode::SERVICE_UNAVAILABLE, &d),
    }
}

pub fn bytes(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub fn see_other(location: &str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SEE_OTHER;
    response
        .headers_mut()
        .insert(LOCATION, HeaderValue::from_str(location).expect("locations we build are valid headers"));
    response
}

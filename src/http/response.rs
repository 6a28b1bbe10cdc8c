//! JSON and HTML responses, and the one mapping from a use case's refusal to an HTTP status.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Frame;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use hyper::{Response, StatusCode};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::flow::FlowError;
use crate::web;

/// A response body: whole (almost everything), or a stream of chunks (Server-Sent Events).
pub enum Body {
    Full(Full<Bytes>),
    Stream(mpsc::Receiver<Bytes>),
}

impl Body {
    pub fn full(bytes: impl Into<Bytes>) -> Body {
        Body::Full(Full::new(bytes.into()))
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(full) => Pin::new(full).poll_frame(cx),
            Body::Stream(receiver) => receiver.poll_recv(cx).map(|chunk| chunk.map(|c| Ok(Frame::data(c)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(full) => full.is_end_stream(),
            Body::Stream(_) => false,
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            Body::Full(full) => full.size_hint(),
            Body::Stream(_) => hyper::body::SizeHint::default(),
        }
    }
}

pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Body> {
    let body = serde_json::to_vec(value).expect("responses serialize");
    let mut response = Response::new(Body::full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `{"detail": ...}`, and the class for a sold-out 409. Replies are structs that borrow what
/// they show, serialized straight to bytes: no `serde_json::Value` map is built per request.
#[derive(Serialize)]
struct Detail<'a> {
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cls: Option<&'a str>,
}

/// `{"detail": ...}` with the given status: every error this server gives looks like this.
pub fn detail(status: StatusCode, detail: &str) -> Response<Body> {
    json(status, &Detail { detail, cls: None })
}

/// `detail` with `Retry-After`: a refusal that says when to ask again (a limit, a busy shop).
pub fn detail_retry_after(status: StatusCode, detail_text: &str, retry_after_s: u64) -> Response<Body> {
    let mut response = detail(status, detail_text);
    response.headers_mut().insert(hyper::header::RETRY_AFTER, hyper::header::HeaderValue::from(retry_after_s));
    response
}

/// 503 for a store read that failed (the disk or the file is in trouble).
pub fn store_unavailable(error: &anyhow::Error) -> Response<Body> {
    detail(StatusCode::SERVICE_UNAVAILABLE, &format!("store read failed: {error:#}"))
}

pub fn flow_error(error: FlowError) -> Response<Body> {
    match error {
        FlowError::BadRequest(d) => detail(StatusCode::BAD_REQUEST, &d),
        FlowError::NotFound(d) => detail(StatusCode::NOT_FOUND, &d),
        FlowError::SoldOut { cls } => json(StatusCode::CONFLICT, &Detail { detail: "sold out", cls: Some(&cls) }),
        FlowError::Conflict(d) => detail(StatusCode::CONFLICT, &d),
        FlowError::Forbidden(d) => detail(StatusCode::FORBIDDEN, &d),
        FlowError::TooMany(d) => detail(StatusCode::TOO_MANY_REQUESTS, &d),
        FlowError::Unavailable(d) => detail(StatusCode::SERVICE_UNAVAILABLE, &d),
    }
}

pub fn bytes(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Body::full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// An embedded page or asset, with its media type; 404 if there is none by that name.
pub fn page(name: &str) -> Response<Body> {
    match web::get(name) {
        Some((content, mime)) => bytes(StatusCode::OK, mime, content),
        None => detail(StatusCode::NOT_FOUND, "not found"),
    }
}

pub fn see_other(location: &str) -> Response<Body> {
    let mut response = Response::new(Body::full(Bytes::new()));
    *response.status_mut() = StatusCode::SEE_OTHER;
    response
        .headers_mut()
        .insert(LOCATION, HeaderValue::from_str(location).expect("locations we build are valid headers"));
    response
}

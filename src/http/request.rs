//! Reading requests: the body within its limits, the media type, query and form fields.

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::CONTENT_LENGTH;
use hyper::{Request, Response, StatusCode};

use super::limits::HttpLimits;
use super::response::{detail, Body};

/// Reads a whole body within the size and time limits: 413 when too large (declared or actual,
/// chunked included), 408 when too slow.
pub async fn read_body(
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
pub fn wrong_media_type(request: &Request<Incoming>, expected: &'static str) -> Option<Response<Body>> {
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

/// Input a handler refuses with a 400: its detail. Small (a `Response` is large to carry around
/// in every `Result`); it becomes the answer where the handler returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadInput(pub String);

impl From<BadInput> for Response<Body> {
    fn from(refused: BadInput) -> Self {
        detail(StatusCode::BAD_REQUEST, &refused.0)
    }
}

/// The one value of a named pair, if any; refused when it is given twice (which of two
/// contradicting values was meant, `t=canceled&t=succeeded`, is not ours to guess).
fn single<'a>(
    mut pairs: impl Iterator<Item = (Cow<'a, str>, Cow<'a, str>)>,
    name: &str,
    what: &str,
) -> Result<Option<Cow<'a, str>>, BadInput> {
    let mut found = None;
    for (key, value) in pairs.by_ref() {
        if key == name {
            if found.is_some() {
                return Err(BadInput(format!("{what} {name} is given more than once")));
            }
            found = Some(value);
        }
    }
    Ok(found)
}

/// A query parameter's value; refused if it is repeated.
pub fn query_param<'a>(query: Option<&'a str>, name: &str) -> Result<Option<Cow<'a, str>>, BadInput> {
    single(form_urlencoded::parse(query.unwrap_or("").as_bytes()), name, "query parameter")
}

/// A list's `limit` query parameter: `default` when absent, else 1 to `ADMIN_LIST_MAX`.
pub fn limit_param(query: Option<&str>, default: usize) -> Result<usize, BadInput> {
    use crate::store::ADMIN_LIST_MAX;
    match query_param(query, "limit")? {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=ADMIN_LIST_MAX).contains(&n) => Ok(n),
            _ => Err(BadInput(format!("limit must be between 1 and {ADMIN_LIST_MAX}"))),
        },
    }
}

/// A form field's value; refused if it is repeated.
pub fn form_field<'a>(body: &'a [u8], name: &str) -> Result<Option<Cow<'a, str>>, BadInput> {
    single(form_urlencoded::parse(body), name, "form field")
}

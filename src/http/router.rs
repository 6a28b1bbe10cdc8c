//! The one list of routes: `Route::parse` reads a path, and each route knows the methods it
//! allows (the router's check, and the `Allow` header of a 405) and the label it is counted
//! under in `/metrics`. `handle` dispatches to the handlers by audience (`shop`, `admin`,
//! `ops`). No business logic lives here. A new route is one variant, one line in each match.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::{
    HeaderMap, HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_SECURITY_POLICY as CONTENT_SECURITY_POLICY_HEADER, HOST,
    REFERRER_POLICY, RETRY_AFTER, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use hyper::{Method, Request, Response, StatusCode};

use super::limits::HttpLimits;
use super::response::{self, detail, page, Body};
use super::route::{Allow, Route};
use super::{admin, hosts, ops, shop};
use crate::flow::App;
use crate::metrics::RouteLabel;

impl Route<'_> {
    pub fn label(self) -> RouteLabel {
        match self {
            Route::Index | Route::DemoCheckout | Route::DemoSuccess | Route::BenchPage => RouteLabel::Page,
            Route::Static(_) => RouteLabel::Static,
            Route::MockPay(_) => RouteLabel::MockPay,
            Route::Emit(_) => RouteLabel::Emit,
            Route::Checkout => RouteLabel::Checkout,
            Route::Webhook => RouteLabel::Webhook,
            Route::Order(_) => RouteLabel::Order,
            Route::Qr(_) => RouteLabel::Qr,
            Route::Session(_) => RouteLabel::Session,
            Route::Event => RouteLabel::Event,
            Route::Inventory => RouteLabel::Inventory,
            Route::AdminPage => RouteLabel::AdminPage,
            Route::AdminLogin | Route::AdminLogout => RouteLabel::AdminLogin,
            Route::AdminEvents => RouteLabel::AdminEvents,
            Route::AdminCsrf
            | Route::AdminOrders
            | Route::AdminAudit
            | Route::AdminGoodies
            | Route::AdminPending
            | Route::AdminOther => RouteLabel::AdminApi,
            Route::BenchResults => RouteLabel::BenchResults,
            Route::Reserve => RouteLabel::Reserve,
            Route::Commit => RouteLabel::Commit,
            Route::Healthz => RouteLabel::Healthz,
            Route::Metrics => RouteLabel::Metrics,
            Route::AccountingOther | Route::NotFound => RouteLabel::NotFound,
        }
    }
}

pub async fn handle(
    app: Arc<App>,
    limits: &HttpLimits,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    let path = request.uri().path().to_string();
    let route = Route::parse(&path);
    let mut response = dispatch(&app, limits, peer, route, request).await;
    add_security_headers(route, response.headers_mut());
    let label = match response.status() {
        StatusCode::METHOD_NOT_ALLOWED => RouteLabel::MethodNotAllowed,
        _ => route.label(),
    };
    app.metrics.request(label, response.status().as_u16(), started.elapsed().as_micros() as u64);
    response
}

/// What a browser may do with anything this server sends: load scripts, styles, images and
/// connections from this origin only (no inline script: the pages have none), never be framed
/// (clickjacking of the admin's pages), never post a form elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

/// On every response: the policy above, no MIME sniffing, no referrer (URLs carry payment
/// session ids and order ids); on the admin's pages, no caching either (its JSON is never
/// cached: every JSON answer says `no-store`).
fn add_security_headers(route: Route<'_>, headers: &mut HeaderMap) {
    headers.insert(CONTENT_SECURITY_POLICY_HEADER, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if matches!(route, Route::AdminPage | Route::AdminLogin | Route::AdminLogout) || route.needs_admin() {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// How long a client waits before it asks again while the server starts.
const STARTING_RETRY_AFTER_S: &str = "2";

/// The answer while TigerBeetle has not answered since the start: a page that reloads by itself
/// for a browser, the reason as JSON for everyone else; 503 either way.
fn starting(app: &App, route: Route<'_>) -> Response<Body> {
    let mut response = if route.is_page() {
        let mut page = page("starting.html");
        *page.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        page
    } else {
        detail(StatusCode::SERVICE_UNAVAILABLE, &app.readiness.why())
    };
    response.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static(STARTING_RETRY_AFTER_S));
    response
}

fn method_not_allowed(allow: Allow) -> Response<Body> {
    let mut response = detail(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    response.headers_mut().insert(ALLOW, HeaderValue::from_static(allow.header()));
    response
}

/// The checks every request of a route meets before its handler: the host it names, whether
/// the app is ready, the admin's session, the accounting endpoints' switch, then the method.
fn refusal(app: &App, route: Route<'_>, request: &Request<Incoming>) -> Option<Response<Body>> {
    let method = request.method();
    // An HTTP/1.0 request may name no host; every browser's does.
    if let Some(host) = request.headers().get(HOST) {
        let host = host.to_str().unwrap_or("");
        if !hosts::allowed(host, &app.config.allowed_hosts) {
            let why = format!(
                "this appliance does not answer to the host name {:?} (allowed_hosts in its config)",
                hosts::host_name(host)
            );
            return Some(detail(StatusCode::MISDIRECTED_REQUEST, &why));
        }
    }
    if !app.readiness.is_ready() && route.needs_ledger() {
        return Some(starting(app, route));
    }
    if route.needs_admin() && admin::session_of(app, request).is_none() {
        return Some(match Allow::GetHead.permits(method) {
            true => admin::unauthorized(),
            false => method_not_allowed(Allow::GetHead),
        });
    }
    if route.is_accounting() && !app.config.accounting_endpoints {
        return Some(detail(
            StatusCode::FORBIDDEN,
            "the accounting endpoints are off (serve --accounting-endpoints turns them on, for benchmarks)",
        ));
    }
    (!route.allow().permits(method)).then(|| method_not_allowed(route.allow()))
}

async fn dispatch(
    app: &Arc<App>,
    limits: &HttpLimits,
    peer: SocketAddr,
    route: Route<'_>,
    request: Request<Incoming>,
) -> Response<Body> {
    if let Some(refused) = refusal(app, route, &request) {
        return refused;
    }
    let post = request.method() == Method::POST;
    let query = request.uri().query().map(str::to_string);
    let query = query.as_deref();
    match route {
        Route::Index => page("index.html"),
        Route::DemoCheckout => page("checkout.html"),
        Route::DemoSuccess => page("success.html"),
        Route::BenchPage => page("bench.html"),
        Route::Static(file) => shop::asset(file),
        Route::MockPay(psid) => shop::mockpay_page(app, psid),
        Route::Emit(psid) => shop::emit(app, limits, psid, request).await,
        Route::Checkout => shop::checkout(app, limits, peer, request).await,
        Route::Webhook => shop::webhook(app, limits, request).await,
        Route::Order(order_id) => shop::order(app, order_id),
        Route::Qr(order_id) => shop::qr(app, order_id),
        Route::Session(psid) => shop::session(app, psid),
        Route::Event => shop::event(app),
        Route::Inventory => shop::inventory(app).await,
        Route::AdminPage => admin::admin_page(app, &request),
        Route::AdminLogin if post => admin::login(app, limits, peer, request).await,
        Route::AdminLogin if admin::session_of(app, &request).is_some() => response::see_other("/admin"),
        Route::AdminLogin => page("admin-login.html"),
        Route::AdminLogout => admin::logout(app, limits, request).await,
        Route::AdminCsrf => admin::csrf(app, &request),
        Route::BenchResults if !post => admin::bench_results(app),
        Route::BenchResults if admin::session_of(app, &request).is_none() => admin::unauthorized(),
        Route::BenchResults => admin::upload_bench_result(app, limits, request).await,
        Route::AdminOrders => admin::orders(app, query).await,
        Route::AdminAudit => admin::audit(app).await,
        Route::AdminGoodies => admin::goodies(app).await,
        Route::AdminEvents => match admin::session_of(app, &request) {
            Some(session) => admin::events(app.clone(), session),
            None => admin::unauthorized(),
        },
        Route::AdminPending => admin::pending(app, query),
        Route::Reserve => ops::reserve(app, query).await,
        Route::Commit => ops::commit(app, query).await,
        Route::Healthz => ops::healthz(app).await,
        Route::Metrics => ops::metrics_text(app).await,
        Route::AdminOther | Route::AccountingOther | Route::NotFound => detail(StatusCode::NOT_FOUND, "not found"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_to_their_routes_and_labels() {
        let cases = [
            ("/", Route::Index, "page"),
            ("/index.html", Route::Index, "page"),
            ("/bench", Route::BenchPage, "page"),
            ("/static/app.js", Route::Static("app.js"), "static"),
            ("/mockpay/ps_1", Route::MockPay("ps_1"), "mockpay"),
            ("/mockpay/ps_1/emit", Route::Emit("ps_1"), "emit"),
            ("/api/orders/x/qr.svg", Route::Qr("x"), "qr"),
            ("/admin/logout", Route::AdminLogout, "admin_login"),
            ("/api/admin/csrf", Route::AdminCsrf, "admin_api"),
            ("/api/admin/nope", Route::AdminOther, "admin_api"),
            ("/api/pending", Route::AdminPending, "admin_api"),
            ("/api/accounting/nope", Route::AccountingOther, "not_found"),
            ("/admin/", Route::NotFound, "not_found"),
            ("/mockpay", Route::NotFound, "not_found"),
            ("//", Route::Index, "page"),
            ("/api/orders", Route::NotFound, "not_found"),
        ];
        for (path, route, label) in cases {
            assert_eq!(Route::parse(path), route, "{path}");
            assert_eq!(Route::parse(path).label().as_str(), label, "{path}");
        }
    }
}

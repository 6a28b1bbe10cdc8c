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
use super::route::{Allow, Audience, Route};
use super::{admin, box_office, door, export, hosts, kiosk, ops, session, shed, shop, staff};
use crate::flow::App;
use crate::metrics::RouteLabel;
use crate::staff::{Role, StaffMember};

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
            | Route::AdminRefund(_)
            | Route::AdminBenchRun
            | Route::AdminBenchStop
            | Route::AdminOther => RouteLabel::AdminApi,
            Route::DoorPage | Route::BoxOfficePage => RouteLabel::Page,
            Route::DoorScan | Route::DoorCounts => RouteLabel::DoorScan,
            Route::BoxOfficeSell | Route::BoxOfficeReport => RouteLabel::BoxOffice,
            Route::StaffMe | Route::AdminStaff | Route::AdminStaffRemove(_) | Route::AdminActivity => {
                RouteLabel::StaffApi
            }
            Route::ExportOrders | Route::ExportCheckins | Route::ExportActivity => RouteLabel::Export,
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
    let staff_only = route.audience() != Audience::Public || matches!(route, Route::DoorPage | Route::BoxOfficePage);
    if matches!(route, Route::AdminPage | Route::AdminLogin | Route::AdminLogout) || staff_only {
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

/// The role a route's audience needs (`None`: any staff session).
fn role_needed(audience: Audience) -> Option<Role> {
    match audience {
        Audience::Admin => Some(Role::Admin),
        Audience::Door => Some(Role::Door),
        Audience::BoxOffice => Some(Role::BoxOffice),
        Audience::Staff | Audience::Public => None,
    }
}

/// The checks every request of a route meets before its handler: the host it names, whether
/// the app is ready, the staff session and its role, the switches (accounting endpoints,
/// MockPay), then the method. Passed: the staff member signed in, for a staff route.
fn refusal(
    app: &App,
    route: Route<'_>,
    request: &Request<Incoming>,
) -> Result<Option<StaffMember>, Box<Response<Body>>> {
    let method = request.method();
    // An HTTP/1.0 request may name no host; every browser's does.
    if let Some(host) = request.headers().get(HOST) {
        let host = host.to_str().unwrap_or("");
        if !hosts::allowed(host, &app.config.allowed_hosts) {
            let why = format!(
                "this appliance does not answer to the host name {:?} (allowed_hosts in its config)",
                hosts::host_name(host)
            );
            return Err(Box::new(detail(StatusCode::MISDIRECTED_REQUEST, &why)));
        }
    }
    if !app.readiness.is_ready() && route.needs_ledger() {
        return Err(Box::new(starting(app, route)));
    }
    let mut member = None;
    if route.audience() != Audience::Public {
        member = match session::staff_of(app, request).map_err(|e| Box::new(response::flow_error(e)))? {
            Some(member) => Some(member),
            None if route.allow().permits(method) => return Err(Box::new(session::unauthorized())),
            None => return Err(Box::new(method_not_allowed(route.allow()))),
        };
        if let (Some(needed), Some(m)) = (role_needed(route.audience()), &member) {
            if !m.role.may(needed) {
                return Err(Box::new(session::forbidden(needed)));
            }
        }
    }
    if route.is_accounting() && !app.config.accounting_endpoints {
        return Err(Box::new(detail(
            StatusCode::FORBIDDEN,
            "the accounting endpoints are off (serve --accounting-endpoints turns them on, for benchmarks)",
        )));
    }
    if matches!(route, Route::MockPay(_) | Route::Emit(_)) && !app.config.mockpay {
        return Err(Box::new(detail(StatusCode::NOT_FOUND, "MockPay is off (mockpay = false): this is a real event")));
    }
    if !route.allow().permits(method) {
        return Err(Box::new(method_not_allowed(route.allow())));
    }
    Ok(member)
}

async fn dispatch(
    app: &Arc<App>,
    limits: &HttpLimits,
    peer: SocketAddr,
    route: Route<'_>,
    request: Request<Incoming>,
) -> Response<Body> {
    let member = match refusal(app, route, &request) {
        Ok(member) => member,
        Err(refused) => return *refused,
    };
    let post = request.method() == Method::POST;
    let query = request.uri().query().map(str::to_string);
    let query = query.as_deref();
    if let Some(member) = member {
        return dispatch_staff(app, limits, route, request, query, post, &member).await;
    }
    let _in_flight = match shed::admit(app, limits.shop_in_flight_max, route) {
        Ok(place) => place,
        Err(busy) => return *busy,
    };
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
        Route::AdminPage => session::staff_page(app, &request, Role::Admin, "admin.html"),
        Route::DoorPage => session::staff_page(app, &request, Role::Door, "door.html"),
        Route::BoxOfficePage => session::staff_page(app, &request, Role::BoxOffice, "box-office.html"),
        Route::AdminLogin if post => session::login(app, limits, peer, request).await,
        Route::AdminLogin => match session::session_of(app, &request) {
            Some(member) => response::see_other(member.role.home()),
            None => page("admin-login.html"),
        },
        Route::AdminLogout => session::logout(app, limits, request).await,
        Route::AdminCsrf => session::csrf(app, &request),
        Route::BenchResults if !post => admin::bench_results(app),
        Route::BenchResults => match session::session_of(app, &request) {
            Some(member) if member.role == Role::Admin => admin::upload_bench_result(app, limits, request).await,
            _ => session::unauthorized(),
        },
        Route::Reserve => ops::reserve(app, query).await,
        Route::Commit => ops::commit(app, query).await,
        Route::Healthz => ops::healthz(app).await,
        Route::Metrics => ops::metrics_text(app).await,
        _ => detail(StatusCode::NOT_FOUND, "not found"),
    }
}

/// The routes behind a staff session (`refusal` checked its role).
async fn dispatch_staff(
    app: &Arc<App>,
    limits: &HttpLimits,
    route: Route<'_>,
    request: Request<Incoming>,
    query: Option<&str>,
    post: bool,
    member: &StaffMember,
) -> Response<Body> {
    match route {
        Route::AdminOrders => admin::orders(app, query).await,
        Route::AdminAudit => admin::audit(app).await,
        Route::AdminGoodies => admin::goodies(app).await,
        Route::AdminEvents => admin::events(app.clone(), member.clone()),
        Route::AdminPending => admin::pending(app, query),
        Route::AdminRefund(order_id) => admin::refund(app, limits, member, order_id, request).await,
        Route::AdminStaff if post => staff::create(app, limits, member, request).await,
        Route::AdminStaff => staff::list(app),
        Route::AdminStaffRemove(name) => staff::remove(app, limits, member, name, request).await,
        Route::AdminActivity => staff::activity(app, query),
        Route::AdminBenchRun if post => kiosk::start(app, limits, member, request).await,
        Route::AdminBenchRun => kiosk::status(app, limits),
        Route::AdminBenchStop => kiosk::stop(app, limits, member, request).await,
        Route::ExportOrders => export::orders(app, query),
        Route::ExportCheckins => export::checkins(app),
        Route::ExportActivity => export::activity(app),
        Route::StaffMe => session::me(app, member),
        Route::DoorScan => door::scan(app, limits, member, request).await,
        Route::DoorCounts => door::counts(app).await,
        Route::BoxOfficeSell => box_office::sell(app, limits, member, request).await,
        Route::BoxOfficeReport => box_office::report(app, member).await,
        _ => detail(StatusCode::NOT_FOUND, "not found"),
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
            ("/api/admin/bench/run", Route::AdminBenchRun, "admin_api"),
            ("/api/admin/bench/run/stop", Route::AdminBenchStop, "admin_api"),
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

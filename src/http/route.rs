//! The routes, parsed from a path, and the methods each answers: the one list of routes, pure
//! (no IO, no crate imports), so that it is fuzzed (`fuzz/`) as what untrusted paths meet first.
//! The router (`router`) dispatches on it and gives each route its metrics label.

use hyper::Method;

/// Every route, with what its path carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    Index,
    DemoCheckout,
    DemoSuccess,
    BenchPage,
    Static(&'a str),
    MockPay(&'a str),
    Emit(&'a str),
    Checkout,
    Webhook,
    Order(&'a str),
    Qr(&'a str),
    Session(&'a str),
    Event,
    Inventory,
    AdminPage,
    AdminLogin,
    AdminLogout,
    AdminCsrf,
    BenchResults,
    AdminOrders,
    AdminAudit,
    AdminGoodies,
    AdminEvents,
    AdminPending,
    AdminRefund(&'a str),
    AdminStaff,
    AdminStaffRemove(&'a str),
    AdminActivity,
    /// The kiosk's own load run: its status (GET), a start (POST); its stop.
    AdminBenchRun,
    AdminBenchStop,
    ExportOrders,
    ExportCheckins,
    ExportActivity,
    DoorPage,
    BoxOfficePage,
    StaffMe,
    DoorScan,
    DoorCounts,
    BoxOfficeSell,
    BoxOfficeReport,
    /// `/api/admin/...` that is none of the above: 401 without a session, 404 with one.
    AdminOther,
    Reserve,
    Commit,
    /// `/api/accounting/...` that is neither: 403 while they are off, 404 while on.
    AccountingOther,
    Healthz,
    Metrics,
    NotFound,
}

/// Who may call a route: anyone, or a staff session of a role (the admin may do everything).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Public,
    /// Any staff session.
    Staff,
    Door,
    BoxOffice,
    Admin,
}

/// The methods a route answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allow {
    GetHead,
    /// Its GET changes state (the reference's API, or an expensive audit): HEAD, which clients
    /// and crawlers send expecting no effect, is refused rather than acted on.
    GetOnly,
    Post,
    GetHeadPost,
    /// A route that does not exist answers 404 to any method.
    Any,
}

impl Allow {
    pub fn permits(self, method: &Method) -> bool {
        let (get, head, post) = (method == Method::GET, method == Method::HEAD, method == Method::POST);
        match self {
            Allow::GetHead => get || head,
            Allow::GetOnly => get,
            Allow::Post => post,
            Allow::GetHeadPost => get || head || post,
            Allow::Any => true,
        }
    }

    /// The `Allow` header of a 405 (RFC 9110 requires one).
    pub fn header(self) -> &'static str {
        match self {
            Allow::GetHead => "GET, HEAD",
            Allow::GetOnly => "GET",
            Allow::Post => "POST",
            Allow::GetHeadPost | Allow::Any => "GET, HEAD, POST",
        }
    }
}

impl<'a> Route<'a> {
    pub fn parse(path: &'a str) -> Route<'a> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match segments.as_slice() {
            [""] | ["index.html"] => Route::Index,
            ["demo", "checkout"] => Route::DemoCheckout,
            ["demo", "success"] => Route::DemoSuccess,
            ["bench"] => Route::BenchPage,
            ["static", file] => Route::Static(file),
            ["mockpay", psid] => Route::MockPay(psid),
            ["mockpay", psid, "emit"] => Route::Emit(psid),
            ["api", "checkout"] => Route::Checkout,
            ["payments", "webhook"] => Route::Webhook,
            ["api", "orders", order_id] => Route::Order(order_id),
            ["api", "orders", order_id, "qr.svg"] => Route::Qr(order_id),
            ["api", "sessions", psid] => Route::Session(psid),
            ["api", "event"] => Route::Event,
            ["api", "inventory"] => Route::Inventory,
            ["admin"] => Route::AdminPage,
            ["admin", "login"] => Route::AdminLogin,
            ["admin", "logout"] => Route::AdminLogout,
            ["api", "admin", "csrf"] => Route::AdminCsrf,
            ["api", "bench", "results"] => Route::BenchResults,
            ["api", "admin", "orders"] => Route::AdminOrders,
            ["api", "admin", "audit"] => Route::AdminAudit,
            ["api", "admin", "goodies"] => Route::AdminGoodies,
            ["api", "admin", "events"] => Route::AdminEvents,
            ["api", "pending"] => Route::AdminPending,
            ["api", "admin", "orders", order_id, "refund"] => Route::AdminRefund(order_id),
            ["api", "admin", "staff"] => Route::AdminStaff,
            ["api", "admin", "staff", name, "remove"] => Route::AdminStaffRemove(name),
            ["api", "admin", "activity"] => Route::AdminActivity,
            ["api", "admin", "bench", "run"] => Route::AdminBenchRun,
            ["api", "admin", "bench", "run", "stop"] => Route::AdminBenchStop,
            ["api", "admin", "export", "orders.csv"] => Route::ExportOrders,
            ["api", "admin", "export", "checkins.csv"] => Route::ExportCheckins,
            ["api", "admin", "export", "activity.csv"] => Route::ExportActivity,
            ["door"] => Route::DoorPage,
            ["box-office"] => Route::BoxOfficePage,
            ["api", "staff", "me"] => Route::StaffMe,
            ["api", "door", "scan"] => Route::DoorScan,
            ["api", "door", "counts"] => Route::DoorCounts,
            ["api", "box-office", "sell"] => Route::BoxOfficeSell,
            ["api", "box-office", "report"] => Route::BoxOfficeReport,
            ["api", "admin", _] => Route::AdminOther,
            ["api", "accounting", "reserve"] => Route::Reserve,
            ["api", "accounting", "commit"] => Route::Commit,
            ["api", "accounting", _] => Route::AccountingOther,
            ["healthz"] => Route::Healthz,
            ["metrics"] => Route::Metrics,
            _ => Route::NotFound,
        }
    }

    pub fn allow(self) -> Allow {
        match self {
            Route::Emit(_) | Route::Checkout | Route::Webhook | Route::AdminLogout => Allow::Post,
            Route::AdminRefund(_) | Route::AdminStaffRemove(_) | Route::DoorScan | Route::BoxOfficeSell => Allow::Post,
            Route::AdminBenchStop => Allow::Post,
            Route::AdminLogin | Route::BenchResults | Route::AdminStaff | Route::AdminBenchRun => Allow::GetHeadPost,
            Route::AdminAudit | Route::Reserve | Route::Commit => Allow::GetOnly,
            Route::AdminOther | Route::AccountingOther | Route::NotFound => Allow::Any,
            _ => Allow::GetHead,
        }
    }

    /// Who may call the route's JSON (the CSRF token may not need a session: the login form
    /// needs it; pages redirect to the login themselves).
    pub fn audience(self) -> Audience {
        match self {
            Route::AdminOrders
            | Route::AdminAudit
            | Route::AdminGoodies
            | Route::AdminEvents
            | Route::AdminPending
            | Route::AdminRefund(_)
            | Route::AdminStaff
            | Route::AdminStaffRemove(_)
            | Route::AdminActivity
            | Route::AdminBenchRun
            | Route::AdminBenchStop
            | Route::ExportOrders
            | Route::ExportCheckins
            | Route::ExportActivity
            | Route::AdminOther => Audience::Admin,
            Route::StaffMe => Audience::Staff,
            Route::DoorScan | Route::DoorCounts => Audience::Door,
            Route::BoxOfficeSell | Route::BoxOfficeReport => Audience::BoxOffice,
            _ => Audience::Public,
        }
    }

    /// The admin's JSON (never cached).
    pub fn needs_admin(self) -> bool {
        self.audience() == Audience::Admin
    }

    /// Everything but the static assets and the metrics waits for the ledger at start.
    pub fn needs_ledger(self) -> bool {
        !matches!(self, Route::Static(_) | Route::Metrics)
    }

    /// The pages a browser navigates to (an HTML answer, not JSON).
    pub fn is_page(self) -> bool {
        matches!(
            self,
            Route::Index
                | Route::DemoCheckout
                | Route::DemoSuccess
                | Route::BenchPage
                | Route::MockPay(_)
                | Route::AdminPage
                | Route::AdminLogin
                | Route::DoorPage
                | Route::BoxOfficePage
        )
    }

    pub fn is_accounting(self) -> bool {
        matches!(self, Route::Reserve | Route::Commit | Route::AccountingOther)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods() {
        assert!(Allow::GetHead.permits(&Method::HEAD) && !Allow::GetOnly.permits(&Method::HEAD));
        assert!(!Allow::Post.permits(&Method::GET) && Allow::Any.permits(&Method::DELETE));
        assert_eq!(Route::parse("/api/accounting/reserve").allow().header(), "GET");
        assert_eq!(Route::parse("/admin/login").allow().header(), "GET, HEAD, POST");
    }
}

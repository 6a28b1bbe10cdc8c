//! Load shedding for the on-sale rush. The shop's requests that move tickets (start a sale:
//! a checkout or a reserve; finish one: a payment, a MockPay button, a commit) are bounded in
//! flight. Beyond the bound the server answers 503 at once, with `Retry-After`, instead of
//! queueing: every request it does take is answered in about the time the bound allows
//! (`in flight / throughput`), and when the rush passes there is no backlog to work off.
//!
//! Starting and finishing have a bound each, so a rush of new checkouts cannot crowd out the
//! payments of customers who already hold tickets. Staff (door, box office, admin) and reads
//! are not shed: they are few, and the door must keep working whatever the shop is doing.

use hyper::{Response, StatusCode};

use super::response::{detail_retry_after, Body};
use super::route::Route;
use crate::flow::App;
use crate::slots::{self, Slot};

/// A shed client is told to come back after this long.
pub const SHED_RETRY_AFTER_S: u64 = 1;

/// A place among the requests in flight of the route's kind, or the 503 to answer; `Ok(None)`
/// for routes that are not shed.
pub fn admit<'a>(
    app: &'a App,
    in_flight_max: usize,
    route: Route<'_>,
) -> Result<Option<Slot<'a>>, Box<Response<Body>>> {
    let (counter, what) = match route {
        Route::Checkout | Route::Reserve => (&app.shop_in_flight.starting, "checkouts"),
        Route::Webhook | Route::Emit(_) | Route::Commit => (&app.shop_in_flight.finishing, "payments"),
        _ => return Ok(None),
    };
    match slots::take(counter, in_flight_max) {
        Some(slot) => Ok(Some(slot)),
        None => {
            app.metrics.shed.add(1);
            let why = format!("the shop is busy ({in_flight_max} {what} in progress): try again in a moment");
            Err(Box::new(detail_retry_after(StatusCode::SERVICE_UNAVAILABLE, &why, SHED_RETRY_AFTER_S)))
        }
    }
}

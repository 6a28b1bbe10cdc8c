//! The CSV exports: orders (filterable by status and class), check-ins, the activity log.
//!
//! RFC 4180 by the `csv` crate, UTF-8, streamed: a blocking task walks one store snapshot and
//! sends chunks of about `CHUNK_BYTES` through a channel of `CHUNKS_QUEUED` (a million orders
//! are never in memory at once, and a slow client slows the walk, it does not grow a buffer).
//! A cell a spreadsheet would read as a formula (`=`, `+`, `-`, `@`, tab, CR) gets a leading `'`.

use bytes::Bytes;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use tokio::sync::mpsc;

use super::request::query_param;
use super::response::{detail, Body};
use crate::clock::rfc3339_ms;
use crate::flow::App;
use crate::order::{Order, OrderStatus};
use crate::store::Store;

pub const CHUNK_BYTES: usize = 64 * 1024;
pub const CHUNKS_QUEUED: usize = 4;
/// Exports running at once; more get 503 (each walks the whole store).
pub const EXPORTS_MAX: usize = 2;
static EXPORTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A cell as a spreadsheet will not run it.
pub fn neutralize(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

/// Where the CSV writer writes: a buffer sent on as a chunk once it is full; a write fails
/// once the client has gone (the walk then stops).
struct Chunks {
    buffer: Vec<u8>,
    sender: mpsc::Sender<Bytes>,
}

impl std::io::Write for Chunks {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= CHUNK_BYTES {
            self.flush()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK_BYTES)));
        self.sender.blocking_send(chunk).map_err(|_| std::io::Error::other("the client has gone"))
    }
}

/// Writes rows; false once the client has gone.
struct Rows {
    writer: csv::Writer<Chunks>,
}

impl Rows {
    fn row(&mut self, cells: &[&str]) -> bool {
        let record: Vec<std::borrow::Cow<'_, str>> = cells.iter().map(|c| neutralize(c)).collect();
        self.writer.write_record(record.iter().map(|c| c.as_ref())).is_ok()
    }

    fn finish(&mut self) -> bool {
        self.writer.flush().is_ok()
    }
}

/// Streams what `walk` writes as a CSV download named `file`.
fn stream(
    store: &Store,
    file: &'static str,
    walk: impl FnOnce(&Store, &mut Rows) -> anyhow::Result<()> + Send + 'static,
) -> Response<Body> {
    let Some(slot) = crate::slots::take(&EXPORTS, EXPORTS_MAX) else {
        return detail(StatusCode::SERVICE_UNAVAILABLE, "too many exports at once; try again");
    };
    let (sender, receiver) = mpsc::channel(CHUNKS_QUEUED);
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let chunks = Chunks { buffer: Vec::with_capacity(CHUNK_BYTES), sender };
        let mut rows = Rows { writer: csv::Writer::from_writer(chunks) };
        match walk(&store, &mut rows) {
            Ok(()) => {
                rows.finish();
            }
            // The status line is gone: the download ends short, and the log says why.
            Err(e) => tracing::error!(error = %format!("{e:#}"), file, "export failed"),
        }
    });
    let mut response = Response::new(Body::Stream(receiver));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let disposition = format!("attachment; filename=\"{file}\"");
    headers.insert(CONTENT_DISPOSITION, HeaderValue::from_str(&disposition).expect("our file names are ASCII"));
    response
}

fn order_row(order: &Order) -> Vec<String> {
    let sale = order.sale.as_ref();
    let refund = order.refund.as_ref();
    vec![
        order.order_id.clone(),
        order.status.as_str().to_string(),
        order.cls.clone(),
        order.amount.to_string(),
        order.currency.clone(),
        order.email.clone(),
        rfc3339_ms(order.created_at_ms),
        order.paid_at_ms.map(rfc3339_ms).unwrap_or_default(),
        order.ticket_code.clone().unwrap_or_default(),
        order.got_goodie.to_string(),
        sale.map_or("online", |s| s.method.as_str()).to_string(),
        sale.map(|s| s.staff.clone()).unwrap_or_default(),
        refund.map(|r| rfc3339_ms(r.at_ms)).unwrap_or_default(),
        refund.map(|r| r.by.clone()).unwrap_or_default(),
        refund.map(|r| r.reason.clone()).unwrap_or_default(),
    ]
}

const ORDER_HEADER: [&str; 15] = [
    "order_id",
    "status",
    "class",
    "amount_cents",
    "currency",
    "email",
    "created_at",
    "paid_at",
    "ticket_code",
    "got_goodie",
    "payment",
    "sold_by",
    "refunded_at",
    "refunded_by",
    "refund_reason",
];

pub fn orders(app: &App, query: Option<&str>) -> Response<Body> {
    let status = match query_param(query, "status") {
        Ok(Some(s)) if !s.is_empty() => match OrderStatus::parse(&s) {
            Some(status) => Some(status),
            None => return detail(StatusCode::BAD_REQUEST, &format!("unknown status {s:?}")),
        },
        Ok(_) => None,
        Err(refused) => return refused.into(),
    };
    let cls = match query_param(query, "cls") {
        Ok(Some(c)) if !c.is_empty() => match app.config.class(&c) {
            Some(class) => Some(class.id.clone()),
            None => return detail(StatusCode::BAD_REQUEST, &format!("unknown ticket class {c:?}")),
        },
        Ok(_) => None,
        Err(refused) => return refused.into(),
    };
    stream(&app.store, "orders.csv", move |store, rows| {
        let mut open = rows.row(&ORDER_HEADER);
        store.each_order(|order| {
            let wanted = status.map_or(true, |s| s == order.status) && cls.as_ref().map_or(true, |c| *c == order.cls);
            if wanted {
                let cells = order_row(&order);
                open = rows.row(&cells.iter().map(String::as_str).collect::<Vec<_>>());
            }
            open
        })
    })
}

pub fn checkins(app: &App) -> Response<Body> {
    stream(&app.store, "checkins.csv", |store, rows| {
        let mut open = rows.row(&["order_id", "class", "admitted_at", "door", "staff"]);
        store.each_admission(|a| {
            let at = rfc3339_ms(a.admitted_at_ms);
            open = rows.row(&[&a.order_id, &a.cls, &at, &a.door, &a.staff]);
            open
        })
    })
}

pub fn activity(app: &App) -> Response<Body> {
    stream(&app.store, "activity.csv", |store, rows| {
        let mut open = rows.row(&["at", "staff", "action", "detail"]);
        store.each_activity(|e| {
            let at = rfc3339_ms(e.at_ms);
            open = rows.row(&[&at, &e.staff, &e.action, &e.detail]);
            open
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralized() {
        assert_eq!(neutralize("=1+1"), "'=1+1");
        assert_eq!(neutralize("+49 123"), "'+49 123");
        assert_eq!(neutralize("-2"), "'-2");
        assert_eq!(neutralize("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(neutralize("fan@example.com"), "fan@example.com");
        assert_eq!(neutralize(""), "");
    }
}

//! The operator's endpoints: health, Prometheus metrics, and the bare accounting endpoints the
//! reference design's benchmark calls (`reserve`, `commit`).

use std::time::Duration;

use bytes::Bytes;
use hyper::{Response, StatusCode};
use serde::Serialize;
use serde_json::json;

use super::request::{query_param, BadInput};
use super::response::{self, detail, flow_error, json, Body};
use crate::accounting::TransferResult;
use crate::flow::{App, FlowError};

#[derive(Serialize)]
struct ReserveReply {
    tb_transfer_id: String,
    goodie_tb_transfer_id: Option<String>,
}

#[derive(Serialize)]
struct CommitReply {
    ok: bool,
    ticket: String,
    goodie: Option<String>,
    /// The ids posted, as the reference design answers them (its benchmark reads them back).
    tb_transfer_id: String,
    goodie_tb_transfer_id: Option<String>,
}

pub async fn reserve(app: &App, query: Option<&str>) -> Response<Body> {
    let cls = match query_param(query, "cls") {
        Ok(cls) => cls,
        Err(refused) => return refused.into(),
    };
    match app.reserve(cls.as_deref()).await {
        Ok((ticket, goodie)) => json(
            StatusCode::OK,
            &ReserveReply { tb_transfer_id: ticket.to_string(), goodie_tb_transfer_id: goodie.map(|g| g.to_string()) },
        ),
        Err(e) => flow_error(e),
    }
}

pub async fn commit(app: &App, query: Option<&str>) -> Response<Body> {
    // No goodie: the parameter left out, empty, or a client's spelling of nothing.
    let parse = |name: &str| -> Result<Option<u128>, BadInput> {
        match query_param(query, name)? {
            None => Ok(None),
            Some(v) if v.is_empty() || v == "null" || v == "None" => Ok(None),
            Some(v) => match v.parse::<u128>() {
                Ok(id) if id != 0 && id != u128::MAX => Ok(Some(id)),
                _ => Err(BadInput(format!("{name} must be a decimal transfer id"))),
            },
        }
    };
    let ticket = match parse("tb_transfer_id") {
        Ok(Some(id)) => id,
        Ok(None) => return detail(StatusCode::BAD_REQUEST, "tb_transfer_id is required"),
        Err(refused) => return refused.into(),
    };
    let goodie = match parse("goodie_tb_transfer_id") {
        Ok(id) => id,
        Err(refused) => return refused.into(),
    };
    match app.commit(ticket, goodie).await {
        Ok(results) => {
            let name = |r: &TransferResult| format!("{r:?}");
            let ticket_ok = results[0].is_success();
            let status = if ticket_ok { StatusCode::OK } else { StatusCode::CONFLICT };
            let reply = CommitReply {
                ok: ticket_ok,
                ticket: name(&results[0]),
                goodie: results.get(1).map(name),
                tb_transfer_id: ticket.to_string(),
                goodie_tb_transfer_id: goodie.map(|id| id.to_string()),
            };
            json(status, &reply)
        }
        Err(e) => flow_error(e),
    }
}

pub async fn healthz(app: &App) -> Response<Body> {
    let tb = tokio::time::timeout(Duration::from_secs(2), app.ledger.ping()).await;
    let tb = match tb {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("TigerBeetle: {e:#}")),
        Err(_) => Err("TigerBeetle did not answer within 2000 ms".to_string()),
    };
    let store = app.store.order("healthz").map(|_| ()).map_err(|e| format!("store: {e:#}"));
    match (tb, store) {
        (Ok(()), Ok(())) => json(
            StatusCode::OK,
            &json!({"ok": true, "tigerbeetle": "ok", "store": "ok", "version": env!("CARGO_PKG_VERSION")}),
        ),
        (tb, store) => {
            let problems: Vec<String> = [tb.err(), store.err()].into_iter().flatten().collect();
            flow_error(FlowError::Unavailable(problems.join("; ")))
        }
    }
}

/// Prometheus text: the recorded metrics, plus gauges read at scrape time (holds from
/// TigerBeetle's balances, orders by status from the store's counters).
pub async fn metrics_text(app: &App) -> Response<Body> {
    let mut extra: Vec<(String, i64)> = Vec::new();
    if let Ok(Ok((classes, goodies))) =
        tokio::time::timeout(Duration::from_secs(1), app.ledger.inventory(&app.config)).await
    {
        let held: u64 = classes.iter().map(|c| c.active_holds).sum();
        extra.push(("tigerfans_holds_active".into(), held as i64));
        extra.push(("tigerfans_goodie_holds_active".into(), goodies.active_holds as i64));
        let sold: u64 = classes.iter().map(|c| c.sold).sum();
        extra.push(("tigerfans_tickets_sold".into(), sold as i64));
    }
    extra.push(("tigerfans_tb_client_reconnects".into(), app.ledger.reconnects() as i64));
    if let Ok(counts) = app.store.order_counts() {
        for (status, n) in counts {
            extra.push((format!("tigerfans_orders{{status=\"{}\"}}", status.as_str()), n as i64));
        }
    }
    let extra: Vec<(&str, &str, i64)> =
        extra.iter().map(|(name, v)| (name.as_str(), "Read at scrape time.", *v)).collect();
    response::bytes(StatusCode::OK, "text/plain; version=0.0.4", Bytes::from(app.metrics.render(&extra)))
}

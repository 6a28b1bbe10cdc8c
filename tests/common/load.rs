//! Mixed load for fault tests: workers that check out and then pay, fail, cancel or abandon,
//! recording everything the server acknowledged (and every answer it gave), so a test can fault
//! the system mid-flight and then check that nothing acknowledged was lost.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::StatusCode;
use serde_json::Value;

use super::{event, psid_of, unique_key, Http, Server};

#[derive(Default)]
pub struct Record {
    /// Checkouts answered 200, with the webhook body sent for each (None: abandoned).
    pub checkouts: Vec<(Value, Option<Vec<u8>>)>,
    /// Webhooks answered 200: (order id, order status the answer stated).
    pub payments: Vec<(String, String)>,
    /// Every HTTP status answered, by code.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no HTTP answer (connection refused or reset).
    pub transport_errors: u64,
}

impl Record {
    pub fn extend(&mut self, other: Record) {
        self.checkouts.extend(other.checkouts);
        self.payments.extend(other.payments);
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        self.transport_errors += other.transport_errors;
    }
}

pub struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    record: Arc<Mutex<Record>>,
}

impl Load {
    pub fn start(http: &Http, workers: usize, secret: &'static str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let record = Arc::new(Mutex::new(Record::default()));
        let workers = (0..workers)
            .map(|worker| {
                let (http, stop, record) = (http.clone(), stop.clone(), record.clone());
                tokio::spawn(async move { work(worker, http, stop, record, secret).await })
            })
            .collect();
        Load { stop, workers, record }
    }

    pub async fn stop(self) -> Record {
        self.stop.store(true, Ordering::SeqCst);
        for worker in self.workers {
            worker.await.unwrap();
        }
        Arc::try_unwrap(self.record).ok().unwrap().into_inner().unwrap()
    }
}

async fn work(worker: usize, http: Http, stop: Arc<AtomicBool>, record: Arc<Mutex<Record>>, secret: &'static str) {
    let answered = |status: StatusCode| *record.lock().unwrap().statuses.entry(status.as_u16()).or_default() += 1;
    let failed = || record.lock().unwrap().transport_errors += 1;
    let pause = || tokio::time::sleep(Duration::from_millis(50));
    for i in 0usize.. {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let checkout = match http.try_checkout("A", &format!("load{worker}@example.com")).await {
            Ok((StatusCode::OK, checkout)) => {
                answered(StatusCode::OK);
                checkout
            }
            Ok((status, _)) => {
                answered(status);
                pause().await;
                continue;
            }
            Err(_) => {
                failed();
                pause().await;
                continue;
            }
        };
        let kind = ["succeeded", "failed", "succeeded", "canceled", "abandon"][(worker + i) % 5];
        if kind == "abandon" {
            record.lock().unwrap().checkouts.push((checkout, None));
            continue;
        }
        let body = event(kind, &checkout, &unique_key("e"));
        record.lock().unwrap().checkouts.push((checkout.clone(), Some(body.clone())));
        match http.try_webhook(&body, secret).await {
            Ok((StatusCode::OK, reply)) => {
                answered(StatusCode::OK);
                let status = reply["order_status"].as_str().expect("order_status").to_string();
                let order_id = checkout["order_id"].as_str().unwrap().to_string();
                record.lock().unwrap().payments.push((order_id, status));
            }
            Ok((status, _)) => {
                answered(status);
                pause().await;
            }
            Err(_) => {
                failed();
                pause().await;
            }
        }
    }
}

/// After a fault: every acknowledged checkout has its order and session, every acknowledged
/// payment its stated status. Then the provider redelivers every event it sent (it never saw
/// some answers), every paid-for order reaches a final state, and the audit passes.
pub async fn verify_nothing_lost(server: &Server, record: &Record, secret: &str) {
    let http = &server.http;
    let chunks: Vec<Vec<(Value, Option<Vec<u8>>)>> =
        record.checkouts.chunks(record.checkouts.len().div_ceil(16).max(1)).map(|c| c.to_vec()).collect();
    let payments: std::collections::HashMap<String, String> = record.payments.iter().cloned().collect();
    let payments = Arc::new(payments);
    let mut tasks = Vec::new();
    for chunk in chunks {
        let (http, payments, secret) = (http.clone(), payments.clone(), secret.to_string());
        tasks.push(tokio::spawn(async move {
            for (checkout, body) in chunk {
                let order_id = checkout["order_id"].as_str().unwrap();
                let order = http.order(order_id).await;
                assert!(order["status"].is_string(), "acknowledged checkout {order_id} lost: {order}");
                let (status, _) = http.get(&format!("/api/sessions/{}", psid_of(&checkout))).await;
                assert_eq!(status, StatusCode::OK, "session of {order_id} lost");
                if let Some(stated) = payments.get(order_id) {
                    assert_eq!(&order["status"], stated.as_str(), "acknowledged payment of {order_id} lost");
                }
                if let Some(body) = body {
                    let (status, reply) = http.webhook_with_secret(&body, &secret).await;
                    assert_eq!(status, StatusCode::OK, "redelivery for {order_id}: {reply}");
                    let order = http.order(order_id).await;
                    let status = order["status"].as_str().unwrap();
                    assert!(["PAID", "FAILED", "CANCELED"].contains(&status), "{order_id} after redelivery: {order}");
                    if let Some(stated) = payments.get(order_id) {
                        assert_eq!(status, stated, "the first acknowledged outcome of {order_id} is final");
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    server.assert_audit_passes().await;
}

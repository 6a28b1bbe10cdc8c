//! The kiosk shows itself off: on `/bench` the admin starts a run of the built-in load
//! generator (`bench::measure`) against this server's own listen address, over loopback HTTP:
//! the path a customer takes, through the shop, MockPay and the webhook. One run at a time,
//! bounded in time and load, stoppable; its live status is a per-second timeline, and its
//! report is stored beside the uploaded ones (`"source": "kiosk"`), shown against the
//! reference design's figures (`bench::reference`).
//!
//! What a run does to the event: it checks out real orders of one class (the bench's `B`, if
//! the event has it), with real holds on that class's tickets and on goodies. Its payments are
//! all declined (`KIOSK_SUCCEED_RATE`), so it sells nothing: a webhook or flow run voids its
//! holds as it goes, a checkout run's holds expire after the hold time. Its orders stay in the
//! store, FAILED or EXPIRED, and the activity log says who started it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use super::limits::HttpLimits;
use super::request::BadInput;
use super::response::{detail, json as json_response, Body};
use super::session::json_body;
use crate::bench::{self, reference::REFERENCE, BenchOptions, Control, PayOrder, Phase, Report};
use crate::clock::{now_ms, rfc3339_ms};
use crate::config::Config;
use crate::flow::App;
use crate::staff::StaffMember;

/// The phases a kiosk run may be: those a customer's path takes (reserve and commit are the
/// accounting endpoints, off unless benchmarking).
pub const KIOSK_PHASES: [Phase; 3] = [Phase::Checkout, Phase::Webhook, Phase::Flow];
pub const KIOSK_DURATION_S_MIN: u64 = 1;
pub const KIOSK_DURATION_S_MAX: u64 = 120;
/// Connections of a run, each with one request in flight: below the shop's in-flight bound
/// (512 by default, `shed`), so the run's own requests are not shed (a smaller
/// `--shop-in-flight-max` lowers this bound to it).
pub const KIOSK_CONCURRENCY_MAX: usize = 256;
/// Operations of a checkout or flow phase at most (8 bytes of latency sample each).
pub const KIOSK_OPERATIONS_MAX: u64 = 2_000_000;
/// Checkouts of a webhook run at most: each is kept (about 200 bytes) until the second half
/// of the run pays it.
pub const KIOSK_WEBHOOK_CHECKOUTS_MAX: u64 = 200_000;
/// A request of the run without its answer after this long is an error of the run.
pub const KIOSK_REQUEST_TIMEOUT_MS: u64 = 10_000;
/// After its duration a run gets this long to end (requests in flight, the /metrics reads
/// after its phase) before it is stopped and failed.
pub const KIOSK_WIND_DOWN_MS: u64 = 2 * KIOSK_REQUEST_TIMEOUT_MS + 5_000;
/// Kiosk results kept, as `kiosk-01` to `kiosk-10`: the next run replaces the oldest.
pub const KIOSK_RESULTS_KEPT: usize = 10;
/// The class a run buys when it names none: `tigerfans bench`'s `--cls` default.
pub const KIOSK_CLS_DEFAULT: &str = "B";
/// Every payment of a kiosk run is declined: its holds go back on sale, no ticket is sold.
pub const KIOSK_SUCCEED_RATE: f64 = 0.0;

/// What the admin asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Asked {
    pub phase: Phase,
    pub duration_s: u64,
    pub concurrency: usize,
    pub cls: String,
}

struct Run {
    number: u64,
    asked: Asked,
    started_at_ms: u64,
    control: Arc<Control>,
    /// `None` while it runs.
    end: Option<End>,
}

struct End {
    state: &'static str,
    /// The name it is stored under.
    result: Option<String>,
    detail: Option<String>,
    phases: Vec<Value>,
}

/// The run going on, or the last one (since the server started).
static RUN: Mutex<Option<Run>> = Mutex::new(None);
static RUNS: AtomicU64 = AtomicU64::new(0);

fn run_slot() -> MutexGuard<'static, Option<Run>> {
    RUN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The class a run buys by default: `KIOSK_CLS_DEFAULT` if the event has it, else its largest.
pub fn default_cls(config: &Config) -> String {
    match config.class(KIOSK_CLS_DEFAULT) {
        Some(class) => class.id.clone(),
        None => config.classes.iter().max_by_key(|c| c.capacity).map(|c| c.id.clone()).unwrap_or_default(),
    }
}

/// The most connections a run may have here: within the shop's in-flight bound too.
pub fn concurrency_max(limits: &HttpLimits) -> usize {
    KIOSK_CONCURRENCY_MAX.min(limits.shop_in_flight_max).max(1)
}

/// A start's body: `{"phase", "duration_s", "concurrency"}`, and `"cls"` if not the default.
pub fn parse_request(body: &Value, config: &Config, concurrency_max: usize) -> Result<Asked, BadInput> {
    const FIELDS: [&str; 4] = ["phase", "duration_s", "concurrency", "cls"];
    let fields = body.as_object().ok_or_else(|| BadInput("the body must be a JSON object".into()))?;
    if let Some(unknown) = fields.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(BadInput(format!("unknown field {unknown:?} (a run takes phase, duration_s, concurrency, cls)")));
    }
    let phases: Vec<&str> = KIOSK_PHASES.iter().map(|p| p.name()).collect();
    let phase = body["phase"]
        .as_str()
        .and_then(|name| KIOSK_PHASES.iter().copied().find(|p| p.name() == name))
        .ok_or_else(|| BadInput(format!("phase must be one of {}", phases.join(", "))))?;
    let (low, high) = (KIOSK_DURATION_S_MIN, KIOSK_DURATION_S_MAX);
    let duration_s = body["duration_s"]
        .as_u64()
        .filter(|s| (low..=high).contains(s))
        .ok_or_else(|| BadInput(format!("duration_s must be a whole number of seconds from {low} to {high}")))?;
    let concurrency = body["concurrency"]
        .as_u64()
        .filter(|c| (1..=concurrency_max as u64).contains(c))
        .ok_or_else(|| BadInput(format!("concurrency must be a whole number from 1 to {concurrency_max}")))?;
    let cls = match &body["cls"] {
        Value::Null => default_cls(config),
        Value::String(cls) if config.class(cls).is_some() => cls.clone(),
        other => return Err(BadInput(format!("cls {other} is not a ticket class of this event"))),
    };
    Ok(Asked { phase, duration_s, concurrency: concurrency as usize, cls })
}

/// Where the run reaches this server over loopback: its own address, or loopback on its
/// port when it listens on every address. `None` when it listens on one other address only:
/// the run's requests would come from that address, which the per-address checkout limits
/// count like any customer's (127.0.0.1 and ::1 are not limited).
pub fn loopback_target(listen: SocketAddr) -> Option<SocketAddr> {
    match listen.ip() {
        ip if ip.is_loopback() => Some(listen),
        IpAddr::V4(ip) if ip.is_unspecified() => Some(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen.port())),
        IpAddr::V6(ip) if ip.is_unspecified() => Some(SocketAddr::new(Ipv6Addr::LOCALHOST.into(), listen.port())),
        _ => None,
    }
}

/// The generator's options for what was asked. A webhook run checks out for the first half of
/// its time and pays for the second.
pub fn bench_options(asked: &Asked, target: SocketAddr, secret: String) -> BenchOptions {
    let (total, phase_s) = match asked.phase {
        Phase::Webhook => (KIOSK_WEBHOOK_CHECKOUTS_MAX, asked.duration_s as f64 / 2.0),
        _ => (KIOSK_OPERATIONS_MAX, asked.duration_s as f64),
    };
    BenchOptions {
        base: format!("http://{target}"),
        phase: asked.phase,
        total,
        concurrency: asked.concurrency,
        succeed_rate: KIOSK_SUCCEED_RATE,
        duration_s: Some(phase_s),
        json: None,
        secret: Some(secret),
        cls: asked.cls.clone(),
        threads: 1,
        rate: None,
        pay_order: PayOrder::Random,
        request_timeout_ms: KIOSK_REQUEST_TIMEOUT_MS,
    }
}

/// `POST /api/admin/bench/run`: starts a run (202 with its status).
pub async fn start(
    app: &Arc<App>,
    limits: &HttpLimits,
    by: &StaffMember,
    request: Request<Incoming>,
) -> Response<Body> {
    let body = match json_body(app, limits, by, request).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let asked = match parse_request(&body, &app.config, concurrency_max(limits)) {
        Ok(asked) => asked,
        Err(refused) => return refused.into(),
    };
    if !app.config.mockpay {
        let why = "a kiosk run buys online and declines at MockPay, and both are off at a real event (mockpay = false)";
        return detail(StatusCode::FORBIDDEN, why);
    }
    let Some(target) = loopback_target(app.listen_address) else {
        let why = format!(
            "this server listens on {} only: a kiosk run needs to reach it over loopback (listen on 0.0.0.0 or 127.0.0.1)",
            app.listen_address
        );
        return detail(StatusCode::FORBIDDEN, &why);
    };
    let number = RUNS.fetch_add(1, Ordering::Relaxed) + 1;
    let control = Arc::new(Control::watched(Instant::now() + Duration::from_secs(asked.duration_s)));
    {
        let mut slot = run_slot();
        if slot.as_ref().is_some_and(|run| run.end.is_none()) {
            return detail(StatusCode::CONFLICT, "a kiosk run is running already: stop it, or wait for its end");
        }
        let started_at_ms = now_ms();
        *slot = Some(Run { number, asked: asked.clone(), started_at_ms, control: control.clone(), end: None });
    }
    let options = bench_options(&asked, target, app.webhook_secret.clone());
    let what = format!(
        "{} for {} s, {} connections, class {}",
        asked.phase.name(),
        asked.duration_s,
        asked.concurrency,
        asked.cls
    );
    tracing::info!(by = %by.name, run = %what, "kiosk run started");
    app.log_activity(by, "kiosk_run", what).await;
    tokio::spawn(supervise(app.clone(), number, control, options, asked));
    status_with(StatusCode::ACCEPTED, app, limits)
}

/// `POST /api/admin/bench/run/stop`: stops the run going on (it ends once the requests in
/// flight are answered); 409 when none is.
pub async fn stop(app: &App, limits: &HttpLimits, by: &StaffMember, request: Request<Incoming>) -> Response<Body> {
    if let Err(refused) = json_body(app, limits, by, request).await {
        return refused;
    }
    let stopped = match run_slot().as_ref() {
        Some(run) if run.end.is_none() => {
            run.control.stop();
            true
        }
        _ => false,
    };
    if !stopped {
        return detail(StatusCode::CONFLICT, "no kiosk run is running");
    }
    tracing::info!(by = %by.name, "kiosk run stopped");
    app.log_activity(by, "kiosk_run_stopped", String::new()).await;
    status_with(StatusCode::OK, app, limits)
}

/// `GET /api/admin/bench/run`: the run going on or the last one (`"run": null` before the
/// first), its limits, and the reference's figures.
pub fn status(app: &App, limits: &HttpLimits) -> Response<Body> {
    status_with(StatusCode::OK, app, limits)
}

fn status_with(code: StatusCode, app: &App, limits: &HttpLimits) -> Response<Body> {
    let run = run_slot().as_ref().map(run_json);
    json_response(
        code,
        &json!({
            "run": run,
            "limits": {
                "phases": KIOSK_PHASES.iter().map(|p| p.name()).collect::<Vec<_>>(),
                "duration_s_min": KIOSK_DURATION_S_MIN,
                "duration_s_max": KIOSK_DURATION_S_MAX,
                "concurrency_max": concurrency_max(limits),
                "cls": default_cls(&app.config),
                "succeed_rate": KIOSK_SUCCEED_RATE,
                "hold_timeout_s": app.config.hold_timeout_s,
                "results_kept": KIOSK_RESULTS_KEPT,
            },
            "reference": REFERENCE,
        }),
    )
}

fn run_json(run: &Run) -> Value {
    let live = run.control.live.as_ref();
    let (ok, errors) = live.map(|l| l.totals()).unwrap_or_default();
    let state = run.end.as_ref().map_or("running", |e| e.state);
    json!({
        "number": run.number,
        "state": state,
        "stopping": run.end.is_none() && run.control.stopped(),
        "phase": run.control.phase().or(run.asked.phase.expand().first().copied()).unwrap_or(run.asked.phase).name(),
        "requested_phase": run.asked.phase.name(),
        "cls": run.asked.cls,
        "duration_s": run.asked.duration_s,
        "concurrency": run.asked.concurrency,
        "started_at": rfc3339_ms(run.started_at_ms),
        "elapsed_s": live.map_or(0.0, |l| l.elapsed().as_secs_f64()),
        "ok": ok,
        "errors": errors,
        "timeline": live.map(|l| l.timeline()).unwrap_or_default(),
        "result": run.end.as_ref().and_then(|e| e.result.clone()),
        "detail": run.end.as_ref().and_then(|e| e.detail.clone()),
        "phases": run.end.as_ref().map(|e| e.phases.clone()).unwrap_or_default(),
    })
}

/// Runs the generator in a task of its own (a panic there is a failed run, not a lost server)
/// and records how the run ended.
async fn supervise(app: Arc<App>, number: u64, control: Arc<Control>, options: BenchOptions, asked: Asked) {
    let bound = Duration::from_secs(asked.duration_s) + Duration::from_millis(KIOSK_WIND_DOWN_MS);
    let measured = tokio::spawn(bench::measure(options, control.clone()));
    let end = match watch(&app, &control, measured, bound).await {
        Ok(report) => finish(&app, &control, &asked, report).await,
        Err(why) => {
            tracing::warn!(error = %why, "kiosk run failed");
            End { state: "failed", result: None, detail: Some(why), phases: Vec::new() }
        }
    };
    if let Some(live) = &control.live {
        live.end();
    }
    if let Some(run) = run_slot().as_mut().filter(|run| run.number == number) {
        run.end = Some(end);
    }
}

/// The run's report, once it ends: by itself, stopped, or at the server's shutdown; an error if
/// it fails or overruns `bound`.
async fn watch(
    app: &App,
    control: &Control,
    mut measured: JoinHandle<anyhow::Result<Report>>,
    bound: Duration,
) -> Result<Report, String> {
    let mut shutdown = app.shutdown.clone();
    let overrun = tokio::time::sleep(bound);
    tokio::pin!(overrun);
    let mut stopping = false;
    loop {
        tokio::select! {
            joined = &mut measured => {
                return match joined {
                    Ok(Ok(report)) => Ok(report),
                    Ok(Err(e)) => Err(format!("{e:#}")),
                    Err(e) => Err(format!("the run crashed: {e}")),
                };
            }
            () = &mut overrun => {
                control.stop();
                measured.abort();
                return Err(format!("the run did not end within {} s: stopped", bound.as_secs()));
            }
            _ = shutdown.changed(), if !stopping => {
                stopping = true;
                control.stop();
            }
        }
    }
}

/// Stores a run's report like an uploaded one, marked as the kiosk's.
async fn finish(app: &App, control: &Control, asked: &Asked, report: Report) -> End {
    let state = if control.stopped() { "stopped" } else { "finished" };
    let phases: Vec<Value> = report
        .phases
        .iter()
        .map(|p| {
            json!({"phase": p.phase, "ok": p.ok, "total": p.total, "throughput": p.throughput,
                   "p50_ms": p.p50_ms, "p99_ms": p.p99_ms, "tb_batch_avg": p.tb_batch_avg})
        })
        .collect();
    if report.phases.iter().all(|p| p.total == 0) {
        let detail = Some("nothing was measured: it was stopped before its first answer".to_string());
        return End { state, result: None, detail, phases };
    }
    let record = json!({
        "uploaded_at": rfc3339_ms(now_ms()),
        "source": "kiosk",
        "run": {
            "phase": asked.phase.name(), "cls": asked.cls, "duration_s": asked.duration_s,
            "concurrency": asked.concurrency, "succeed_rate": KIOSK_SUCCEED_RATE, "state": state,
        },
        "report": report,
    });
    match store_result(app, &record).await {
        Ok(name) => {
            tracing::info!(result = %name, state, "kiosk run stored");
            End { state, result: Some(name), detail: None, phases }
        }
        Err(why) => End { state, result: None, detail: Some(format!("the result was not stored: {why}")), phases },
    }
}

async fn store_result(app: &App, record: &Value) -> Result<String, String> {
    let stored = app.store.bench_results().map_err(|e| format!("{e:#}"))?;
    let name = kiosk_slot(&stored, now_ms());
    let bytes = serde_json::to_vec(record).map_err(|e| e.to_string())?;
    match app.store.save_bench_result(name.clone(), bytes).await {
        Ok(true) => Ok(name),
        Ok(false) => Err(format!("{} results are stored already", crate::store::BENCH_RESULTS_MAX)),
        Err(e) => Err(e.to_string()),
    }
}

/// The name the next kiosk result is stored under: the first of `kiosk-01` to `kiosk-10` that is
/// free, else the one of the oldest kiosk result (an upload given such a name is left alone).
pub fn kiosk_slot(stored: &[(String, Vec<u8>)], now_ms: u64) -> String {
    let mut oldest: Option<(String, String)> = None;
    for n in 1..=KIOSK_RESULTS_KEPT {
        let name = format!("kiosk-{n:02}");
        let Some((_, bytes)) = stored.iter().find(|(k, _)| *k == name) else { return name };
        let record: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
        if record["source"] != "kiosk" {
            continue;
        }
        let at = record["uploaded_at"].as_str().unwrap_or("").to_string();
        if oldest.as_ref().map_or(true, |(seen, _)| at < *seen) {
            oldest = Some((at, name));
        }
    }
    oldest.map_or_else(|| format!("kiosk-{now_ms}"), |(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::default()
    }

    #[test]
    fn a_start_takes_a_customer_phase_and_bounded_numbers() {
        let ok = parse_request(&json!({"phase": "flow", "duration_s": 2, "concurrency": 4}), &config(), 256).unwrap();
        assert_eq!(ok, Asked { phase: Phase::Flow, duration_s: 2, concurrency: 4, cls: "B".into() });
        let a = parse_request(
            &json!({"phase": "checkout", "duration_s": 120, "concurrency": 256, "cls": "A"}),
            &config(),
            256,
        );
        assert_eq!(a.unwrap().cls, "A");
        let refused = [
            json!({"phase": "reserve", "duration_s": 2, "concurrency": 4}),
            json!({"phase": "all", "duration_s": 2, "concurrency": 4}),
            json!({"duration_s": 2, "concurrency": 4}),
            json!({"phase": "flow", "duration_s": 0, "concurrency": 4}),
            json!({"phase": "flow", "duration_s": 121, "concurrency": 4}),
            json!({"phase": "flow", "duration_s": 1.5, "concurrency": 4}),
            json!({"phase": "flow", "duration_s": "2", "concurrency": 4}),
            json!({"phase": "flow", "duration_s": 2, "concurrency": 0}),
            json!({"phase": "flow", "duration_s": 2, "concurrency": 257}),
            json!({"phase": "flow", "duration_s": 2, "concurrency": -1}),
            json!({"phase": "flow", "duration_s": 2}),
            json!({"phase": "flow", "duration_s": 2, "concurrency": 4, "cls": "Z"}),
            json!({"phase": "flow", "duration_s": 2, "concurrency": 4, "cls": 1}),
            json!({"phase": "flow", "duration_s": 2, "concurrency": 4, "duration": 5}),
            json!(["flow"]),
        ];
        for body in refused {
            assert!(parse_request(&body, &config(), 256).is_err(), "{body}");
        }
        let lower = parse_request(&json!({"phase": "flow", "duration_s": 2, "concurrency": 100}), &config(), 64);
        assert!(lower.unwrap_err().0.contains("1 to 64"));
        assert_eq!(concurrency_max(&HttpLimits::default()), 256, "below the default bound of 512");
        assert_eq!(concurrency_max(&HttpLimits { shop_in_flight_max: 64, ..HttpLimits::default() }), 64);
    }

    #[test]
    fn the_default_class_is_the_benchs_else_the_largest() {
        let mut config = config();
        assert_eq!(default_cls(&config), "B");
        config.classes.retain(|c| c.id != "B");
        config.classes.push(crate::config::TicketClass {
            id: "C".into(),
            name: "C".into(),
            price_cents: 1,
            capacity: 1,
        });
        assert_eq!(default_cls(&config), "A");
    }

    #[test]
    fn a_run_reaches_the_server_over_loopback_or_not_at_all() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(loopback_target(at("127.0.0.1:8000")), Some(at("127.0.0.1:8000")));
        assert_eq!(loopback_target(at("0.0.0.0:80")), Some(at("127.0.0.1:80")));
        assert_eq!(loopback_target(at("[::]:80")), Some(at("[::1]:80")));
        assert_eq!(loopback_target(at("[::1]:81")), Some(at("[::1]:81")));
        assert_eq!(loopback_target(at("192.168.1.5:80")), None);
    }

    #[test]
    fn a_webhook_run_pays_in_its_second_half_and_everything_is_declined() {
        let asked = Asked { phase: Phase::Webhook, duration_s: 10, concurrency: 8, cls: "B".into() };
        let options = bench_options(&asked, "127.0.0.1:9".parse().unwrap(), "secret-123".into());
        assert_eq!((options.duration_s, options.total), (Some(5.0), KIOSK_WEBHOOK_CHECKOUTS_MAX));
        assert_eq!(options.succeed_rate, 0.0);
        assert_eq!(options.base, "http://127.0.0.1:9");
        options.validate().unwrap();
        let flow = bench_options(&Asked { phase: Phase::Flow, ..asked }, "[::1]:9".parse().unwrap(), "s".into());
        assert_eq!(
            (flow.duration_s, flow.total, flow.base.as_str()),
            (Some(10.0), KIOSK_OPERATIONS_MAX, "http://[::1]:9")
        );
    }

    #[test]
    fn kiosk_results_take_ten_names_and_replace_their_oldest() {
        let kiosk = |at: &str| serde_json::to_vec(&json!({"source": "kiosk", "uploaded_at": at})).unwrap();
        let mut stored = vec![("kiosk-01".to_string(), kiosk("2026-12-04T10:00:00.000Z"))];
        assert_eq!(kiosk_slot(&stored, 7), "kiosk-02");
        for n in 2..=10 {
            stored.push((format!("kiosk-{n:02}"), kiosk(&format!("2026-12-04T09:{n:02}:00.000Z"))));
        }
        assert_eq!(kiosk_slot(&stored, 7), "kiosk-02", "the oldest");
        stored[1].1 = serde_json::to_vec(&json!({"uploaded_at": "2000-01-01T00:00:00.000Z"})).unwrap();
        assert_eq!(kiosk_slot(&stored, 7), "kiosk-03", "an upload called kiosk-02 is not replaced");
        let uploads: Vec<_> = (1..=10).map(|n| (format!("kiosk-{n:02}"), b"{}".to_vec())).collect();
        assert_eq!(kiosk_slot(&uploads, 7), "kiosk-7");
    }
}

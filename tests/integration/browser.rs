//! The bundled web UI in a real browser: headless Chromium driven through WebDriver
//! (chromedriver), against a real server and replica. Every page visited is saved as a
//! screenshot under target/screenshots/ for a reviewer to look at.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

const ADMIN_PASSWORD: &str = "browser-test-admin";

struct Driver {
    _child: Child,
    url: String,
}

/// One chromedriver per test binary; each test opens its own browser session.
fn driver_url() -> &'static str {
    static DRIVER: OnceLock<Driver> = OnceLock::new();
    &DRIVER
        .get_or_init(|| {
            let bin = "/usr/bin/chromedriver";
            assert!(std::path::Path::new(bin).exists(), "{bin} missing: run scripts/test-deps.sh (make test does)");
            let port = free_port();
            // Dies with this test binary (PR_SET_PDEATHSIG): a leaked chromedriver kept the test
            // run's inherited file descriptors (a build lock, say) open after the run. The signal
            // fires when the spawning *thread* ends, so a thread that lives as long as the binary
            // spawns it.
            let (sent, spawned) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut command = Command::new(bin);
                command.arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null());
                // SAFETY: only async-signal-safe calls between fork and exec.
                unsafe {
                    use std::os::unix::process::CommandExt;
                    command.pre_exec(|| {
                        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
                sent.send(command.spawn().expect("starting chromedriver")).unwrap();
                loop {
                    std::thread::park();
                }
            });
            let child = spawned.recv().unwrap();
            wait_for_port(port, Duration::from_secs(20));
            Driver { _child: child, url: format!("http://127.0.0.1:{port}") }
        })
        .url
}

async fn browser() -> Client {
    browser_with(&[]).await
}

/// A headless Chromium with extra command-line arguments (a fake camera).
pub async fn browser_with(extra: &[String]) -> Client {
    let profile = scratch_dir("chromium-profile");
    let mut args: Vec<String> = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    args.extend(extra.iter().cloned());
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_string(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": args,
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(driver_url())
        .await
        .expect("a WebDriver session with headless Chromium")
}

fn screenshots_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Saves what the page shows, after checking that its Content-Security-Policy refused nothing
/// (every page loads app.js, which records refusals).
pub async fn screenshot(client: &Client, name: &str) {
    let refused = client.execute("return window.TF_CSP_VIOLATIONS || null;", vec![]).await.unwrap();
    assert_eq!(refused, json!([]), "{name}: the page's policy refused something, or app.js did not run");
    let png = client.screenshot().await.expect("screenshot");
    std::fs::write(screenshots_dir().join(format!("{name}.png")), png).unwrap();
}

pub async fn text(client: &Client, css: &str) -> String {
    client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).text().await.unwrap()
}

pub async fn wait_for(client: &Client, css: &str) -> fantoccini::elements::Element {
    client
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("waiting for {css}: {e}"))
}

/// Waits until a JavaScript expression is truthy.
pub async fn wait_js(client: &Client, expression: &str, what: &str) {
    let script = format!("return !!({expression});");
    for _ in 0..150 {
        if client.execute(&script, vec![]).await.unwrap() == json!(true) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what} ({expression})");
}

fn browser_config(capacity: u64) -> serde_json::Value {
    let mut config = config(capacity, 100, 300);
    config["admin_password"] = json!(ADMIN_PASSWORD);
    config["event_name"] = json!("TigerFans Browser Test");
    config
}

/// Checkout through the pages up to the MockPay page; returns the psid in the URL.
async fn checkout_in_browser(client: &Client, base: &str, cls: &str, email: &str, shot: Option<&str>) {
    client.goto(&format!("{base}/demo/checkout")).await.unwrap();
    wait_js(client, &format!("document.querySelector('#cls option[value=\"{cls}\"]')"), "class options").await;
    // The page renders its options from /api/event and /api/inventory after it loads; under a
    // loaded machine a freshly found element can still go stale once, so fill the form again.
    let mut attempts = 0;
    loop {
        let filled = async {
            client.find(Locator::Css("#cls")).await?.select_by_value(cls).await?;
            let field = client.find(Locator::Css("#email")).await?;
            field.clear().await?;
            field.send_keys(email).await
        }
        .await;
        match filled {
            Ok(()) => break,
            Err(e) if attempts < 3 => {
                attempts += 1;
                eprintln!("filling the checkout form failed ({e}); again");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => panic!("filling the checkout form: {e}"),
        }
    }
    if let Some(name) = shot {
        screenshot(client, name).await;
    }
    client.find(Locator::Css("#submit")).await.unwrap().click().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buy_a_ticket_end_to_end_and_see_its_qr_code() {
    let server = Server::start(browser_config(100)).await;
    let client = browser().await;
    let base = &server.base;

    client.goto(base).await.unwrap();
    wait_js(&client, "document.querySelector('#event-name').textContent.includes('Browser Test')", "event name").await;
    wait_js(
        &client,
        "document.querySelector('#avail-A') && /\\d/.test(document.querySelector('#avail-A').textContent)",
        "availability",
    )
    .await;
    screenshot(&client, "01-landing").await;
    client.find(Locator::Css("#buy")).await.unwrap().click().await.unwrap();
    wait_for(&client, "#email").await;
    assert!(client.current_url().await.unwrap().path().ends_with("/demo/checkout"));

    checkout_in_browser(&client, base, "A", "fan@example.com", Some("02-checkout")).await;
    wait_for(&client, "#pay-succeeded").await;
    assert!(client.current_url().await.unwrap().path().starts_with("/mockpay/ps_"));
    wait_js(&client, "/65[.,]00/.test(document.querySelector('#amount').textContent)", "the amount").await;
    wait_js(&client, "/\\d:\\d\\d/.test(document.querySelector('#countdown').textContent)", "the countdown").await;
    screenshot(&client, "03-mockpay").await;
    let mockpay_url = client.current_url().await.unwrap();
    client.find(Locator::Css("#pay-succeeded")).await.unwrap().click().await.unwrap();

    wait_js(
        &client,
        "document.querySelector('#result') && document.querySelector('#result').dataset.status === 'PAID'",
        "a paid order",
    )
    .await;
    let code = text(&client, "#ticket-code").await;
    assert!(code.starts_with("TCK-") && code.len() == 14, "ticket code {code:?}");
    wait_js(
        &client,
        "document.querySelector('#qr').complete && document.querySelector('#qr').naturalWidth > 0",
        "the QR image",
    )
    .await;
    let href = client.find(Locator::Css("#qr-download")).await.unwrap().attr("href").await.unwrap().unwrap();
    assert!(href.contains("/qr.svg"), "{href}");
    screenshot(&client, "04-success-paid").await;

    // The QR image is the ticket code, made by the server.
    let order_id =
        client.current_url().await.unwrap().query_pairs().find(|(k, _)| k == "order_id").unwrap().1.to_string();
    let svg =
        server.http.request(hyper::Method::GET, &format!("/api/orders/{order_id}/qr.svg"), &[], vec![]).await.unwrap();
    assert_eq!(svg.headers["content-type"], "image/svg+xml");
    assert!(String::from_utf8_lossy(&svg.body).contains("<svg"));
    assert_eq!(server.http.order(&order_id).await["ticket_code"], code.as_str());

    // MockPay opened again for the paid order: no countdown, no buttons, a way to the order.
    client.goto(mockpay_url.as_str()).await.unwrap();
    wait_js(
        &client,
        "document.querySelector('#pay-succeeded').disabled && /outcome: PAID/.test(document.querySelector('#status').textContent)",
        "the settled MockPay page",
    )
    .await;
    let link = client.find(Locator::Css("#status a")).await.unwrap().attr("href").await.unwrap().unwrap();
    assert_eq!(link, format!("/demo/success?order_id={order_id}"));
    assert_eq!(text(&client, "#countdown").await, "—");
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_canceled_payments_say_so_and_allow_a_retry() {
    let server = Server::start(browser_config(100)).await;
    let client = browser().await;
    for (button, status, word) in [("#pay-failed", "failed", "fail"), ("#pay-canceled", "canceled", "cancel")] {
        checkout_in_browser(&client, &server.base, "B", "retry@example.com", None).await;
        wait_for(&client, button).await.click().await.unwrap();
        wait_js(&client, &format!("location.search.includes('status={status}')"), "the redirect").await;
        wait_js(
            &client,
            &format!("document.querySelector('#status').textContent.toLowerCase().includes('{word}')"),
            "the message",
        )
        .await;
        screenshot(&client, &format!("05-checkout-{status}")).await;
        // The form is still there to try again.
        assert!(client.find(Locator::Css("#submit")).await.is_ok());
    }
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sold_out_is_shown() {
    let server = Server::start(browser_config(1)).await;
    // Someone else takes the only ticket of class A.
    let (status, _) = server.http.checkout("A", "first@example.com").await;
    assert_eq!(status, hyper::StatusCode::OK);
    let client = browser().await;
    client.goto(&server.base).await.unwrap();
    wait_js(&client, "document.querySelector('#avail-A') && /sold out/i.test(document.querySelector('.class-card[data-cls=\"A\"]').textContent)", "a sold-out badge").await;
    screenshot(&client, "06-landing-sold-out").await;
    // Submitting anyway (the hold may be released later, so the page lets you try) says sold out.
    client.goto(&format!("{}/demo/checkout", server.base)).await.unwrap();
    wait_js(&client, "document.querySelector('#cls option[value=\"B\"]')", "class options").await;
    let response = server.http.checkout("A", "second@example.com").await;
    assert_eq!(response.0, hyper::StatusCode::CONFLICT);
    client.goto(&format!("{}/demo/checkout?status=sold_out", server.base)).await.unwrap();
    wait_js(&client, "/sold out/i.test(document.querySelector('#status').textContent)", "the sold-out message").await;
    screenshot(&client, "07-checkout-sold-out").await;
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_logs_in_and_sees_a_new_order_live() {
    let server = Server::start(browser_config(100)).await;
    let client = browser().await;
    let base = &server.base;

    // Not logged in: the page sends you to the login, and the API says 401.
    client.goto(&format!("{base}/admin")).await.unwrap();
    wait_for(&client, "#login").await;
    assert!(client.current_url().await.unwrap().path().ends_with("/admin/login"));
    assert_eq!(server.http.get("/api/admin/orders").await.0, hyper::StatusCode::UNAUTHORIZED);

    // A wrong password is refused with a message.
    wait_js(&client, "document.querySelector('#login input[name=csrf]').value.length > 0", "the CSRF token").await;
    client.find(Locator::Css("#username")).await.unwrap().send_keys("admin").await.unwrap();
    client.find(Locator::Css("#password")).await.unwrap().send_keys("wrong").await.unwrap();
    client.find(Locator::Css("#login-submit")).await.unwrap().click().await.unwrap();
    wait_js(
        &client,
        "location.search.includes('error=invalid') && document.querySelector('#login-error').textContent.length > 0",
        "the error",
    )
    .await;
    screenshot(&client, "08-admin-login-error").await;

    wait_js(&client, "document.querySelector('#login input[name=csrf]').value.length > 0", "the CSRF token").await;
    client.find(Locator::Css("#username")).await.unwrap().send_keys("admin").await.unwrap();
    client.find(Locator::Css("#password")).await.unwrap().send_keys(ADMIN_PASSWORD).await.unwrap();
    client.find(Locator::Css("#login-submit")).await.unwrap().click().await.unwrap();
    // (Once, under load, the admin page did not show within 15 s: say where the browser was.)
    if client.wait().at_most(Duration::from_secs(30)).for_element(Locator::Css("#orders")).await.is_err() {
        let url = client.current_url().await.map(|u| u.to_string()).unwrap_or_default();
        let page = client.source().await.unwrap_or_default();
        panic!("no #orders after signing in: at {url}\n{}", &page[..page.len().min(2000)]);
    }
    assert!(client.current_url().await.unwrap().path().ends_with("/admin"));
    wait_js(
        &client,
        "document.querySelector('#inventory') && /\\d/.test(document.querySelector('#inventory').textContent)",
        "inventory",
    )
    .await;

    // Mark this page: if it reloads, the mark is gone.
    client.execute("window.__not_reloaded = 42; return true;", vec![]).await.unwrap();
    let (_, checkout) = server.http.checkout("A", "live@example.com").await;
    let order_id = checkout["order_id"].as_str().unwrap().to_string();
    server.http.webhook(&event("succeeded", &checkout, &unique_key("e"))).await;
    wait_js(
        &client,
        &format!("document.querySelector('#orders tr[data-order-id=\"{order_id}\"]')"),
        "the new order's row",
    )
    .await;
    wait_js(
        &client,
        &format!("/PAID/.test(document.querySelector('#orders tr[data-order-id=\"{order_id}\"]').textContent)"),
        "the row to show PAID",
    )
    .await;
    assert_eq!(
        client.execute("return window.__not_reloaded;", vec![]).await.unwrap(),
        json!(42),
        "the page did not reload"
    );
    screenshot(&client, "09-admin-live").await;

    // An open hold shows up in the holds panel.
    let (_, held) = server.http.checkout("B", "holder@example.com").await;
    let held_id = held["order_id"].as_str().unwrap().to_string();
    wait_js(&client, "document.querySelector('#holds').textContent.includes('holder@example.com')", "the hold").await;
    let _ = held_id;
    screenshot(&client, "10-admin-holds").await;

    client.goto(&format!("{base}/bench")).await.unwrap();
    wait_for(&client, "#chart-throughput").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    screenshot(&client, "11-bench").await;
    client.close().await.unwrap();
}

/// Signs in through the login page as the admin; waits for the admin page.
async fn sign_in_as_admin(client: &Client, base: &str) {
    client.goto(&format!("{base}/admin/login")).await.unwrap();
    wait_js(client, "document.querySelector('#login input[name=csrf]').value.length > 0", "the CSRF token").await;
    client.find(Locator::Css("#username")).await.unwrap().send_keys("admin").await.unwrap();
    client.find(Locator::Css("#password")).await.unwrap().send_keys(ADMIN_PASSWORD).await.unwrap();
    client.find(Locator::Css("#login-submit")).await.unwrap().click().await.unwrap();
    if client.wait().at_most(Duration::from_secs(30)).for_element(Locator::Css("#orders")).await.is_err() {
        let url = client.current_url().await.map(|u| u.to_string()).unwrap_or_default();
        panic!("no #orders after signing in: at {url}");
    }
}

/// Sets a form field's value (a number input's text is replaced, not appended to).
async fn set_value(client: &Client, css: &str, value: &str) {
    let script = format!("const e = document.querySelector('{css}'); e.value = '{value}'; return e.value;");
    assert_eq!(client.execute(&script, vec![]).await.unwrap(), json!(value), "{css}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kiosk_runs_the_bench_on_itself_and_shows_it_against_the_reference() {
    let server = Server::start(browser_config(1_000_000)).await;
    let client = browser().await;
    let base = &server.base;

    // A green pixel right of the legend's swatches (its first one is green too): the line.
    let drawn = "(() => { const c = document.querySelector('#chart-kiosk-throughput'); \
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; \
        const fs = 0.72 * parseFloat(getComputedStyle(document.documentElement).fontSize); \
        const left = Math.ceil(3 * fs * (window.devicePixelRatio || 1)); \
        for (let i = 0; i < d.length; i += 4) if ((i / 4) % c.width > left \
          && d[i + 1] > 100 && d[i] < 60 && d[i + 2] < 100) return true; return false; })()";

    // A visitor sees the charts and the results, and no way to start a run (and no line on the
    // run's chart).
    client.goto(&format!("{base}/bench")).await.unwrap();
    wait_js(&client, "!document.querySelector('#kiosk-signin').hidden", "the sign-in hint").await;
    assert!(!client.find(Locator::Css("#kiosk-form")).await.unwrap().is_displayed().await.unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(client.execute(&format!("return {drawn};"), vec![]).await.unwrap(), json!(false), "no run, no line");

    sign_in_as_admin(&client, base).await;
    client.goto(&format!("{base}/bench")).await.unwrap();
    wait_js(&client, "!document.querySelector('#kiosk-form').hidden", "the run form").await;
    wait_js(&client, "/class B/.test(document.querySelector('#kiosk-effect').textContent)", "what a run buys").await;
    wait_js(
        &client,
        "/977 reservations\\/s/.test(document.querySelector('#kiosk-reference').textContent)",
        "the reference",
    )
    .await;
    client.find(Locator::Css("#kiosk-phase")).await.unwrap().select_by_value("flow").await.unwrap();
    set_value(&client, "#kiosk-duration", "3").await;
    set_value(&client, "#kiosk-concurrency", "4").await;
    client.find(Locator::Css("#kiosk-start")).await.unwrap().click().await.unwrap();

    // The live status and charts fill while it runs.
    wait_js(&client, "document.querySelector('#kiosk-state').dataset.state === 'running'", "the run going").await;
    wait_js(
        &client,
        "Number(document.querySelector('#kiosk-ok').textContent.replace(/,/g, '')) > 0",
        "answers counted",
    )
    .await;
    // (A second of it charted, unless it ended meanwhile.)
    wait_js(
        &client,
        "parseFloat(document.querySelector('#kiosk-elapsed').textContent) >= 1 \
        || document.querySelector('#kiosk-state').dataset.state !== 'running'",
        "a second of the run",
    )
    .await;
    client.execute("document.querySelector('#kiosk-readout').scrollIntoView(); return true;", vec![]).await.unwrap();
    screenshot(&client, "12-bench-kiosk-running").await;
    wait_js(&client, "document.querySelector('#kiosk-state').dataset.state === 'finished'", "the run's end").await;
    wait_js(&client, "/Stored as kiosk-01/.test(document.querySelector('#kiosk-status').textContent)", "where it went")
        .await;
    wait_js(&client, drawn, "the run's throughput line (green) on its chart").await;
    client.execute("document.querySelector('#kiosk-status').scrollIntoView(); return true;", vec![]).await.unwrap();
    screenshot(&client, "13-bench-kiosk-finished").await;

    // The result's row in the table, marked as the kiosk's, beside the reference's figures.
    let row = "#results-table tr[data-result=\"kiosk-01\"][data-phase=\"flow\"]";
    wait_js(&client, &format!("document.querySelector('{row}')"), "the run's row").await;
    assert!(text(&client, row).await.contains("kiosk"), "the kiosk badge");
    let reference = text(&client, "#results-table tr[data-result=\"reference\"]").await;
    assert!(reference.contains("977") && reference.contains("5–6") && reference.contains("4 vCPUs"), "{reference}");
    let listed = server.http.get("/api/bench/results").await.1;
    let ok = listed["results"][0]["report"]["phases"][0]["ok"].as_u64().unwrap();
    let digits = ok.to_string();
    let grouped: Vec<&str> = digits.as_bytes().rchunks(3).rev().map(|d| std::str::from_utf8(d).unwrap()).collect();
    assert!(text(&client, row).await.contains(&grouped.join(",")), "the row shows the stored result ({ok} ok)");
    client.execute("document.querySelector('#results-table').scrollIntoView(); return true;", vec![]).await.unwrap();
    screenshot(&client, "14-bench-kiosk-result").await;
    client.close().await.unwrap();
}

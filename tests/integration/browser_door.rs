//! The door, the box office and the admin's refunds and exports in a real browser: the door
//! page scans a real ticket's QR code through Chromium's fake camera (a Y4M file made from the
//! QR by Debian's qrencode, netpbm and mjpegtools), then the same ticket again.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::browser::{browser_with, screenshot, text, wait_for, wait_js};
use crate::common::*;
use crate::door::{door_config, door_server, qr_payload, Staff, ADMIN_PASSWORD};
use fantoccini::{Client, Locator};
use serde_json::json;

/// A video file of `payload`'s QR code, centered on a white 640x480 frame: qrencode draws it,
/// netpbm pads it, mjpegtools' ppmtoy4m makes the Y4M Chromium plays as a camera.
fn qr_video(payload: &str, dir: &Path) -> PathBuf {
    let png = dir.join("ticket-qr.png");
    let y4m = dir.join("ticket-qr.y4m");
    let status = Command::new("qrencode").args(["-s", "8", "-m", "4", "-o"]).arg(&png).arg(payload).status();
    assert!(status.expect("qrencode: run scripts/test-deps.sh").success());
    let pipeline = format!(
        "pngtopnm '{}' | ppmtoppm | pnmpad -white -width=640 -height=480 | ppmtoy4m -F 10:1 -S 420jpeg > '{}'",
        png.display(),
        y4m.display()
    );
    let status = Command::new("sh").args(["-c", &pipeline]).stderr(Stdio::null()).status().unwrap();
    assert!(status.success(), "making the Y4M: {pipeline}");
    y4m
}

async fn sign_in(client: &Client, base: &str) {
    client.goto(&format!("{base}/admin/login")).await.unwrap();
    wait_js(client, "document.querySelector('#login input[name=csrf]').value.length > 0", "the CSRF token").await;
    client.find(Locator::Css("#username")).await.unwrap().send_keys("admin").await.unwrap();
    client.find(Locator::Css("#password")).await.unwrap().send_keys(ADMIN_PASSWORD).await.unwrap();
    client.find(Locator::Css("#login-submit")).await.unwrap().click().await.unwrap();
    wait_js(client, "location.pathname === '/admin'", "the admin page").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_door_page_scans_a_ticket_through_the_camera_once() {
    let server = door_server(door_config(10)).await;
    let admin = Staff::admin(&server).await;
    let (_, sold) = admin.sell("A", "cash").await;
    let order_id = sold["order_id"].as_str().unwrap().to_string();
    let video = qr_video(&qr_payload(&server, &order_id), &server.data_dir);
    let camera = [
        "--use-fake-device-for-media-stream".to_string(),
        "--use-fake-ui-for-media-stream".to_string(),
        format!("--use-file-for-fake-video-capture={}", video.display()),
    ];
    let client = browser_with(&camera).await;
    let base = &server.base;
    sign_in(&client, base).await;
    client.goto(&format!("{base}/door?door=north&camera=1")).await.unwrap();
    let verdict = "document.querySelector('#verdict')";
    wait_js(&client, &format!("{verdict} && {verdict}.dataset.result === 'admitted'"), "the camera's scan admitted")
        .await;
    assert_eq!(client.execute(&format!("return {verdict}.dataset.orderId"), vec![]).await.unwrap(), json!(order_id));
    screenshot(&client, "20-door-admitted").await;
    // The same ticket again (the page opened anew, as at a second door): already admitted.
    client.goto(&format!("{base}/door?door=south&camera=1")).await.unwrap();
    wait_js(&client, &format!("{verdict} && {verdict}.dataset.result === 'already_admitted'"), "the second scan").await;
    screenshot(&client, "21-door-already-admitted").await;
    let counts = admin.get("/api/door/counts").await.json();
    assert_eq!(counts["classes"][0]["admitted"], 1);
    // Typed by hand (a keyboard-wedge scanner types the same way, then Enter).
    let (_, other) = admin.sell("A", "card").await;
    let code = other["ticket_code"].as_str().unwrap();
    client
        .execute("document.querySelector('#camera-stop') && document.querySelector('#camera-stop').click()", vec![])
        .await
        .unwrap();
    let field = wait_for(&client, "#code").await;
    field.send_keys(&format!("{code}\n")).await.unwrap();
    wait_js(
        &client,
        &format!(
            "{verdict}.dataset.orderId === '{}' && {verdict}.dataset.result === 'admitted'",
            other["order_id"].as_str().unwrap()
        ),
        "the typed code",
    )
    .await;
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_office_sale_a_refund_and_a_csv_download_in_the_browser() {
    let server = door_server(door_config(10)).await;
    let client = browser_with(&[]).await;
    let base = &server.base;
    sign_in(&client, base).await;

    // The box office: a class, cash, sell; the ticket with its code and QR code.
    client.goto(&format!("{base}/box-office")).await.unwrap();
    wait_for(&client, "button.class-pick[data-cls=A]").await.click().await.unwrap();
    client.find(Locator::Css("#pay-cash")).await.unwrap().click().await.unwrap();
    client.find(Locator::Css("#sell")).await.unwrap().click().await.unwrap();
    wait_js(&client, "/^TCK-/.test(document.querySelector('#ticket-code').textContent)", "the sold ticket").await;
    wait_js(
        &client,
        "document.querySelector('#qr').complete && document.querySelector('#qr').naturalWidth > 0",
        "the QR code",
    )
    .await;
    let order_id = client.execute("return document.querySelector('#ticket').dataset.orderId", vec![]).await.unwrap();
    let order_id = order_id.as_str().unwrap().to_string();
    wait_js(&client, "document.querySelector('#shift-report tr[data-staff]')", "the shift report").await;
    screenshot(&client, "22-box-office-ticket").await;
    assert_eq!(server.http.order(&order_id).await["status"], "PAID");
    let code = text(&client, "#ticket-code").await;

    // The admin view: refund it (the confirmation and the reason answered by the test).
    client.goto(&format!("{base}/admin")).await.unwrap();
    let button = format!("button.refund[data-order-id='{order_id}']");
    wait_for(&client, &button).await;
    client.execute("window.confirm = () => true; window.prompt = () => 'changed plans';", vec![]).await.unwrap();
    client.find(Locator::Css(&button)).await.unwrap().click().await.unwrap();
    let admin = Staff::admin(&server).await;
    eventually(std::time::Duration::from_secs(15), "the refund", || {
        let (http, order_id) = (server.http.clone(), order_id.clone());
        async move { (http.order(&order_id).await["status"] == "REFUNDED").then_some(()) }
    })
    .await;
    screenshot(&client, "23-admin-refunded").await;

    // The CSV download, as the browser fetches it, read back as a spreadsheet would.
    let href = client.find(Locator::Css("#export-orders")).await.unwrap().attr("href").await.unwrap().unwrap();
    let script = format!("return fetch('{href}').then(r => r.text());");
    let body = client.execute(&script, vec![]).await.unwrap();
    let body = body.as_str().unwrap().to_string();
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let header = reader.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let row = rows.iter().find(|r| r[column("order_id")] == *order_id).expect("the sold order is exported");
    assert_eq!(
        (&row[column("status")], &row[column("ticket_code")], &row[column("payment")]),
        ("REFUNDED", code.as_str(), "cash")
    );
    assert_eq!(&row[column("refund_reason")], "changed plans");
    assert_eq!(admin.get("/api/admin/activity").await.json()["entries"][0]["action"], "refund");
    client.close().await.unwrap();
}

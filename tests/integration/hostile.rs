//! Hostile HTTP: slow clients, too many connections, oversized heads and bodies, invalid bytes,
//! pipelining and HTTP/1.0, spoken over raw TCP so the client does exactly what we say. The
//! server answers each with a clear error or a timeout and keeps serving everyone else.

use std::time::{Duration, Instant};

use crate::common::*;
use hyper::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const READ_TIMEOUT_MS: u64 = 1000;

async fn connect(server: &Server) -> TcpStream {
    TcpStream::connect(("127.0.0.1", server.port)).await.unwrap()
}

/// Reads until the server closes the connection (or `within` passes: then panics).
async fn read_to_close(stream: &mut TcpStream, within: Duration) -> String {
    let mut out = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "connection still open after {within:?}; got {:?}", String::from_utf8_lossy(&out));
    String::from_utf8_lossy(&out).to_string()
}

/// Reads until `count` complete responses with Content-Length bodies have arrived.
async fn read_responses(stream: &mut TcpStream, count: usize) -> Vec<String> {
    let mut buf = Vec::new();
    let mut responses = Vec::new();
    let mut chunk = [0u8; 8192];
    while responses.len() < count {
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length: usize = text[..head_end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= head_end + 4 + length {
                responses.push(String::from_utf8_lossy(&buf[..head_end + 4 + length]).to_string());
                buf.drain(..head_end + 4 + length);
                continue;
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "closed after {} responses", responses.len());
        buf.extend_from_slice(&chunk[..n]);
    }
    responses
}

fn status_of(response: &str) -> u16 {
    response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not a response: {response:?}"))
}

fn checkout_request(body: &[u8], extra_headers: &str) -> Vec<u8> {
    let mut request = format!(
        "POST /api/checkout HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra_headers}\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

async fn healthy_quickly(server: &Server) {
    let started = Instant::now();
    assert_eq!(server.http.get("/healthz").await.0, StatusCode::OK);
    assert!(started.elapsed() < Duration::from_millis(500), "others were kept waiting: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_timed_out_and_others_served_meanwhile() {
    let server =
        Server::start_with_args(config(100, 10, 300), &[&format!("--request-read-timeout-ms={READ_TIMEOUT_MS}")]).await;

    // Headers dribbled a byte at a time, forever: the connection is closed.
    let mut slow_head = connect(&server).await;
    let dribble = tokio::spawn(async move {
        let started = Instant::now();
        for byte in b"POST /api/checkout HTTP/1.1\r\nHost: localhost\r\nX-Slow: ".iter().cycle() {
            if slow_head.write_all(&[*byte]).await.is_err() {
                return (started.elapsed(), true);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            if started.elapsed() > Duration::from_secs(10) {
                return (started.elapsed(), false);
            }
        }
        unreachable!()
    });
    // A body promised but never finished: 408.
    let mut truncated = checkout_request(br#"{"cls":"A","customer_email":"a@example.com"}"#, "");
    truncated.truncate(truncated.len() - 10);
    let mut slow_body = connect(&server).await;
    slow_body.write_all(&truncated).await.unwrap();

    // Meanwhile everyone else is served at once.
    for _ in 0..5 {
        healthy_quickly(&server).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let response = read_to_close(&mut slow_body, Duration::from_millis(READ_TIMEOUT_MS * 3)).await;
    assert_eq!(status_of(&response), 408, "{response}");
    assert!(response.contains("request body not received in time"), "{response}");

    let (elapsed, cut_off) = dribble.await.unwrap();
    assert!(cut_off, "a client dribbling its head for {elapsed:?} was not cut off");
    assert!(elapsed < Duration::from_millis(READ_TIMEOUT_MS * 4), "cut off only after {elapsed:?}");
    healthy_quickly(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_refused_and_the_others_unharmed() {
    const LIMIT: usize = 16;
    let mut server = Server::start_with_args(config(100, 10, 300), &[&format!("--max-connections={LIMIT}")]).await;
    // The harness's own keep-alive connection (from the health check) would take a slot: drop it.
    server.http = Http::new(&server.base);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Fill the limit with keep-alive connections that each completed a request.
    let mut held = Vec::new();
    for _ in 0..LIMIT {
        let mut stream = connect(&server).await;
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
        assert_eq!(status_of(&read_responses(&mut stream, 1).await[0]), 200);
        held.push(stream);
    }
    // One more: accepted and closed at once, without an answer.
    let mut extra = connect(&server).await;
    let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    let response = read_to_close(&mut extra, Duration::from_secs(2)).await;
    assert!(response.is_empty(), "over the limit yet answered: {response}");
    // The held ones still work.
    for stream in &mut held {
        stream.write_all(b"GET /api/inventory HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
        assert_eq!(status_of(&read_responses(stream, 1).await[0]), 200);
    }
    // Free one: a new connection gets in.
    drop(held.pop());
    let http = Http::new(&server.base);
    eventually(Duration::from_secs(5), "a slot after one connection closed", || async {
        matches!(http.try_get("/healthz").await, Ok((StatusCode::OK, _))).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_requests_get_clear_errors() {
    let server = Server::start(config(100, 10, 300)).await;

    // A 20 KiB header: 431.
    let mut stream = connect(&server).await;
    let big = format!("GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n", "a".repeat(20 * 1024));
    let _ = stream.write_all(big.as_bytes()).await;
    let response = read_to_close(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(status_of(&response), 431, "{response}");

    // A declared 1 MiB body: 413 before it is sent.
    let mut stream = connect(&server).await;
    stream
        .write_all(b"POST /api/checkout HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n\r\n")
        .await
        .unwrap();
    let response = &read_responses(&mut stream, 1).await[0];
    assert_eq!(status_of(response), 413, "{response}");
    assert!(response.contains(r#"{"detail":"request body over 65536 bytes"}"#), "{response}");

    // A chunked body that grows past the limit: 413 too.
    let mut stream = connect(&server).await;
    stream
        .write_all(b"POST /api/checkout HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 8192, " ".repeat(8192));
    for _ in 0..9 {
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let response = &read_responses(&mut stream, 1).await[0];
    assert_eq!(status_of(response), 413, "{response}");

    // Invalid UTF-8, deeply nested JSON, a JSON bomb of nesting in the email: 400 with a detail.
    let deep = format!(r#"{{"cls":"A","customer_email":{}1{}}}"#, "[".repeat(10_000), "]".repeat(10_000));
    for body in
        [b"{\"cls\":\"A\",\"customer_email\":\"\xff\xfe@x.io\"}".to_vec(), deep.into_bytes(), b"\x00\x01\x02".to_vec()]
    {
        let mut stream = connect(&server).await;
        stream.write_all(&checkout_request(&body, "")).await.unwrap();
        let response = &read_responses(&mut stream, 1).await[0];
        assert_eq!(status_of(response), 400, "{response}");
        assert!(response.contains(r#"{"detail":"invalid JSON"#), "{response}");
    }

    // A webhook signature header that is not text (obs-text bytes): there, and invalid.
    let mut stream = connect(&server).await;
    let mut request =
        b"POST /payments/webhook HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n".to_vec();
    request.extend_from_slice(b"Content-Length: 2\r\nx-mockpay-signature: \xff\xfe\r\n\r\n{}");
    stream.write_all(&request).await.unwrap();
    let response = &read_responses(&mut stream, 1).await[0];
    assert_eq!(status_of(response), 400, "{response}");
    assert!(response.contains(r#"{"detail":"invalid signature"}"#), "{response}");

    // A request line that is not HTTP: 400, connection closed.
    let mut stream = connect(&server).await;
    stream.write_all(b"\x16\x03\x01 hello TLS?\r\n\r\n").await.unwrap();
    let response = read_to_close(&mut stream, Duration::from_secs(5)).await;
    assert!(response.is_empty() || status_of(&response) == 400, "{response}");

    // Nothing of this sold anything, and the server is fine.
    assert_eq!(server.http.inventory().await["A"]["sold"], 0);
    assert_eq!(server.http.inventory().await["A"]["active_holds"], 0);
    healthy_quickly(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_and_http_1_0_clients_are_served() {
    let server = Server::start(config(100, 10, 300)).await;

    // Three requests in one write, including a checkout: three answers, in order.
    let mut stream = connect(&server).await;
    let mut pipeline = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec();
    pipeline.extend(checkout_request(br#"{"cls":"A","customer_email":"pipe@example.com"}"#, ""));
    pipeline.extend(b"GET /api/inventory HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(&pipeline).await.unwrap();
    let responses = read_responses(&mut stream, 3).await;
    assert_eq!(responses.iter().map(|r| status_of(r)).collect::<Vec<_>>(), [200, 200, 200]);
    assert!(responses[1].contains("\"order_id\""), "{}", responses[1]);
    assert!(responses[2].contains("\"active_holds\":1"), "{}", responses[2]);

    // HTTP/1.0 without Host: answered, then closed (no keep-alive asked for).
    let mut stream = connect(&server).await;
    stream.write_all(b"GET /api/inventory HTTP/1.0\r\n\r\n").await.unwrap();
    let response = read_to_close(&mut stream, Duration::from_secs(5)).await;
    assert!(response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"capacity\":100"), "{response}");

    // An HTTP/1.0 checkout with a body works too.
    let mut stream = connect(&server).await;
    let body = br#"{"cls":"A","customer_email":"old@example.com"}"#;
    let mut request = format!(
        "POST /api/checkout HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request).await.unwrap();
    let response = read_to_close(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(status_of(&response), 200, "{response}");
    assert_eq!(server.http.inventory().await["A"]["active_holds"], 2);
    server.assert_audit_passes().await;
}

/// The kernel's count of connections dropped because a listener's accept queue was full.
fn listen_overflows() -> u64 {
    let netstat = std::fs::read_to_string("/proc/net/netstat").unwrap();
    let mut lines = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next().unwrap(), lines.next().unwrap());
    let index = names.split_whitespace().position(|n| n == "ListenOverflows").unwrap();
    values.split_whitespace().nth(index).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_new_connections_is_queued_not_dropped() {
    // An on-sale rush, or a load generator, opens hundreds of connections at the same moment.
    // With the standard backlog of 128 the kernel dropped the excess SYNs (those clients retried
    // a second later); the listener's backlog must hold them all.
    const BURST: usize = 1024;
    raise_fd_limit();
    let server = Server::start(config(100, 10, 300)).await;
    let overflows_before = listen_overflows();
    let port = server.port;
    let connections: Vec<_> = (0..BURST)
        .map(|_| {
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
                status_of(&read_responses(&mut stream, 1).await[0])
            })
        })
        .collect();
    for connection in connections {
        assert_eq!(connection.await.unwrap(), 200);
    }
    let dropped = listen_overflows() - overflows_before;
    assert_eq!(dropped, 0, "the kernel dropped {dropped} connection attempts: the accept queue overflowed");
}

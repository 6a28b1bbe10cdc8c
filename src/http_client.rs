//! The small HTTP/1.1 client shared by the load generator (`bench`) and the remote audit
//! (`audit --base`): one keep-alive connection, driven by its caller's own task.
//!
//! Why not hyper's client: it runs each connection in a task of its own and hands every request
//! and its response between that task and the caller through channels. On a two-core machine
//! that also runs the server and the replica, the generator's cycles are taken from the server:
//! with hyper's client `tigerfans bench` took 0.13 to 0.14 cores per 10,000 reserves/s and
//! trailed wrk on the same server; this client takes about 0.10, like wrk, and the server's
//! throughput rose with what it left (README, decisions). A load generator needs a small subset
//! of HTTP/1.1 (one request at a time on a connection, `content-length` bodies), so this one
//! writes each request with one `write` and parses the response head with `httparse` (the
//! parser hyper itself uses) straight from the connection's buffer: the same loop as wrk's.
//!
//! Limits: a response head of at most `RESPONSE_HEAD_BYTES_MAX` and `RESPONSE_HEADERS_MAX`
//! headers, a body of at most `RESPONSE_BODY_BYTES_MAX`, and only `content-length` framing
//! (every endpoint the generator and `tigerfans audit --base` call answers that way; only the
//! event stream, which they never ask for, is chunked); anything else is an error of the
//! operation, and the connection is closed and opened anew for the next one.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hyper::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bytes of a response's status line and headers.
pub const RESPONSE_HEAD_BYTES_MAX: usize = 64 * 1024;
/// Headers in a response.
pub const RESPONSE_HEADERS_MAX: usize = 32;
/// Bytes of a response's body (`/metrics` is the largest the generator reads, a few KiB).
pub const RESPONSE_BODY_BYTES_MAX: usize = 16 * 1024 * 1024;
/// A connection idle this long is checked for a close by the server before it is used again.
const IDLE_CHECK_AFTER: Duration = Duration::from_millis(500);
/// Read buffer capacity; a response larger than this grows it.
const READ_BUFFER_BYTES: usize = 16 * 1024;

pub struct Connection {
    authority: String,
    /// A request (connecting, sending, reading the whole answer) that takes longer fails, and
    /// its connection is closed: a stalled server costs an error, not a worker.
    timeout: Duration,
    stream: Option<TcpStream>,
    last_used: Instant,
    read: BytesMut,
    write: Vec<u8>,
}

pub struct Answer {
    pub status: StatusCode,
    /// The status line and headers as received (parsed again only if a header is asked for).
    head: Bytes,
    pub body: Bytes,
}

impl Answer {
    /// The first header called `name` (any case), if it is valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        let mut headers = [httparse::EMPTY_HEADER; RESPONSE_HEADERS_MAX];
        let mut response = httparse::Response::new(&mut headers);
        response.parse(&self.head).ok()?;
        let value: &[u8] = response.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name))?.value;
        std::str::from_utf8(value).ok()
    }
}

/// What the response's head says about its framing.
struct Head {
    status: StatusCode,
    head_bytes: usize,
    body_bytes: usize,
    close: bool,
}

impl Connection {
    pub fn new(authority: &str, timeout: Duration) -> Connection {
        assert!(!timeout.is_zero());
        Connection {
            authority: authority.to_string(),
            timeout,
            stream: None,
            last_used: Instant::now(),
            read: BytesMut::with_capacity(READ_BUFFER_BYTES),
            write: Vec::with_capacity(1024),
        }
    }

    /// Sends one request and reads its whole response. An error closes the connection (the
    /// next request opens a new one) and names what failed: `connect: ...`, `send: ...`,
    /// `receive: ...`, `response: ...`, or `timeout`.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&'static str, &str)],
        body: Bytes,
    ) -> Result<Answer, String> {
        self.encode(&method, path, headers, &body);
        let timeout = self.timeout;
        let answer = tokio::time::timeout(timeout, async {
            let mut stream = self.usable_stream().await?;
            // On an error the stream is dropped here: the next request opens a new connection.
            let (answer, keep) = self.exchange(&mut stream).await?;
            if keep {
                self.stream = Some(stream);
            }
            Ok(answer)
        })
        .await
        .unwrap_or_else(|_| Err(format!("timeout: no whole answer within {} ms", timeout.as_millis())))?;
        self.last_used = Instant::now();
        Ok(answer)
    }

    /// Writes the encoded request and reads its response; also says whether the connection
    /// stays open.
    async fn exchange(&mut self, stream: &mut TcpStream) -> Result<(Answer, bool), String> {
        stream.write_all(&self.write).await.map_err(|e| format!("send: {}", e.kind()))?;

        self.read.clear();
        let head = loop {
            if let Some(head) = parse_head(&self.read)? {
                break head;
            }
            if self.read.len() >= RESPONSE_HEAD_BYTES_MAX {
                return Err(format!("response: head larger than {RESPONSE_HEAD_BYTES_MAX} bytes"));
            }
            read_more(stream, &mut self.read).await?;
        };
        let total = head.head_bytes + head.body_bytes;
        while self.read.len() < total {
            self.read.reserve(total - self.read.len());
            read_more(stream, &mut self.read).await?;
        }
        if self.read.len() > total {
            // One request at a time: the server cannot have sent anything else.
            return Err("response: bytes after the response's body".to_string());
        }
        let head_bytes = self.read.split_to(head.head_bytes).freeze();
        let body = self.read.split_to(head.body_bytes).freeze();
        Ok((Answer { status: head.status, head: head_bytes, body }, !head.close))
    }

    fn encode(&mut self, method: &Method, path: &str, headers: &[(&'static str, &str)], body: &[u8]) {
        use std::io::Write;
        let w = &mut self.write;
        w.clear();
        // Writing into a Vec cannot fail.
        write!(w, "{} {} HTTP/1.1\r\nhost: {}\r\n", method.as_str(), path, self.authority).expect("vec write");
        for (name, value) in headers {
            write!(w, "{name}: {value}\r\n").expect("vec write");
        }
        if !body.is_empty() || method == Method::POST || method == Method::PUT {
            write!(w, "content-length: {}\r\n", body.len()).expect("vec write");
        }
        w.extend_from_slice(b"\r\n");
        w.extend_from_slice(body);
    }

    /// The open connection (taken out of `self` for the exchange), or a new one. A connection
    /// left idle for a while may have been closed by the server (its keep-alive limits): it is
    /// checked without blocking first, so a request is never written into a connection already
    /// known to be closed.
    async fn usable_stream(&mut self) -> Result<TcpStream, String> {
        if let Some(stream) = self.stream.take() {
            if self.last_used.elapsed() < IDLE_CHECK_AFTER {
                return Ok(stream);
            }
            let mut probe = [0u8; 1];
            if matches!(stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock) {
                return Ok(stream);
            }
        }
        let stream = TcpStream::connect(&self.authority).await.map_err(|e| format!("connect: {}", e.kind()))?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

async fn read_more(stream: &mut TcpStream, buffer: &mut BytesMut) -> Result<(), String> {
    if buffer.capacity() == buffer.len() {
        buffer.reserve(READ_BUFFER_BYTES);
    }
    match stream.read_buf(buffer).await {
        Ok(0) => Err("receive: connection closed by the server".to_string()),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("receive: {}", e.kind())),
    }
}

/// `None` while the head is incomplete.
fn parse_head(buffer: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; RESPONSE_HEADERS_MAX];
    let mut response = httparse::Response::new(&mut headers);
    let head_bytes = match response.parse(buffer) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("response: {e}")),
    };
    let code = response.code.expect("a complete head has a status");
    if (100..200).contains(&code) {
        // Only sent to a client that asks for one (`Expect: 100-continue`, an upgrade): never.
        return Err(format!("response: informational status {code}"));
    }
    let status = StatusCode::from_u16(code).map_err(|_| format!("response: status {code}"))?;
    let mut body_bytes = None;
    let mut close = response.version == Some(0);
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(header.value).ok().and_then(|v| v.trim().parse::<usize>().ok());
            body_bytes = Some(value.ok_or("response: bad content-length")?);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err("response: transfer-encoding is not supported by the generator".to_string());
        } else if header.name.eq_ignore_ascii_case("connection") {
            for token in header.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    close = false;
                }
            }
        }
    }
    // 204 and 304 never have a body, whatever they declare (the generator sends no HEAD);
    // without a content-length, no other response has a known end.
    let body_bytes = match body_bytes {
        _ if code == 204 || code == 304 => 0,
        Some(n) => n,
        None => return Err("response: no content-length".to_string()),
    };
    if body_bytes > RESPONSE_BODY_BYTES_MAX {
        return Err(format!("response: body of {body_bytes} bytes, more than {RESPONSE_BODY_BYTES_MAX}"));
    }
    Ok(Some(Head { status, head_bytes, body_bytes, close }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_framed_by_content_length() {
        let head = parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello").unwrap().unwrap();
        assert_eq!((head.status, head.head_bytes, head.body_bytes, head.close), (StatusCode::OK, 38, 5, false));
        let head = parse_head(b"HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
        let head = head.unwrap().unwrap();
        assert_eq!((head.status.as_u16(), head.body_bytes, head.close), (413, 0, true));
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-len").unwrap().is_none(), "partial");
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\n\r\n").is_err(), "no framing");
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n").is_err());
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 100 Continue\r\n\r\n").is_err(), "never asked for");
        let head = parse_head(b"HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n").unwrap().unwrap();
        assert_eq!(head.body_bytes, 0, "a 304 has no body");
        let head = parse_head(b"HTTP/1.1 200 OK\r\nConnection: Upgrade, Close\r\ncontent-length: 0\r\n\r\n");
        assert!(head.unwrap().unwrap().close);
        let head = parse_head(b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n").unwrap().unwrap();
        assert!(head.close, "HTTP/1.0 closes by default");
        let head = parse_head(b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n");
        assert!(!head.unwrap().unwrap().close);
        let huge = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", RESPONSE_BODY_BYTES_MAX + 1);
        assert!(parse_head(huge.as_bytes()).is_err());
    }

    #[test]
    fn headers_are_read_from_the_kept_head() {
        let head =
            Bytes::from_static(b"HTTP/1.1 303 See Other\r\nSet-Cookie: s=1; Path=/\r\ncontent-length: 0\r\n\r\n");
        let answer = Answer { status: StatusCode::SEE_OTHER, head, body: Bytes::new() };
        assert_eq!(answer.header("set-cookie"), Some("s=1; Path=/"));
        assert_eq!(answer.header("location"), None);
    }

    #[test]
    fn requests_carry_host_headers_and_length() {
        let mut connection = Connection::new("127.0.0.1:8000", Duration::from_secs(1));
        connection.encode(&Method::POST, "/api/checkout", &[("content-type", "application/json")], b"{}");
        assert_eq!(
            String::from_utf8(connection.write.clone()).unwrap(),
            "POST /api/checkout HTTP/1.1\r\nhost: 127.0.0.1:8000\r\ncontent-type: application/json\r\n\
             content-length: 2\r\n\r\n{}"
        );
        connection.encode(&Method::GET, "/metrics", &[], b"");
        assert_eq!(
            String::from_utf8(connection.write.clone()).unwrap(),
            "GET /metrics HTTP/1.1\r\nhost: 127.0.0.1:8000\r\n\r\n"
        );
    }

    /// A scripted server on a real socket: a response split across writes, `Connection: close`,
    /// an HTTP/1.0 answer, a connection closed without an answer and one that stalls halfway. The
    /// client must read each whole, open a new connection exactly when the previous one is done,
    /// and report the drop and the stall.
    #[tokio::test]
    async fn connections_are_reused_until_the_server_is_done_with_them() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = listener.local_addr().unwrap().to_string();
        async fn read_request(stream: &mut TcpStream) {
            let mut request = Vec::new();
            while !request.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "request cut off");
                request.push(byte[0]);
            }
        }
        let server = tokio::spawn(async move {
            // Connection 1: two answers, the first in two pieces, the second closing.
            let (mut stream, _) = listener.accept().await.unwrap();
            read_request(&mut stream).await;
            stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-le").await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            stream.write_all(b"ngth: 5\r\n\r\nhel").await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            stream.write_all(b"lo").await.unwrap();
            read_request(&mut stream).await;
            stream
                .write_all(b"HTTP/1.1 201 Created\r\nConnection: close\r\ncontent-length: 2\r\n\r\nok")
                .await
                .unwrap();
            drop(stream);
            // Connection 2: HTTP/1.0, which closes unless it says otherwise.
            let (mut stream, _) = listener.accept().await.unwrap();
            read_request(&mut stream).await;
            stream.write_all(b"HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\nx").await.unwrap();
            drop(stream);
            // Connection 3: closed without an answer.
            let (mut stream, _) = listener.accept().await.unwrap();
            read_request(&mut stream).await;
            drop(stream);
            // Connection 4: an answer that stops halfway, and then nothing.
            let (mut stream, _) = listener.accept().await.unwrap();
            read_request(&mut stream).await;
            stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nhal").await.unwrap();
            let stalled = stream;
            // Connection 5: service again.
            let (mut stream, _) = listener.accept().await.unwrap();
            read_request(&mut stream).await;
            stream.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await.unwrap();
            (stalled, stream)
        });
        let mut connection = Connection::new(&authority, Duration::from_millis(300));
        async fn get(connection: &mut Connection) -> Result<Answer, String> {
            connection.request(Method::GET, "/", &[], Bytes::new()).await
        }
        let answer = get(&mut connection).await.unwrap();
        assert_eq!((answer.status, &answer.body[..]), (StatusCode::OK, &b"hello"[..]));
        let answer = get(&mut connection).await.unwrap();
        assert_eq!((answer.status, &answer.body[..]), (StatusCode::CREATED, &b"ok"[..]));
        let answer = get(&mut connection).await.unwrap();
        assert_eq!(&answer.body[..], b"x");
        let error = get(&mut connection).await.err().unwrap();
        assert_eq!(error, "receive: connection closed by the server");
        let error = get(&mut connection).await.err().unwrap();
        assert_eq!(error, "timeout: no whole answer within 300 ms");
        let answer = get(&mut connection).await.unwrap();
        assert_eq!((answer.status, answer.body.len()), (StatusCode::NO_CONTENT, 0));
        let _kept_open = server.await.unwrap();
    }
}

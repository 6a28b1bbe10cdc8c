//! One keep-alive HTTP/1.1 connection per load worker (hyper's low-level client: no pool, no
//! locks shared between workers), reconnecting when the server closes it.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

pub struct Connection {
    authority: String,
    sender: Option<SendRequest<Full<Bytes>>>,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Connection {
    pub fn new(authority: &str) -> Connection {
        Connection { authority: authority.to_string(), sender: None }
    }

    async fn sender(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, String> {
        let usable = self.sender.as_ref().is_some_and(|s| !s.is_closed());
        if !usable {
            let stream = TcpStream::connect(&self.authority).await.map_err(|e| format!("connect: {}", e.kind()))?;
            let _ = stream.set_nodelay(true);
            let (sender, connection) =
                http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("handshake: {e}"))?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            self.sender = Some(sender);
        }
        Ok(self.sender.as_mut().expect("just set"))
    }

    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&'static str, &str)],
        body: Bytes,
    ) -> Result<Answer, String> {
        let authority = self.authority.clone();
        let sender = self.sender().await?;
        sender.ready().await.map_err(|e| format!("connection: {e}"))?;
        let mut builder = Request::builder().method(method).uri(path).header("host", authority);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(Full::new(body)).map_err(|e| format!("request: {e}"))?;
        let response = match sender.send_request(request).await {
            Ok(response) => response,
            Err(e) => {
                self.sender = None;
                return Err(format!("send: {e}"));
            }
        };
        let (parts, body) = response.into_parts();
        let (status, headers) = (parts.status, parts.headers);
        let body = body.collect().await.map_err(|e| format!("body: {e}"))?.to_bytes();
        Ok(Answer { status, headers, body })
    }
}

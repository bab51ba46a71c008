//! One keep-alive HTTP/1.1 connection (hyper's client connection over a tokio socket, so
//! the generator opens exactly the connections it is asked for), the endpoints it talks
//! to, and the requests it sends. It measures nothing and counts nothing: `load.rs` does.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::error::BenchError;

/// Largest answer body read; a larger one is a failed request, not a reason to run out of
/// memory.
pub const RESPONSE_BYTES_MAX: usize = 1024 * 1024;

/// An HTTP endpoint, resolved once so that no request waits on name resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The URL as given, for messages.
    pub url: String,
    /// Where to connect.
    pub addr: SocketAddr,
    /// The `Host` header.
    pub host: HeaderValue,
    /// The request target (origin form: path and query).
    pub path: Uri,
}

/// A URL split into what a connection needs, before name resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// Host name or address, without IPv6 brackets.
    pub host: String,
    /// Port (80 when the URL names none).
    pub port: u16,
    /// `host[:port]` as written, for the `Host` header.
    pub authority: String,
    /// Path and query, `/` when empty.
    pub path: String,
}

/// Splits a plain-HTTP URL.
pub fn parse_url(url: &str) -> Result<Parsed, String> {
    let uri: Uri = url
        .parse()
        .map_err(|err| format!("`{url}` is not a URL: {err}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => {
            return Err(format!(
                "`{url}` uses {other}: writ-bench speaks plain HTTP; point it at the server's own listener"
            ));
        }
        None => return Err(format!("`{url}` is not an absolute http:// URL")),
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("`{url}` names no host"))?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    Ok(Parsed {
        host,
        port: authority.port_u16().unwrap_or(80),
        authority: authority.as_str().to_owned(),
        path: if path.is_empty() { "/" } else { path }.to_owned(),
    })
}

impl Endpoint {
    /// Parses `url` and resolves its host.
    pub async fn resolve(url: &str) -> Result<Endpoint, BenchError> {
        let step = || format!("reading the URL {url}");
        let parsed = parse_url(url).map_err(BenchError::Usage)?;
        let addr = tokio::net::lookup_host((parsed.host.as_str(), parsed.port))
            .await
            .map_err(|err| BenchError::setup(step(), err))?
            .next()
            .ok_or_else(|| BenchError::setup(step(), "the host has no address"))?;
        let host = HeaderValue::from_str(&parsed.authority)
            .map_err(|err| BenchError::setup(step(), err))?;
        let path = parsed
            .path
            .parse()
            .map_err(|err| BenchError::setup(step(), err))?;
        Ok(Endpoint {
            url: url.to_owned(),
            addr,
            host,
            path,
        })
    }
}

/// A request built once and sent many times (cloning shares the body's bytes).
#[derive(Debug, Clone)]
pub struct Template {
    addr: SocketAddr,
    method: Method,
    path: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl Template {
    /// A POST to `endpoint` with `body` of `content_type`, and an `Authorization` header.
    pub fn post(
        endpoint: &Endpoint,
        content_type: &'static str,
        authorization: HeaderValue,
        body: impl Into<Bytes>,
    ) -> Template {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, endpoint.host.clone());
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(header::AUTHORIZATION, authorization);
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        Template {
            addr: endpoint.addr,
            method: Method::POST,
            path: endpoint.path.clone(),
            headers,
            body: body.into(),
        }
    }

    /// The same request with another method (a PUT built as a POST).
    pub fn with_method(mut self, method: Method) -> Template {
        self.method = method;
        self
    }

    /// The same request authenticated by a writ API key instead of `Authorization`.
    pub fn with_api_key(mut self, key: HeaderValue) -> Template {
        self.headers.remove(header::AUTHORIZATION);
        self.headers
            .insert(header::HeaderName::from_static("x-api-key"), key);
        self
    }

    /// The same request accepting `accept` instead of JSON alone.
    pub fn with_accept(mut self, accept: &'static str) -> Template {
        self.headers
            .insert(header::ACCEPT, HeaderValue::from_static(accept));
        self
    }

    /// A GET of `endpoint`.
    pub fn get(endpoint: &Endpoint) -> Template {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, endpoint.host.clone());
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        Template {
            addr: endpoint.addr,
            method: Method::GET,
            path: endpoint.path.clone(),
            headers,
            body: Bytes::new(),
        }
    }

    /// Where it goes.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.path.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// An answer, read whole.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Its status.
    pub status: StatusCode,
    /// Its body.
    pub body: Bytes,
}

/// A request that got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `connect`, `transport` or `timeout`: how failures are counted.
    pub kind: &'static str,
    /// What happened, for the report.
    pub detail: String,
}

impl Failure {
    fn new(kind: &'static str, detail: impl std::fmt::Display) -> Failure {
        Failure {
            kind,
            detail: detail.to_string(),
        }
    }

    /// A failure described by `err` and every error beneath it (hyper's own messages,
    /// such as "channel closed", say little without their causes).
    fn of(kind: &'static str, doing: &str, err: &dyn std::error::Error) -> Failure {
        let mut detail = format!("{doing}: {err}");
        let mut source = err.source();
        while let Some(cause) = source {
            detail.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        Failure { kind, detail }
    }
}

/// One open keep-alive connection.
pub struct Conn {
    /// Where it is connected.
    pub addr: SocketAddr,
    sender: SendRequest<Full<Bytes>>,
    driver: tokio::task::JoinHandle<()>,
}

impl Conn {
    /// Connects to `addr` and does the HTTP/1.1 handshake, within `timeout`.
    pub async fn open(addr: SocketAddr, timeout: Duration) -> Result<Conn, Failure> {
        let connecting = async {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|err| Failure::new("connect", format!("connecting to {addr}: {err}")))?;
            // Requests are small and sent whole: do not hold them back for Nagle.
            stream
                .set_nodelay(true)
                .map_err(|err| Failure::of("connect", "setting TCP_NODELAY", &err))?;
            http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|err| Failure::of("connect", "HTTP/1.1 handshake", &err))
        };
        let (sender, connection) = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| Failure::new("timeout", format!("connecting to {addr}")))??;
        // The connection's I/O runs beside the requests; when it ends, the sender fails.
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Conn {
            addr,
            sender,
            driver,
        })
    }

    /// Sends one request and reads its whole answer within `timeout`. After a failure the
    /// connection is unusable: drop it and open another.
    pub async fn send(
        &mut self,
        template: &Template,
        timeout: Duration,
    ) -> Result<Answer, Failure> {
        let exchange = async {
            self.sender
                .ready()
                .await
                .map_err(|err| Failure::of("transport", "waiting for the connection", &err))?;
            let response = self
                .sender
                .send_request(template.request())
                .await
                .map_err(|err| Failure::of("transport", "sending the request", &err))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), RESPONSE_BYTES_MAX)
                .collect()
                .await
                .map_err(|err| Failure::of("transport", "reading the answer", &*err))?
                .to_bytes();
            Ok(Answer { status, body })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| Failure::new("timeout", format!("no answer within {timeout:?}")))?
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// One request on a connection of its own, for setup.
pub async fn once(template: &Template, timeout: Duration) -> Result<Answer, Failure> {
    let mut conn = Conn::open(template.addr, timeout).await?;
    conn.send(template, timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_port_and_path() {
        assert_eq!(
            parse_url("http://127.0.0.1:8080/oauth/token"),
            Ok(Parsed {
                host: "127.0.0.1".into(),
                port: 8080,
                authority: "127.0.0.1:8080".into(),
                path: "/oauth/token".into()
            })
        );
        let bare = parse_url("http://localhost").unwrap();
        assert_eq!((bare.port, bare.path.as_str()), (80, "/"));
        let v6 = parse_url("http://[::1]:3000/token?x=1").unwrap();
        assert_eq!(
            (v6.host.as_str(), v6.authority.as_str(), v6.path.as_str()),
            ("::1", "[::1]:3000", "/token?x=1")
        );
        assert!(parse_url("https://h/t").unwrap_err().contains("plain HTTP"));
        assert!(parse_url("/token").unwrap_err().contains("absolute"));
        assert!(parse_url("http://").is_err());
    }
}

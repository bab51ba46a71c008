//! A client for MCP servers over the streamable HTTP transport (MCP revision 2025-11-25,
//! also speaking to servers on 2025-06-18 and 2025-03-26): `initialize` with version
//! negotiation, `notifications/initialized`, then `tools/call`, the `Mcp-Session-Id`
//! kept per upstream and credential, and a new session when the server answers 404 for
//! one it has ended. Answers come as `application/json` or `text/event-stream` (parsed
//! by `sse-stream`); every request is bounded in time and the answer in size.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::{Value, json};
use writ_schemas::Digest;
use zeroize::Zeroizing;

/// The protocol revision writ asks for first.
pub const PROTOCOL_VERSION: &str = "2025-11-25";
/// The revisions writ accepts when a server answers with another one.
pub const SUPPORTED_VERSIONS: [&str; 3] = ["2025-11-25", "2025-06-18", "2025-03-26"];
/// The session header.
const SESSION_HEADER: &str = "mcp-session-id";
/// The header naming the negotiated revision on every request after `initialize`.
const VERSION_HEADER: &str = "mcp-protocol-version";

/// Default of `--mcp-connect-timeout-ms`.
pub const CONNECT_TIMEOUT_MS_DEFAULT: u64 = 5_000;

/// How long a request to an MCP server may take, and how large its answer may be.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The whole request, connecting to reading the last byte of the answer.
    pub timeout: Duration,
    /// Connecting (TCP and TLS), within `timeout`: an address that takes no connection
    /// fails fast instead of holding the call for the whole `timeout`.
    pub connect_timeout: Duration,
    /// The largest answer body accepted.
    pub response_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_millis(CONNECT_TIMEOUT_MS_DEFAULT),
            response_bytes_max: 4 * 1024 * 1024,
        }
    }
}

/// Why a call to an MCP server did not give a tool result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum McpError {
    /// The server did not answer in time.
    #[error("the MCP server did not answer within {0} seconds")]
    Timeout(u64),
    /// The server could not be reached.
    #[error("the MCP server could not be reached: {0}")]
    Unreachable(String),
    /// The server answered with an HTTP status other than success.
    #[error("the MCP server answered HTTP {status}: {detail}")]
    Status {
        /// The status.
        status: u16,
        /// What it said (shortened).
        detail: String,
    },
    /// The answer was larger than the limit.
    #[error("the MCP server's answer is larger than {0} bytes")]
    TooLarge(usize),
    /// The answer is not the MCP its request asks for.
    #[error("the MCP server's answer is not valid MCP: {0}")]
    Protocol(String),
    /// The server answered the request with a JSON-RPC error.
    #[error("the MCP server refused the request: {message} (JSON-RPC error {code})")]
    Rpc {
        /// The JSON-RPC error code.
        code: i64,
        /// Its message.
        message: String,
    },
}

impl McpError {
    /// Whether the failure is the upstream's slowness (a 504) rather than a bad answer (502).
    pub fn is_timeout(&self) -> bool {
        matches!(self, McpError::Timeout(_))
    }
}

/// What a `tools/call` gave.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutcome {
    /// The `CallToolResult` object, as the server sent it.
    pub result: Value,
    /// The tool reported an error (`isError`), which is still a result.
    pub is_error: bool,
    /// The session the call ran in, if the server keeps sessions.
    pub session_id: Option<String>,
    /// Whether this call had to initialize a session (first call, or the old one expired).
    pub initialized: bool,
}

#[derive(Debug, Clone)]
struct Session {
    id: Option<String>,
    version: String,
}

/// Sessions are kept per server URL and per credential (by its digest: the client keeps
/// no credential), since a session belongs to whoever opened it.
type SessionKey = (String, Option<Digest>);

/// An MCP streamable HTTP client shared by every gateway call.
pub struct McpClient {
    http: reqwest::Client,
    limits: Limits,
    sessions: Mutex<BTreeMap<SessionKey, Session>>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for McpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpClient")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

enum Sent {
    /// The JSON-RPC response to the request.
    Answer(Value, HeaderMap),
    /// 404 on a request carrying a session id: the server has ended that session.
    SessionGone,
}

impl McpClient {
    /// A client with these limits.
    pub fn new(limits: Limits) -> Result<McpClient, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(limits.connect_timeout.min(limits.timeout))
            .build()?;
        Ok(McpClient {
            http,
            limits,
            sessions: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
        })
    }

    /// Calls `tool` with `arguments` on the MCP server at `url`, sending `bearer` (the
    /// upstream credential) if there is one.
    pub async fn call_tool(
        &self,
        url: &str,
        bearer: Option<&Zeroizing<String>>,
        tool: &str,
        arguments: Value,
    ) -> Result<ToolOutcome, McpError> {
        let key: SessionKey = (url.to_owned(), bearer.map(|b| Digest::of(b.as_bytes())));
        let params = json!({ "name": tool, "arguments": arguments });
        let mut initialized = false;
        let mut session = match self.session(&key) {
            Some(session) => session,
            None => {
                initialized = true;
                self.initialize(url, bearer, &key).await?
            }
        };
        loop {
            match self
                .request(url, bearer, Some(&session), "tools/call", params.clone())
                .await?
            {
                Sent::Answer(result, _) => {
                    let is_error = result
                        .get("isError")
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                    if !result.get("content").is_some_and(Value::is_array) {
                        return Err(McpError::Protocol(
                            "a tools/call result has no `content` array".into(),
                        ));
                    }
                    return Ok(ToolOutcome {
                        result,
                        is_error,
                        session_id: session.id,
                        initialized,
                    });
                }
                Sent::SessionGone if !initialized => {
                    self.forget(&key);
                    initialized = true;
                    session = self.initialize(url, bearer, &key).await?;
                }
                Sent::SessionGone => {
                    return Err(McpError::Protocol(
                        "the server ended a session it had just opened".into(),
                    ));
                }
            }
        }
    }

    fn session(&self, key: &SessionKey) -> Option<Session> {
        self.sessions
            .lock()
            .ok()
            .and_then(|sessions| sessions.get(key).cloned())
    }

    fn forget(&self, key: &SessionKey) {
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.remove(key);
        }
    }

    async fn initialize(
        &self,
        url: &str,
        bearer: Option<&Zeroizing<String>>,
        key: &SessionKey,
    ) -> Result<Session, McpError> {
        let params = json!({
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": { "name": "writ", "version": env!("CARGO_PKG_VERSION") },
        });
        let (result, headers) = match self
            .request(url, bearer, None, "initialize", params)
            .await?
        {
            Sent::Answer(result, headers) => (result, headers),
            Sent::SessionGone => {
                return Err(McpError::Protocol("initialize was answered 404".into()));
            }
        };
        let version = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .ok_or_else(|| McpError::Protocol("initialize result has no protocolVersion".into()))?;
        if !SUPPORTED_VERSIONS.contains(&version) {
            return Err(McpError::Protocol(format!(
                "the server speaks MCP {version}; writ speaks {}",
                SUPPORTED_VERSIONS.join(", ")
            )));
        }
        let id = match headers.get(SESSION_HEADER) {
            None => None,
            Some(value) => Some(
                value
                    .to_str()
                    .ok()
                    .filter(|id| !id.is_empty() && id.bytes().all(|b| (0x21..=0x7e).contains(&b)))
                    .ok_or_else(|| {
                        McpError::Protocol("the Mcp-Session-Id is not visible ASCII".into())
                    })?
                    .to_owned(),
            ),
        };
        let session = Session {
            id,
            version: version.to_owned(),
        };
        self.notify(url, bearer, &session, "notifications/initialized")
            .await?;
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.insert(key.clone(), session.clone());
        }
        Ok(session)
    }

    fn post(
        &self,
        url: &str,
        bearer: Option<&Zeroizing<String>>,
        session: Option<&Session>,
        body: &Value,
    ) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .post(url)
            .timeout(self.limits.timeout)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream")
            .body(body.to_string());
        if let Some(bearer) = bearer
            && let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {}", bearer.as_str()))
        {
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        if let Some(session) = session {
            request = request.header(VERSION_HEADER, &session.version);
            if let Some(id) = &session.id {
                request = request.header(SESSION_HEADER, id);
            }
        }
        request
    }

    fn transport_error(&self, error: reqwest::Error) -> McpError {
        if error.is_timeout() {
            McpError::Timeout(self.limits.timeout.as_secs())
        } else {
            McpError::Unreachable(error.without_url().to_string())
        }
    }

    async fn notify(
        &self,
        url: &str,
        bearer: Option<&Zeroizing<String>>,
        session: &Session,
        method: &str,
    ) -> Result<(), McpError> {
        let body = json!({ "jsonrpc": "2.0", "method": method });
        let response = self
            .post(url, bearer, Some(session), &body)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = response.status();
        if !status.is_success() {
            let detail = self.read(response).await.unwrap_or_default();
            return Err(status_error(status, &detail));
        }
        Ok(())
    }

    async fn request(
        &self,
        url: &str,
        bearer: Option<&Zeroizing<String>>,
        session: Option<&Session>,
        method: &str,
        params: Value,
    ) -> Result<Sent, McpError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        let response = self
            .post(url, bearer, session, &body)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND && session.is_some_and(|s| s.id.is_some()) {
            return Ok(Sent::SessionGone);
        }
        if !status.is_success() {
            let detail = self.read(response).await.unwrap_or_default();
            return Err(status_error(status, &detail));
        }
        let headers = response.headers().clone();
        let kind = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let message = match kind.as_str() {
            "application/json" => {
                let bytes = self.read(response).await?;
                let message: Value = serde_json::from_slice(&bytes)
                    .map_err(|e| McpError::Protocol(format!("the JSON answer: {e}")))?;
                if message.get("id") != Some(&json!(id)) {
                    return Err(McpError::Protocol(
                        "the JSON answer is not the response to the request".into(),
                    ));
                }
                message
            }
            "text/event-stream" => self.read_events(response, id).await?,
            other => {
                return Err(McpError::Protocol(format!(
                    "the answer's Content-Type is `{other}`, not application/json or text/event-stream"
                )));
            }
        };
        Ok(Sent::Answer(outcome(message)?, headers))
    }

    /// The body, up to the size limit.
    async fn read(&self, mut response: reqwest::Response) -> Result<Vec<u8>, McpError> {
        let max = self.limits.response_bytes_max;
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(e))?
        {
            if body.len() + chunk.len() > max {
                return Err(McpError::TooLarge(max));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// The JSON-RPC response with `id` among the stream's events (the server may send
    /// notifications and requests before it; they are passed over).
    async fn read_events(&self, response: reqwest::Response, id: u64) -> Result<Value, McpError> {
        let max = self.limits.response_bytes_max;
        let timeout = self.limits.timeout.as_secs();
        let mut seen = 0usize;
        let bytes = response.bytes_stream().map(move |chunk| match chunk {
            Ok(chunk) => {
                seen += chunk.len();
                if seen > max {
                    Err(McpError::TooLarge(max))
                } else {
                    Ok::<Bytes, McpError>(chunk)
                }
            }
            Err(e) if e.is_timeout() => Err(McpError::Timeout(timeout)),
            Err(e) => Err(McpError::Unreachable(e.without_url().to_string())),
        });
        let mut events = sse_stream::SseStream::from_bytes_stream(bytes);
        while let Some(event) = events.next().await {
            let event = event.map_err(|e| match source_mcp_error(&e) {
                Some(error) => error,
                None => McpError::Protocol(format!("the event stream: {e}")),
            })?;
            let Some(data) = event.data.filter(|d| !d.is_empty()) else {
                continue;
            };
            let message: Value = serde_json::from_str(&data)
                .map_err(|e| McpError::Protocol(format!("an event's data: {e}")))?;
            if message.get("id") == Some(&json!(id))
                && (message.get("result").is_some() || message.get("error").is_some())
            {
                return Ok(message);
            }
        }
        Err(McpError::Protocol(
            "the event stream ended without the response".into(),
        ))
    }
}

/// The McpError a stream error carries, found by walking its sources.
fn source_mcp_error(error: &(dyn std::error::Error + 'static)) -> Option<McpError> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<McpError>() {
            return Some(found.clone());
        }
        current = e.source();
    }
    None
}

fn status_error(status: StatusCode, body: &[u8]) -> McpError {
    let text = String::from_utf8_lossy(body);
    let detail: String = text.trim().chars().take(200).collect();
    McpError::Status {
        status: status.as_u16(),
        detail: if detail.is_empty() {
            status.canonical_reason().unwrap_or("").to_owned()
        } else {
            detail
        },
    }
}

/// A JSON-RPC response's result, or its error.
fn outcome(message: Value) -> Result<Value, McpError> {
    if let Some(error) = message.get("error") {
        return Err(McpError::Rpc {
            code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .chars()
                .take(300)
                .collect(),
        });
    }
    match message {
        Value::Object(mut members) => members
            .remove("result")
            .ok_or_else(|| McpError::Protocol("a response with neither result nor error".into())),
        _ => Err(McpError::Protocol(
            "a response that is not an object".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_rpc_error_is_an_rpc_refusal_and_a_result_is_taken_out() {
        let refused = json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -32602, "message": "Unknown tool: nope"}});
        assert_eq!(
            outcome(refused),
            Err(McpError::Rpc {
                code: -32602,
                message: "Unknown tool: nope".into()
            })
        );
        let answered = json!({"jsonrpc": "2.0", "id": 1, "result": {"content": []}});
        assert_eq!(outcome(answered), Ok(json!({"content": []})));
        assert!(matches!(
            outcome(json!({"jsonrpc": "2.0", "id": 1})),
            Err(McpError::Protocol(_))
        ));
    }

    #[test]
    fn an_upstream_status_is_told_with_what_the_server_said_shortened() {
        let long = "x".repeat(1000);
        let McpError::Status { status, detail } =
            status_error(StatusCode::UNAUTHORIZED, long.as_bytes())
        else {
            unreachable!("a status error")
        };
        assert_eq!((status, detail.len()), (401, 200));
        let McpError::Status { detail, .. } = status_error(StatusCode::BAD_GATEWAY, b"") else {
            unreachable!("a status error")
        };
        assert_eq!(detail, "Bad Gateway");
    }
}

//! The server under load, set up before anything is measured: its endpoints (from writ's
//! RFC 8414 metadata, or given), the client the load authenticates as (a writ agent
//! registered for the run, or given), and the requests each scenario sends.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hyper::header::HeaderValue;
use serde::Deserialize;

use crate::args::{Run, Scenario, TargetArg};
use crate::conn::{self, Answer, Endpoint, Template, parse_url};
use crate::error::BenchError;

/// writ's path for recording an operation (API.md); metadata does not list it.
pub const WRIT_OPERATIONS_PATH: &str = "/api/v1/operations";
/// The operation name every `operations` request records.
pub const OPERATION_NAME: &str = "bench.op";
/// Longest stretch of an answer quoted in a message.
pub const QUOTE_CHARS_MAX: usize = 300;

const FORM: &str = "application/x-www-form-urlencoded";
/// RFC 8693's grant type.
const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// writ's token type for a person named by id.
const USER_ID_TOKEN_TYPE: &str = "urn:writ:params:oauth:token-type:user-id";
const JSON: &str = "application/json";

/// Where the load goes and as whom.
#[derive(Debug, Clone)]
pub struct Target {
    /// The token endpoint.
    pub token: Endpoint,
    /// The introspection endpoint, if known.
    pub introspection: Option<Endpoint>,
    /// writ's operations endpoint (writ only).
    pub operations: Option<Endpoint>,
    /// writ's gateway endpoint for `--gateway-server` (writ only).
    pub gateway: Option<Endpoint>,
    /// The MCP server called directly (`--mcp-url`).
    pub mcp_direct: Option<Endpoint>,
    /// `Basic <client credentials>`.
    basic: HeaderValue,
    /// The body of every token request.
    token_form: String,
    /// The body of every token exchange request (writ, when the run exchanges).
    exchange_form: Option<String>,
    /// What was set up, for people.
    pub description: String,
}

/// A token as the token endpoint handed it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The access token.
    pub access_token: String,
    /// Its lifetime as the server stated it.
    pub expires_in_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct Metadata {
    token_endpoint: String,
    introspection_endpoint: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Registered {
    agent: RegisteredAgent,
    client_secret: String,
}

#[derive(Debug, Deserialize)]
struct Created {
    id: String,
}

#[derive(Debug, Deserialize)]
struct ApiKey {
    key: String,
}

#[derive(Debug, Deserialize)]
struct RegisteredAgent {
    client_id: String,
}

/// The start of `body`, as text, for a message.
pub fn quote(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .chars()
        .take(QUOTE_CHARS_MAX)
        .collect()
}

/// HTTP Basic credentials as RFC 6749 §2.3.1 has them: each half form-urlencoded first.
pub fn basic_authorization(client_id: &str, secret: &str) -> Result<HeaderValue, BenchError> {
    let encode = |text: &str| form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", encode(client_id), encode(secret));
    HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(pair)))
        .map_err(|err| BenchError::Usage(format!("the client credentials: {err}")))
}

/// The body of a `client_credentials` token request.
pub fn token_form(scope: Option<&str>, params: &[(String, String)]) -> String {
    grant_form(&[("grant_type", "client_credentials")], scope, params)
}

/// The body of a token request: the grant's own parameters, then the scope and any extra
/// parameters every request of the run carries.
pub fn grant_form(
    grant: &[(&str, &str)],
    scope: Option<&str>,
    params: &[(String, String)],
) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.extend_pairs(grant);
    if let Some(scope) = scope {
        form.append_pair("scope", scope);
    }
    for (name, value) in params {
        form.append_pair(name, value);
    }
    form.finish()
}

/// `found` (a URL from the metadata) on the origin of `base`, when the two differ: the
/// metadata names the issuer's public URL, which may be a proxy in front of the listener
/// being measured. The second value says whether it was moved.
pub fn on_origin_of(found: &str, base: &str) -> Result<(String, bool), String> {
    let (found_parts, base_parts) = (parse_url(found), parse_url(base)?);
    match found_parts {
        Ok(parts) if parts.authority == base_parts.authority => Ok((found.to_owned(), false)),
        _ => {
            let uri: hyper::Uri = found
                .parse()
                .map_err(|err| format!("the metadata's `{found}` is not a URL: {err}"))?;
            let path = uri.path_and_query().map_or("/", |p| p.as_str());
            Ok((format!("http://{}{path}", base_parts.authority), true))
        }
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(
    step: &str,
    answer: Result<Answer, conn::Failure>,
    expected: u16,
) -> Result<T, BenchError> {
    let answer = answer.map_err(|failure| BenchError::setup(step, failure.detail))?;
    if answer.status.as_u16() != expected {
        return Err(BenchError::setup(
            step,
            format!("HTTP {}: {}", answer.status, quote(&answer.body)),
        ));
    }
    serde_json::from_slice(&answer.body).map_err(|err| {
        BenchError::setup(
            step,
            format!("unexpected answer ({err}): {}", quote(&answer.body)),
        )
    })
}

/// Reads a token endpoint's success answer.
pub fn read_token(answer: &Answer) -> Result<Issued, String> {
    if !answer.status.is_success() {
        return Err(format!("HTTP {}: {}", answer.status, quote(&answer.body)));
    }
    let token: TokenAnswer = serde_json::from_slice(&answer.body).map_err(|err| {
        format!(
            "no access token in the answer ({err}): {}",
            quote(&answer.body)
        )
    })?;
    Ok(Issued {
        access_token: token.access_token,
        expires_in_seconds: token.expires_in,
    })
}

impl Target {
    /// Sets up the target the run names.
    pub async fn prepare(run: &Run) -> Result<Target, BenchError> {
        let mut target = Target::prepare_target(run).await?;
        if let Some(url) = &run.mcp_url {
            target.mcp_direct = Some(Endpoint::resolve(url).await?);
        }
        Ok(target)
    }

    async fn prepare_target(run: &Run) -> Result<Target, BenchError> {
        match &run.target {
            TargetArg::Writ {
                url,
                admin_token,
                client,
            } => writ(run, url, admin_token.as_deref(), client.clone()).await,
            TargetArg::Other {
                token_url,
                introspection_url,
                client: (client_id, secret),
            } => {
                let introspection = match introspection_url {
                    Some(url) => Some(Endpoint::resolve(url).await?),
                    None => None,
                };
                Ok(Target {
                    token: Endpoint::resolve(token_url).await?,
                    introspection,
                    operations: None,
                    gateway: None,
                    mcp_direct: None,
                    basic: basic_authorization(client_id, secret)?,
                    token_form: token_form(run.scope.as_deref(), &run.token_params),
                    exchange_form: None,
                    description: format!("token endpoint {token_url}, client {client_id}"),
                })
            }
        }
    }

    /// The same target on another node of the same ledger: every endpoint moved to the
    /// origin of `base`.
    pub async fn on_node(&self, base: &str) -> Result<Target, BenchError> {
        let moved = |endpoint: &Endpoint| {
            on_origin_of(&endpoint.url, base)
                .map(|(url, _)| url)
                .map_err(|why| BenchError::Usage(format!("--also-writ-url {base}: {why}")))
        };
        let mut node = self.clone();
        node.token = Endpoint::resolve(&moved(&self.token)?).await?;
        if let Some(endpoint) = &self.introspection {
            node.introspection = Some(Endpoint::resolve(&moved(endpoint)?).await?);
        }
        if let Some(endpoint) = &self.operations {
            node.operations = Some(Endpoint::resolve(&moved(endpoint)?).await?);
        }
        if let Some(endpoint) = &self.gateway {
            node.gateway = Some(Endpoint::resolve(&moved(endpoint)?).await?);
        }
        node.description = format!("{} (and node {base})", self.description);
        Ok(node)
    }

    /// The token request (the whole of the `issue` scenario).
    pub fn token_request(&self) -> Template {
        Template::post(
            &self.token,
            FORM,
            self.basic.clone(),
            self.token_form.clone(),
        )
    }

    /// A token for the scenarios that use one, on a connection of its own.
    pub async fn first_token(&self, timeout: Duration) -> Result<Issued, BenchError> {
        let step = format!("getting a token from {}", self.token.url);
        let answer = conn::once(&self.token_request(), timeout)
            .await
            .map_err(|failure| BenchError::setup(&step, failure.detail))?;
        read_token(&answer).map_err(|why| BenchError::setup(&step, why))
    }

    /// What `scenario` sends, holding `token` where it needs one.
    pub fn request(&self, scenario: Scenario, token: Option<&Issued>) -> Result<Template, String> {
        let token = || {
            token
                .map(|t| t.access_token.as_str())
                .ok_or_else(|| format!("the {} scenario needs a token", scenario.name()))
        };
        match scenario {
            Scenario::Issue => Ok(self.token_request()),
            Scenario::Exchange => {
                let form = self
                    .exchange_form
                    .as_ref()
                    .ok_or("the exchange scenario needs a person and a delegation (writ only)")?;
                Ok(Template::post(
                    &self.token,
                    FORM,
                    self.basic.clone(),
                    form.clone(),
                ))
            }
            Scenario::Introspect => {
                let endpoint = self
                    .introspection
                    .as_ref()
                    .ok_or("the target has no introspection endpoint")?;
                let form = form_urlencoded::Serializer::new(String::new())
                    .append_pair("token", token()?)
                    .append_pair("token_type_hint", "access_token")
                    .finish();
                Ok(Template::post(endpoint, FORM, self.basic.clone(), form))
            }
            Scenario::Operations => {
                let endpoint = self
                    .operations
                    .as_ref()
                    .ok_or("the target has no operations endpoint (writ only)")?;
                let bearer = HeaderValue::from_str(&format!("Bearer {}", token()?))
                    .map_err(|err| format!("the token cannot be sent as a header: {err}"))?;
                let body = serde_json::json!({ "operation": OPERATION_NAME }).to_string();
                Ok(Template::post(endpoint, JSON, bearer, body))
            }
            Scenario::Gateway => {
                let endpoint = self
                    .gateway
                    .as_ref()
                    .ok_or("the gateway scenario needs --gateway-server (writ only)")?;
                let bearer = HeaderValue::from_str(&format!("Bearer {}", token()?))
                    .map_err(|err| format!("the token cannot be sent as a header: {err}"))?;
                let body = serde_json::json!({
                    "tool_name": "echo",
                    "arguments": { "text": "writ-bench" },
                })
                .to_string();
                Ok(Template::post(endpoint, JSON, bearer, body))
            }
            Scenario::McpDirect => {
                let endpoint = self
                    .mcp_direct
                    .as_ref()
                    .ok_or("the mcp-direct scenario needs --mcp-url")?;
                let body = serde_json::json!({
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "tools/call",
                    "params": { "name": "echo", "arguments": { "text": "writ-bench" } },
                })
                .to_string();
                Ok(Template::post(
                    endpoint,
                    JSON,
                    HeaderValue::from_static("Bearer writ-bench"),
                    body,
                )
                .with_accept("application/json, text/event-stream"))
            }
        }
    }
}

async fn writ(
    run: &Run,
    url: &str,
    admin_token: Option<&str>,
    client: Option<(String, String)>,
) -> Result<Target, BenchError> {
    let base = url.trim_end_matches('/');
    let timeout = run.request_timeout;
    let metadata_url = format!("{base}/.well-known/oauth-authorization-server");
    let metadata_endpoint = Endpoint::resolve(&metadata_url).await?;
    let answer = conn::once(&Template::get(&metadata_endpoint), timeout).await;
    let metadata: Metadata = read_json(&format!("reading {metadata_url}"), answer, 200)?;
    let mut notes = Vec::new();
    let token = locate(&metadata.token_endpoint, base, &mut notes).await?;
    let introspection = match &metadata.introspection_endpoint {
        Some(found) => Some(locate(found, base, &mut notes).await?),
        None => None,
    };
    let operations = Some(Endpoint::resolve(&format!("{base}{WRIT_OPERATIONS_PATH}")).await?);
    let (client_id, secret, registered) = match client {
        Some((id, secret)) => (id, secret, false),
        None => {
            let admin = admin_token.ok_or_else(|| {
                BenchError::Usage("an admin token is needed to register an agent".into())
            })?;
            let (id, secret) = register(base, admin, run.scope.as_deref(), timeout).await?;
            (id, secret, true)
        }
    };
    let mut description = format!(
        "writ at {base}, {} agent {client_id}",
        if registered { "registered" } else { "existing" }
    );
    let exchange_form = if run.scenarios.contains(&Scenario::Exchange) {
        let admin = admin_token.ok_or_else(|| {
            BenchError::Usage(
                "the exchange scenario needs the admin token, to register a person who delegates"
                    .into(),
            )
        })?;
        let user_id = delegating_person(base, admin, &client_id, timeout).await?;
        description.push_str(&format!(", acting for person {user_id}"));
        Some(grant_form(
            &[
                ("grant_type", TOKEN_EXCHANGE_GRANT),
                ("subject_token", &user_id),
                ("subject_token_type", USER_ID_TOKEN_TYPE),
            ],
            run.scope.as_deref(),
            &run.token_params,
        ))
    } else {
        None
    };
    for note in notes {
        description.push_str("; ");
        description.push_str(&note);
    }
    let gateway = match &run.gateway_server {
        Some(id) => Some(Endpoint::resolve(&format!("{base}/api/v1/proxy/{id}/tools")).await?),
        None => None,
    };
    Ok(Target {
        token,
        introspection,
        operations,
        gateway,
        mcp_direct: None,
        basic: basic_authorization(&client_id, &secret)?,
        token_form: token_form(run.scope.as_deref(), &run.token_params),
        exchange_form,
        description,
    })
}

/// Registers a person, gives them an API key, and with it delegates to `client_id`: the
/// person's id, for the exchange scenario's `subject_token`.
async fn delegating_person(
    base: &str,
    admin_token: &str,
    client_id: &str,
    timeout: Duration,
) -> Result<String, BenchError> {
    let admin = HeaderValue::from_str(&format!("Bearer {admin_token}"))
        .map_err(|err| BenchError::Usage(format!("the admin token: {err}")))?;
    let url = format!("{base}/api/v1/users");
    let body = serde_json::json!({ "email": format!("writ-bench+{client_id}@example.com") });
    let request = Template::post(
        &Endpoint::resolve(&url).await?,
        JSON,
        admin.clone(),
        body.to_string(),
    );
    let person: Created = read_json(
        &format!("registering a person at {url}"),
        conn::once(&request, timeout).await,
        201,
    )?;
    let url = format!("{base}/api/v1/users/{}/api-keys", person.id);
    let request = Template::post(&Endpoint::resolve(&url).await?, JSON, admin, "{}");
    let key: ApiKey = read_json(
        &format!("issuing the person an API key at {url}"),
        conn::once(&request, timeout).await,
        201,
    )?;
    let key = HeaderValue::from_str(&key.key)
        .map_err(|err| BenchError::setup("reading the API key", err))?;
    let url = format!("{base}/api/v1/agents/{client_id}/delegations");
    let placeholder = HeaderValue::from_static("none");
    let request =
        Template::post(&Endpoint::resolve(&url).await?, JSON, placeholder, "{}").with_api_key(key);
    let _: Created = read_json(
        &format!("delegating to the agent at {url}"),
        conn::once(&request, timeout).await,
        201,
    )?;
    Ok(person.id)
}

/// An endpoint the metadata names, on the origin being measured (a note when moved).
async fn locate(found: &str, base: &str, notes: &mut Vec<String>) -> Result<Endpoint, BenchError> {
    let (url, moved) = on_origin_of(found, base).map_err(BenchError::Usage)?;
    if moved {
        notes.push(format!("{found} (from the metadata) is measured at {url}"));
    }
    Endpoint::resolve(&url).await
}

/// Registers a `client_credentials` agent holding `scope`; its id and secret.
async fn register(
    base: &str,
    admin_token: &str,
    scope: Option<&str>,
    timeout: Duration,
) -> Result<(String, String), BenchError> {
    let url = format!("{base}/api/v1/agents");
    let endpoint = Endpoint::resolve(&url).await?;
    let scopes: Vec<&str> = scope
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
        .collect();
    // No ceilings and no max_operations: the agent's tokens have no operation quota, so
    // the operations scenario measures recording, not running out.
    let body = serde_json::json!({
        "name": "writ-bench",
        "scopes": scopes,
        "grant_types": ["client_credentials", TOKEN_EXCHANGE_GRANT],
    });
    let bearer = HeaderValue::from_str(&format!("Bearer {admin_token}"))
        .map_err(|err| BenchError::Usage(format!("the admin token: {err}")))?;
    let request = Template::post(&endpoint, JSON, bearer.clone(), body.to_string());
    let answer = conn::once(&request, timeout).await;
    let registered: Registered = read_json(&format!("registering an agent at {url}"), answer, 201)?;
    // writ limits each agent's token requests (600 a minute by default); the measuring
    // agent's policy lifts that, or the issue scenario would measure the limiter.
    let policy_url = format!("{url}/{}/policy", registered.agent.client_id);
    let policy = Endpoint::resolve(&policy_url).await?;
    let body = serde_json::json!({ "token_requests_per_minute": u32::MAX });
    let request =
        Template::post(&policy, JSON, bearer, body.to_string()).with_method(hyper::Method::PUT);
    let step = format!("lifting the agent's token rate at {policy_url}");
    match conn::once(&request, timeout).await {
        Ok(answer) if answer.status.as_u16() == 204 => {}
        Ok(answer) => {
            let detail = format!("HTTP {}: {}", answer.status, quote(&answer.body));
            return Err(BenchError::setup(&step, detail));
        }
        Err(failure) => return Err(BenchError::setup(&step, failure.detail)),
    }
    Ok((registered.agent.client_id, registered.client_secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_encoded_then_base64() {
        let header = basic_authorization("peer-cc", "a b:c").unwrap();
        let encoded = header.to_str().unwrap().strip_prefix("Basic ").unwrap();
        let decoded = String::from_utf8(STANDARD.decode(encoded).unwrap()).unwrap();
        assert_eq!(decoded, "peer-cc:a+b%3Ac");
    }

    #[test]
    fn token_requests_carry_scope_and_extra_parameters_encoded() {
        assert_eq!(token_form(None, &[]), "grant_type=client_credentials");
        let params = [("resource".to_owned(), "urn:peer:jwt".to_owned())];
        assert_eq!(
            token_form(Some("mcp:read mcp:write"), &params),
            "grant_type=client_credentials&scope=mcp%3Aread+mcp%3Awrite&resource=urn%3Apeer%3Ajwt"
        );
    }

    #[test]
    fn metadata_urls_on_another_origin_are_measured_at_the_given_one() {
        let base = "http://127.0.0.1:8080";
        assert_eq!(
            on_origin_of("http://127.0.0.1:8080/oauth/token", base),
            Ok(("http://127.0.0.1:8080/oauth/token".into(), false))
        );
        assert_eq!(
            on_origin_of("https://auth.example.com/oauth/token", base),
            Ok(("http://127.0.0.1:8080/oauth/token".into(), true))
        );
    }

    #[test]
    fn token_answers_are_read_or_quoted() {
        let answer = |status: u16, body: &'static str| Answer {
            status: hyper::StatusCode::from_u16(status).unwrap(),
            body: body.into(),
        };
        assert_eq!(
            read_token(&answer(200, r#"{"access_token":"t","expires_in":900}"#)),
            Ok(Issued {
                access_token: "t".into(),
                expires_in_seconds: Some(900)
            })
        );
        assert_eq!(
            read_token(&answer(401, r#"{"error":"invalid_client"}"#)),
            Err(r#"HTTP 401 Unauthorized: {"error":"invalid_client"}"#.into())
        );
        assert!(
            read_token(&answer(200, "{}"))
                .unwrap_err()
                .contains("no access token")
        );
    }
}

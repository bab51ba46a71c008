//! `POST /oauth/register`: dynamic client registration (RFC 7591). A client sends its
//! metadata and gets a `client_id` (and, when confidential, a secret shown once); it is
//! recorded as an `AgentRegistered` like an agent an admin registers, and lands in the
//! inventory needing review. Whether anyone may register, or only a holder of an initial
//! access token, is `writ serve --registration`.
//!
//! This module checks metadata and answers in RFC 7591's shape; it decides nothing the
//! ledger decides (a duplicate id is the ledger's refusal, as for any agent).

use std::num::NonZeroU32;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use writ_schemas::{Actor, AgentRegistered, AgentType, ClientId, Digest};

use super::AppState;
use super::agents::{NAME_BYTES_MAX, URI_BYTES_MAX, URIS_MAX, check_scopes};
use super::oauth_error::{OAuthError, read_form_body};
use crate::decide::Command;
use crate::ledger::SubmitError;
use crate::secrets::{new_id, new_secret};

/// Registrations per minute the whole server accepts by default, as a burst that
/// refills evenly over the minute: open registration must not let one caller fill the
/// ledger.
pub const REGISTRATIONS_PER_MINUTE_DEFAULT: u32 = 60;

/// The grant types a client may register for.
pub const GRANT_TYPES: &[&str] = &["authorization_code", "refresh_token", "client_credentials"];
/// The token endpoint authentication methods a client may register with (`none`: a
/// public client, which holds no secret).
pub const AUTH_METHODS: &[&str] = &[
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
    "none",
];
/// Hosts an `http` redirect URI may name (RFC 8252 §7.3: a native app's loopback
/// listener); every other redirect URI is `https`.
const LOOPBACK_HOSTS: &[&str] = &["127.0.0.1", "[::1]", "localhost"];

/// Who may register clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationMode {
    /// Nobody: `POST /oauth/register` answers 403.
    Off,
    /// Anyone, without a credential.
    Open,
    /// The holder of an initial access token: an admin token, or the server's
    /// registration token.
    Token,
}

impl RegistrationMode {
    /// `off`, `open` or `token` (the `--registration` flag).
    pub fn parse(text: &str) -> Result<RegistrationMode, String> {
        match text {
            "off" => Ok(RegistrationMode::Off),
            "open" => Ok(RegistrationMode::Open),
            "token" => Ok(RegistrationMode::Token),
            other => Err(format!("`{other}` is not one of off, open, token")),
        }
    }
}

/// How this server takes registrations.
pub struct Registration {
    /// Who may register.
    pub mode: RegistrationMode,
    /// The keyed hash of the registration token, when one is configured (`Token` mode).
    pub token_hash: Option<Digest>,
    limiter: DefaultDirectRateLimiter,
    clock: DefaultClock,
}

impl Registration {
    /// Registrations taken in `mode`, at most `per_minute` a minute (0 is taken as 1).
    pub fn new(mode: RegistrationMode, token_hash: Option<Digest>, per_minute: u32) -> Self {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        Registration {
            mode,
            token_hash,
            limiter: RateLimiter::direct(Quota::per_minute(per_minute)),
            clock: DefaultClock::default(),
        }
    }

    /// One line for the banner.
    pub fn describe(&self) -> &'static str {
        match (self.mode, self.token_hash.is_some()) {
            (RegistrationMode::Off, _) => "off",
            (RegistrationMode::Open, _) => "open (anyone may register a client)",
            (RegistrationMode::Token, false) => "with an admin token",
            (RegistrationMode::Token, true) => "with an admin token or the registration token",
        }
    }

    /// Takes one registration from the server's budget; when it is spent, the whole
    /// seconds until the next one is allowed.
    fn take(&self) -> Result<(), u64> {
        self.limiter.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }
}

/// RFC 7591 §2 client metadata, as far as writ reads it. Members it does not know are
/// ignored (§2); `client_uri` and `logo_uri` are among them, since the inventory has
/// nowhere to keep them.
#[derive(Debug, Deserialize)]
struct ClientMetadata {
    redirect_uris: Option<Vec<String>>,
    client_name: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
    token_endpoint_auth_method: Option<String>,
    scope: Option<String>,
    /// The public keys of a `private_key_jwt` client (RFC 7591 §2; `jwks_uri` is not
    /// taken: the keys are recorded in the ledger as registered).
    jwks: Option<Value>,
}

/// Metadata checked and defaulted: what is registered.
#[derive(Debug, PartialEq, Eq)]
struct Checked {
    client_name: Option<String>,
    redirect_uris: Vec<String>,
    grant_types: Vec<String>,
    response_types: Vec<String>,
    token_endpoint_auth_method: String,
    scopes: Vec<String>,
    jwks: Option<writ_schemas::ClientJwks>,
}

/// Registers a client.
pub(super) async fn register(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, OAuthError> {
    let registration = &state.registration;
    if registration.mode == RegistrationMode::Off {
        return Err(OAuthError::access_denied(
            "dynamic client registration is off on this server (writ serve --registration); ask an admin to register the client",
        ));
    }
    let client_id = ClientId(new_id("agt_"));
    let by = registrant(&state, &request, &client_id)?;
    let body = read_form_body(payload).await?;
    let checked = check(&parse(&request, &body)?)?;
    if let Err(seconds) = registration.take() {
        return Err(OAuthError {
            description: format!(
                "too many registrations on this server; retry in {seconds} s (writ serve --registrations-per-minute)"
            ),
            ..OAuthError::rate_limited(seconds)
        });
    }
    let secret = !matches!(
        checked.token_endpoint_auth_method.as_str(),
        "none" | "private_key_jwt"
    );
    let secret = secret.then(|| new_secret("wrt_cs_"));
    let event = AgentRegistered {
        client_id: client_id.clone(),
        name: checked
            .client_name
            .clone()
            .unwrap_or_else(|| client_id.to_string()),
        owner: None,
        scopes: checked.scopes.clone(),
        grant_types: checked.grant_types.clone(),
        redirect_uris: checked.redirect_uris.clone(),
        token_endpoint_auth_method: checked.token_endpoint_auth_method.clone(),
        secret_hash: secret.as_deref().map(|s| state.secrets.hash(s)),
        secret_expires_at: None,
        jwks: checked.jwks.clone(),
        require_consent: false,
        agent_type: AgentType::Autonomous,
        expires_at: None,
        by,
    };
    state
        .ledger
        .submit(Command::RegisterAgent(event))
        .await
        .map_err(refusal)?;
    let issued_at = state
        .ledger
        .read(|s| s.agent(&client_id).map(|a| a.registered_at.unix_seconds()))
        .ok_or_else(|| OAuthError::server_error("the registered client is not visible"))?;
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(answer(&client_id, secret.as_deref(), issued_at, checked)))
}

/// Who the ledger records as having registered the client: the admin whose token was the
/// initial access token, else the client itself (open registration, or the registration
/// token, which names nobody).
fn registrant(
    state: &AppState,
    request: &HttpRequest,
    client_id: &ClientId,
) -> Result<Actor, OAuthError> {
    let itself = Actor::Agent {
        client_id: client_id.clone(),
    };
    let Some(bearer) = super::auth::bearer_token(request) else {
        return match state.registration.mode {
            RegistrationMode::Token => Err(OAuthError::invalid_token(
                "registration needs an initial access token: send an admin credential or the registration token as `Authorization: Bearer ...`",
            )),
            _ => Ok(itself),
        };
    };
    match super::auth::admin_credential(request, bearer) {
        Ok(Some(actor)) => return Ok(actor),
        Ok(None) => {}
        Err(refused @ super::error::ApiError::InsufficientRole(_)) => {
            return Err(OAuthError::insufficient_role(refused.to_string()));
        }
        Err(refused) => return Err(OAuthError::invalid_token(refused.to_string())),
    }
    let hash = state.secrets.hash(bearer);
    // blake3::Hash compares in constant time.
    let offered = blake3::Hash::from(hash.0);
    let registration_token = state
        .registration
        .token_hash
        .is_some_and(|known| blake3::Hash::from(known.0) == offered);
    match state.registration.mode {
        RegistrationMode::Token if !registration_token => Err(OAuthError::invalid_token(
            "that bearer token is neither a live admin credential nor the registration token",
        )),
        _ => Ok(itself),
    }
}

fn parse(request: &HttpRequest, body: &[u8]) -> Result<ClientMetadata, OAuthError> {
    let json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return Err(OAuthError::invalid_client_metadata(
            "send the client metadata as application/json (RFC 7591 §3.1)",
        ));
    }
    serde_json::from_slice(body).map_err(|err| {
        OAuthError::invalid_client_metadata(format!("the body is not client metadata: {err}"))
    })
}

/// The metadata checked one member at a time, then for consistency (RFC 7591 §2.1).
fn check(metadata: &ClientMetadata) -> Result<Checked, OAuthError> {
    let grant_types = grant_types(metadata.grant_types.as_deref())?;
    let code = grant_types.iter().any(|g| g == "authorization_code");
    let response_types = response_types(metadata.response_types.as_deref(), code)?;
    let token_endpoint_auth_method = auth_method(metadata.token_endpoint_auth_method.as_deref())?;
    if token_endpoint_auth_method == "none" && grant_types.iter().any(|g| g == "client_credentials")
    {
        return Err(OAuthError::invalid_client_metadata(
            "a public client (token_endpoint_auth_method `none`) cannot use client_credentials: that grant is the client's own secret",
        ));
    }
    let jwks = match (token_endpoint_auth_method.as_str(), &metadata.jwks) {
        ("private_key_jwt", Some(jwks)) => Some(
            crate::oauth::assertion::registered_jwks(jwks)
                .map_err(|why| OAuthError::invalid_client_metadata(format!("jwks: {why}")))?,
        ),
        ("private_key_jwt", None) => {
            return Err(OAuthError::invalid_client_metadata(
                "jwks: a private_key_jwt client registers its public keys as a JWK Set",
            ));
        }
        (_, Some(_)) => {
            return Err(OAuthError::invalid_client_metadata(
                "jwks: only for token_endpoint_auth_method private_key_jwt",
            ));
        }
        (_, None) => None,
    };
    let redirect_uris = metadata.redirect_uris.clone().unwrap_or_default();
    check_redirect_uris(&redirect_uris)?;
    if code && redirect_uris.is_empty() {
        return Err(OAuthError::invalid_redirect_uri(
            "redirect_uris: the authorization_code grant needs at least one",
        ));
    }
    // RFC 6749 §3.3: tokens separated by single spaces; an empty string asks for none.
    let scopes: Vec<String> = metadata
        .scope
        .as_deref()
        .filter(|scope| !scope.is_empty())
        .map(|scope| scope.split(' ').map(str::to_owned).collect())
        .unwrap_or_default();
    check_scopes("scope", &scopes)
        .map_err(|err| OAuthError::invalid_client_metadata(err.to_string()))?;
    if let Some(name) = &metadata.client_name
        && (name.trim().is_empty()
            || name.len() > NAME_BYTES_MAX
            || name.chars().any(char::is_control))
    {
        return Err(OAuthError::invalid_client_metadata(format!(
            "client_name: 1 to {NAME_BYTES_MAX} bytes of text"
        )));
    }
    Ok(Checked {
        client_name: metadata.client_name.clone(),
        redirect_uris,
        grant_types,
        response_types,
        token_endpoint_auth_method,
        scopes,
        jwks,
    })
}

/// `grant_types`, `["authorization_code"]` when absent (RFC 7591 §2).
fn grant_types(asked: Option<&[String]>) -> Result<Vec<String>, OAuthError> {
    let Some(asked) = asked else {
        return Ok(vec!["authorization_code".to_owned()]);
    };
    if asked.is_empty() {
        return Err(OAuthError::invalid_client_metadata(format!(
            "grant_types: name at least one of {}",
            GRANT_TYPES.join(", ")
        )));
    }
    for (index, grant) in asked.iter().enumerate() {
        if !GRANT_TYPES.contains(&grant.as_str()) {
            return Err(OAuthError::invalid_client_metadata(format!(
                "grant_types: `{}` is not supported; writ registers {}",
                grant.chars().take(64).collect::<String>(),
                GRANT_TYPES.join(", ")
            )));
        }
        if asked[..index].contains(grant) {
            return Err(OAuthError::invalid_client_metadata(format!(
                "grant_types: `{grant}` is listed twice"
            )));
        }
    }
    Ok(asked.to_vec())
}

/// `response_types`: only `code`, which goes with the authorization_code grant and only
/// with it (RFC 7591 §2.1). Absent: `code` for an authorization_code client, else none.
fn response_types(asked: Option<&[String]>, code_grant: bool) -> Result<Vec<String>, OAuthError> {
    let code = || vec!["code".to_owned()];
    let Some(asked) = asked else {
        return Ok(if code_grant { code() } else { Vec::new() });
    };
    if let Some(other) = asked.iter().find(|r| r.as_str() != "code") {
        return Err(OAuthError::invalid_client_metadata(format!(
            "response_types: `{}` is not supported; writ registers only `code`",
            other.chars().take(64).collect::<String>()
        )));
    }
    match (asked.is_empty(), code_grant) {
        (true, false) => Ok(Vec::new()),
        (false, true) => Ok(code()),
        (true, true) => Err(OAuthError::invalid_client_metadata(
            "response_types: the authorization_code grant goes with the `code` response type",
        )),
        (false, false) => Err(OAuthError::invalid_client_metadata(
            "response_types: `code` needs the authorization_code grant in grant_types",
        )),
    }
}

/// `token_endpoint_auth_method`, `client_secret_basic` when absent (RFC 7591 §2).
fn auth_method(asked: Option<&str>) -> Result<String, OAuthError> {
    match asked {
        None => Ok(AUTH_METHODS[0].to_owned()),
        Some(method) if AUTH_METHODS.contains(&method) => Ok(method.to_owned()),
        Some(other) => Err(OAuthError::invalid_client_metadata(format!(
            "token_endpoint_auth_method: `{}` is not one of {}",
            other.chars().take(64).collect::<String>(),
            AUTH_METHODS.join(", ")
        ))),
    }
}

/// Each redirect URI absolute, `https` (or `http` to a loopback host), without a fragment
/// (RFC 6749 §3.1.2), at most `URIS_MAX` of at most `URI_BYTES_MAX` bytes. Kept as given:
/// an authorization request's `redirect_uri` is compared with it exactly.
fn check_redirect_uris(uris: &[String]) -> Result<(), OAuthError> {
    if uris.len() > URIS_MAX {
        return Err(OAuthError::invalid_redirect_uri(format!(
            "redirect_uris: at most {URIS_MAX} entries"
        )));
    }
    for uri in uris {
        let shown: String = uri.chars().take(64).collect();
        let refuse = |why: &str| {
            Err(OAuthError::invalid_redirect_uri(format!(
                "redirect_uris: `{shown}` {why}"
            )))
        };
        if uri.is_empty()
            || uri.len() > URI_BYTES_MAX
            || uri.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return refuse(&format!(
                "is not 1 to {URI_BYTES_MAX} bytes without spaces or control characters"
            ));
        }
        if uri.contains('#') {
            return refuse("has a fragment, which a redirect URI may not have");
        }
        let Ok(parsed) = reqwest::Url::parse(uri) else {
            return refuse("is not an absolute URI");
        };
        let host = parsed.host_str().unwrap_or_default();
        match parsed.scheme() {
            "https" if !host.is_empty() => {}
            "http" if LOOPBACK_HOSTS.contains(&host) => {}
            "http" => {
                return refuse(
                    "is http to a host other than 127.0.0.1, [::1] or localhost; use https",
                );
            }
            _ => return refuse("is not an https URI"),
        }
    }
    Ok(())
}

/// The RFC 7591 §3.2.1 answer: the client's id (and secret), and its metadata as
/// registered.
fn answer(client_id: &ClientId, secret: Option<&str>, issued_at: i64, checked: Checked) -> Value {
    let mut body = Map::new();
    body.insert("client_id".into(), json!(client_id.to_string()));
    body.insert("client_id_issued_at".into(), json!(issued_at));
    if let Some(secret) = secret {
        body.insert("client_secret".into(), json!(secret));
        // writ's client secrets do not expire; an admin rotates them.
        body.insert("client_secret_expires_at".into(), json!(0));
    }
    if let Some(name) = checked.client_name {
        body.insert("client_name".into(), json!(name));
    }
    body.insert("redirect_uris".into(), json!(checked.redirect_uris));
    body.insert("grant_types".into(), json!(checked.grant_types));
    body.insert("response_types".into(), json!(checked.response_types));
    body.insert(
        "token_endpoint_auth_method".into(),
        json!(checked.token_endpoint_auth_method),
    );
    if !checked.scopes.is_empty() {
        body.insert("scope".into(), json!(checked.scopes.join(" ")));
    }
    if let Some(jwks) = &checked.jwks {
        body.insert("jwks".into(), json!(jwks));
    }
    Value::Object(body)
}

fn refusal(err: SubmitError) -> OAuthError {
    match err {
        SubmitError::Refused(refusal) => {
            OAuthError::invalid_client_metadata(format!("the ledger refused the client: {refusal}"))
        }
        SubmitError::Unavailable(why) => OAuthError::unavailable(why),
        overloaded @ SubmitError::Overloaded(_) => OAuthError::overloaded(overloaded.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(value: Value) -> ClientMetadata {
        serde_json::from_value(value).unwrap_or_else(|err| panic!("{err}"))
    }

    fn refused(value: Value) -> &'static str {
        match check(&metadata(value)) {
            Ok(checked) => panic!("accepted: {checked:?}"),
            Err(err) => err.error,
        }
    }

    #[test]
    fn defaults_are_rfc_7591_s() {
        let checked = check(&metadata(
            json!({"redirect_uris": ["https://app.example/cb"]}),
        ));
        assert_eq!(
            checked.ok(),
            Some(Checked {
                client_name: None,
                redirect_uris: vec!["https://app.example/cb".into()],
                grant_types: vec!["authorization_code".into()],
                response_types: vec!["code".into()],
                token_endpoint_auth_method: "client_secret_basic".into(),
                scopes: vec![],
                jwks: None,
            })
        );
    }

    #[test]
    fn loopback_http_redirects_are_accepted_and_others_refused() {
        for uri in [
            "http://127.0.0.1:8123/cb",
            "http://[::1]/cb",
            "http://localhost:3000/callback",
        ] {
            let asked = json!({"redirect_uris": [uri]});
            assert!(check(&metadata(asked)).is_ok(), "{uri}");
        }
        for uri in [
            "http://app.example/cb",
            "http://127.0.0.1.evil.example/cb",
            "https://app.example/cb#frag",
            "ftp://app.example/cb",
            "/relative",
            "https://app.example/c b",
        ] {
            let asked = json!({"redirect_uris": [uri]});
            assert_eq!(refused(asked), "invalid_redirect_uri", "{uri}");
        }
        assert_eq!(refused(json!({})), "invalid_redirect_uri");
    }

    #[test]
    fn unsupported_metadata_is_invalid_client_metadata() {
        let cc = json!(["client_credentials"]);
        for asked in [
            json!({"grant_types": ["password"]}),
            json!({"grant_types": []}),
            json!({"grant_types": ["client_credentials", "client_credentials"]}),
            json!({"grant_types": cc, "response_types": ["token"]}),
            json!({"grant_types": cc, "response_types": ["code"]}),
            json!({"grant_types": cc, "token_endpoint_auth_method": "private_key_jwt"}),
            json!({"grant_types": cc, "token_endpoint_auth_method": "client_secret_basic", "jwks": {"keys": []}}),
            json!({"grant_types": cc, "token_endpoint_auth_method": "tls_client_auth"}),
            json!({"grant_types": cc, "token_endpoint_auth_method": "none"}),
            json!({"grant_types": cc, "scope": "a  b"}),
            json!({"grant_types": cc, "client_name": ""}),
        ] {
            assert_eq!(refused(asked.clone()), "invalid_client_metadata", "{asked}");
        }
    }

    #[test]
    fn a_public_client_and_unknown_members_are_fine() {
        let asked = json!({
            "redirect_uris": ["http://127.0.0.1/cb"],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "none",
            "scope": "files:read files:write",
            "client_uri": "https://app.example",
            "software_id": "x",
        });
        let checked = check(&metadata(asked)).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(checked.scopes, ["files:read", "files:write"]);
        assert_eq!(checked.token_endpoint_auth_method, "none");
        let no_scope = json!({"grant_types": ["client_credentials"], "scope": ""});
        let checked = check(&metadata(no_scope)).unwrap_or_else(|err| panic!("{err}"));
        assert!(checked.scopes.is_empty());
    }
}

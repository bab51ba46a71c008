//! The HTTP surface (actix-web): routes, and the state every handler shares.
//!
//! Handlers are thin: parse, ask the ledger (submit a command or read the projections),
//! map the answer to HTTP. Nothing here decides anything `decide.rs` should decide.

mod account;
mod agents;
mod approvals;
pub mod audit;
mod auth;
mod authorize;
mod code_grant;
mod connections;
mod delegations;
mod discovery;
pub mod error;
pub mod gateway;
mod health;
mod introspect;
mod keys;
mod ledger;
pub mod limits;
pub mod oauth_error;
pub mod observe;
mod operations;
mod policy;
pub mod registration;
pub mod servers;
mod session_grants;
mod signin;
#[cfg(test)]
mod tests;
pub mod throttle;
mod token;
mod user_tokens;
mod users;

use std::sync::Arc;

use actix_web::http::Method;
use actix_web::{Route, web};

use crate::ledger::Ledger;

/// What every handler can reach.
pub struct AppState {
    /// The ledger this server fronts.
    pub ledger: Arc<Ledger>,
    /// The issuer URL (`iss`, metadata).
    pub issuer: String,
    /// Hashes presented secrets for lookup.
    pub secrets: crate::secrets::SecretHasher,
    /// Where handlers get `now` (validation of times; the ledger stamps its own).
    pub clock: crate::clock::Clock,
    /// Per-agent token request budgets.
    pub token_limits: Arc<limits::TokenRateLimits>,
    /// The key tokens are signed with, replaced whole by a rotation.
    pub signing_keys: Arc<crate::keys::SigningKeys>,
    /// External issuers whose JWTs token exchange accepts, and their keys.
    pub trusted_issuers: Arc<crate::issuers::TrustedIssuers>,
    /// The checkpoint key and the latest signed checkpoint.
    pub checkpoints: Arc<crate::checkpoints::Checkpoints>,
    /// How many of the auditor's heavier questions run at once.
    pub audit_gates: Arc<audit::AuditGates>,
    /// People's keys: seals and reads their personal data.
    pub people: Arc<crate::people::People>,
    /// The key-encryption keys that wrap upstream secrets.
    pub keks: Arc<crate::kek::Keks>,
    /// People's connections to MCP servers' OAuth providers.
    pub connections: Arc<crate::connections::Connections>,
    /// The MCP client the tool-call gateway forwards with, and the servers it knows.
    pub gateway: Arc<gateway::Gateway>,
    /// Who may register clients at `POST /oauth/register`, and how many a minute.
    pub registration: Arc<registration::Registration>,
    /// Fetches and caches client metadata documents (a `client_id` that is a URL).
    pub client_metadata: Arc<crate::client_metadata::ClientMetadata>,
    /// Failed sign-ins per account and per address.
    pub throttle: Arc<throttle::SignInThrottle>,
    /// The memory budget argon2 runs under.
    pub hashing: Arc<throttle::PasswordHashing>,
    /// Count sign-ins under the `X-Forwarded-For` address rather than the peer's.
    pub trust_forwarded_for: bool,
}

/// One endpoint: what a request must look like to reach a handler.
pub struct Endpoint {
    /// The HTTP method.
    pub method: Method,
    /// The path pattern, `{name}` for a segment (the same syntax as OpenAPI).
    pub path: &'static str,
    /// Bodies larger than this are refused with 413 before the handler runs.
    body_bytes_max: usize,
    handler: fn() -> Route,
}

fn endpoint(method: Method, path: &'static str, handler: fn() -> Route) -> Endpoint {
    let body_bytes_max = if path.starts_with("/oauth/") {
        token::FORM_BODY_BYTES_MAX
    } else {
        error::JSON_BODY_BYTES_MAX
    };
    Endpoint {
        method,
        path,
        body_bytes_max,
        handler,
    }
}

/// Every endpoint writ serves. `routes` registers exactly these, and a test holds
/// `schemas/openapi.yaml` to them, so the document cannot fall behind the server.
pub fn endpoints() -> Vec<Endpoint> {
    use Method as M;
    vec![
        endpoint(M::GET, "/healthz", || web::get().to(health::healthz)),
        endpoint(M::GET, "/readyz", || web::get().to(health::readyz)),
        endpoint(M::GET, "/metrics", || web::get().to(observe::metrics)),
        endpoint(M::GET, "/.well-known/oauth-authorization-server", || {
            web::get().to(discovery::metadata)
        }),
        endpoint(M::GET, "/.well-known/jwks.json", || {
            web::get().to(discovery::jwks)
        }),
        endpoint(M::GET, "/oauth/authorize", || {
            web::get().to(authorize::authorize)
        }),
        endpoint(M::POST, "/oauth/authorize", || {
            web::post().to(authorize::decide)
        }),
        endpoint(M::GET, "/login", || web::get().to(signin::login_form)),
        endpoint(M::POST, "/logout", || web::post().to(account::logout)),
        endpoint(M::GET, "/account", || web::get().to(account::show)),
        endpoint(M::POST, "/account/revoke", || {
            web::post().to(account::revoke)
        }),
        endpoint(M::POST, "/account/sessions/end", || {
            web::post().to(account::end_sessions)
        }),
        endpoint(M::POST, "/login", || web::post().to(signin::login)),
        endpoint(M::GET, "/.well-known/oauth-protected-resource", || {
            web::get().to(discovery::protected_resource)
        }),
        endpoint(
            M::GET,
            "/.well-known/oauth-protected-resource/api/v1/proxy",
            || web::get().to(discovery::protected_resource),
        ),
        endpoint(M::POST, "/oauth/register", || {
            web::post().to(registration::register)
        }),
        endpoint(M::POST, "/oauth/token", || web::post().to(token::issue)),
        endpoint(M::POST, "/oauth/agent-token", || {
            web::post().to(token::issue_agent_token)
        }),
        endpoint(M::POST, "/api/v1/keys/rotate", || {
            web::post().to(keys::rotate)
        }),
        endpoint(M::POST, "/oauth/introspect", || {
            web::post().to(introspect::introspect)
        }),
        endpoint(M::POST, "/oauth/revoke", || {
            web::post().to(introspect::revoke)
        }),
        endpoint(M::POST, "/api/v1/users", || web::post().to(users::create)),
        endpoint(M::GET, "/api/v1/users", || web::get().to(users::list)),
        endpoint(M::POST, "/api/v1/users/{id}/deactivate", || {
            web::post().to(users::deactivate)
        }),
        endpoint(M::POST, "/api/v1/users/{id}/reactivate", || {
            web::post().to(users::reactivate)
        }),
        endpoint(M::POST, "/api/v1/users/{id}/erase", || {
            web::post().to(users::erase)
        }),
        endpoint(M::PUT, "/api/v1/users/{id}/password", || {
            web::put().to(signin::set_password)
        }),
        endpoint(M::POST, "/api/v1/users/{id}/sessions/end", || {
            web::post().to(users::end_sessions)
        }),
        endpoint(M::POST, "/api/v1/users/{id}/api-keys", || {
            web::post().to(users::issue_api_key)
        }),
        endpoint(M::DELETE, "/api/v1/api-keys/{id}", || {
            web::delete().to(users::revoke_api_key)
        }),
        endpoint(M::POST, "/api/v1/agents", || web::post().to(agents::create)),
        endpoint(M::GET, "/api/v1/agents", || web::get().to(agents::list)),
        endpoint(M::GET, "/api/v1/agents/{client_id}", || {
            web::get().to(agents::one)
        }),
        endpoint(M::PUT, "/api/v1/agents/{client_id}/policy-set", || {
            web::put().to(policy::put_agent)
        }),
        endpoint(M::GET, "/api/v1/agents/{client_id}/policy-set", || {
            web::get().to(policy::get_agent)
        }),
        endpoint(M::PUT, "/api/v1/users/{id}/policy-set", || {
            web::put().to(policy::put_user)
        }),
        endpoint(M::GET, "/api/v1/users/{id}/policy-set", || {
            web::get().to(policy::get_user)
        }),
        endpoint(M::PUT, "/api/v1/agents/{client_id}/identity", || {
            web::put().to(agents::identity)
        }),
        endpoint(M::POST, "/api/v1/agents/{client_id}/review", || {
            web::post().to(agents::review)
        }),
        endpoint(M::POST, "/api/v1/agents/{client_id}/secret", || {
            web::post().to(agents::rotate_secret)
        }),
        endpoint(M::POST, "/api/v1/agents/{client_id}/disable", || {
            web::post().to(agents::disable)
        }),
        endpoint(M::POST, "/api/v1/agents/{client_id}/enable", || {
            web::post().to(agents::enable)
        }),
        endpoint(M::PUT, "/api/v1/agents/{client_id}/policy", || {
            web::put().to(agents::policy)
        }),
        endpoint(M::POST, "/api/v1/agents/{client_id}/delegations", || {
            web::post().to(delegations::grant)
        }),
        endpoint(M::GET, "/api/v1/agents/{client_id}/delegations", || {
            web::get().to(delegations::of_agent)
        }),
        endpoint(M::GET, "/api/v1/me/delegations", || {
            web::get().to(delegations::mine)
        }),
        endpoint(M::POST, "/api/v1/me/tokens", || {
            web::post().to(user_tokens::issue)
        }),
        endpoint(M::DELETE, "/api/v1/delegations/{id}", || {
            web::delete().to(delegations::revoke)
        }),
        endpoint(M::POST, "/api/v1/servers", || {
            web::post().to(servers::create)
        }),
        endpoint(M::GET, "/api/v1/servers", || web::get().to(servers::list)),
        endpoint(M::GET, "/api/v1/connections", || {
            web::get().to(connections::list)
        }),
        endpoint(M::GET, "/api/v1/connections/callback", || {
            web::get().to(connections::callback)
        }),
        endpoint(M::GET, "/api/v1/connections/{server_id}/start", || {
            web::get().to(connections::start)
        }),
        endpoint(M::DELETE, "/api/v1/connections/{server_id}", || {
            web::delete().to(connections::delete)
        }),
        endpoint(M::POST, "/api/v1/agents/{client_id}/session-grants", || {
            web::post().to(session_grants::create)
        }),
        endpoint(M::GET, "/api/v1/agents/{client_id}/session-grants", || {
            web::get().to(session_grants::list)
        }),
        endpoint(
            M::POST,
            "/api/v1/agents/{client_id}/session-grants/toggle",
            || web::post().to(session_grants::toggle),
        ),
        endpoint(M::DELETE, "/api/v1/session-grants/{id}", || {
            web::delete().to(session_grants::revoke)
        }),
        endpoint(M::GET, "/api/v1/approvals", || {
            web::get().to(approvals::list)
        }),
        endpoint(M::POST, "/api/v1/approvals/{id}/approve", || {
            web::post().to(approvals::approve)
        }),
        endpoint(M::POST, "/api/v1/approvals/{id}/deny", || {
            web::post().to(approvals::deny)
        }),
        endpoint(M::POST, "/api/v1/operations", || {
            web::post().to(operations::record)
        }),
        endpoint(M::POST, "/api/v1/proxy/{server_id}/tools", || {
            web::post().to(gateway::call)
        }),
        endpoint(M::GET, "/api/v1/ledger/head", || {
            web::get().to(ledger::head)
        }),
        endpoint(M::GET, "/api/v1/ledger/proofs/inclusion", || {
            web::get().to(ledger::inclusion)
        }),
        endpoint(M::GET, "/api/v1/ledger/proofs/consistency", || {
            web::get().to(ledger::consistency)
        }),
        endpoint(M::GET, "/api/v1/audit", || web::get().to(audit::list)),
        endpoint(M::GET, "/api/v1/audit/export", || {
            web::get().to(audit::export)
        }),
        endpoint(M::GET, "/api/v1/audit/delegations", || {
            web::get().to(audit::delegations)
        }),
        endpoint(M::GET, "/api/v1/audit/tokens", || {
            web::get().to(audit::tokens)
        }),
        endpoint(M::GET, "/api/v1/audit/agents/{client_id}", || {
            web::get().to(audit::agent)
        }),
    ]
}

/// Registers every endpoint; anything else is a JSON 404.
pub fn routes(config: &mut web::ServiceConfig) {
    config.app_data(
        web::JsonConfig::default()
            .limit(error::JSON_BODY_BYTES_MAX)
            .error_handler(error::json_error),
    );
    // One resource per path: actix answers 405 from the first resource whose path matches,
    // so two methods on one path must be routes of the same resource.
    let mut paths: Vec<(Endpoint, Vec<Route>, Vec<Method>)> = Vec::new();
    for endpoint in endpoints() {
        let (route, method) = ((endpoint.handler)(), endpoint.method.clone());
        match paths
            .iter_mut()
            .find(|(known, ..)| known.path == endpoint.path)
        {
            Some((_, routes, methods)) => {
                routes.push(route);
                methods.push(method);
            }
            None => paths.push((endpoint, vec![route], vec![method])),
        }
    }
    for (endpoint, routes, methods) in paths {
        let resource = web::resource(endpoint.path)
            .app_data(web::PayloadConfig::new(endpoint.body_bytes_max))
            .default_service(web::to(method_not_allowed(endpoint.path, &methods)));
        config.service(
            routes
                .into_iter()
                .fold(resource, |resource, route| resource.route(route)),
        );
    }
    config.default_service(web::to(not_found));
}

/// The JSON 405 (with `Allow`) for a served path asked with another method.
fn method_not_allowed(
    path: &'static str,
    methods: &[Method],
) -> impl Fn(
    actix_web::HttpRequest,
) -> std::future::Ready<Result<actix_web::HttpResponse, error::ApiError>>
+ Clone
+ 'static {
    let allow: Vec<&str> = methods.iter().map(Method::as_str).collect();
    let allow = allow.join(", ");
    move |request| {
        std::future::ready(Err(error::ApiError::MethodNotAllowed {
            detail: format!("{} is not served at {path}; use {allow}", request.method()),
            allow: allow.clone(),
        }))
    }
}

async fn not_found(
    request: actix_web::HttpRequest,
) -> Result<actix_web::HttpResponse, error::ApiError> {
    Err(error::ApiError::NotFound(format!(
        "no such endpoint: {} {}",
        request.method(),
        request.path()
    )))
}

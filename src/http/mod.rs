//! The HTTP surface (actix-web): routes, and the state every handler shares.
//!
//! Handlers are thin: parse, ask the ledger (submit a command or read the projections),
//! map the answer to HTTP. Nothing here decides anything `decide.rs` should decide.

mod account;
mod admin;
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
pub mod read_deadline;
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

pub use admin::ADMIN_CREDENTIAL_PREFIX;

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
    /// The role an admin credential needs here: `auditor` where the endpoint only reads,
    /// `admin` where it writes (or may: a `GET` that records a connection or registers a
    /// client by its metadata document counts as writing). Endpoints no admin credential
    /// reaches declare it too, by the same rule, so the declaration reads the same
    /// everywhere.
    pub role: writ_schemas::AdminRole,
    /// Bodies larger than this are refused with 413 before the handler runs.
    body_bytes_max: usize,
    handler: fn() -> Route,
}

fn endpoint(
    method: Method,
    path: &'static str,
    role: writ_schemas::AdminRole,
    handler: fn() -> Route,
) -> Endpoint {
    let body_bytes_max = if path.starts_with("/oauth/") {
        token::FORM_BODY_BYTES_MAX
    } else {
        error::JSON_BODY_BYTES_MAX
    };
    Endpoint {
        method,
        path,
        role,
        body_bytes_max,
        handler,
    }
}

/// Every endpoint writ serves. `routes` registers exactly these, and a test holds
/// `schemas/openapi.yaml` to them, so the document cannot fall behind the server.
pub fn endpoints() -> Vec<Endpoint> {
    use Method as M;
    use writ_schemas::AdminRole::{Admin, Auditor};
    vec![
        endpoint(M::GET, "/healthz", Auditor, || {
            web::get().to(health::healthz)
        }),
        endpoint(M::GET, "/readyz", Auditor, || web::get().to(health::readyz)),
        endpoint(M::GET, "/metrics", Auditor, || {
            web::get().to(observe::metrics)
        }),
        endpoint(
            M::GET,
            "/.well-known/oauth-authorization-server",
            Auditor,
            || web::get().to(discovery::metadata),
        ),
        endpoint(M::GET, "/.well-known/jwks.json", Auditor, || {
            web::get().to(discovery::jwks)
        }),
        endpoint(M::GET, "/oauth/authorize", Admin, || {
            web::get().to(authorize::authorize)
        }),
        endpoint(M::POST, "/oauth/authorize", Admin, || {
            web::post().to(authorize::decide)
        }),
        endpoint(M::GET, "/login", Auditor, || {
            web::get().to(signin::login_form)
        }),
        endpoint(M::POST, "/logout", Admin, || {
            web::post().to(account::logout)
        }),
        endpoint(M::GET, "/account", Auditor, || web::get().to(account::show)),
        endpoint(M::POST, "/account/revoke", Admin, || {
            web::post().to(account::revoke)
        }),
        endpoint(M::POST, "/account/sessions/end", Admin, || {
            web::post().to(account::end_sessions)
        }),
        endpoint(M::POST, "/login", Admin, || web::post().to(signin::login)),
        endpoint(
            M::GET,
            "/.well-known/oauth-protected-resource",
            Auditor,
            || web::get().to(discovery::protected_resource),
        ),
        endpoint(
            M::GET,
            "/.well-known/oauth-protected-resource/api/v1/proxy",
            Auditor,
            || web::get().to(discovery::protected_resource),
        ),
        endpoint(M::POST, "/oauth/register", Admin, || {
            web::post().to(registration::register)
        }),
        endpoint(M::POST, "/oauth/token", Admin, || {
            web::post().to(token::issue)
        }),
        endpoint(M::POST, "/oauth/agent-token", Admin, || {
            web::post().to(token::issue_agent_token)
        }),
        endpoint(M::POST, "/api/v1/admin/credentials", Admin, || {
            web::post().to(admin::create)
        }),
        endpoint(M::GET, "/api/v1/admin/credentials", Auditor, || {
            web::get().to(admin::list)
        }),
        endpoint(M::DELETE, "/api/v1/admin/credentials/{id}", Admin, || {
            web::delete().to(admin::revoke)
        }),
        endpoint(M::POST, "/api/v1/keys/rotate", Admin, || {
            web::post().to(keys::rotate)
        }),
        endpoint(M::POST, "/oauth/introspect", Auditor, || {
            web::post().to(introspect::introspect)
        }),
        endpoint(M::POST, "/oauth/revoke", Admin, || {
            web::post().to(introspect::revoke)
        }),
        endpoint(M::POST, "/api/v1/users", Admin, || {
            web::post().to(users::create)
        }),
        endpoint(M::GET, "/api/v1/users", Auditor, || {
            web::get().to(users::list)
        }),
        endpoint(M::POST, "/api/v1/users/{id}/deactivate", Admin, || {
            web::post().to(users::deactivate)
        }),
        endpoint(M::POST, "/api/v1/users/{id}/reactivate", Admin, || {
            web::post().to(users::reactivate)
        }),
        endpoint(M::POST, "/api/v1/users/{id}/erase", Admin, || {
            web::post().to(users::erase)
        }),
        endpoint(M::PUT, "/api/v1/users/{id}/password", Admin, || {
            web::put().to(signin::set_password)
        }),
        endpoint(M::POST, "/api/v1/users/{id}/sessions/end", Admin, || {
            web::post().to(users::end_sessions)
        }),
        endpoint(M::POST, "/api/v1/users/{id}/api-keys", Admin, || {
            web::post().to(users::issue_api_key)
        }),
        endpoint(M::DELETE, "/api/v1/api-keys/{id}", Admin, || {
            web::delete().to(users::revoke_api_key)
        }),
        endpoint(M::POST, "/api/v1/agents", Admin, || {
            web::post().to(agents::create)
        }),
        endpoint(M::GET, "/api/v1/agents", Auditor, || {
            web::get().to(agents::list)
        }),
        endpoint(M::GET, "/api/v1/agents/{client_id}", Auditor, || {
            web::get().to(agents::one)
        }),
        endpoint(
            M::PUT,
            "/api/v1/agents/{client_id}/policy-set",
            Admin,
            || web::put().to(policy::put_agent),
        ),
        endpoint(
            M::GET,
            "/api/v1/agents/{client_id}/policy-set",
            Auditor,
            || web::get().to(policy::get_agent),
        ),
        endpoint(M::PUT, "/api/v1/users/{id}/policy-set", Admin, || {
            web::put().to(policy::put_user)
        }),
        endpoint(M::GET, "/api/v1/users/{id}/policy-set", Auditor, || {
            web::get().to(policy::get_user)
        }),
        endpoint(M::PUT, "/api/v1/agents/{client_id}/identity", Admin, || {
            web::put().to(agents::identity)
        }),
        endpoint(M::POST, "/api/v1/agents/{client_id}/review", Admin, || {
            web::post().to(agents::review)
        }),
        endpoint(M::POST, "/api/v1/agents/{client_id}/secret", Admin, || {
            web::post().to(agents::rotate_secret)
        }),
        endpoint(M::POST, "/api/v1/agents/{client_id}/disable", Admin, || {
            web::post().to(agents::disable)
        }),
        endpoint(M::POST, "/api/v1/agents/{client_id}/enable", Admin, || {
            web::post().to(agents::enable)
        }),
        endpoint(M::PUT, "/api/v1/agents/{client_id}/policy", Admin, || {
            web::put().to(agents::policy)
        }),
        endpoint(
            M::POST,
            "/api/v1/agents/{client_id}/delegations",
            Admin,
            || web::post().to(delegations::grant),
        ),
        endpoint(
            M::GET,
            "/api/v1/agents/{client_id}/delegations",
            Auditor,
            || web::get().to(delegations::of_agent),
        ),
        endpoint(M::GET, "/api/v1/me/delegations", Auditor, || {
            web::get().to(delegations::mine)
        }),
        endpoint(M::POST, "/api/v1/me/tokens", Admin, || {
            web::post().to(user_tokens::issue)
        }),
        endpoint(M::DELETE, "/api/v1/delegations/{id}", Admin, || {
            web::delete().to(delegations::revoke)
        }),
        endpoint(M::POST, "/api/v1/servers", Admin, || {
            web::post().to(servers::create)
        }),
        endpoint(M::GET, "/api/v1/servers", Auditor, || {
            web::get().to(servers::list)
        }),
        endpoint(M::GET, "/api/v1/connections", Auditor, || {
            web::get().to(connections::list)
        }),
        endpoint(M::GET, "/api/v1/connections/callback", Admin, || {
            web::get().to(connections::callback)
        }),
        endpoint(
            M::GET,
            "/api/v1/connections/{server_id}/start",
            Auditor,
            || web::get().to(connections::start),
        ),
        endpoint(M::DELETE, "/api/v1/connections/{server_id}", Admin, || {
            web::delete().to(connections::delete)
        }),
        endpoint(
            M::POST,
            "/api/v1/agents/{client_id}/session-grants",
            Admin,
            || web::post().to(session_grants::create),
        ),
        endpoint(
            M::GET,
            "/api/v1/agents/{client_id}/session-grants",
            Auditor,
            || web::get().to(session_grants::list),
        ),
        endpoint(
            M::POST,
            "/api/v1/agents/{client_id}/session-grants/toggle",
            Admin,
            || web::post().to(session_grants::toggle),
        ),
        endpoint(M::DELETE, "/api/v1/session-grants/{id}", Admin, || {
            web::delete().to(session_grants::revoke)
        }),
        endpoint(M::GET, "/api/v1/approvals", Auditor, || {
            web::get().to(approvals::list)
        }),
        endpoint(M::POST, "/api/v1/approvals/{id}/approve", Admin, || {
            web::post().to(approvals::approve)
        }),
        endpoint(M::POST, "/api/v1/approvals/{id}/deny", Admin, || {
            web::post().to(approvals::deny)
        }),
        endpoint(M::POST, "/api/v1/operations", Admin, || {
            web::post().to(operations::record)
        }),
        endpoint(M::POST, "/api/v1/proxy/{server_id}/tools", Admin, || {
            web::post().to(gateway::call)
        }),
        endpoint(M::GET, "/api/v1/ledger/head", Auditor, || {
            web::get().to(ledger::head)
        }),
        endpoint(M::GET, "/api/v1/ledger/proofs/inclusion", Auditor, || {
            web::get().to(ledger::inclusion)
        }),
        endpoint(M::GET, "/api/v1/ledger/proofs/consistency", Auditor, || {
            web::get().to(ledger::consistency)
        }),
        endpoint(M::GET, "/api/v1/audit", Auditor, || {
            web::get().to(audit::list)
        }),
        endpoint(M::GET, "/api/v1/audit/export", Auditor, || {
            web::get().to(audit::export)
        }),
        endpoint(M::GET, "/api/v1/audit/delegations", Auditor, || {
            web::get().to(audit::delegations)
        }),
        endpoint(M::GET, "/api/v1/audit/tokens", Auditor, || {
            web::get().to(audit::tokens)
        }),
        endpoint(M::GET, "/api/v1/audit/agents/{client_id}", Auditor, || {
            web::get().to(audit::agent)
        }),
    ]
}

/// The pages a person's browser opens or posts to: their malformed queries and forms are
/// answered with a page, everything else's with JSON.
const PAGES: [&str; 5] = [
    "/login",
    "/logout",
    "/account",
    "/account/revoke",
    "/account/sessions/end",
];

/// Registers every endpoint; anything else is a JSON 404. Every extractor's refusal (a
/// body, a query string, a path segment, a form) goes through `error`, so none is
/// answered with actix's plain-text errors.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .app_data(
            web::JsonConfig::default()
                .limit(error::JSON_BODY_BYTES_MAX)
                .error_handler(error::json_error),
        )
        .app_data(web::QueryConfig::default().error_handler(error::query_error))
        .app_data(web::PathConfig::default().error_handler(error::path_error));
    // One resource per path: actix answers 405 from the first resource whose path matches,
    // so two methods on one path must be routes of the same resource.
    let mut paths: Vec<(Endpoint, Vec<Route>, auth::EndpointRoles)> = Vec::new();
    for endpoint in endpoints() {
        let (route, method) = ((endpoint.handler)(), endpoint.method.clone());
        match paths
            .iter_mut()
            .find(|(known, ..)| known.path == endpoint.path)
        {
            Some((_, routes, roles)) => {
                routes.push(route);
                roles.0.push((method, endpoint.role));
            }
            None => {
                let roles = auth::EndpointRoles(vec![(method, endpoint.role)]);
                paths.push((endpoint, vec![route], roles));
            }
        }
    }
    for (endpoint, routes, roles) in paths {
        let methods: Vec<Method> = roles.0.iter().map(|(method, _)| method.clone()).collect();
        let page = PAGES.contains(&endpoint.path);
        let mut resource = web::resource(endpoint.path)
            .app_data(web::PayloadConfig::new(endpoint.body_bytes_max))
            // What an admin credential needs here, by method: the extractors read it.
            .app_data(roles)
            .app_data(
                web::FormConfig::default()
                    .limit(endpoint.body_bytes_max)
                    .error_handler(match page {
                        true => error::page_form_error,
                        false => error::form_error,
                    }),
            )
            .default_service(web::to(method_not_allowed(endpoint.path, &methods)));
        if page {
            resource = resource
                .app_data(web::QueryConfig::default().error_handler(error::page_query_error));
        }
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

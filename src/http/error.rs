//! The management API's errors: every refusal maps to exactly one HTTP status and code,
//! here and nowhere else, as `{"error": "<code>", "detail": "<what to do>"}`.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::decide::Refusal;
use crate::ledger::SubmitError;

/// Body size accepted by the JSON endpoints.
pub const JSON_BODY_BYTES_MAX: usize = 64 * 1024;

/// A management API error.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed; the detail names the field and why.
    #[error("{detail}")]
    BadRequest {
        /// Machine-readable code.
        code: &'static str,
        /// Human sentence.
        detail: String,
    },
    /// No credential, or one writ does not know.
    #[error("{0}")]
    Unauthorized(String),
    /// As `Unauthorized`, from a protected resource: the challenge names where its RFC
    /// 9728 metadata is (`resource_metadata`, §5.1), so a client can find how to get a
    /// token for it.
    #[error("{detail}")]
    ResourceUnauthorized {
        /// Human sentence.
        detail: String,
        /// The URL of the resource's protected resource metadata.
        resource_metadata: String,
    },
    /// The caller is known but may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// An admin credential whose role does not reach what the endpoint needs.
    #[error("{0}")]
    InsufficientRole(String),
    /// Unknown id.
    #[error("{0}")]
    NotFound(String),
    /// Conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// The token has no operations left.
    #[error("the token's operation quota is used up")]
    QuotaExhausted,
    /// Body over the limit.
    #[error("the request body is larger than {JSON_BODY_BYTES_MAX} bytes")]
    PayloadTooLarge,
    /// The ledger takes no writes (stopped after a failed write, or stopping).
    #[error("{0}")]
    Unavailable(String),
    /// The write queue is full: retry in a second.
    #[error("{0}")]
    Overloaded(String),
    /// An upstream server (an MCP server the gateway forwards to) failed.
    #[error("{0}")]
    BadGateway(String),
    /// An upstream server did not answer in time.
    #[error("{0}")]
    GatewayTimeout(String),
    /// The path is served, the method is not; `allow` lists the methods that are.
    #[error("{detail}")]
    MethodNotAllowed {
        /// The `Allow` header's value.
        allow: String,
        /// Human sentence.
        detail: String,
    },
}

impl ApiError {
    /// A 400 for `field`, saying why.
    pub fn invalid(field: &str, why: impl std::fmt::Display) -> ApiError {
        ApiError::BadRequest {
            code: "invalid_request",
            detail: format!("{field}: {why}"),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } => code,
            ApiError::Unauthorized(_) | ApiError::ResourceUnauthorized { .. } => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::InsufficientRole(_) => "insufficient_role",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::QuotaExhausted => "quota_exhausted",
            ApiError::Unavailable(_) | ApiError::Overloaded(_) => "unavailable",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::BadGateway(_) => "upstream_failed",
            ApiError::GatewayTimeout(_) => "upstream_timeout",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) | ApiError::ResourceUnauthorized { .. } => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::Forbidden(_) | ApiError::InsufficientRole(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::QuotaExhausted => StatusCode::FORBIDDEN,
            ApiError::Unavailable(_) | ApiError::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::Unauthorized(_) => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"writ\""),
                ));
            }
            ApiError::ResourceUnauthorized {
                resource_metadata, ..
            } => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    format!("Bearer realm=\"writ\", resource_metadata=\"{resource_metadata}\""),
                ));
            }
            ApiError::Overloaded(_) => {
                response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
            }
            ApiError::MethodNotAllowed { allow, .. } => {
                response.insert_header((header::ALLOW, allow.as_str()));
            }
            _ => {}
        }
        response.json(json!({ "error": self.code(), "detail": self.to_string() }))
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> ApiError {
        let detail = refusal.to_string();
        match refusal {
            Refusal::UnknownUser(_)
            | Refusal::UnknownAgent(_)
            | Refusal::UnknownToken
            | Refusal::UnknownApiKey(_)
            | Refusal::UnknownDelegation(_)
            | Refusal::UnknownSessionGrant(_)
            | Refusal::UnknownServer(_)
            | Refusal::UnknownConnection(_)
            | Refusal::NoSessionGrant(..)
            | Refusal::UnknownApproval(_)
            | Refusal::UnknownAdminCredential(_) => ApiError::NotFound(detail),
            Refusal::NoCredentials(_) | Refusal::AdminCredentialNotLive(_) => {
                ApiError::Unauthorized(detail)
            }
            Refusal::InsufficientRole(..) => ApiError::InsufficientRole(detail),
            Refusal::NotKeyHolder(_)
            | Refusal::NotDelegator(_)
            | Refusal::NotAPerson
            | Refusal::NotPolicyOwner(_)
            | Refusal::NotApprover(_)
            | Refusal::NotAdmin
            | Refusal::ApprovalDenied(_) => ApiError::Forbidden(detail),
            Refusal::UserExists(_)
            | Refusal::EmailTaken
            | Refusal::EmailLooksTaken(_)
            | Refusal::UserErased(_)
            | Refusal::AgentExists(_)
            | Refusal::UserAlready(..)
            | Refusal::AgentAlready(..)
            | Refusal::DuplicateKey(_)
            | Refusal::KeyRotatedMeanwhile(_)
            | Refusal::AdminTokenExists
            | Refusal::NotFirstAdminToken
            | Refusal::AdminCredentialNameTaken(_)
            | Refusal::TooManyAdminCredentials(_)
            | Refusal::LastAdminCredential(_)
            | Refusal::DuplicateToken(_)
            | Refusal::UserDeactivated(_)
            | Refusal::ApiKeyExists(_)
            | Refusal::ApiKeyRevoked(_)
            | Refusal::DelegationExists(_)
            | Refusal::DelegationAlreadyRevoked(_)
            | Refusal::TooManyApiKeys(..)
            | Refusal::TooManyDelegations(..)
            | Refusal::SessionGrantExists(_)
            | Refusal::ServerExists(_)
            | Refusal::ConnectionMovedOn(_)
            | Refusal::RevocationSettled(..)
            | Refusal::SessionGrantHeld(_)
            | Refusal::SessionGrantRevoked(_)
            | Refusal::TooManySessionGrants(..)
            | Refusal::NoConnection(_)
            | Refusal::ApprovalExists(_)
            | Refusal::NoApprover(_)
            | Refusal::ApprovalExpired(_)
            | Refusal::ApprovalSettled(..)
            | Refusal::ApprovalMismatch(_)
            | Refusal::ApprovalPending(_)
            | Refusal::DuplicateCode
            | Refusal::AgentHoldsNoSecret(_) => ApiError::Conflict(detail),
            // Answered by the token endpoint as `invalid_grant`; here only for completeness.
            Refusal::UnknownCode
            | Refusal::CodeExpired
            | Refusal::UnknownRefreshToken
            | Refusal::RefreshFamilyRevoked
            | Refusal::RefreshExpired
            | Refusal::ScopeBeyondRefresh(_) => ApiError::BadRequest {
                code: "invalid_grant",
                detail,
            },
            // Answered by the token endpoint as `invalid_client`.
            Refusal::AssertionReplayed(_) => ApiError::BadRequest {
                code: "invalid_client",
                detail,
            },
            Refusal::NotTokenHolder(_) => ApiError::BadRequest {
                code: "unauthorized_client",
                detail,
            },
            Refusal::UnknownOwner(_)
            | Refusal::AgentDisabled(_)
            | Refusal::AgentExpired(..)
            | Refusal::UserInactive(_)
            | Refusal::ParentInactive(_)
            | Refusal::TooDeep { .. }
            | Refusal::ExceedsParent(..)
            | Refusal::LaxerThanAgent(..)
            | Refusal::WrongApprover(..)
            | Refusal::ChainNotHeld(_)
            | Refusal::BadLifetime
            | Refusal::DelegationInactive(_)
            | Refusal::ScopeNotDelegated(..)
            | Refusal::OutlivesDelegation(..)
            | Refusal::OutlivesAgent(..)
            | Refusal::ScopesNotHeld(..)
            | Refusal::NoScopes
            | Refusal::NotInFuture(_)
            | Refusal::ServerNeedsNoConnection(_)
            | Refusal::RewrapMismatch(_)
            | Refusal::ServerHoldsNoSecret(_)
            | Refusal::TokenInactive
            | Refusal::QuotaExhausted
            | Refusal::EventTooLarge(..)
            | Refusal::TooLargeToAppend(..)
            | Refusal::BadSigningKey(_)
            | Refusal::BadCheckpointKey(_)
            | Refusal::BadAgentCredentials(_)
            | Refusal::BadAdminCredentialName(_)
            | Refusal::Unencodable(_) => ApiError::BadRequest {
                code: "invalid_request",
                detail,
            },
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(err: SubmitError) -> ApiError {
        match err {
            SubmitError::Refused(refusal) => refusal.into(),
            SubmitError::Unavailable(why) => ApiError::Unavailable(why),
            overloaded @ SubmitError::Overloaded(_) => ApiError::Overloaded(overloaded.to_string()),
        }
    }
}

/// A JSON body that may be empty (then `T::default()`), read up to
/// `JSON_BODY_BYTES_MAX` bytes: over it is a JSON 413, not actix's plain-text one.
pub async fn optional_json<T: serde::de::DeserializeOwned + Default>(
    payload: actix_web::web::Payload,
) -> Result<T, ApiError> {
    let body = match payload.to_bytes_limited(JSON_BODY_BYTES_MAX).await {
        Ok(Ok(body)) => body,
        Ok(Err(err)) => return Err(ApiError::invalid("body", err)),
        Err(_) => return Err(ApiError::PayloadTooLarge),
    };
    if body.is_empty() {
        return Ok(T::default());
    }
    serde_json::from_slice(&body).map_err(|err| ApiError::invalid("body", err))
}

/// Turns actix's JSON extraction errors into precise 400s and 413s.
pub fn json_error(
    err: actix_web::error::JsonPayloadError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as J;
    let api = match &err {
        J::OverflowKnownLength { .. } | J::Overflow { .. } => ApiError::PayloadTooLarge,
        J::ContentType => ApiError::BadRequest {
            code: "invalid_request",
            detail: "send the body as JSON with Content-Type: application/json".into(),
        },
        J::Deserialize(inner) => ApiError::BadRequest {
            code: "invalid_request",
            detail: format!("body: {inner}"),
        },
        other => ApiError::BadRequest {
            code: "invalid_request",
            detail: format!("body: {other}"),
        },
    };
    api.into()
}

/// Turns actix's query-string errors (a parameter unknown to the endpoint, one given
/// twice, a value of the wrong type) into the JSON 400 every endpoint answers, instead of
/// actix's plain-text one. Registered once for the whole app in `routes`.
pub fn query_error(
    err: actix_web::error::QueryPayloadError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    let inner = query_cause(&err);
    ApiError::invalid(
        "query",
        format!("{inner}; give each parameter the endpoint takes at most once, and no other"),
    )
    .into()
}

/// What serde said of a query string, without actix's "Query deserialize error" prefix.
fn query_cause(err: &actix_web::error::QueryPayloadError) -> String {
    use actix_web::error::QueryPayloadError as Q;
    match err {
        Q::Deserialize(inner) => inner.to_string(),
        other => other.to_string(),
    }
}

/// Turns actix's path-segment errors into the JSON 400, as `query_error` does.
pub fn path_error(
    err: actix_web::error::PathError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    use actix_web::error::PathError as P;
    let inner = match &err {
        P::Deserialize(inner) => inner.to_string(),
        other => other.to_string(),
    };
    ApiError::invalid("path", inner).into()
}

/// Turns actix's form errors into JSON 400s and 413s, as `json_error` does for JSON
/// bodies (the pages have their own, `page_form_error`).
pub fn form_error(
    err: actix_web::error::UrlencodedError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    use actix_web::error::UrlencodedError as U;
    let api = match &err {
        U::Overflow { .. } => ApiError::PayloadTooLarge,
        U::ContentType => ApiError::invalid(
            "body",
            "send the body as a form with Content-Type: application/x-www-form-urlencoded",
        ),
        other => ApiError::invalid("body", other),
    };
    api.into()
}

/// The pages' form errors (`POST /login`, `/logout`, `/account/revoke`: a person's browser
/// posts them) as a page saying what was wrong, instead of actix's plain-text one: 415
/// when the body is not a form, 413 over the limit, 400 for a field missing, repeated or
/// not URL-encoded.
pub fn page_form_error(
    err: actix_web::error::UrlencodedError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    use actix_web::error::UrlencodedError as U;
    let (status, why) = match &err {
        U::ContentType => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "The page's form is sent as application/x-www-form-urlencoded; this request's body is not."
                .to_owned(),
        ),
        U::Overflow { limit, .. } => (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("The form is larger than {limit} bytes."),
        ),
        U::Parse(inner) => (
            StatusCode::BAD_REQUEST,
            format!("The form is not the page's: {inner}."),
        ),
        other => (
            StatusCode::BAD_REQUEST,
            format!("The form could not be read: {other}"),
        ),
    };
    page_error(status, &why)
}

/// The pages' query errors (`GET /login?...`) as a page, as `page_form_error` does.
pub fn page_query_error(
    err: actix_web::error::QueryPayloadError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    let inner = query_cause(&err);
    page_error(
        StatusCode::BAD_REQUEST,
        &format!("The link to this page is not one writ made: {inner}."),
    )
}

/// An error page, with a way back to where a person can start again.
fn page_error(status: StatusCode, why: &str) -> actix_web::Error {
    use maud::html;
    let markup = super::signin::page(
        "writ could not read this request",
        html! {
            p.error role="alert" { (why) }
            p { "Nothing was changed. " a href="/account" { "Go to your account page" } " and try again." }
        },
    );
    let response = super::signin::html_response(status, markup);
    actix_web::error::InternalError::from_response(why.to_owned(), response).into()
}

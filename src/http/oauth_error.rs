//! OAuth errors as RFC 6749 §5.2 has them: `{"error", "error_description"}` with 400,
//! 401 and `WWW-Authenticate` when client authentication failed, or 403 when the grant
//! is well formed but not allowed (no delegation in force). Client registration (RFC
//! 7591 §3.2.2) answers in the same shape, with its own codes.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError, web};
use serde_json::json;

/// An OAuth endpoint's refusal.
#[derive(Debug, thiserror::Error)]
#[error("{error}: {description}")]
pub struct OAuthError {
    /// The RFC 6749 error code.
    pub error: &'static str,
    /// What was wrong, for a person.
    pub description: String,
    /// For 429 and 503: seconds the client should wait (`Retry-After`).
    pub retry_after_seconds: Option<u64>,
    /// The HTTP status it is answered with.
    pub status: StatusCode,
}

impl OAuthError {
    /// `invalid_request`: malformed, missing or repeated parameters.
    pub fn invalid_request(description: impl Into<String>) -> OAuthError {
        OAuthError {
            error: "invalid_request",
            description: description.into(),
            status: StatusCode::BAD_REQUEST,
            retry_after_seconds: None,
        }
    }

    /// `invalid_client`: client authentication failed (401).
    pub fn invalid_client(description: impl Into<String>) -> OAuthError {
        OAuthError {
            error: "invalid_client",
            description: description.into(),
            status: StatusCode::UNAUTHORIZED,
            retry_after_seconds: None,
        }
    }

    /// `invalid_scope`: a scope the client may not have.
    pub fn invalid_scope(description: impl Into<String>) -> OAuthError {
        OAuthError {
            error: "invalid_scope",
            description: description.into(),
            status: StatusCode::BAD_REQUEST,
            retry_after_seconds: None,
        }
    }

    /// `invalid_target` (RFC 8707): an audience the client may not name.
    pub fn invalid_target(description: impl Into<String>) -> OAuthError {
        OAuthError {
            error: "invalid_target",
            description: description.into(),
            status: StatusCode::BAD_REQUEST,
            retry_after_seconds: None,
        }
    }

    /// `invalid_grant` (400): the grant's own parameters are malformed (e.g. a user id
    /// that is not a UUID).
    pub fn invalid_grant(description: impl Into<String>) -> OAuthError {
        OAuthError {
            error: "invalid_grant",
            description: description.into(),
            status: StatusCode::BAD_REQUEST,
            retry_after_seconds: None,
        }
    }

    /// `invalid_grant` with 403: a well-formed grant that is not allowed, such as acting
    /// for a person who has no delegation in force to this agent.
    pub fn grant_forbidden(description: impl Into<String>) -> OAuthError {
        OAuthError {
            status: StatusCode::FORBIDDEN,
            ..OAuthError::invalid_grant(description)
        }
    }

    /// `unauthorized_client`: this client may not use this grant.
    pub fn unauthorized_client(description: impl Into<String>) -> OAuthError {
        OAuthError {
            error: "unauthorized_client",
            description: description.into(),
            status: StatusCode::BAD_REQUEST,
            retry_after_seconds: None,
        }
    }

    /// `unsupported_grant_type`.
    pub fn unsupported_grant_type(description: impl Into<String>) -> OAuthError {
        OAuthError {
            error: "unsupported_grant_type",
            description: description.into(),
            status: StatusCode::BAD_REQUEST,
            retry_after_seconds: None,
        }
    }

    /// `invalid_client_metadata` (RFC 7591 §3.2.2): a registration's metadata is
    /// malformed, inconsistent or asks for what writ does not do.
    pub fn invalid_client_metadata(description: impl Into<String>) -> OAuthError {
        OAuthError {
            error: "invalid_client_metadata",
            description: description.into(),
            status: StatusCode::BAD_REQUEST,
            retry_after_seconds: None,
        }
    }

    /// `invalid_redirect_uri` (RFC 7591 §3.2.2): a registration's redirect URI is not one
    /// writ accepts.
    pub fn invalid_redirect_uri(description: impl Into<String>) -> OAuthError {
        OAuthError {
            error: "invalid_redirect_uri",
            description: description.into(),
            status: StatusCode::BAD_REQUEST,
            retry_after_seconds: None,
        }
    }

    /// `invalid_token` (401, RFC 6750 §3.1): the bearer token a registration needs (its
    /// initial access token, RFC 7591 §3) is missing or not one writ accepts.
    pub fn invalid_token(description: impl Into<String>) -> OAuthError {
        OAuthError {
            error: "invalid_token",
            description: description.into(),
            status: StatusCode::UNAUTHORIZED,
            retry_after_seconds: None,
        }
    }

    /// `insufficient_role` (403): an admin credential as the initial access token whose
    /// role (`auditor`) only reads, where registering writes.
    pub fn insufficient_role(description: impl Into<String>) -> OAuthError {
        OAuthError {
            error: "insufficient_role",
            description: description.into(),
            status: StatusCode::FORBIDDEN,
            retry_after_seconds: None,
        }
    }

    /// `access_denied` (403): the server does not do this at all (registration is off).
    pub fn access_denied(description: impl Into<String>) -> OAuthError {
        OAuthError {
            error: "access_denied",
            description: description.into(),
            status: StatusCode::FORBIDDEN,
            retry_after_seconds: None,
        }
    }

    /// `server_error` (500): writ's own fault, never the client's.
    pub fn server_error(description: impl Into<String>) -> OAuthError {
        OAuthError {
            error: "server_error",
            description: description.into(),
            status: StatusCode::INTERNAL_SERVER_ERROR,
            retry_after_seconds: None,
        }
    }

    /// `temporarily_unavailable` (503): the ledger takes no writes (it stopped after a
    /// failed write, or the server is stopping); retrying soon will not help.
    pub fn unavailable(description: impl Into<String>) -> OAuthError {
        OAuthError {
            error: "temporarily_unavailable",
            description: description.into(),
            status: StatusCode::SERVICE_UNAVAILABLE,
            retry_after_seconds: None,
        }
    }

    /// `temporarily_unavailable` (503) with `Retry-After: 1`: the write queue is full.
    pub fn overloaded(description: impl Into<String>) -> OAuthError {
        OAuthError {
            retry_after_seconds: Some(1),
            ..OAuthError::unavailable(description)
        }
    }

    /// `invalid_request` with 413: the body is larger than the endpoint takes.
    pub fn body_too_large(bytes_max: usize) -> OAuthError {
        OAuthError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            ..OAuthError::invalid_request(format!(
                "the request body is larger than {bytes_max} bytes"
            ))
        }
    }

    /// `rate_limited` (429): this client's request budget is spent for now.
    pub fn rate_limited(retry_after_seconds: u64) -> OAuthError {
        OAuthError {
            error: "rate_limited",
            description: format!(
                "too many token requests from this client; retry in {retry_after_seconds} s (the agent's policy can raise its rate)"
            ),
            status: StatusCode::TOO_MANY_REQUESTS,
            retry_after_seconds: Some(retry_after_seconds),
        }
    }
}

impl ResponseError for OAuthError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        match self.error {
            "invalid_client" => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"writ\""),
                ));
            }
            "invalid_token" => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"writ\", error=\"invalid_token\""),
                ));
            }
            _ => {}
        }
        if let Some(seconds) = self.retry_after_seconds {
            response.insert_header((header::RETRY_AFTER, seconds));
        }
        response.json(json!({ "error": self.error, "error_description": self.description }))
    }
}

/// Form parameters, each at most once (RFC 6749 §3.2: "MUST NOT be included more than once").
pub fn parse_form(body: &[u8]) -> Result<std::collections::BTreeMap<String, String>, OAuthError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).map_err(|err| {
        OAuthError::invalid_request(format!(
            "the body is not application/x-www-form-urlencoded: {err}"
        ))
    })?;
    let mut form = std::collections::BTreeMap::new();
    for (name, value) in pairs {
        if form.contains_key(&name) {
            return Err(OAuthError::invalid_request(format!(
                "`{name}` is given more than once"
            )));
        }
        form.insert(name, value);
    }
    Ok(form)
}

/// Reads an OAuth request's body, refusing more than `FORM_BODY_BYTES_MAX` bytes with a
/// 413 in RFC 6749's shape (actix's own limit would answer in plain text).
pub async fn read_form_body(payload: web::Payload) -> Result<web::Bytes, OAuthError> {
    let bytes_max = super::token::FORM_BODY_BYTES_MAX;
    match payload.to_bytes_limited(bytes_max).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(err)) => Err(OAuthError::invalid_request(format!(
            "the request body could not be read: {err}"
        ))),
        Err(_) => Err(OAuthError::body_too_large(bytes_max)),
    }
}

/// An OAuth request's form and the client credentials it presents: the content type
/// checked, the parameters parsed (each at most once), the credentials read from HTTP
/// Basic or the form. Authentication itself is `oauth::authenticate`.
pub fn client_form(
    request: &actix_web::HttpRequest,
    body: &[u8],
) -> Result<
    (
        std::collections::BTreeMap<String, String>,
        crate::oauth::Presented,
    ),
    OAuthError,
> {
    let header_text = |name| {
        request
            .headers()
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if !header_text(header::CONTENT_TYPE)
        .unwrap_or("")
        .starts_with("application/x-www-form-urlencoded")
    {
        return Err(OAuthError::invalid_request(
            "send the parameters as application/x-www-form-urlencoded",
        ));
    }
    let form = parse_form(body)?;
    let presented = crate::oauth::presented_credentials(header_text(header::AUTHORIZATION), &form)?;
    Ok((form, presented))
}

/// A 200 that caches may not keep (RFC 6749 §5.1 for tokens; RFC 7662 answers likewise).
pub fn no_store() -> actix_web::HttpResponseBuilder {
    let mut response = HttpResponse::Ok();
    response.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
    response.insert_header((header::PRAGMA, HeaderValue::from_static("no-cache")));
    response
}

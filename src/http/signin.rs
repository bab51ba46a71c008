//! People signing in to writ's own pages: passwords (set by an admin or the person,
//! `PUT /api/v1/users/{id}/password`, kept in the ledger only as argon2id hashes), the
//! sign-in page (`GET`/`POST /login`), and the session cookie the authorization and
//! consent pages read.
//!
//! The session cookie is `<user id>.<generation>.<session id>.<expiry>.<MAC>`, the MAC a
//! BLAKE3 keyed hash under a key derived from the deployment's secret key, so any node
//! reads it. Every read checks it against the ledger: the person's session generation
//! (moved on by "sign out everywhere" and by every password change) and the sessions they
//! ended one by one (a sign-out), so an ended session opens nothing again, on any node,
//! even replayed. It is `HttpOnly`, `SameSite=Lax` (a cross-site form post carries no
//! session), and `Secure` when the issuer is https.
//!
//! Sign-in goes through the throttle and the hashing budget of `throttle`.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use writ_schemas::{Timestamp, UserId};

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use super::throttle::{Crossed, HashingBusy, client_address};
use crate::decide::Command;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "writ_session";
/// How long a sign-in lasts.
pub const SESSION_SECONDS: i64 = 8 * 3600;
/// Shortest password accepted (NIST SP 800-63B §3.1.1.2).
pub const PASSWORD_CHARS_MIN: usize = 8;
/// Longest password accepted (argon2 reads all of it).
pub const PASSWORD_BYTES_MAX: usize = 1024;

// v2: the cookie names the session's generation and id (v1 cookies are refused).
const SESSION_CONTEXT: &str = "writ session v2";

/// A keyed BLAKE3 MAC of `payload` under the deployment key derived for `context`, as
/// unpadded base64url.
pub fn mac(state: &AppState, context: &str, payload: &[u8]) -> String {
    let key = state.secrets.derive_key(context);
    URL_SAFE_NO_PAD.encode(blake3::keyed_hash(&key, payload).as_bytes())
}

/// Whether `tag` is `payload`'s MAC for `context` (compared in constant time).
pub fn mac_matches(state: &AppState, context: &str, payload: &[u8], tag: &str) -> bool {
    let key = state.secrets.derive_key(context);
    let expected = blake3::keyed_hash(&key, payload);
    let Ok(given) = URL_SAFE_NO_PAD.decode(tag) else {
        return false;
    };
    <[u8; 32]>::try_from(given.as_slice()).is_ok_and(|given| blake3::Hash::from(given) == expected)
}

/// A signed-in session, as its cookie names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The person.
    pub user_id: UserId,
    /// The session's random id: what a sign-out ends, and what the pages' form tokens
    /// are bound to.
    pub session_id: String,
    /// When the cookie lapses by itself.
    pub expires_at: Timestamp,
}

/// The session the request carries, if its cookie is writ's, unexpired, of an active
/// person, of their current session generation, and not signed out.
pub fn session(state: &AppState, request: &HttpRequest, now: Timestamp) -> Option<Session> {
    let cookie = request.cookie(SESSION_COOKIE)?;
    let mut parts = cookie.value().rsplitn(5, '.');
    let (tag, expires, session_id, generation, user) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    let payload = format!("{user}.{generation}.{session_id}.{expires}");
    if !mac_matches(state, SESSION_CONTEXT, payload.as_bytes(), tag) {
        return None;
    }
    let expires_at =
        Timestamp::from_unix_micros(expires.parse::<i64>().ok()?.checked_mul(1_000_000)?)?;
    if now >= expires_at {
        return None;
    }
    let generation = generation.parse::<u64>().ok()?;
    let user_id = UserId::from(user);
    let current = state.ledger.read(|s| {
        s.user(&user_id).is_some_and(|u| {
            u.active
                && u.session_generation == generation
                && !u.sessions_ended.contains_key(session_id)
        })
    });
    current.then(|| Session {
        user_id,
        session_id: session_id.to_owned(),
        expires_at,
    })
}

/// A new session of `user_id` at their current generation:
/// `<user id>.<generation>.<session id>.<expiry>.<MAC>`.
fn session_cookie(state: &AppState, user_id: &UserId, now: Timestamp) -> Cookie<'static> {
    let generation = state
        .ledger
        .read(|s| s.user(user_id).map_or(0, |u| u.session_generation));
    let mut id = [0u8; 16];
    rand::fill(&mut id);
    let session_id = URL_SAFE_NO_PAD.encode(id);
    let expires = now.unix_seconds().saturating_add(SESSION_SECONDS);
    let payload = format!("{user_id}.{generation}.{session_id}.{expires}");
    let tag = mac(state, SESSION_CONTEXT, payload.as_bytes());
    Cookie::build(SESSION_COOKIE, format!("{payload}.{tag}"))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.issuer.starts_with("https://"))
        .max_age(actix_web::cookie::time::Duration::seconds(SESSION_SECONDS))
        .finish()
}

/// A cookie that removes the session cookie.
pub fn session_removal() -> Cookie<'static> {
    let mut gone = Cookie::build(SESSION_COOKIE, "").path("/").finish();
    gone.make_removal();
    gone
}

/// The only places a sign-in returns to: the authorization endpoint (with its query) and
/// the account page. Anything else, an absolute URL above all, is an open redirect.
pub fn safe_return(path: &str) -> Option<&str> {
    let ours = path == "/account"
        || path
            .strip_prefix("/oauth/authorize?")
            .is_some_and(|query| !query.contains(['\r', '\n']));
    ours.then_some(path)
}

/// A page of writ's: one layout for sign-in, consent and errors.
pub fn page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · writ" }
                style { (maud::PreEscaped(STYLE)) }
            }
            body {
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:36rem;margin:2rem auto;padding:0 1rem;line-height:1.5;color:#111}\
label{display:block;margin:.75rem 0 .25rem}input[type=email],input[type=password]{width:100%;padding:.5rem;font-size:1rem}\
button{font-size:1rem;padding:.5rem 1rem;margin:.75rem .5rem 0 0}.error{color:#a00;font-weight:600}\
fieldset{border:1px solid #ccc;padding:.5rem 1rem}table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.25rem .5rem;border-bottom:1px solid #ddd}";

/// An HTML answer that no cache keeps and no frame shows.
pub fn html_response(status: actix_web::http::StatusCode, markup: Markup) -> HttpResponse {
    html_response_posting_to(status, markup, None)
}

/// An HTML answer whose form's answer redirects on to `redirect_uri` (the consent page's,
/// to the client). A browser holds every hop of a form's redirects to `form-action`, so
/// without the client's origin there it stops at writ and the client never gets its code.
pub fn html_response_posting_to(
    status: actix_web::http::StatusCode,
    markup: Markup,
    redirect_uri: Option<&str>,
) -> HttpResponse {
    let also = redirect_uri
        .and_then(form_action_source)
        .map(|source| format!(" {source}"))
        .unwrap_or_default();
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("x-frame-options", "DENY"))
        .insert_header((
            "content-security-policy",
            format!(
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'{also}; frame-ancestors 'none'"
            ),
        ))
        .body(markup.into_string())
}

/// The CSP source naming where `redirect_uri` goes: its origin for http(s), its scheme for
/// an app's own (`com.example.app:`). Built from the parsed URL, never the raw text, so no
/// registered URI can add a directive.
fn form_action_source(redirect_uri: &str) -> Option<String> {
    let url = url::Url::parse(redirect_uri).ok()?;
    match url.origin() {
        origin @ url::Origin::Tuple(..) => Some(origin.ascii_serialization()),
        url::Origin::Opaque(_) => Some(format!("{}:", url.scheme())),
    }
}

fn login_page(return_to: &str, error: Option<&str>) -> Markup {
    page(
        "Sign in",
        html! {
            @if let Some(error) = error {
                p.error role="alert" { (error) }
            }
            form method="post" action="/login" {
                input type="hidden" name="return_to" value=(return_to);
                label for="email" { "Email" }
                input #email type="email" name="email" autocomplete="username" required;
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password" required;
                button type="submit" { "Sign in" }
            }
        },
    )
}

#[derive(Debug, Deserialize)]
pub(super) struct LoginQuery {
    return_to: Option<String>,
}

/// The sign-in page, which may send the browser on to a client (see
/// `authorize::redirect_after_sign_in`).
fn login_response(
    state: &AppState,
    status: actix_web::http::StatusCode,
    return_to: &str,
    error: Option<&str>,
) -> HttpResponse {
    let now = state.clock.now();
    let onward = state
        .ledger
        .read(|s| super::authorize::redirect_after_sign_in(s, return_to, now));
    html_response_posting_to(status, login_page(return_to, error), onward.as_deref())
}

/// The sign-in page.
pub(super) async fn login_form(
    state: web::Data<AppState>,
    query: web::Query<LoginQuery>,
) -> HttpResponse {
    let return_to = query
        .return_to
        .as_deref()
        .and_then(safe_return)
        .unwrap_or("/account");
    login_response(&state, actix_web::http::StatusCode::OK, return_to, None)
}

#[derive(Debug, Deserialize)]
pub(super) struct Login {
    email: String,
    password: String,
    #[serde(default)]
    return_to: Option<String>,
}

/// A stand-in hash verified when no person has the email (or they have no password), so
/// a wrong email takes as long as a wrong password. Made on first use, on the blocking
/// pool, under the hashing budget like any other hash.
static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| hash_password(&crate::secrets::new_secret("")).unwrap_or_default());

fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
}

/// The argon2 memory, in KiB, that verifying against `hash` takes (the PHC string's `m`).
fn memory_kib_of(hash: &str) -> u32 {
    PasswordHash::new(hash)
        .ok()
        .and_then(|parsed| argon2::Params::try_from(&parsed).ok())
        .map_or(argon2::Params::DEFAULT_M_COST, |params| params.m_cost())
}

fn verify_password(password: &str, hash: Option<&str>) -> bool {
    let hash = hash.unwrap_or(DUMMY_HASH.as_str());
    PasswordHash::new(hash).is_ok_and(|parsed| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// The sign-in page again with `status`, `Retry-After` and a sentence saying when to try.
fn refused_for_now(
    state: &AppState,
    status: actix_web::http::StatusCode,
    retry_after_seconds: u64,
    return_to: &str,
    why: &str,
) -> HttpResponse {
    let mut response = login_response(state, status, return_to, Some(why));
    if let Ok(value) = header::HeaderValue::from_str(&retry_after_seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

fn throttled(state: &AppState, wait: u64, return_to: &str) -> HttpResponse {
    let why = format!(
        "Too many failed sign-ins for this account from here, or from your address. Wait {wait} seconds, then try again."
    );
    refused_for_now(state, StatusCode::TOO_MANY_REQUESTS, wait, return_to, &why)
}

/// Checks the email and password; on success sets the session and returns to where the
/// person was going. Throttled attempts are answered 429 before any hashing, and hashing
/// beyond the memory budget 503 (see `throttle`).
pub(super) async fn login(
    state: web::Data<AppState>,
    request: HttpRequest,
    form: web::Form<Login>,
) -> HttpResponse {
    let Login {
        email,
        password,
        return_to,
    } = form.into_inner();
    let return_to = return_to
        .as_deref()
        .and_then(safe_return)
        .unwrap_or("/account")
        .to_owned();
    let now = state.clock.now();
    let account = state.people.email_hash(email.trim());
    let address = client_address(&request, state.trust_forwarded_for);
    if let Err(wait) = state.throttle.check(account, address, now) {
        return throttled(&state, wait, &return_to);
    }
    let found = state.ledger.read(|s| {
        state
            .people
            .user_by_email(s, email.trim())
            .filter(|u| u.active)
            .map(|u| (u.user_id.clone(), u.password_hash.clone()))
    });
    let (user_id, hash) = match found {
        Some((user_id, hash)) => (Some(user_id), hash),
        None => (None, None),
    };
    let memory_kib = hash
        .as_deref()
        .map_or(argon2::Params::DEFAULT_M_COST, memory_kib_of);
    let busy = |busy: HashingBusy| {
        let why = format!("{busy}.");
        refused_for_now(&state, StatusCode::SERVICE_UNAVAILABLE, 1, &return_to, &why)
    };
    let room = match state.hashing.room(memory_kib).await {
        Ok(room) => room,
        Err(err) => return busy(err),
    };
    // Asked again with room in hand: guesses sent together all passed the first check
    // before any of them failed, and those that waited must not run once they did.
    if let Err(wait) = state.throttle.check(account, address, state.clock.now()) {
        return throttled(&state, wait, &return_to);
    }
    let verified = match room
        .run(move || verify_password(&password, hash.as_deref()))
        .await
    {
        Ok(verified) => verified,
        Err(err) => return busy(err),
    };
    let now = state.clock.now();
    match user_id.clone().filter(|_| verified) {
        Some(user_id) => {
            state.throttle.succeeded(account, address);
            HttpResponse::SeeOther()
                .cookie(session_cookie(&state, &user_id, now))
                .insert_header((header::LOCATION, return_to))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish()
        }
        None => {
            if let (Some(crossed), Some(user_id)) =
                (state.throttle.failed(account, address, now), user_id)
            {
                record_failures(&state, user_id, crossed).await;
            }
            login_response(
                &state,
                StatusCode::UNAUTHORIZED,
                &return_to,
                Some(
                    "The email or the password is wrong, or no password is set for this person yet.",
                ),
            )
        }
    }
}

/// Records a run of failures on the person. The guess is answered 401 either way: a
/// ledger that takes no writes must not turn a wrong password into a different answer.
async fn record_failures(state: &AppState, user_id: UserId, crossed: Crossed) {
    let command = Command::RecordSignInFailures {
        user_id,
        failures: crossed.failures,
        first_failure_at: crossed.first_failure_at,
    };
    if let Err(err) = state.ledger.submit(command).await {
        tracing::warn!(%err, "failed sign-ins could not be recorded");
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewPassword {
    password: String,
}

/// Sets a person's password: an admin, or the person themselves.
pub(super) async fn set_password(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    body: web::Json<NewPassword>,
) -> Result<HttpResponse, ApiError> {
    let user_id = UserId(id.into_inner());
    let password = body.into_inner().password;
    if password.chars().count() < PASSWORD_CHARS_MIN || password.len() > PASSWORD_BYTES_MAX {
        return Err(ApiError::invalid(
            "password",
            format!("{PASSWORD_CHARS_MIN} characters at least, {PASSWORD_BYTES_MAX} bytes at most"),
        ));
    }
    let password_hash = state
        .hashing
        .run(argon2::Params::DEFAULT_M_COST, move || {
            hash_password(&password)
        })
        .await
        .map_err(|busy| ApiError::Overloaded(busy.to_string()))?
        .map_err(|err| ApiError::Unavailable(format!("hashing failed: {err}")))?;
    state
        .ledger
        .submit(Command::SetPassword {
            user_id,
            password_hash,
            by: caller.actor(),
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::form_action_source;

    #[test]
    fn the_consent_form_may_redirect_to_the_client_s_origin_or_app_scheme_only() {
        assert_eq!(
            form_action_source("http://127.0.0.1:9/callback?x=1").as_deref(),
            Some("http://127.0.0.1:9")
        );
        assert_eq!(
            form_action_source("https://app.example/cb").as_deref(),
            Some("https://app.example")
        );
        assert_eq!(
            form_action_source("com.example.app:/cb").as_deref(),
            Some("com.example.app:")
        );
        assert_eq!(form_action_source("not a url; script-src *"), None);
    }
}

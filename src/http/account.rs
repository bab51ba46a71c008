//! `/account`: the signed-in person's grants. Every delegation they gave (a consent on the
//! authorization page is one), per agent, with its scopes, when it was given and last
//! used; revoking one (`POST /account/revoke`) ends it and every access token issued
//! under it at once, and its refresh tokens are refused from then on. `POST /logout` ends
//! the session (recorded in the ledger, so its cookie opens nothing again), and
//! `POST /account/sessions/end` ends every session of the person ("sign out everywhere").
//!
//! Forms carry a token bound to the session (a MAC of the person and the session id under
//! the deployment key) besides the `SameSite=Lax` session, so no other site can post them
//! and a form shown in an ended session is refused.

use std::collections::BTreeMap;

use actix_web::ResponseError as _;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use maud::html;
use serde::Deserialize;
use writ_schemas::{Actor, DelegationId, Timestamp};

use super::AppState;
use super::error::ApiError;
use super::signin::{Session, html_response, mac, mac_matches, page, session, session_removal};
use crate::decide::Command;
use crate::people::Datum;

// v2: bound to the session, not only the person.
const FORM_CONTEXT: &str = "writ account form v2";

fn to_sign_in() -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/login?return_to=/account"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

fn form_payload(session: &Session) -> String {
    format!("{}.{}", session.user_id, session.session_id)
}

fn form_token(state: &AppState, session: &Session) -> String {
    mac(state, FORM_CONTEXT, form_payload(session).as_bytes())
}

/// The session, if the request carries one and `form_token` was shown in it.
fn form_session(
    state: &AppState,
    request: &HttpRequest,
    form_token: &str,
    now: Timestamp,
) -> Option<Session> {
    session(state, request, now).filter(|session| {
        mac_matches(
            state,
            FORM_CONTEXT,
            form_payload(session).as_bytes(),
            form_token,
        )
    })
}

fn not_our_form(what: &str) -> HttpResponse {
    html_response(
        StatusCode::FORBIDDEN,
        page(
            "This form is not one writ showed you",
            html! { p.error role="alert" { (what) " Open your account page and try again." } },
        ),
    )
}

/// Clears the cookie and sends the browser to sign in.
fn signed_out() -> HttpResponse {
    HttpResponse::SeeOther()
        .cookie(session_removal())
        .insert_header((header::LOCATION, "/login"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// A write the ledger refused or could not take, as a page with the API's status for it.
fn could_not(title: &str, err: crate::ledger::SubmitError) -> HttpResponse {
    let err = ApiError::from(err);
    html_response(
        err.status_code(),
        page(
            title,
            html! { p.error role="alert" { (err.to_string()) } p { a href="/account" { "Back to your grants" } } },
        ),
    )
}

/// One delegation as the page lists it.
struct Row {
    delegation_id: DelegationId,
    scopes: String,
    granted_at: Timestamp,
    last_used_at: Option<Timestamp>,
    status: &'static str,
}

/// The account page.
pub(super) async fn show(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    let now = state.clock.now();
    let Some(signed_in) = session(&state, &request, now) else {
        return to_sign_in();
    };
    let user = signed_in.user_id.clone();
    let (email, agents) = state.ledger.read(|s| {
        let email = s.user(&user).map(Datum::email_of);
        let mut agents: BTreeMap<String, (String, Vec<Row>)> = BTreeMap::new();
        for d in s.delegations_of_user(&user) {
            let name = s
                .agent(&d.client_id)
                .map(|a| a.name.clone())
                .unwrap_or_default();
            let scopes = match &d.scopes {
                Some(scopes) => scopes.join(" "),
                None => "every scope the agent holds".to_owned(),
            };
            let status = match (d.revoked_at, d.is_active(now)) {
                (Some(_), _) => "revoked",
                (None, false) => "lapsed",
                (None, true) => "active",
            };
            agents
                .entry(d.client_id.to_string())
                .or_insert_with(|| (name, Vec::new()))
                .1
                .push(Row {
                    delegation_id: d.delegation_id.clone(),
                    scopes,
                    granted_at: d.granted_at,
                    last_used_at: d.last_used_at,
                    status,
                });
        }
        (email, agents)
    });
    // Opened after the lock: it may read the person's key from its store.
    let email = email
        .map(|email| state.people.reveal_datum(&email))
        .unwrap_or_default();
    let token = form_token(&state, &signed_in);
    let markup = page(
        "Your grants",
        html! {
            p { "Signed in as " strong { (email) } "." }
            @if agents.is_empty() {
                p { "You have not let any agent act for you." }
            }
            @for (client_id, (name, rows)) in &agents {
                section {
                    h2 { (name) " " small { code { (client_id) } } }
                    table {
                        thead { tr { th scope="col" { "Scopes" } th scope="col" { "Given" } th scope="col" { "Last used" } th scope="col" { "Status" } th scope="col" { span { "Action" } } } }
                        tbody {
                            @for row in rows {
                                tr {
                                    td { code { (row.scopes) } }
                                    td { (row.granted_at.to_string()) }
                                    td { @match row.last_used_at { Some(at) => { (at.to_string()) }, None => { "never" } } }
                                    td { (row.status) }
                                    td {
                                        @if row.status == "active" {
                                            form method="post" action="/account/revoke" {
                                                input type="hidden" name="form_token" value=(token);
                                                input type="hidden" name="delegation_id" value=(row.delegation_id.as_str());
                                                button type="submit" aria-label=(format!("Revoke {name}'s grant of {}", row.scopes)) { "Revoke" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            form method="post" action="/logout" {
                input type="hidden" name="form_token" value=(token);
                button type="submit" { "Sign out" }
            }
            form method="post" action="/account/sessions/end" {
                input type="hidden" name="form_token" value=(token);
                p { "Signed in somewhere you no longer use? This ends every session of yours, here too." }
                button type="submit" { "Sign out everywhere" }
            }
        },
    );
    html_response(StatusCode::OK, markup)
}

#[derive(Debug, Deserialize)]
pub(super) struct Revoke {
    form_token: String,
    delegation_id: String,
}

/// Revokes one of the person's delegations, then shows the page again.
pub(super) async fn revoke(
    state: web::Data<AppState>,
    request: HttpRequest,
    form: web::Form<Revoke>,
) -> HttpResponse {
    let now = state.clock.now();
    if session(&state, &request, now).is_none() {
        return to_sign_in();
    }
    let Revoke {
        form_token,
        delegation_id,
    } = form.into_inner();
    let Some(Session { user_id: user, .. }) = form_session(&state, &request, &form_token, now)
    else {
        return not_our_form("Nothing was revoked.");
    };
    let command = Command::RevokeDelegation {
        delegation_id: DelegationId(delegation_id),
        by: Actor::User { user_id: user },
    };
    match state.ledger.submit(command).await {
        Ok(_) => HttpResponse::SeeOther()
            .insert_header((header::LOCATION, "/account"))
            .finish(),
        Err(err) => html_response(
            StatusCode::CONFLICT,
            page(
                "That grant could not be revoked",
                html! { p.error role="alert" { (err.to_string()) } p { a href="/account" { "Back to your grants" } } },
            ),
        ),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct Logout {
    form_token: String,
}

/// Ends the session: recorded in the ledger, so the cookie opens nothing again even if
/// it is presented again, on any node.
pub(super) async fn logout(
    state: web::Data<AppState>,
    request: HttpRequest,
    form: web::Form<Logout>,
) -> HttpResponse {
    let now = state.clock.now();
    let Some(signed_in) = form_session(&state, &request, &form.form_token, now) else {
        return to_sign_in();
    };
    let command = Command::EndSession {
        user_id: signed_in.user_id,
        session_id: signed_in.session_id,
        expires_at: signed_in.expires_at,
    };
    match state.ledger.submit(command).await {
        Ok(_) => signed_out(),
        Err(err) => could_not("You could not be signed out", err),
    }
}

/// Ends every session of the person, this one included ("sign out everywhere").
pub(super) async fn end_sessions(
    state: web::Data<AppState>,
    request: HttpRequest,
    form: web::Form<Logout>,
) -> HttpResponse {
    let now = state.clock.now();
    if session(&state, &request, now).is_none() {
        return to_sign_in();
    }
    let Some(signed_in) = form_session(&state, &request, &form.form_token, now) else {
        return not_our_form("No session was ended.");
    };
    let user_id = signed_in.user_id;
    let command = Command::EndSessions {
        by: Actor::User {
            user_id: user_id.clone(),
        },
        user_id,
    };
    match state.ledger.submit(command).await {
        Ok(_) => signed_out(),
        Err(err) => could_not("Your sessions could not be ended", err),
    }
}

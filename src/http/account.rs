//! `/account`: the signed-in person's grants. Every delegation they gave (a consent on the
//! authorization page is one), per agent, with its scopes, when it was given and last
//! used; revoking one (`POST /account/revoke`) ends it and every access token issued
//! under it at once, and its refresh tokens are refused from then on. `POST /logout` ends
//! the session.
//!
//! Forms carry a token bound to the person (a MAC under the deployment key) besides the
//! `SameSite=Lax` session, so no other site can post them.

use std::collections::BTreeMap;

use actix_web::cookie::Cookie;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use maud::html;
use serde::Deserialize;
use writ_schemas::{Actor, DelegationId, Timestamp, UserId};

use super::AppState;
use super::signin::{SESSION_COOKIE, html_response, mac, mac_matches, page, session_user};
use crate::decide::Command;
use crate::people::Datum;

const FORM_CONTEXT: &str = "writ account form v1";

fn to_sign_in() -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/login?return_to=/account"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

fn form_token(state: &AppState, user: &UserId) -> String {
    mac(state, FORM_CONTEXT, user.as_str().as_bytes())
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
    let Some(user) = session_user(&state, &request, now) else {
        return to_sign_in();
    };
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
    let token = form_token(&state, &user);
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
    let Some(user) = session_user(&state, &request, now) else {
        return to_sign_in();
    };
    let Revoke {
        form_token,
        delegation_id,
    } = form.into_inner();
    if !mac_matches(&state, FORM_CONTEXT, user.as_str().as_bytes(), &form_token) {
        return html_response(
            StatusCode::FORBIDDEN,
            page(
                "This form is not one writ showed you",
                html! { p.error role="alert" { "Nothing was revoked. Open your account page and try again." } },
            ),
        );
    }
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

/// Ends the session.
pub(super) async fn logout(
    state: web::Data<AppState>,
    request: HttpRequest,
    form: web::Form<Logout>,
) -> HttpResponse {
    let now = state.clock.now();
    let signed = session_user(&state, &request, now).is_some_and(|user| {
        mac_matches(
            &state,
            FORM_CONTEXT,
            user.as_str().as_bytes(),
            &form.form_token,
        )
    });
    if !signed {
        return to_sign_in();
    }
    let mut gone = Cookie::build(SESSION_COOKIE, "").path("/").finish();
    gone.make_removal();
    HttpResponse::SeeOther()
        .cookie(gone)
        .insert_header((header::LOCATION, "/login"))
        .finish()
}

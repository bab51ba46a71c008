//! Signing in to writ's pages under attack, and ending sessions, over real HTTP: many
//! wrong passwords then the right one are throttled (429 with Retry-After); a stranger's
//! guesses do not keep the person out from an address of their own; one address guessing
//! across accounts is throttled; concurrent guesses beyond the argon2 memory budget are
//! refused 503; the run of failures is one anomaly in the ledger, counted on the person.
//! A signed-out cookie, replayed, opens nothing; a password change and "sign out
//! everywhere" (the button and the API) end every older session; the account page's
//! form tokens follow the session.
//!
//! Different client addresses are real: the test clients bind 127.0.0.x of their own.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;

use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};

use crate::delegation::{api_key, person};
use crate::kit::*;

const PASSWORD: &str = "correct horse battery staple";
const EMAIL: &str = "ada@example.com";

/// A client that keeps no cookies, follows no redirect, and connects from `127.0.0.<n>`.
fn from(n: u8) -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)))
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap_or_else(|err| panic!("{err}"))
}

struct Site {
    _home: Home,
    server: Server,
    admin: String,
    ada: String,
}

/// A server with `flags`, and Ada, who has a password.
fn site(flags: &[&str]) -> Site {
    let home = Home::embedded();
    let server = Server::start(home.dir.path(), flags);
    let admin = server.admin_token();
    let ada = person(&server, &admin, EMAIL);
    set_password(&server, &admin, &ada, PASSWORD);
    Site {
        _home: home,
        server,
        admin,
        ada,
    }
}

fn set_password(server: &Server, admin: &str, user: &str, password: &str) {
    let path = format!("/api/v1/users/{user}/password");
    let (status, body) = call(
        server,
        admin,
        "PUT",
        &path,
        Some(json!({ "password": password })),
    );
    assert_eq!(status, 204, "{body}");
}

fn sign_in(client: &Client, site: &Site, email: &str, password: &str) -> Response {
    client
        .post(site.server.url("/login"))
        .form(&[
            ("email", email),
            ("password", password),
            ("return_to", "/account"),
        ])
        .send()
        .unwrap_or_else(|err| panic!("{err}"))
}

/// `name=value` of the session cookie a response sets.
fn session_cookie(response: &Response) -> String {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("writ_session="))
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("no session cookie in {:?}", response.headers()))
        .to_owned()
}

/// Signs Ada in from `127.0.0.<n>`: her session cookie.
fn session(site: &Site, n: u8) -> String {
    let signed_in = sign_in(&from(n), site, EMAIL, PASSWORD);
    assert_eq!(signed_in.status().as_u16(), 303);
    session_cookie(&signed_in)
}

/// `GET /account` with `cookie`: the status and the page.
fn account(site: &Site, cookie: &str) -> (u16, String, String) {
    let response = from(1)
        .get(site.server.url("/account"))
        .header("cookie", cookie)
        .send()
        .unwrap_or_else(|err| panic!("{err}"));
    let status = response.status().as_u16();
    let location = header(&response, "location");
    (status, location, response.text().unwrap_or_default())
}

fn opens_account(site: &Site, cookie: &str) -> bool {
    let (status, location, page) = account(site, cookie);
    match status {
        200 => true,
        303 => {
            assert_eq!(location, "/login?return_to=/account");
            false
        }
        _ => panic!("GET /account answered {status}: {page}"),
    }
}

fn header(response: &Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn post_form(site: &Site, path: &str, cookie: &str, form: &[(&str, &str)]) -> Response {
    from(1)
        .post(site.server.url(path))
        .header("cookie", cookie)
        .form(form)
        .send()
        .unwrap_or_else(|err| panic!("{err}"))
}

/// The Retry-After seconds of a 429 or 503.
fn retry_after(response: &Response) -> u64 {
    header(response, "retry-after")
        .parse()
        .unwrap_or_else(|_| panic!("no Retry-After in {:?}", response.headers()))
}

fn ada_as_admin_sees_her(site: &Site) -> Value {
    let (status, users) = call(&site.server, &site.admin, "GET", "/api/v1/users", None);
    assert_eq!(status, 200, "{users}");
    users
        .as_array()
        .and_then(|users| users.iter().find(|u| u["id"] == json!(site.ada)))
        .cloned()
        .unwrap_or_else(|| panic!("{users}"))
}

const THROTTLE: &[&str] = &[
    "--sign-in-failures-free",
    "3",
    "--sign-in-delay-seconds-first",
    "600",
    "--sign-in-delay-seconds-max",
    "900",
];

#[test]
fn many_wrong_passwords_then_the_right_one_is_answered_429_with_retry_after_not_signed_in() {
    let site = site(THROTTLE);
    let stranger = from(2);
    for n in 1..=3 {
        let wrong = sign_in(&stranger, &site, EMAIL, &format!("guess {n}"));
        assert_eq!(wrong.status().as_u16(), 401, "guess {n}");
    }
    for guess in ["guess 4", PASSWORD] {
        let throttled = sign_in(&stranger, &site, EMAIL, guess);
        assert_eq!(throttled.status().as_u16(), 429, "{guess}");
        let wait = retry_after(&throttled);
        assert!((1..=600).contains(&wait), "Retry-After {wait}");
        assert!(
            throttled.headers().get("set-cookie").is_none(),
            "a throttled answer signs no one in"
        );
        let page = throttled.text().unwrap_or_default();
        assert!(
            page.contains("Too many failed sign-ins") && page.contains("seconds, then try again"),
            "{page}"
        );
    }

    // The run is one anomaly on the person, however many guesses follow.
    let ada = ada_as_admin_sees_her(&site);
    assert_eq!(ada["sign_in_anomalies"], json!(1), "{ada}");
    assert!(ada["sign_in_anomaly_last_at"].is_string(), "{ada}");
    let Site { _home, server, .. } = site;
    drop(server);
    assert_eq!(
        events_in_ledger(_home.dir.path(), "SignInFailuresDetected"),
        1
    );
}

#[test]
fn a_strangers_guesses_do_not_keep_the_person_out_from_an_address_of_their_own() {
    let site = site(&[
        "--sign-in-failures-free",
        "3",
        "--sign-in-delay-seconds-first",
        "60",
        "--sign-in-delay-seconds-max",
        "120",
    ]);
    let stranger = from(2);
    for n in 1..=3 {
        let wrong = sign_in(&stranger, &site, EMAIL, &format!("guess {n}"));
        assert_eq!(wrong.status().as_u16(), 401);
    }
    let held = sign_in(&stranger, &site, EMAIL, PASSWORD);
    assert_eq!(held.status().as_u16(), 429);
    // A second address of the stranger gets one guess, and is then held too; the delay
    // never exceeds the cap.
    let other = from(3);
    assert_eq!(
        sign_in(&other, &site, EMAIL, "guess 4").status().as_u16(),
        401
    );
    let held = sign_in(&other, &site, EMAIL, PASSWORD);
    assert_eq!(held.status().as_u16(), 429);
    let wait = retry_after(&held);
    assert!((1..=120).contains(&wait), "capped at 120 s: {wait}");

    // The person, from an address that has not failed for her account, signs in.
    let signed_in = sign_in(&from(4), &site, EMAIL, PASSWORD);
    assert_eq!(signed_in.status().as_u16(), 303);
    assert!(opens_account(&site, &session_cookie(&signed_in)));
}

#[test]
fn one_address_guessing_across_many_accounts_is_throttled_and_other_addresses_are_not() {
    let site = site(&[
        "--sign-in-address-failures-free",
        "3",
        "--sign-in-delay-seconds-first",
        "600",
    ]);
    let sprayer = from(2);
    for n in 1..=3 {
        let wrong = sign_in(&sprayer, &site, &format!("nobody{n}@example.com"), "guess");
        assert_eq!(wrong.status().as_u16(), 401);
    }
    let held = sign_in(&sprayer, &site, EMAIL, PASSWORD);
    assert_eq!(held.status().as_u16(), 429);
    assert!(retry_after(&held) >= 1);
    assert_eq!(
        sign_in(&from(3), &site, EMAIL, PASSWORD).status().as_u16(),
        303
    );
}

#[test]
fn concurrent_sign_ins_beyond_the_hashing_memory_budget_are_refused_503_with_retry_after() {
    // Room for one 19 MiB hash at a time, and no wait for it.
    let site = site(&[
        "--password-hash-memory-mib-max",
        "19",
        "--password-hash-wait-ms-max",
        "0",
        "--sign-in-failures-free",
        "1000",
        "--sign-in-address-failures-free",
        "1000",
    ]);
    let answers = Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicU32::new(0);
    concurrently(16, || {
        let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let response = sign_in(&from(2), &site, &format!("guess{n}@example.com"), "guess");
        let status = response.status().as_u16();
        let wait = header(&response, "retry-after");
        let page = response.text().unwrap_or_default();
        answers
            .lock()
            .unwrap_or_else(|err| panic!("{err}"))
            .push((status, wait, page));
    });
    let answers = answers.into_inner().unwrap_or_else(|err| panic!("{err}"));
    let refused: Vec<_> = answers.iter().filter(|(s, ..)| *s == 503).collect();
    let checked = answers.iter().filter(|(s, ..)| *s == 401).count();
    assert_eq!(refused.len() + checked, 16, "only 401 or 503: {answers:?}");
    assert!(checked >= 1 && !refused.is_empty(), "{answers:?}");
    for (_, wait, page) in refused {
        assert_eq!(wait, "1");
        assert!(
            page.contains("memory budget allows; try again in a second"),
            "{page}"
        );
    }
    // A password change waits for the same budget; alone, it gets it.
    set_password(
        &site.server,
        &site.admin,
        &site.ada,
        "another long passphrase",
    );
}

#[test]
fn a_signed_out_session_cookie_replayed_no_longer_opens_the_account_page() {
    let site = site(&[]);
    let (kept, ended) = (session(&site, 2), session(&site, 3));
    let (status, _, page) = account(&site, &ended);
    assert_eq!(status, 200, "{page}");
    let token = hidden_input(&page, "form_token");
    let out = post_form(&site, "/logout", &ended, &[("form_token", &token)]);
    assert_eq!(out.status().as_u16(), 303);
    assert_eq!(header(&out, "location"), "/login");
    assert!(
        header(&out, "set-cookie").starts_with("writ_session=;"),
        "the cookie is cleared: {:?}",
        out.headers()
    );
    // The cookie, presented again as it was, opens nothing; the other session stays.
    assert!(!opens_account(&site, &ended));
    assert!(opens_account(&site, &kept));
    // Signing out again with the ended cookie is not a session either.
    let again = post_form(&site, "/logout", &ended, &[("form_token", &token)]);
    assert_eq!(header(&again, "location"), "/login?return_to=/account");
}

#[test]
fn a_password_change_ends_every_session_signed_in_before_it() {
    let site = site(&[]);
    let (one, two) = (session(&site, 2), session(&site, 3));
    assert!(opens_account(&site, &one) && opens_account(&site, &two));
    set_password(
        &site.server,
        &site.admin,
        &site.ada,
        "a brand new passphrase",
    );
    assert!(!opens_account(&site, &one));
    assert!(!opens_account(&site, &two));
    assert_eq!(
        sign_in(&from(2), &site, EMAIL, PASSWORD).status().as_u16(),
        401
    );
    let fresh = sign_in(&from(2), &site, EMAIL, "a brand new passphrase");
    assert_eq!(fresh.status().as_u16(), 303);
    assert!(opens_account(&site, &session_cookie(&fresh)));
}

#[test]
fn sign_out_everywhere_ends_every_session_by_the_account_button_and_by_the_api() {
    let site = site(&[]);
    let (here, elsewhere) = (session(&site, 2), session(&site, 3));
    let (_, _, page) = account(&site, &here);
    assert!(page.contains("Sign out everywhere"), "{page}");
    let token = hidden_input(&page, "form_token");
    let ended = post_form(
        &site,
        "/account/sessions/end",
        &here,
        &[("form_token", &token)],
    );
    assert_eq!(ended.status().as_u16(), 303);
    assert!(!opens_account(&site, &here));
    assert!(!opens_account(&site, &elsewhere));
    // Setting her password was the first generation; this is the second.
    assert_eq!(ada_as_admin_sees_her(&site)["session_generation"], json!(2));

    // The API: by an admin, by the person with her API key; not by someone else.
    let path = format!("/api/v1/users/{}/sessions/end", site.ada);
    let by_admin = session(&site, 2);
    let (status, body) = call(&site.server, &site.admin, "POST", &path, None);
    assert_eq!(status, 204, "{body}");
    assert!(!opens_account(&site, &by_admin));
    let by_herself = session(&site, 2);
    let (key, _) = api_key(&site.server, &site.admin, &site.ada);
    let own = from(1)
        .post(site.server.url(&path))
        .header("x-api-key", &key)
        .send()
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(own.status().as_u16(), 204);
    assert!(!opens_account(&site, &by_herself));

    let bob = person(&site.server, &site.admin, "bob@example.com");
    let (bobs_key, _) = api_key(&site.server, &site.admin, &bob);
    let not_his = from(1)
        .post(site.server.url(&path))
        .header("x-api-key", &bobs_key)
        .send()
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(not_his.status().as_u16(), 403);
    let refused: Value = not_his.json().unwrap_or_default();
    assert_eq!(refused["error"], json!("forbidden"), "{refused}");
    let unknown = "/api/v1/users/00000000-0000-4000-8000-000000000000/sessions/end";
    let (status, body) = call(&site.server, &site.admin, "POST", unknown, None);
    assert_eq!(
        (status, &body["error"]),
        (404, &json!("not_found")),
        "{body}"
    );
}

#[test]
fn an_account_form_shown_in_one_session_is_refused_in_another() {
    let site = site(&[]);
    let (first, second) = (session(&site, 2), session(&site, 3));
    let (_, _, page) = account(&site, &first);
    let token = hidden_input(&page, "form_token");
    let crossed = post_form(
        &site,
        "/account/sessions/end",
        &second,
        &[("form_token", &token)],
    );
    assert_eq!(crossed.status().as_u16(), 403);
    assert!(
        crossed
            .text()
            .unwrap_or_default()
            .contains("No session was ended."),
    );
    assert!(opens_account(&site, &first) && opens_account(&site, &second));
}

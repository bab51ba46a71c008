//! The authorization code flow over real HTTP, as a browser and a client would drive it:
//! sign-in, the consent page (a scope unticked), the code with `state` and `iss`, its
//! redemption with the PKCE verifier, rotating refresh tokens; and each attack refused
//! with the right error: a replayed code (its tokens revoked), a wrong verifier, `plain`,
//! no `state`, a foreign redirect URI (shown, never followed), an open redirect after
//! sign-in, a reused refresh token (its family revoked, the anomaly counted on the agent),
//! and a withdrawn grant.

use base64::Engine as _;
use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::delegation::person;
use crate::kit::*;

const REDIRECT: &str = "http://127.0.0.1:9/callback";
pub(crate) const VERIFIER: &str = "dBjftJeZ4CVP-mJ92K9qvq1JXcVgqk2NGy0yCqnGpU7Rz1";
pub(crate) const PASSWORD: &str = "correct horse battery staple";

fn challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier))
}

/// A browser: keeps cookies, follows no redirect.
fn browser() -> Client {
    Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|err| panic!("{err}"))
}

fn location(response: &Response) -> String {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The value of query parameter `name` in `url`.
pub(crate) fn param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.into_owned())
}

pub(crate) struct Flow {
    _dir: tempfile::TempDir,
    pub(crate) server: Server,
    admin: String,
    pub(crate) client_id: String,
    pub(crate) secret: String,
}

pub(crate) fn flow() -> Flow {
    flow_with(&[])
}

fn flow_with(flags: &[&str]) -> Flow {
    let dir = temp();
    let server = Server::start(dir.path(), flags);
    let admin = server.admin_token();
    let ada = person(&server, &admin, "ada@example.com");
    let path = format!("/api/v1/users/{ada}/password");
    let (status, body) = call(
        &server,
        &admin,
        "PUT",
        &path,
        Some(json!({"password": PASSWORD})),
    );
    assert_eq!(status, 204, "{body}");
    let (status, body) = call(
        &server,
        &admin,
        "PUT",
        &path,
        Some(json!({"password": "short"})),
    );
    assert_eq!(status, 400, "{body}");
    let agent = json!({"name": "Notes helper", "owner": "ada@example.com",
                       "scopes": ["files:read", "files:write"],
                       "grant_types": ["authorization_code", "refresh_token"],
                       "redirect_uris": [REDIRECT]});
    let (client_id, secret) = register_agent(&server, &admin, agent);
    Flow {
        _dir: dir,
        server,
        admin,
        client_id,
        secret,
    }
}

impl Flow {
    /// `/oauth/authorize?...` with the usual parameters, `changes` replacing or removing
    /// (empty value) some.
    pub(crate) fn authorize_url(&self, changes: &[(&str, &str)]) -> String {
        let challenge = challenge(VERIFIER);
        let mut params = vec![
            ("response_type", "code"),
            ("client_id", self.client_id.as_str()),
            ("redirect_uri", REDIRECT),
            ("scope", "files:read files:write"),
            ("state", "st-123"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        for (name, value) in changes {
            params.retain(|(n, _)| n != name);
            if !value.is_empty() {
                params.push((name, value));
            }
        }
        let query = serde_urlencoded::to_string(&params).unwrap_or_default();
        self.server.url(&format!("/oauth/authorize?{query}"))
    }

    fn sign_in(&self, browser: &Client, password: &str, return_to: &str) -> Response {
        browser
            .post(self.server.url("/login"))
            .form(&[
                ("email", "ada@example.com"),
                ("password", password),
                ("return_to", return_to),
            ])
            .send()
            .unwrap_or_else(|err| panic!("{err}"))
    }

    /// Signs in through the redirect the authorization endpoint answers; the consent page.
    fn to_consent(&self, browser: &Client) -> String {
        let first = browser
            .get(self.authorize_url(&[]))
            .send()
            .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(first.status().as_u16(), 303);
        let login = location(&first);
        assert!(login.starts_with("/login?return_to="), "{login}");
        let return_to = param(&self.server.url(&login), "return_to").unwrap_or_default();
        let wrong = self.sign_in(browser, "not the password", &return_to);
        assert_eq!(wrong.status().as_u16(), 401);
        let signed_in = self.sign_in(browser, PASSWORD, &return_to);
        assert_eq!(signed_in.status().as_u16(), 303);
        assert_eq!(location(&signed_in), return_to);
        let consent = browser
            .get(self.server.url(&return_to))
            .send()
            .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(consent.status().as_u16(), 200);
        consent.text().unwrap_or_default()
    }

    /// Answers the consent page with `scopes` ticked; the redirect's location.
    fn answer(&self, browser: &Client, page: &str, decision: &str, scopes: &[&str]) -> String {
        let request = hidden_input(page, "request");
        let mut form = vec![("request", request.as_str()), ("decision", decision)];
        form.extend(scopes.iter().map(|s| ("scope", *s)));
        let answered = browser
            .post(self.server.url("/oauth/authorize"))
            .form(&form)
            .send()
            .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(answered.status().as_u16(), 303);
        location(&answered)
    }

    pub(crate) fn token(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let response = http()
            .post(self.server.url("/oauth/token"))
            .basic_auth(&self.client_id, Some(&self.secret))
            .form(form)
            .send()
            .unwrap_or_else(|err| panic!("{err}"));
        (
            response.status().as_u16(),
            response.json().unwrap_or(Value::Null),
        )
    }

    pub(crate) fn redeem(&self, code: &str, verifier: &str) -> (u16, Value) {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ])
    }

    pub(crate) fn active(&self, token: &str) -> bool {
        introspect(&self.server, &self.client_id, &self.secret, token)["active"] == json!(true)
    }
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

#[test]
fn a_person_signs_in_unticks_a_scope_and_the_client_redeems_the_code_once() {
    let f = flow();
    let browser = browser();
    let page = f.to_consent(&browser);
    assert!(page.contains("Notes helper"), "{page}");
    assert!(
        page.contains("ada@example.com"),
        "the owner is shown: {page}"
    );
    assert!(
        page.contains("read files") && page.contains("write files"),
        "{page}"
    );

    let back = f.answer(&browser, &page, "approve", &["files:read"]);
    assert!(back.starts_with(REDIRECT), "{back}");
    assert_eq!(param(&back, "state").as_deref(), Some("st-123"));
    assert_eq!(param(&back, "iss").as_deref(), Some(f.server.base.as_str()));
    let code = param(&back, "code").unwrap_or_default();

    // A wrong verifier does not redeem it (and does not spend it).
    let (status, refused) = f.redeem(&code, &"x".repeat(43));
    assert_eq!(
        (status, text(&refused["error"])),
        (400, "invalid_grant".into()),
        "{refused}"
    );
    let (status, issued) = f.redeem(&code, VERIFIER);
    assert_eq!(status, 200, "{issued}");
    assert_eq!(
        issued["scope"], "files:read",
        "the unticked scope is not granted"
    );
    let access = text(&issued["access_token"]);
    assert!(f.active(&access));
    assert!(text(&issued["refresh_token"]).starts_with("wrr_"));

    // The code again: refused, and what it gave is revoked.
    let (status, replayed) = f.redeem(&code, VERIFIER);
    assert_eq!(
        (status, text(&replayed["error"])),
        (400, "invalid_grant".into()),
        "{replayed}"
    );
    assert!(!f.active(&access), "the replay revokes the code's tokens");

    // Consent is remembered: the same scope again skips the page.
    let again = browser
        .get(f.authorize_url(&[("scope", "files:read")]))
        .send()
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(again.status().as_u16(), 303);
    let back = location(&again);
    assert!(param(&back, "code").is_some(), "{back}");
    // A scope not consented to asks again.
    let wider = browser
        .get(f.authorize_url(&[]))
        .send()
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(wider.status().as_u16(), 200, "the consent page again");

    // Denying sends access_denied back with the state.
    let page = wider.text().unwrap_or_default();
    let denied = f.answer(&browser, &page, "deny", &[]);
    assert_eq!(param(&denied, "error").as_deref(), Some("access_denied"));
    assert_eq!(param(&denied, "state").as_deref(), Some("st-123"));
}

#[test]
fn refresh_tokens_rotate_and_a_reused_one_revokes_its_family_and_flags_the_agent() {
    let f = flow();
    let browser = browser();
    let page = f.to_consent(&browser);
    let back = f.answer(&browser, &page, "approve", &["files:read", "files:write"]);
    let (_, first) = f.redeem(&param(&back, "code").unwrap_or_default(), VERIFIER);
    let refresh = text(&first["refresh_token"]);

    let (status, second) = f.token(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", &refresh),
        ("scope", "files:read"),
    ]);
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["scope"], "files:read", "a refresh may narrow");
    assert_ne!(second["refresh_token"], first["refresh_token"], "rotated");
    let (status, wide) = f.token(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", &text(&second["refresh_token"])),
        ("scope", "files:admin"),
    ]);
    assert_eq!(
        (status, text(&wide["error"])),
        (400, "invalid_scope".into()),
        "{wide}"
    );

    // The spent one again: refused, the family revoked, the agent flagged.
    let (status, reused) = f.token(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)]);
    assert_eq!(
        (status, text(&reused["error"])),
        (400, "invalid_grant".into()),
        "{reused}"
    );
    assert!(
        !f.active(&text(&second["access_token"])),
        "the family's tokens are revoked"
    );
    let (status, newest) = f.token(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", &text(&second["refresh_token"])),
    ]);
    assert_eq!(
        (status, text(&newest["error"])),
        (400, "invalid_grant".into()),
        "{newest}"
    );
    let (_, agent) = call(
        &f.server,
        &f.admin,
        "GET",
        &format!("/api/v1/agents/{}", f.client_id),
        None,
    );
    assert_eq!(agent["open_anomalies"], 1, "{agent}");
}

#[test]
fn a_withdrawn_grant_ends_the_refresh_token() {
    let f = flow();
    let browser = browser();
    let page = f.to_consent(&browser);
    let back = f.answer(&browser, &page, "approve", &["files:read"]);
    let (_, issued) = f.redeem(&param(&back, "code").unwrap_or_default(), VERIFIER);
    let (_, delegations) = call(
        &f.server,
        &f.admin,
        "GET",
        &format!("/api/v1/agents/{}/delegations", f.client_id),
        None,
    );
    let delegation = text(&delegations[0]["id"]);
    let revoke = http()
        .delete(f.server.url(&format!("/api/v1/delegations/{delegation}")))
        .bearer_auth(&f.admin)
        .send()
        .map(|r| r.status().as_u16());
    assert_eq!(revoke.ok(), Some(204));
    assert!(!f.active(&text(&issued["access_token"])));
    let (status, refused) = f.token(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", &text(&issued["refresh_token"])),
    ]);
    assert_eq!(
        (status, text(&refused["error"])),
        (400, "invalid_grant".into()),
        "{refused}"
    );
}

#[test]
fn malformed_and_hostile_authorization_requests_are_refused_as_the_rfcs_say() {
    let f = flow();
    let browser = browser();
    let get = |url: String| {
        browser
            .get(url)
            .send()
            .unwrap_or_else(|err| panic!("{err}"))
    };
    // Client or redirect URI not to be trusted: a page, never a redirect.
    for changes in [
        vec![("redirect_uri", "https://evil.example/cb")],
        vec![("client_id", "agt_nobody")],
        vec![("client_id", "")],
    ] {
        let answered = get(f.authorize_url(&changes));
        assert_eq!(answered.status().as_u16(), 400, "{changes:?}");
        assert!(answered.headers().get("location").is_none(), "{changes:?}");
    }
    // The rest go back to the client with the error (and the state when there is one).
    for (changes, error) in [
        (vec![("code_challenge_method", "plain")], "invalid_request"),
        (vec![("code_challenge_method", "")], "invalid_request"),
        (vec![("code_challenge", "")], "invalid_request"),
        (vec![("state", "")], "invalid_request"),
        (
            vec![("response_type", "token")],
            "unsupported_response_type",
        ),
        (vec![("scope", "files:admin")], "invalid_scope"),
        (
            vec![("resource", "https://api.example.com/#frag")],
            "invalid_target",
        ),
    ] {
        let answered = get(f.authorize_url(&changes));
        assert_eq!(answered.status().as_u16(), 303, "{changes:?}");
        let back = location(&answered);
        assert!(back.starts_with(REDIRECT), "{changes:?}: {back}");
        assert_eq!(
            param(&back, "error").as_deref(),
            Some(error),
            "{changes:?}: {back}"
        );
        let state = if changes[0].0 == "state" {
            None
        } else {
            Some("st-123")
        };
        assert_eq!(param(&back, "state").as_deref(), state, "{changes:?}");
    }

    // After sign-in, writ returns only to its own authorization endpoint or account page.
    for hostile in [
        "https://evil.example/",
        "//evil.example/",
        "/oauth/authorize\r\nx",
    ] {
        let signed_in = f.sign_in(&browser, PASSWORD, hostile);
        assert_eq!(signed_in.status().as_u16(), 303);
        assert_eq!(location(&signed_in), "/account", "{hostile}");
    }

    // A consent answer that writ did not serve, or to another person's page, is refused.
    let forged = browser
        .post(f.server.url("/oauth/authorize"))
        .form(&[("request", "e30.AAAA"), ("decision", "approve")])
        .send()
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(forged.status().as_u16(), 400);
    assert!(forged.headers().get("location").is_none());
    let signed_out = http()
        .post(f.server.url("/oauth/authorize"))
        .form(&[("request", "e30.AAAA"), ("decision", "approve")])
        .send()
        .map(|r| r.status().as_u16());
    assert_eq!(signed_out.ok(), Some(401));
}

#[test]
fn the_account_page_lists_each_grant_and_revoking_one_ends_its_tokens_at_once() {
    let f = flow();
    let browser = browser();
    let page = f.to_consent(&browser);
    let back = f.answer(&browser, &page, "approve", &["files:read"]);
    let (_, issued) = f.redeem(&param(&back, "code").unwrap_or_default(), VERIFIER);
    let access = text(&issued["access_token"]);

    let page = browser
        .get(f.server.url("/account"))
        .send()
        .and_then(|r| r.text())
        .unwrap_or_default();
    assert!(
        page.contains("Notes helper") && page.contains("files:read"),
        "{page}"
    );
    let (token, delegation) = (
        hidden_input(&page, "form_token"),
        hidden_input(&page, "delegation_id"),
    );

    // A form writ did not show (another site's) revokes nothing.
    let forged = browser
        .post(f.server.url("/account/revoke"))
        .form(&[
            ("form_token", "forged"),
            ("delegation_id", delegation.as_str()),
        ])
        .send()
        .map(|r| r.status().as_u16());
    assert_eq!(forged.ok(), Some(403));
    assert!(f.active(&access));

    let revoked = browser
        .post(f.server.url("/account/revoke"))
        .form(&[
            ("form_token", token.as_str()),
            ("delegation_id", delegation.as_str()),
        ])
        .send()
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        (revoked.status().as_u16(), location(&revoked)),
        (303, "/account".to_owned())
    );
    assert!(!f.active(&access), "the access token ends at once");
    let (status, refused) = f.token(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", &text(&issued["refresh_token"])),
    ]);
    assert_eq!(
        (status, text(&refused["error"])),
        (400, "invalid_grant".into()),
        "{refused}"
    );
    let page = browser
        .get(f.server.url("/account"))
        .send()
        .and_then(|r| r.text())
        .unwrap_or_default();
    assert!(
        page.contains(">revoked<") && !page.contains(">Revoke<"),
        "{page}"
    );

    // Signed out, the page sends the person to sign in.
    let out = browser
        .post(f.server.url("/logout"))
        .form(&[("form_token", token.as_str())])
        .send()
        .map(|r| r.status().as_u16());
    assert_eq!(out.ok(), Some(303));
    let again = browser
        .get(f.server.url("/account"))
        .send()
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(location(&again), "/login?return_to=/account");
}

/// Serves `dir` over http on loopback (Python's `http.server`), killed when dropped.
struct Documents(std::process::Child, u16);

impl Documents {
    fn serve(dir: &std::path::Path) -> Documents {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("{e}"));
        let child = std::process::Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .arg("--directory")
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("python3 -m http.server: {e}"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the document server did not listen"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Documents(child, port)
    }
}

impl Drop for Documents {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_client_named_by_its_metadata_document_url_signs_a_person_in_as_a_public_client() {
    let docs = temp();
    let served = Documents::serve(docs.path());
    let base = format!("http://127.0.0.1:{}", served.1);
    let client_id = format!("{base}/client.json");
    let write = |name: &str, body: Value| {
        std::fs::write(docs.path().join(name), body.to_string()).unwrap_or_else(|e| panic!("{e}"))
    };
    write(
        "client.json",
        json!({"client_id": client_id, "client_name": "Doc Notes", "redirect_uris": [REDIRECT],
               "scope": "files:read", "token_endpoint_auth_method": "none"}),
    );
    write(
        "other.json",
        json!({"client_id": "https://someone.else/client.json", "redirect_uris": [REDIRECT]}),
    );
    let f = flow_with(&["--client-metadata-loopback"]);
    let browser = browser();
    let get = |url: String| browser.get(url).send().unwrap_or_else(|e| panic!("{e}"));

    // A document naming another client, or a redirect URI it does not list: a page.
    let other = format!("{base}/other.json");
    for changes in [
        vec![("client_id", other.as_str())],
        vec![
            ("client_id", client_id.as_str()),
            ("redirect_uri", "http://127.0.0.1:9/elsewhere"),
        ],
    ] {
        let answered = get(f.authorize_url(&changes));
        assert_eq!(answered.status().as_u16(), 400, "{changes:?}");
        assert!(answered.headers().get("location").is_none());
    }

    let start = f.authorize_url(&[("client_id", client_id.as_str()), ("scope", "files:read")]);
    let first = get(start.clone());
    assert_eq!(first.status().as_u16(), 303);
    let return_to = param(&f.server.url(&location(&first)), "return_to").unwrap_or_default();
    assert_eq!(
        f.sign_in(&browser, PASSWORD, &return_to).status().as_u16(),
        303
    );
    let page = get(start).text().unwrap_or_default();
    assert!(
        page.contains("Doc Notes") && page.contains("read files"),
        "{page}"
    );
    let back = f.answer(&browser, &page, "approve", &["files:read"]);
    let code = param(&back, "code").unwrap_or_default();

    // A public client: client_id in the form, its proof the PKCE verifier.
    let redeemed = http()
        .post(f.server.url("/oauth/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", client_id.as_str()),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .unwrap_or_else(|e| panic!("{e}"));
    let status = redeemed.status().as_u16();
    let issued: Value = redeemed.json().unwrap_or(Value::Null);
    assert_eq!(status, 200, "{issued}");
    assert_eq!(issued["scope"], "files:read");
    // Its client_id is public: it proves nothing at introspection.
    let introspected = http()
        .post(f.server.url("/oauth/introspect"))
        .form(&[
            ("client_id", client_id.as_str()),
            ("token", issued["access_token"].as_str().unwrap_or_default()),
        ])
        .send()
        .map(|r| r.status().as_u16());
    assert_eq!(introspected.ok(), Some(401));
    let (_, agents) = call(&f.server, &f.admin, "GET", "/api/v1/agents", None);
    let recorded = agents["agents"]
        .as_array()
        .or(agents.as_array())
        .into_iter()
        .flatten()
        .find(|a| a["client_id"] == client_id.as_str())
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(recorded["name"], "Doc Notes", "{agents}");
    assert_eq!(recorded["token_endpoint_auth_method"], "none", "{recorded}");

    // Without --client-metadata-loopback, an http document on loopback is refused.
    let strict = flow();
    let refused = get(strict.authorize_url(&[("client_id", client_id.as_str())]));
    assert_eq!(refused.status().as_u16(), 400);
    assert!(refused.text().unwrap_or_default().contains("https"));
}

#[test]
fn the_resource_asked_for_is_the_tokens_audience() {
    let f = flow();
    let browser = browser();
    let resource = "https://files.example.com/mcp";
    let start = f.authorize_url(&[("resource", resource)]);
    let first = browser
        .get(start.clone())
        .send()
        .unwrap_or_else(|e| panic!("{e}"));
    let return_to = param(&f.server.url(&location(&first)), "return_to").unwrap_or_default();
    assert_eq!(
        f.sign_in(&browser, PASSWORD, &return_to).status().as_u16(),
        303
    );
    let page = browser
        .get(start)
        .send()
        .and_then(|r| r.text())
        .unwrap_or_default();
    assert!(page.contains(resource), "the page says what for: {page}");
    let back = f.answer(&browser, &page, "approve", &["files:read"]);
    let (status, issued) = f.redeem(&param(&back, "code").unwrap_or_default(), VERIFIER);
    assert_eq!(status, 200, "{issued}");
    let claims = |token: &str| -> Value {
        let payload = token.split('.').nth(1).unwrap_or_default();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap_or_default();
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    let access = claims(&text(&issued["access_token"]));
    assert_eq!(access["aud"], resource, "{access}");
    assert_eq!(access["act"]["sub"], f.client_id.as_str(), "{access}");
    // A refreshed token keeps the audience.
    let (_, refreshed) = f.token(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", &text(&issued["refresh_token"])),
    ]);
    assert_eq!(claims(&text(&refreshed["access_token"]))["aud"], resource);
}

#[test]
fn revoking_a_refresh_token_ends_its_family() {
    let f = flow();
    let browser = browser();
    let page = f.to_consent(&browser);
    let back = f.answer(&browser, &page, "approve", &["files:read"]);
    let (_, issued) = f.redeem(&param(&back, "code").unwrap_or_default(), VERIFIER);
    let refresh = text(&issued["refresh_token"]);
    let revoked = http()
        .post(f.server.url("/oauth/revoke"))
        .basic_auth(&f.client_id, Some(&f.secret))
        .form(&[
            ("token", refresh.as_str()),
            ("token_type_hint", "refresh_token"),
        ])
        .send()
        .map(|r| r.status().as_u16());
    assert_eq!(revoked.ok(), Some(200));
    assert!(
        !f.active(&text(&issued["access_token"])),
        "its access token ends too"
    );
    let (status, refused) =
        f.token(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)]);
    assert_eq!(
        (status, text(&refused["error"])),
        (400, "invalid_grant".into()),
        "{refused}"
    );
    let (_, agent) = call(
        &f.server,
        &f.admin,
        "GET",
        &format!("/api/v1/agents/{}", f.client_id),
        None,
    );
    assert_eq!(
        agent["open_anomalies"], 0,
        "a revocation is no anomaly: {agent}"
    );
}

#[test]
fn revoking_another_client_s_refresh_token_is_refused_and_the_family_lives_on() {
    let f = flow();
    let browser = browser();
    let page = f.to_consent(&browser);
    let back = f.answer(&browser, &page, "approve", &["files:read"]);
    let (_, issued) = f.redeem(&param(&back, "code").unwrap_or_default(), VERIFIER);
    let refresh = text(&issued["refresh_token"]);
    let body = json!({"name": "stranger", "scopes": ["files:read"],
                      "grant_types": ["client_credentials"]});
    let (stranger, secret) = register_agent(&f.server, &f.admin, body);
    // The attack: another client revokes the person's refresh token.
    let response = http()
        .post(f.server.url("/oauth/revoke"))
        .basic_auth(&stranger, Some(&secret))
        .form(&[
            ("token", refresh.as_str()),
            ("token_type_hint", "refresh_token"),
        ])
        .send()
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(response.status().as_u16(), 400);
    let refused: Value = response.json().unwrap_or(Value::Null);
    assert_eq!(refused["error"], "unauthorized_client", "{refused}");
    assert!(
        f.active(&text(&issued["access_token"])),
        "its access token lives on"
    );
    let (status, refreshed) =
        f.token(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)]);
    assert_eq!(status, 200, "the refresh token still works: {refreshed}");
}

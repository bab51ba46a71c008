//! The upstream OAuth provider of the connection tests (tools/upstream/provider.mjs,
//! node-oidc-provider) and a person connecting their account there through writ, as a
//! browser would: writ's start redirects to the provider, which signs in the person named
//! by `login_hint`, takes their consent and sends them back to writ's callback.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use crate::kit::{Server, http};

/// writ's client at the provider.
pub const CLIENT_ID: &str = "writ-app";
/// Its secret.
pub const CLIENT_SECRET: &str = "writ-app-secret-0123456789abcdef";
/// The MCP server's client there, for introspection.
pub const RS_ID: &str = "mcp-rs";
/// Its secret.
pub const RS_SECRET: &str = "mcp-rs-secret-0123456789abcdef";

/// The provider, killed when dropped.
pub struct Upstream {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

impl Upstream {
    /// Starts the provider for `writ`'s callback, its access tokens living `access_ttl`
    /// seconds, and waits until it listens.
    pub fn start(writ: &Server, access_ttl: u64) -> Upstream {
        Upstream::start_logged(writ, access_ttl, None)
    }

    /// `start`, every token it issues appended to `tokens` ("access T" / "refresh T").
    pub fn start_logged(
        writ: &Server,
        access_ttl: u64,
        tokens: Option<&std::path::Path>,
    ) -> Upstream {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("{e}"));
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/upstream/provider.mjs");
        let mut child = Command::new("node")
            .arg(script)
            .env("UPSTREAM_PORT", port.to_string())
            .env(
                "UPSTREAM_REDIRECT_URI",
                writ.url("/api/v1/connections/callback"),
            )
            .env("UPSTREAM_ACCESS_TTL", access_ttl.to_string())
            .envs(tokens.map(|path| ("UPSTREAM_TOKEN_LOG", path.as_os_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("node tools/upstream/provider.mjs (tools/test.sh installs it): {e}")
            });
        let stdout = child
            .stdout
            .take()
            .unwrap_or_else(|| panic!("piped stdout"));
        let mut lines = BufReader::new(stdout).lines();
        let up = lines
            .by_ref()
            .map_while(Result::ok)
            .any(|line| line.starts_with("upstream "));
        assert!(up, "the upstream provider did not start");
        // Keep reading what it prints: with its standard output closed, its next notice
        // would end it.
        std::thread::spawn(move || lines.for_each(drop));
        Upstream {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// The `oauth` part of a server registration at this provider.
    pub fn registration(&self) -> Value {
        json!({"auth": "oauth", "oauth": {
            "authorization_url": format!("{}/auth", self.base),
            "token_url": format!("{}/token", self.base),
            "revocation_url": format!("{}/token/revocation", self.base),
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "scopes": ["offline_access", "channels:read"],
        }})
    }

    /// The RFC 7662 endpoint the MCP server checks bearer tokens with.
    pub fn introspection_url(&self) -> String {
        format!("{}/token/introspection", self.base)
    }

    /// Whether the provider holds `token` active (RFC 7662, asked as writ's client there,
    /// the client the token was issued to).
    pub fn active(&self, token: &str) -> bool {
        let answer: Value = http()
            .post(self.introspection_url())
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(&[("token", token)])
            .send()
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("introspection at the provider: {e}"));
        match answer["active"].as_bool() {
            Some(active) => active,
            None => panic!("not an introspection answer: {answer}"),
        }
    }

    /// Takes the provider's revocation endpoint down (it answers 503) or brings it back.
    pub fn revocation_down(&self, down: bool) {
        let url = format!("{}/control/revocation-down", self.base);
        let request = if down {
            http().put(url)
        } else {
            http().delete(url)
        };
        let status = request.send().map(|r| r.status().as_u16());
        assert_eq!(status.ok(), Some(204));
    }

    /// Revokes a token at the provider, as the person would in its settings.
    pub fn revoke(&self, token: &str) {
        let status = http()
            .post(format!("{}/token/revocation", self.base))
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(&[("token", token)])
            .send()
            .map(|r| r.status().as_u16());
        assert_eq!(status.ok(), Some(200));
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The person with API key `key` connects their account `login` at server `server_id`'s
/// provider through writ; the callback's answer.
pub fn connect(writ: &Server, key: &str, server_id: &str, login: &str) -> (u16, Value) {
    let no_redirects = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let start = no_redirects
        .get(writ.url(&format!(
            "/api/v1/connections/{server_id}/start?login_hint={login}"
        )))
        .header("x-api-key", key)
        .send()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(start.status().as_u16(), 302, "start: {:?}", start.text());
    let location = start
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    // The person's browser: a cookie store, following redirects to writ's callback.
    let browser = reqwest::blocking::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let answer = browser
        .get(location)
        .send()
        .unwrap_or_else(|e| panic!("{e}"));
    let status = answer.status().as_u16();
    (status, answer.json().unwrap_or(Value::Null))
}

//! The sign-in, consent and account pages in a real browser: headless Chromium with
//! JavaScript off, driven by tools/browser/consent.mjs (playwright-core), signs in, unticks
//! a scope, allows, signs out and in again (a grant already given goes straight on to the
//! client), and revokes the grant on /account; this side redeems the code the browser
//! carried to the client and watches its token end with the revoke. What the reqwest
//! driver in `authorize` cannot see is proven here: the forms work as a browser submits
//! them (labels, buttons, and the redirects on to the client past each page's CSP).
//!
//! Screenshots of each step are kept in `target/browser-artifacts/`.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::authorize::{PASSWORD, VERIFIER, flow};

const CHROMIUM: &str = "/usr/bin/chromium";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where the screenshots of `test` go: beside the build, kept after the run.
fn artifacts(test: &str) -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| root().join("target"));
    target.join("browser-artifacts").join(test)
}

/// Fails, saying how to install it, when the browser or the driver is not there.
fn browser_installed() {
    let chromium = std::env::var("WRIT_BROWSER_CHROMIUM").unwrap_or_else(|_| CHROMIUM.into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: run tools/test.sh, or apt-get install -y chromium"
    );
    assert!(
        root()
            .join("tools/browser/node_modules/playwright-core")
            .exists(),
        "tools/browser/node_modules is missing: run tools/test.sh, or (cd tools/browser && npm ci)"
    );
}

/// The `name=value` lines consent.mjs prints, up to and with `last`'s.
fn read_until(lines: &mut impl Iterator<Item = String>, last: &str) -> BTreeMap<String, String> {
    let mut said = BTreeMap::new();
    for line in lines {
        if let Some((name, value)) = line.split_once('=') {
            said.insert(name.to_owned(), value.to_owned());
            if name == last {
                break;
            }
        }
    }
    said
}

#[test]
fn a_person_signs_in_unticks_a_scope_in_chromium_and_revokes_the_grant_on_their_account() {
    browser_installed();
    let f = flow();
    let shots = artifacts("consent");
    let mut child = Command::new("node")
        .arg(root().join("tools/browser/consent.mjs"))
        .arg(f.authorize_url(&[]))
        .args(["--email", "ada@example.com", "--password", PASSWORD])
        .args(["--agent", "Notes helper"])
        .args(["--keep", "read files", "--untick", "write files", "--pause"])
        .arg("--again")
        .arg(f.authorize_url(&[("scope", "files:read"), ("state", "st-456")]))
        .env("WRIT_BROWSER_ARTIFACTS", &shots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("node tools/browser/consent.mjs (tools/test.sh): {err}"));

    // The browser's redirect to the client, as `name=value` lines, up to `kept=`.
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
    let said = read_until(&mut lines, "kept");
    let told = |name: &str| said.get(name).cloned().unwrap_or_default();
    if told("kept").is_empty() {
        let output = child.wait_with_output().expect("consent.mjs ends");
        panic!(
            "the browser never reached the client ({}; screenshots in {}):\n{}",
            output.status,
            shots.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert_eq!(told("kept"), "files:read");
    assert_eq!(told("state"), "st-123");
    assert_eq!(told("iss"), f.server.base);

    let (status, issued) = f.redeem(&told("code"), VERIFIER);
    assert_eq!(status, 200, "{issued}");
    assert_eq!(
        issued["scope"], "files:read",
        "only the scope left ticked in the browser is granted"
    );
    let access = issued["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(f.active(&access));

    // Redeemed: the browser may now revoke the grant on /account.
    let mut stdin = child.stdin.take().expect("piped stdin");
    writeln!(stdin, "redeemed").expect("consent.mjs reads its standard input");
    drop(stdin);
    // Signed out and in again for what was granted: straight on to the client.
    let again = read_until(&mut lines, "again_code")
        .remove("again_code")
        .unwrap_or_default();
    let output = child.wait_with_output().expect("consent.mjs ends");
    assert!(
        output.status.success(),
        "consent.mjs failed ({}; screenshots in {}):\n{}",
        output.status,
        shots.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !f.active(&access),
        "revoking on /account ends the access token"
    );
    let refresh = issued["refresh_token"].as_str().unwrap_or_default();
    let (status, refused) = f.token(&[("grant_type", "refresh_token"), ("refresh_token", refresh)]);
    assert_eq!(
        (status, refused["error"].as_str()),
        (400, Some("invalid_grant")),
        "{refused}"
    );
    let (status, refused) = f.redeem(&again, VERIFIER);
    assert_eq!(
        (status, refused["error"].as_str()),
        (400, Some("invalid_grant")),
        "a code for a grant revoked since does not redeem: {refused}"
    );
    for shot in [
        "1-sign-in",
        "2-consent-unticked",
        "3-account-before-revoke",
        "4-account-revoked",
    ] {
        let path = shots.join(format!("{shot}.png"));
        assert!(path.exists(), "{} was not taken", path.display());
    }
}

//! `writ serve`: starts on one command, reports health and readiness, shuts down
//! gracefully on SIGTERM, and refuses bad settings with a clear message.

use crate::kit::*;

#[test]
fn serve_reports_healthy_and_ready_on_an_ephemeral_port() {
    let dir = temp();
    let server = Server::start(&dir.path().join("data"), &[]);
    assert!(
        server
            .banner
            .iter()
            .any(|line| line == &format!("  issuer:   {}", server.base)),
        "{:?}",
        server.banner
    );
    let client = http();
    let health = client
        .get(server.url("/healthz"))
        .send()
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(health.status(), 200);
    let ready: serde_json::Value = client
        .get(server.url("/readyz"))
        .send()
        .and_then(|response| response.error_for_status())
        .and_then(|response| response.json())
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        (
            ready["status"].as_str(),
            ready["seq"].as_u64(),
            ready["lag"].as_u64()
        ),
        (Some("ready"), Some(2), Some(0)),
        "the first start records the admin token and the signing key"
    );
    assert_eq!(server.stop(), Some(0));
}

#[test]
fn sigterm_stops_the_server_cleanly_and_the_ledger_still_verifies() {
    let dir = temp();
    make_ledger(dir.path(), 50);
    let server = Server::start(dir.path(), &[]);
    let ready: serde_json::Value = http()
        .get(server.url("/readyz"))
        .send()
        .and_then(|response| response.json())
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        ready["seq"].as_u64(),
        Some(54),
        "the ledger it opened, plus its admin token and signing key"
    );
    assert_eq!(server.stop(), Some(0));
    let run = writ(&["verify", &dir.path().display().to_string()]);
    assert!(
        run.stdout.starts_with("ok: 54 records verified"),
        "{}",
        run.stdout
    );
    // The lock went with the process: the data directory opens again at once.
    make_ledger(dir.path(), 1);
}

#[test]
fn serve_refuses_bad_settings_with_a_clear_message() {
    let dir = temp();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap_or_else(|err| panic!("{err}"));
    let shown = dir.path().display().to_string();
    let run = writ(&["serve", "--data-dir", &shown, "--listen", "127.0.0.1:0"]);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains("is not a writ data directory"),
        "{}",
        run.stderr
    );

    let run = writ(&["serve", "--data-dir", &shown, "--listen", "not-an-address"]);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr
            .contains("invalid value 'not-an-address' for '--listen"),
        "{}",
        run.stderr
    );

    let data = temp();
    let first = Server::start(data.path(), &[]);
    let port = first.base.rsplit(':').next().unwrap_or_default().to_owned();
    let other = temp();
    let run = writ(&[
        "serve",
        "--data-dir",
        &other.path().display().to_string(),
        "--listen",
        &format!("127.0.0.1:{port}"),
    ]);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr
            .contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{}",
        run.stderr
    );

    let run = writ(&[
        "serve",
        "--data-dir",
        &data.path().display().to_string(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains("is in use by another writ process"),
        "{}",
        run.stderr
    );
    assert_eq!(first.stop(), Some(0));
}

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
        (Some("ready"), Some(3), Some(0)),
        "the first start records the admin token, the signing key and the checkpoint key"
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
        Some(55),
        "the ledger it opened, plus its admin token, signing key and checkpoint key"
    );
    assert_eq!(server.stop(), Some(0));
    let run = writ(&["verify", &dir.path().display().to_string()]);
    assert!(
        run.stdout.starts_with("ok: 55 records verified"),
        "{}",
        run.stdout
    );
    // The lock went with the process: the data directory opens again at once.
    make_ledger(dir.path(), 1);
}

#[test]
fn a_sigterm_as_soon_as_the_banner_is_read_still_stops_the_server_gracefully() {
    // Scripts stop a server as soon as they have read its banner. The stop signals are
    // listened for before the banner is printed, so none of these is lost or fatal.
    let dir = temp();
    for _ in 0..5 {
        let server = Server::start(dir.path(), &[]);
        assert_eq!(server.stop(), Some(0), "a graceful stop exits 0");
    }
    let run = writ(&["verify", &dir.path().display().to_string()]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
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

#[test]
fn metrics_count_requests_by_route_and_every_request_has_an_id_in_its_log_lines() {
    let dir = temp();
    let log = dir.path().join("writ.log");
    let env = [("WRIT_LOG", "debug"), ("WRIT_LOG_FORMAT", "json")];
    let server = Server::start_logged(&dir.path().join("data"), &[], &env, Some(&log));
    let client = http();
    let request_id = |request: reqwest::blocking::RequestBuilder| {
        let response = request.send().unwrap_or_else(|err| panic!("{err}"));
        let id = response.headers().get("x-request-id").cloned();
        id.and_then(|id| id.to_str().ok().map(str::to_owned))
    };
    // A client's own id is kept; an unusable one (too long, or with spaces) is replaced.
    let given = request_id(
        client
            .get(server.url("/healthz"))
            .header("x-request-id", "trace-me-42"),
    );
    assert_eq!(given.as_deref(), Some("trace-me-42"));
    let long = "x".repeat(65);
    let replaced = request_id(
        client
            .get(server.url("/healthz"))
            .header("x-request-id", &long),
    );
    let spaced = request_id(
        client
            .get(server.url("/healthz"))
            .header("x-request-id", "a b"),
    );
    assert!(replaced.is_some() && spaced.is_some() && replaced != spaced);
    assert!(replaced.as_deref() != Some(long.as_str()) && spaced.as_deref() != Some("a b"));
    assert_eq!(
        client
            .get(server.url("/nope"))
            .send()
            .map(|r| r.status().as_u16())
            .ok(),
        Some(404)
    );

    let ready: serde_json::Value = client
        .get(server.url("/readyz"))
        .send()
        .and_then(|r| r.json())
        .unwrap_or_else(|err| panic!("{err}"));
    let response = client
        .get(server.url("/metrics"))
        .send()
        .unwrap_or_else(|err| panic!("{err}"));
    let content_type = response.headers().get("content-type").cloned();
    assert_eq!(
        content_type.as_ref().and_then(|v| v.to_str().ok()),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let metrics = response.text().unwrap_or_default();
    for expected in [
        "writ_http_requests_total{route=\"/healthz\",method=\"GET\",status=\"200\"} 3\n".to_owned(),
        // Paths nobody serves share one label: a scan cannot blow up the series count.
        "writ_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1\n"
            .to_owned(),
        format!("writ_ledger_seq {}\n", ready["seq"]),
        "writ_http_request_duration_seconds_count{route=\"/healthz\"} 3\n".to_owned(),
    ] {
        assert!(metrics.contains(&expected), "{expected} in:\n{metrics}");
    }
    // The first start wrote the admin token and the signing key: appends were timed.
    let mut series_timed = vec![
        "writ_ledger_append_seconds_count",
        "writ_ledger_batch_records_count",
    ];
    if !postgres_pass() {
        // The embedded store's own sync of its segment file.
        series_timed.push("writ_ledger_fsync_seconds_count");
    }
    for series in series_timed {
        let count = metrics
            .lines()
            .find_map(|line| line.strip_prefix(series))
            .and_then(|rest| rest.trim().parse::<u64>().ok());
        assert!(count.is_some_and(|n| n > 0), "{series} in:\n{metrics}");
    }
    assert_eq!(server.stop(), Some(0));

    let lines = std::fs::read_to_string(&log).unwrap_or_default();
    let traced = lines
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["span"]["request_id"] == "trace-me-42");
    let traced = traced.unwrap_or_else(|| panic!("no log line with the request id in:\n{lines}"));
    assert_eq!(
        (
            traced["span"]["route"].as_str(),
            traced["fields"]["status"].as_u64()
        ),
        (Some("/healthz"), Some(200)),
        "{traced}"
    );
}

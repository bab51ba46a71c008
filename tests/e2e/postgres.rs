//! writ on PostgreSQL (`--store postgres://...`), beyond the M2M loop that `m2m.rs` runs on
//! both stores: the store read from the environment, the offline commands on a ledger in
//! the database (and a record altered there named), bad store URLs.

use serde_json::json;

use crate::kit::*;

fn database_url(home: &Home) -> String {
    home.database
        .as_ref()
        .map(|db| db.url.clone())
        .unwrap_or_else(|| panic!("a PostgreSQL home"))
}

/// Runs SQL on the scratch database, as an operator with psql would.
fn sql(url: &str, statement: &str) {
    let status = std::process::Command::new("psql")
        .args(["-v", "ON_ERROR_STOP=1", "-q", url, "-c", statement])
        .status()
        .unwrap_or_else(|err| panic!("running psql: {err}"));
    assert!(status.success(), "psql {statement}");
}

#[test]
fn a_postgres_ledger_is_verified_replayed_and_exported_and_an_altered_record_is_named() {
    let home = Home::postgres();
    let url = database_url(&home);
    let server = Server::start_with(home.dir.path(), &[], &[("WRIT_STORE", &url)]);
    assert!(
        server
            .banner
            .iter()
            .any(|line| line.starts_with("  store:    postgres://")
                && line.contains("/writ_scratch_")),
        "{:?}",
        server.banner
    );
    let admin = server.admin_token();
    let body = json!({"name": "m2m", "scopes": ["s"], "grant_types": ["client_credentials"]});
    let (client_id, secret) = register_agent(&server, &admin, body);
    let _token = crate::tokens::client_token(&server, &client_id, &secret);
    assert_eq!(server.stop(), Some(0));

    let verified = writ(&["verify", "--store", &url]);
    assert_eq!(verified.code, Some(0), "{}", verified.stderr);
    assert!(
        verified
            .stdout
            .starts_with("ok: 4 records verified; head is record 4"),
        "{}",
        verified.stdout
    );
    let dir = home.dir.path().display().to_string();
    let replayed = writ(&["replay", "--data-dir", &dir, "--store", &url, "--json"]);
    assert_eq!(replayed.code, Some(0), "{}", replayed.stderr);
    let summary: serde_json::Value =
        serde_json::from_str(&replayed.stdout).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        (summary["seq"].as_u64(), summary["agents"]["total"].as_u64()),
        (Some(4), Some(1))
    );
    let export = home.dir.path().join("ledger.jsonl");
    let out = export.display().to_string();
    let exported = writ(&["export", "--data-dir", &dir, "--store", &url, "-o", &out]);
    assert_eq!(exported.code, Some(0), "{}", exported.stderr);
    let from_export = writ(&["verify", &out]);
    assert_eq!(
        from_export.stdout, verified.stdout,
        "the export verifies to the same head"
    );

    // An operator with rights to lift the append-only trigger alters record 3.
    sql(
        &url,
        "ALTER TABLE records DISABLE TRIGGER records_append_only; \
         UPDATE records SET event = replace(convert_from(event, 'UTF8'), '\"m2m\"', '\"m3m\"')::bytea \
         WHERE seq = 3; \
         ALTER TABLE records ENABLE TRIGGER records_append_only;",
    );
    let tampered = writ(&["verify", "--store", &url]);
    assert_eq!(tampered.code, Some(1), "{}", tampered.stderr);
    assert!(
        tampered.stdout.starts_with("FAILED: record 3"),
        "{}",
        tampered.stdout
    );
}

#[test]
fn bad_store_urls_and_missing_databases_are_refused_with_what_to_do() {
    let dir = temp();
    let shown = dir.path().display().to_string();
    let serve = |store: &str| writ(&["serve", "--data-dir", &shown, "--store", store]);
    let run = serve("mysql://root@localhost/writ");
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr
            .contains("expected `embedded` or a PostgreSQL URL"),
        "{}",
        run.stderr
    );
    let missing = writ::ledger::postgres::url_for_database(&test_server_url(), "writ_absent");
    let run = serve(&missing);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains("has no database `writ_absent`"),
        "{}",
        run.stderr
    );
    let run = writ(&[
        "verify",
        "--store",
        "postgres://postgres:hunter2@127.0.0.1:1/writ",
    ]);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr
            .contains("cannot connect to PostgreSQL at postgres://postgres@127.0.0.1:1/writ")
            && !run.stderr.contains("hunter2"),
        "{}",
        run.stderr
    );
}

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
    chooses_its_stores("it is about the PostgreSQL store and `writ migrate` from an embedded one");
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
            .starts_with("ok: 5 records verified; head is record 5"),
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
        (Some(5), Some(1))
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

    // An operator with rights to lift the append-only trigger alters record 4, the agent's
    // registration (after the signing key, the admin token and the checkpoint key).
    sql(
        &url,
        "ALTER TABLE records DISABLE TRIGGER records_append_only; \
         UPDATE records SET event = replace(convert_from(event, 'UTF8'), '\"m2m\"', '\"m3m\"')::bytea \
         WHERE seq = 4; \
         ALTER TABLE records ENABLE TRIGGER records_append_only;",
    );
    let tampered = writ(&["verify", "--store", &url]);
    assert_eq!(tampered.code, Some(1), "{}", tampered.stderr);
    assert!(
        tampered.stdout.starts_with("FAILED: record 4"),
        "{}",
        tampered.stdout
    );
}

#[test]
fn bad_store_urls_and_missing_databases_are_refused_with_what_to_do() {
    chooses_its_stores("it is about the PostgreSQL store and `writ migrate` from an embedded one");
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

#[test]
fn migrate_copies_an_embedded_ledger_verifies_it_resumes_a_prefix_and_refuses_another_ledger() {
    chooses_its_stores("it is about the PostgreSQL store and `writ migrate` from an embedded one");
    let source = temp();
    make_ledger(source.path(), 5000);
    let home = Home::postgres();
    let url = database_url(&home);
    let from = source.path().display().to_string();
    let migrate = |from: &str| writ(&["migrate", "--from", from, "--to", &url]);
    let verify_source = || writ(&["verify", &from]).stdout;

    let run = migrate(&from);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout
            .starts_with("ok: copied 5002 records; postgres://")
            && run.stdout.contains("ends at record 5002 with hash"),
        "{}",
        run.stdout
    );
    let in_database = writ(&["verify", "--store", &url]);
    assert_eq!(
        in_database.stdout,
        verify_source(),
        "same records, same head"
    );

    let again = migrate(&from);
    assert!(
        again
            .stdout
            .starts_with("ok: copied 0 records, resuming after record 5002"),
        "{}",
        again.stdout
    );
    // The source moves on (a migration that stopped looks the same): the rest is copied.
    let more = writ(&[
        "internal",
        "append-load",
        "--data-dir",
        &from,
        "--count",
        "10",
        "--key-prefix",
        "more",
    ]);
    assert_eq!(more.code, Some(0), "{}", more.stderr);
    let resumed = migrate(&from);
    assert!(
        resumed
            .stdout
            .starts_with("ok: copied 10 records, resuming after record 5002"),
        "{}",
        resumed.stdout
    );
    assert_eq!(writ(&["verify", "--store", &url]).stdout, verify_source());

    let other = temp();
    make_ledger(other.path(), 3);
    let refused = migrate(&other.path().display().to_string());
    assert_eq!(refused.code, Some(2));
    assert!(
        refused
            .stderr
            .contains("already holds 5012 records, more than the source's 5"),
        "{}",
        refused.stderr
    );
    let longer = temp();
    make_ledger(longer.path(), 6000);
    let refused = migrate(&longer.path().display().to_string());
    assert!(
        refused.stderr.contains("record 5012 differs") && refused.stderr.contains("another ledger"),
        "{}",
        refused.stderr
    );

    // The migrated ledger serves, with the data directory it came from for its keys. (The
    // harness's ledger had no signing key, admin token or checkpoint key: starting records
    // all three, the checkpoint key after the banner.)
    let server = Server::start(source.path(), &["--store", &url]);
    assert!(
        server
            .banner
            .iter()
            .any(|line| line.contains("(ledger at record 5014)")),
        "{:?}",
        server.banner
    );
    let ready: serde_json::Value = http()
        .get(server.url("/readyz"))
        .send()
        .and_then(|r| r.json())
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        (ready["status"].as_str(), ready["seq"].as_u64()),
        (Some("ready"), Some(5015)),
        "{ready}"
    );
    assert_eq!(server.stop(), Some(0));
}

/// What psql answers to one query, unaligned and without headers.
fn query(url: &str, statement: &str) -> String {
    let out = std::process::Command::new("psql")
        .args(["-v", "ON_ERROR_STOP=1", "-qAt", url, "-c", statement])
        .output()
        .unwrap_or_else(|err| panic!("running psql: {err}"));
    assert!(out.status.success(), "psql {statement}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn two_tenants_on_one_database_start_with_their_own_admin_tokens_and_never_see_each_other() {
    // The README's `?schema=acme` start exited 2 ("invalid PostgreSQL URL for people's
    // keys") after recording its first admin token, which it never printed.
    chooses_its_stores("it serves two tenants' ledgers from schemas of one database");
    let db = scratch_database();
    let tenant = |schema: &str| format!("{}?schema={schema}", db.url);
    let (acme_dir, globex_dir) = (temp(), temp());
    let acme = Server::start(acme_dir.path(), &["--store", &tenant("acme")]);
    let globex = Server::start(globex_dir.path(), &["--store", &tenant("globex")]);
    let (acme_admin, globex_admin) = (acme.admin_token(), globex.admin_token());
    assert_ne!(acme_admin, globex_admin);
    let ada = json!({ "email": "ada@example.com", "name": "Ada" });
    let (status, acme_ada) = call(
        &acme,
        &acme_admin,
        "POST",
        "/api/v1/users",
        Some(ada.clone()),
    );
    assert_eq!(status, 201, "{acme_ada}");
    // The same email is free in the other tenant: its people are its own.
    let (status, globex_ada) = call(&globex, &globex_admin, "POST", "/api/v1/users", Some(ada));
    assert_eq!(status, 201, "{globex_ada}");
    let grace = json!({ "email": "grace@example.com" });
    let (status, _) = call(&globex, &globex_admin, "POST", "/api/v1/users", Some(grace));
    assert_eq!(status, 201);
    let (_, acme_people) = call(&acme, &acme_admin, "GET", "/api/v1/users", None);
    let (_, globex_people) = call(&globex, &globex_admin, "GET", "/api/v1/users", None);
    let ids = |people: &serde_json::Value| -> Vec<String> {
        people
            .as_array()
            .unwrap_or_else(|| panic!("a list: {people}"))
            .iter()
            .map(|person| person["id"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(
        ids(&acme_people),
        [acme_ada["id"].as_str().unwrap_or_default()]
    );
    assert_eq!(globex_people.as_array().map(Vec::len), Some(2));
    assert!(!ids(&globex_people).contains(&acme_ada["id"].as_str().unwrap_or_default().to_owned()));
    // One tenant's admin token is nobody at the other.
    let (status, refused) = call(&globex, &acme_admin, "GET", "/api/v1/users", None);
    assert_eq!(status, 401, "{refused}");
    // Records, heads and people's keys are in each tenant's schema, and none in public.
    let count = |table: &str| query(&db.url, &format!("SELECT count(*) FROM {table}"));
    assert_eq!(count("acme.writ_person_keys"), "1");
    assert_eq!(count("globex.writ_person_keys"), "2");
    let key_of = |table: &str, id: &serde_json::Value| {
        let id = id["id"].as_str().unwrap_or_default();
        count(&format!("{table} WHERE user_id = '{id}'"))
    };
    assert_eq!(key_of("globex.writ_person_keys", &acme_ada), "0");
    assert_eq!(key_of("acme.writ_person_keys", &globex_ada), "0");
    let (_, acme_head) = call(&acme, &acme_admin, "GET", "/api/v1/ledger/head", None);
    let (_, globex_head) = call(&globex, &globex_admin, "GET", "/api/v1/ledger/head", None);
    assert_eq!(count("acme.records"), acme_head["seq"].to_string());
    assert_eq!(count("globex.records"), globex_head["seq"].to_string());
    assert_ne!(acme_head["hash"], globex_head["hash"]);
    assert_eq!(
        count("pg_tables WHERE schemaname = 'public'"),
        "0",
        "no table of writ's outside the tenants' schemas"
    );
    drop((acme, globex));
    for schema in ["acme", "globex"] {
        let verified = writ(&["verify", "--store", &tenant(schema)]);
        assert_eq!(verified.code, Some(0), "{verified:?}");
    }
}

#[test]
fn a_first_start_that_fails_after_recording_its_admin_token_prints_the_token() {
    // A first start that failed past its first record lost the generated admin token: the
    // ledger had one, so no later start generated or showed another.
    chooses_its_stores("it holds the port the server asks for");
    let home = Home::postgres();
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|err| panic!("{err}"));
    let port = held
        .local_addr()
        .map(|addr| addr.to_string())
        .unwrap_or_default();
    let dir = home.dir.path().display().to_string();
    let url = database_url(&home);
    let failed = writ(&[
        "serve",
        "--data-dir",
        &dir,
        "--store",
        &url,
        "--listen",
        &port,
    ]);
    assert_eq!(failed.code, Some(2), "{failed:?}");
    assert!(
        failed.stderr.contains(&format!("cannot listen on {port}")),
        "{}",
        failed.stderr
    );
    let prefix = "the admin token this first start recorded (shown once, keep it): ";
    let token = failed
        .stderr
        .lines()
        .find_map(|line| line.trim().strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no admin token in {}", failed.stderr))
        .to_owned();
    drop(held);
    let server = Server::start(home.dir.path(), &["--store", &url]);
    assert!(
        !server
            .banner
            .iter()
            .any(|line| line.trim_start().starts_with("admin token")),
        "the ledger has its admin token: {:?}",
        server.banner
    );
    let (status, people) = call(&server, &token, "GET", "/api/v1/users", None);
    assert_eq!(status, 200, "{people}");
}

//! Erasure without breaking the chain (GDPR Art. 17), over real HTTP and real files: a
//! person's email, name and their agents' stated intents round-trip while they exist; once
//! erased (`POST /api/v1/users/{id}/erase`, or `writ admin erase-user` offline) none of it
//! is anywhere in the data directory, the export, the audit trail or the server's log,
//! their listings read "[erased]", the trail still names them by id, a restart (replaying
//! with the key gone) serves, and `writ verify` passes.

use std::path::Path;

use serde_json::{Value, json};

use crate::delegation::{api_key, as_user};
use crate::kit::*;

const EMAIL: &str = "grace.hopper-erasure-7f3a@example.org";
const NAME: &str = "Grace Brewster-Erasure";
const INTENT: &str = "reconcile the Hopper-erasure-9b1c ledger for Grace";

/// Every file under `dir` whose bytes contain `needle`, by path.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if contains(&std::fs::read(&path).unwrap(), needle) {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Each personal datum of the test's person that `bytes` still hold.
fn personal_data_in(bytes: &[u8]) -> Vec<&'static str> {
    [EMAIL, NAME, INTENT, "Hopper-erasure", "hopper-erasure"]
        .into_iter()
        .filter(|needle| contains(bytes, needle.as_bytes()))
        .collect()
}

fn users(server: &Server, admin: &str) -> Vec<Value> {
    let (status, listed) = call(server, admin, "GET", "/api/v1/users", None);
    assert_eq!(status, 200, "{listed}");
    listed.as_array().cloned().unwrap_or_default()
}

fn user<'a>(listed: &'a [Value], id: &str) -> &'a Value {
    listed
        .iter()
        .find(|user| user["id"] == id)
        .unwrap_or_else(|| panic!("user {id} not listed: {listed:?}"))
}

fn delegator_email(server: &Server, admin: &str, client_id: &str) -> Value {
    let path = format!("/api/v1/agents/{client_id}/delegations");
    let (status, listed) = call(server, admin, "GET", &path, None);
    assert_eq!(status, 200, "{listed}");
    listed[0]["delegator_email"].clone()
}

fn token_for(server: &Server, client_id: &str, secret: &str, user_id: &str) -> Value {
    let response = http()
        .post(server.url("/oauth/token"))
        .basic_auth(client_id, Some(secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("actor_token", user_id),
            (
                "actor_token_type",
                "urn:writ:params:oauth:token-type:user-id",
            ),
            ("intent_description", INTENT),
        ])
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.json().unwrap()
}

#[test]
fn an_erased_person_leaves_no_plaintext_anywhere_and_the_chain_still_verifies() {
    about_the_embedded_store(
        "scans every file of the data directory, where the embedded store keeps the records, and reads them with `writ audit`",
    );
    let dir = temp();
    let outside = temp();
    let log = outside.path().join("server.log");
    let debug = [("WRIT_LOG", "debug")];
    let server = Server::start_logged(dir.path(), &[], &debug, Some(&log));
    let admin = server.admin_token();

    // While they exist, their data round-trips.
    let body = json!({ "email": EMAIL, "name": NAME });
    let (status, created) = call(&server, &admin, "POST", "/api/v1/users", Some(body));
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        (created["email"].as_str(), created["name"].as_str()),
        (Some(EMAIL), Some(NAME))
    );
    let grace = created["id"].as_str().unwrap().to_owned();
    let listed = users(&server, &admin);
    assert_eq!(user(&listed, &grace)["email"], EMAIL);
    // Emails stay unique, whatever their case, without the ledger holding one.
    let again = json!({ "email": EMAIL.to_uppercase() });
    let (status, refused) = call(&server, &admin, "POST", "/api/v1/users", Some(again));
    assert_eq!(status, 409, "{refused}");
    assert!(!personal_data_in(refused.to_string().as_bytes()).contains(&EMAIL));

    let (grace_key, _) = api_key(&server, &admin, &grace);
    let agent = json!({"name": "books", "scopes": ["books:read"],
                       "grant_types": ["client_credentials"], "owner": EMAIL});
    let (client_id, secret) = register_agent(&server, &admin, agent);
    let path = format!("/api/v1/agents/{client_id}/delegations");
    let (status, granted) = as_user(&server, &grace_key, "POST", &path, Some(json!({})));
    assert_eq!(status, 201, "{granted}");
    assert_eq!(delegator_email(&server, &admin, &client_id), EMAIL);
    let (status, agent_view) = call(
        &server,
        &admin,
        "GET",
        &format!("/api/v1/agents/{client_id}"),
        None,
    );
    assert_eq!(
        (status, agent_view["owner_email"].as_str()),
        (200, Some(EMAIL))
    );

    let issued = token_for(&server, &client_id, &secret, &grace);
    assert_eq!(issued["intent_description"], INTENT);
    let token = issued["access_token"].as_str().unwrap().to_owned();
    let seen = introspect(&server, &client_id, &secret, &token);
    assert_eq!(
        (
            seen["active"].as_bool(),
            seen["intent_description"].as_str()
        ),
        (Some(true), Some(INTENT))
    );
    let operation = json!({"operation": "books/read", "resource": "ledger-2026"});
    let (status, used) = call(
        &server,
        &token,
        "POST",
        "/api/v1/operations",
        Some(operation),
    );
    assert_eq!(status, 200, "{used}");

    // Erase them.
    let (status, erased) = call(
        &server,
        &admin,
        "POST",
        &format!("/api/v1/users/{grace}/erase"),
        None,
    );
    assert_eq!(status, 200, "{erased}");
    assert_eq!(
        (
            erased["erased"].as_bool(),
            erased["tokens_revoked"].as_u64(),
            erased["key_destroyed"].as_bool()
        ),
        (Some(true), Some(1), Some(true))
    );
    let (status, twice) = call(
        &server,
        &admin,
        "POST",
        &format!("/api/v1/users/{grace}/erase"),
        None,
    );
    assert_eq!(status, 409, "{twice}");
    assert!(
        twice["detail"].as_str().unwrap().contains("was erased"),
        "{twice}"
    );
    let (status, back) = call(
        &server,
        &admin,
        "POST",
        &format!("/api/v1/users/{grace}/reactivate"),
        None,
    );
    assert_eq!(status, 409, "{back}");
    let listed = users(&server, &admin);
    let shown = user(&listed, &grace);
    assert_eq!(
        (
            shown["email"].as_str(),
            shown["name"].as_str(),
            shown["erased"].as_bool(),
            shown["active"].as_bool()
        ),
        (Some("[erased]"), Some("[erased]"), Some(true), Some(false))
    );
    assert_eq!(delegator_email(&server, &admin, &client_id), "[erased]");
    let (_, agent_view) = call(
        &server,
        &admin,
        "GET",
        &format!("/api/v1/agents/{client_id}"),
        None,
    );
    assert_eq!(agent_view["owner_email"], "[erased]");
    assert_eq!(
        introspect(&server, &client_id, &secret, &token)["active"],
        false
    );
    assert_eq!(server.stop(), Some(0));

    // A restart replays with the key gone, from a snapshot and from record 1 alike.
    for snapshots in [false, true] {
        if snapshots {
            let folder = dir.path().join("snapshots");
            for entry in std::fs::read_dir(&folder).unwrap() {
                let path = entry.unwrap().path();
                std::fs::remove_file(&path)
                    .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
            }
        }
        let server = Server::start_logged(
            dir.path(),
            &[],
            &debug,
            Some(&outside.path().join("again.log")),
        );
        let listed = users(&server, &admin);
        assert_eq!(user(&listed, &grace)["email"], "[erased]");
        assert_eq!(delegator_email(&server, &admin, &client_id), "[erased]");
        assert_eq!(server.stop(), Some(0));
    }

    let data_dir = dir.path().display().to_string();
    let verified = writ(&["verify", &data_dir]);
    assert_eq!(
        verified.code,
        Some(0),
        "{}{}",
        verified.stdout,
        verified.stderr
    );
    let export = outside.path().join("export.jsonl");
    export_to(dir.path(), &export);
    let exported = std::fs::read(&export).unwrap();
    assert!(contains(&exported, b"\"type\":\"UserErased\""));
    assert!(
        contains(&exported, b"\"email_sealed\""),
        "the registration is still there, sealed"
    );
    let audit = writ(&["audit", "--data-dir", &data_dir]);
    assert_eq!(audit.code, Some(0), "{}", audit.stderr);
    let erasure = audit
        .stdout
        .lines()
        .find(|line| line.contains("did UserErased"))
        .unwrap_or_else(|| panic!("no erasure in the trail:\n{}", audit.stdout));
    assert!(
        erasure.contains(&grace),
        "the trail names them by id: {erasure}"
    );
    assert!(
        audit.stdout.lines().any(|line| line.contains(&format!(
            "user {grace}, via agent {client_id}, did OperationRecorded"
        ))),
        "{}",
        audit.stdout
    );

    // Nowhere: no file of the data directory (segments, snapshots, keys), the export, the
    // trail, or either log.
    for needle in [EMAIL, NAME, INTENT, "Hopper-erasure"] {
        assert_eq!(
            files_holding(dir.path(), needle.as_bytes()),
            Vec::<String>::new(),
            "{needle}"
        );
    }
    assert_eq!(personal_data_in(&exported), Vec::<&str>::new());
    assert_eq!(
        personal_data_in(audit.stdout.as_bytes()),
        Vec::<&str>::new()
    );
    for log in ["server.log", "again.log"] {
        let logged = std::fs::read(outside.path().join(log)).unwrap();
        assert!(!logged.is_empty(), "the server logged at debug level");
        assert_eq!(personal_data_in(&logged), Vec::<&str>::new(), "{log}");
    }
}

#[test]
fn writ_admin_erase_user_erases_offline_and_refuses_what_it_cannot() {
    let dir = temp();
    let server = Server::start(dir.path(), &[]);
    let admin = server.admin_token();
    let body = json!({ "email": EMAIL, "name": NAME });
    let (status, created) = call(&server, &admin, "POST", "/api/v1/users", Some(body));
    assert_eq!(status, 201, "{created}");
    let grace = created["id"].as_str().unwrap().to_owned();
    let data_dir = dir.path().display().to_string();

    // While the server runs it holds the data directory: the command says where to go.
    let busy = writ(&["admin", "erase-user", &grace, "--data-dir", &data_dir]);
    assert_eq!(busy.code, Some(2));
    assert!(
        busy.stderr
            .contains(&format!("POST /api/v1/users/{grace}/erase")),
        "{}",
        busy.stderr
    );
    assert_eq!(server.stop(), Some(0));

    let unknown = writ(&[
        "admin",
        "erase-user",
        "no-such-user",
        "--data-dir",
        &data_dir,
    ]);
    assert_eq!(unknown.code, Some(2));
    assert!(
        unknown
            .stderr
            .contains("user no-such-user is not registered"),
        "{}",
        unknown.stderr
    );
    let erased = writ(&["admin", "erase-user", &grace, "--data-dir", &data_dir]);
    assert_eq!(erased.code, Some(0), "{}", erased.stderr);
    assert!(
        erased.stderr.contains("their key destroyed"),
        "{}",
        erased.stderr
    );
    let twice = writ(&["admin", "erase-user", &grace, "--data-dir", &data_dir]);
    assert_eq!(twice.code, Some(2));
    assert!(
        twice.stderr.contains(&format!("user {grace} was erased")),
        "{}",
        twice.stderr
    );

    let verified = writ(&["verify", &data_dir]);
    assert_eq!(
        verified.code,
        Some(0),
        "{}{}",
        verified.stdout,
        verified.stderr
    );
    assert_eq!(
        files_holding(dir.path(), EMAIL.as_bytes()),
        Vec::<String>::new()
    );
    let server = Server::start(dir.path(), &[]);
    let listed = users(&server, &admin);
    assert_eq!(user(&listed, &grace)["email"], "[erased]");
    // The address is free again, for someone new, under a key of their own.
    let body = json!({ "email": EMAIL });
    let (status, next) = call(&server, &admin, "POST", "/api/v1/users", Some(body));
    assert_eq!(
        (status, next["email"].as_str()),
        (201, Some(EMAIL)),
        "{next}"
    );
    assert_eq!(server.stop(), Some(0));
}

#[test]
fn on_postgresql_the_key_is_a_row_every_node_reads_and_erasure_deletes_it() {
    use writ::people::{PersonKeyStore as _, PostgresKeys};
    let home = Home::postgres();
    let url = home.database.as_ref().unwrap().url.clone();
    let server = Server::start_in(&home, &[]);
    let admin = server.admin_token();
    let body = json!({ "email": EMAIL, "name": NAME });
    let (status, created) = call(&server, &admin, "POST", "/api/v1/users", Some(body));
    assert_eq!(status, 201, "{created}");
    let grace = writ_schemas::UserId(created["id"].as_str().unwrap().to_owned());
    let keys = PostgresKeys::open(&url).unwrap();
    assert!(
        keys.get(&grace).unwrap().is_some(),
        "the key is a row in the database"
    );
    assert!(
        !home
            .dir
            .path()
            .join("keys/people")
            .join(format!("{grace}.key"))
            .exists()
    );

    let erase = format!("/api/v1/users/{grace}/erase");
    let (status, erased) = call(&server, &admin, "POST", &erase, None);
    assert_eq!(
        (status, erased["key_destroyed"].as_bool()),
        (200, Some(true)),
        "{erased}"
    );
    assert!(keys.get(&grace).unwrap().is_none(), "the row is deleted");
    assert_eq!(
        user(&users(&server, &admin), grace.as_str())["email"],
        "[erased]"
    );
    assert_eq!(server.stop(), Some(0));

    let server = Server::start_in(&home, &[]);
    assert_eq!(
        user(&users(&server, &admin), grace.as_str())["name"],
        "[erased]"
    );
    assert_eq!(server.stop(), Some(0));
    let verified = writ(&["verify", "--store", &url]);
    assert_eq!(
        verified.code,
        Some(0),
        "{}{}",
        verified.stdout,
        verified.stderr
    );
    assert_eq!(
        files_holding(home.dir.path(), EMAIL.as_bytes()),
        Vec::<String>::new()
    );
}

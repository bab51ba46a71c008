//! The auditor's questions over real HTTP: time travel (which delegations were in force,
//! which tokens could act for a person, what an agent could do, as of a record or an
//! instant), the compliance trail with its filters and pages, and its exports as JSON
//! lines and spreadsheet-safe CSV, held to `writ export --audit` on the stopped server's
//! data directory.

use serde_json::{Value, json};

use crate::delegation::{api_key, as_user, person};
use crate::kit::*;

const USER_ID: &str = "urn:writ:params:oauth:token-type:user-id";
const FORMULA: &str = "=HYPERLINK(\"http://evil.example\",\"click\")";

/// A server (snapshotting every 4 records, so questions about the past start from
/// snapshots) where a person granted an agent a delegation, the agent got a token on
/// their behalf and used it once, and the person revoked the delegation; the head's seq
/// after each step.
struct Story {
    home: Home,
    server: Server,
    admin: String,
    ada: String,
    client_id: String,
    delegation: String,
    jti: String,
    /// Seqs: before the grant, after the grant, the issuance, the use, the revocation.
    before: u64,
    granted: u64,
    issued: u64,
    used: u64,
    revoked: u64,
}

fn head_seq(server: &Server, admin: &str) -> u64 {
    let (status, head) = call(server, admin, "GET", "/api/v1/ledger/head", None);
    assert_eq!(status, 200, "{head}");
    head["seq"].as_u64().unwrap()
}

fn story() -> Story {
    story_in(Home::embedded())
}

fn story_in(home: Home) -> Story {
    let server = Server::start_in(&home, &["--snapshot-every-records", "4"]);
    let admin = server.admin_token();
    let ada = person(&server, &admin, "ada@example.com");
    let (key, _) = api_key(&server, &admin, &ada);
    let agent = json!({"name": "files", "scopes": ["files:read"],
                       "grant_types": ["client_credentials"]});
    let (client_id, secret) = register_agent(&server, &admin, agent);
    let before = head_seq(&server, &admin);

    let path = format!("/api/v1/agents/{client_id}/delegations");
    let (status, granted) = as_user(&server, &key, "POST", &path, Some(json!({})));
    assert_eq!(status, 201, "{granted}");
    let delegation = granted["id"].as_str().unwrap().to_owned();
    let granted = head_seq(&server, &admin);

    let response = http()
        .post(server.url("/oauth/token"))
        .basic_auth(&client_id, Some(&secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("actor_token", ada.as_str()),
            ("actor_token_type", USER_ID),
            ("max_operations", "5"),
            ("intent_description", FORMULA),
        ])
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let token: Value = response.json().unwrap();
    let access = token["access_token"].as_str().unwrap().to_owned();
    let claims = introspect(&server, &client_id, &secret, &access);
    let jti = claims["jti"].as_str().unwrap().to_owned();
    let issued = head_seq(&server, &admin);

    let used = http()
        .post(server.url("/api/v1/operations"))
        .bearer_auth(&access)
        .json(&json!({"operation": "tools/call", "resource": "=1+2"}))
        .send()
        .unwrap();
    assert_eq!(used.status().as_u16(), 200);
    let used = head_seq(&server, &admin);

    let path = format!("/api/v1/delegations/{delegation}");
    let (status, _) = as_user(&server, &key, "DELETE", &path, None);
    assert_eq!(status, 204);
    let revoked = head_seq(&server, &admin);
    assert!(before < granted && granted < issued && issued < used && used < revoked);
    Story {
        home,
        server,
        admin,
        ada,
        client_id,
        delegation,
        jti,
        before,
        granted,
        issued,
        used,
        revoked,
    }
}

impl Story {
    fn get(&self, path: &str) -> (u16, Value) {
        call(&self.server, &self.admin, "GET", path, None)
    }

    fn ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    /// (delegation ids in force, token jtis that could act for ada, and the agent's view's
    /// delegation and token counts) as of `when` (`as_of_seq=N` or `as_of=T`), each answer
    /// anchored to the same record.
    fn moment(&self, when: &str) -> (Vec<String>, Vec<String>, (usize, usize), u64) {
        let ids = |list: &Value, field: &str| -> Vec<String> {
            list.as_array()
                .unwrap()
                .iter()
                .map(|item| item[field].as_str().unwrap().to_owned())
                .collect()
        };
        let delegations = self.ok(&format!("/api/v1/audit/delegations?{when}"));
        let tokens = self.ok(&format!("/api/v1/audit/tokens?user={}&{when}", self.ada));
        let agent = self.ok(&format!("/api/v1/audit/agents/{}?{when}", self.client_id));
        let seq = delegations["as_of"]["seq"].as_u64().unwrap();
        for answer in [&tokens, &agent] {
            // The same record; `at` is the instant each was asked when no moment is given.
            for field in ["seq", "hash", "ts"] {
                assert_eq!(
                    answer["as_of"][field], delegations["as_of"][field],
                    "{when}"
                );
            }
        }
        assert_eq!(agent["agent"]["status"], "active");
        (
            ids(&delegations["delegations"], "id"),
            ids(&tokens["tokens"], "jti"),
            (
                agent["delegations"].as_array().unwrap().len(),
                agent["tokens"].as_array().unwrap().len(),
            ),
            seq,
        )
    }

    /// The trail's time of record `seq`.
    fn ts_of(&self, seq: u64) -> String {
        let page = self.ok(&format!("/api/v1/audit?cursor={}&limit=1", seq - 1));
        assert_eq!(page["entries"][0]["seq"], seq);
        page["entries"][0]["ts"].as_str().unwrap().to_owned()
    }
}

#[test]
fn questions_as_of_each_step_of_grant_use_revoke_get_the_state_at_that_step() {
    let s = story();
    let (d, t) = (vec![s.delegation.clone()], vec![s.jti.clone()]);
    let none: Vec<String> = Vec::new();
    let steps = [
        (s.before, none.clone(), none.clone(), (0, 0)),
        (s.granted, d.clone(), none.clone(), (1, 0)),
        (s.issued, d.clone(), t.clone(), (1, 1)),
        (s.used, d.clone(), t.clone(), (1, 1)),
        (s.revoked, none.clone(), none.clone(), (0, 0)),
    ];
    for (seq, delegations, tokens, agent) in &steps {
        let (in_force, acting, view, anchored) = s.moment(&format!("as_of_seq={seq}"));
        assert_eq!(
            (&in_force, &acting, &view),
            (delegations, tokens, agent),
            "as of record {seq}"
        );
        assert_eq!(anchored, *seq);
    }
    // The quota as it stood: five operations before the use, four after.
    for (seq, remaining) in [(s.issued, 5), (s.used, 4)] {
        let tokens = s.ok(&format!(
            "/api/v1/audit/tokens?user={}&as_of_seq={seq}",
            s.ada
        ));
        assert_eq!(tokens["tokens"][0]["operations_remaining"], remaining);
        assert_eq!(tokens["tokens"][0]["agents"], json!([s.client_id]));
    }
    // As of an instant: the last record at or before it, statuses taken then.
    for (seq, delegations, tokens, agent) in &steps[1..] {
        let ts = s.ts_of(*seq);
        let (in_force, acting, view, anchored) = s.moment(&format!("as_of={ts}"));
        assert_eq!(
            (&in_force, &acting, &view),
            (delegations, tokens, agent),
            "as of {ts}"
        );
        assert!(
            anchored >= *seq,
            "{ts} falls on record {anchored}, not before {seq}"
        );
    }
    // The live answer is the last step's, and the questions above changed nothing.
    assert_eq!(s.moment("limit=10").0, none);
    let head = s.ok("/api/v1/audit/delegations");
    assert_eq!(head["as_of"]["seq"], s.revoked);
    assert_eq!(head_seq(&s.server, &s.admin), s.revoked);
    // The answers are anchored to the record's own hash.
    let trail = s.ok(&format!("/api/v1/audit?cursor={}&limit=1", s.granted - 1));
    let delegations = s.ok(&format!(
        "/api/v1/audit/delegations?as_of_seq={}",
        s.granted
    ));
    assert_eq!(delegations["as_of"]["hash"], trail["entries"][0]["hash"]);
    assert_eq!(s.server.stop(), Some(0));
}

#[test]
fn impossible_moments_get_a_400_that_says_what_to_ask_instead() {
    let s = story();
    let past = s.revoked + 1;
    for (path, status, says) in [
        (
            "/api/v1/audit/delegations?as_of_seq=0".to_owned(),
            400,
            "as_of_seq: records are numbered from 1",
        ),
        (
            format!("/api/v1/audit/delegations?as_of_seq={past}"),
            400,
            "past the ledger's head",
        ),
        (
            "/api/v1/audit/delegations?as_of_seq=1&as_of=2026-01-01T00:00:00Z".into(),
            400,
            "not both",
        ),
        (
            "/api/v1/audit/delegations?as_of=1999-01-01T00:00:00Z".into(),
            400,
            "before the ledger began",
        ),
        (
            "/api/v1/audit/delegations?as_of=2999-01-01T00:00:00Z".into(),
            400,
            "in the future",
        ),
        (
            "/api/v1/audit/delegations?as_of=yesterday".into(),
            400,
            "not an RFC 3339 time",
        ),
        (
            "/api/v1/audit/delegations?as_of_seq=x".into(),
            400,
            "not a whole number",
        ),
        (
            "/api/v1/audit/delegations?as_of_seq=1&as_of_seq=2".into(),
            400,
            "given twice",
        ),
        (
            "/api/v1/audit/delegations?when=1".into(),
            400,
            "unknown parameter",
        ),
        (
            "/api/v1/audit/delegations?limit=0".into(),
            400,
            "limit: 0 is out of range",
        ),
        ("/api/v1/audit/tokens".into(), 400, "user: required"),
        (
            "/api/v1/audit/tokens?user=nobody".into(),
            404,
            "no user nobody",
        ),
        (
            "/api/v1/audit/agents/agt_nobody".into(),
            404,
            "no agent agt_nobody",
        ),
        (
            format!("/api/v1/audit/agents/{}?as_of_seq=1", s.client_id),
            404,
            "as of record 1",
        ),
        (
            "/api/v1/audit?action=Bogus".into(),
            400,
            "not an event kind",
        ),
        (
            "/api/v1/audit?from=2026-11-23T10:00:00Z&to=2026-11-23T09:00:00Z".into(),
            400,
            "from:",
        ),
        (format!("/api/v1/audit?cursor={past}"), 400, "cursor:"),
        (
            "/api/v1/audit/export?format=xlsx".into(),
            400,
            "use jsonl or csv",
        ),
    ] {
        let (got, body) = s.get(&path);
        assert_eq!(got, status, "{path}: {body}");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(says), "{path}: {detail}");
    }
    let unauthenticated = http()
        .get(s.server.url("/api/v1/audit/delegations"))
        .send()
        .unwrap();
    assert_eq!(unauthenticated.status().as_u16(), 401);
    assert_eq!(s.server.stop(), Some(0));
}

fn entries(page: &Value) -> Vec<Value> {
    page["entries"].as_array().unwrap().clone()
}

#[test]
fn the_trail_filters_by_user_agent_action_outcome_and_time_and_pages_by_cursor() {
    let s = story();
    let everything = s.ok(&format!("/api/v1/audit?as_of_seq={}&limit=1000", s.revoked));
    let all = entries(&everything);
    assert_eq!(all.len() as u64, s.revoked, "one entry per record");
    assert_eq!(everything["next_cursor"], Value::Null);
    for (index, entry) in all.iter().enumerate() {
        assert_eq!(entry["seq"], index as u64 + 1);
    }

    let used = entries(&s.ok(&format!(
        "/api/v1/audit?action=OperationRecorded&user={}",
        s.ada
    )));
    assert_eq!(used.len(), 1, "{used:?}");
    assert_eq!(used[0]["seq"], s.used);
    let sentence = used[0]["sentence"].as_str().unwrap();
    assert!(
        sentence.starts_with(&format!(
            "user {}, via agent {}, did OperationRecorded on tools/call =1+2 with token {}, at ",
            s.ada, s.client_id, s.jti
        )),
        "{sentence}"
    );
    assert!(sentence.ends_with(", succeeded"), "{sentence}");

    let by_user = entries(&s.ok(&format!("/api/v1/audit?user={}", s.ada)));
    assert!(by_user.iter().all(|e| e["user"] == s.ada.as_str()));
    let actions: Vec<&str> = by_user
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in [
        "UserRegistered",
        "ApiKeyIssued",
        "DelegationGranted",
        "TokenIssued",
        "OperationRecorded",
        "DelegationRevoked",
        "TokenRevoked",
    ] {
        assert!(
            actions.contains(&action),
            "{action} missing from {actions:?}"
        );
    }
    let by_agent = entries(&s.ok(&format!("/api/v1/audit?agent={}", s.client_id)));
    assert!(by_agent.iter().all(|e| {
        e["agents"]
            .as_array()
            .unwrap()
            .contains(&json!(s.client_id))
    }));
    assert!(by_agent.iter().any(|e| e["action"] == "AgentRegistered"));

    let revoked = entries(&s.ok("/api/v1/audit?outcome=revoked"));
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0]["action"], "TokenRevoked");
    assert!(
        revoked[0]["outcome"]
            .as_str()
            .unwrap()
            .contains(&s.delegation)
    );

    let (from, to) = (s.ts_of(s.granted), s.ts_of(s.used));
    let window = entries(&s.ok(&format!("/api/v1/audit?from={from}&to={to}")));
    let seqs: Vec<u64> = window.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs.first(), Some(&s.granted));
    assert_eq!(seqs.last(), Some(&s.used));

    // Pages of two, following next_cursor on a fixed trail, give the whole trail.
    let mut paged = Vec::new();
    let mut cursor = None;
    loop {
        let mut path = format!("/api/v1/audit?as_of_seq={}&limit=2", s.revoked);
        if let Some(cursor) = cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let page = s.ok(&path);
        let got = entries(&page);
        assert!(got.len() <= 2);
        paged.extend(got);
        match page["next_cursor"].as_u64() {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(paged, all);
    // A trail as of an earlier record ends there.
    let earlier = entries(&s.ok(&format!("/api/v1/audit?as_of_seq={}&limit=1000", s.issued)));
    assert_eq!(earlier.last().unwrap()["seq"], s.issued);
    assert_eq!(s.server.stop(), Some(0));
}

fn export(s: &Story, format: &str) -> (String, String) {
    let response = http()
        .get(
            s.server
                .url(&format!("/api/v1/audit/export?format={format}")),
        )
        .bearer_auth(&s.admin)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let anchor = response.headers()["x-writ-as-of-seq"]
        .to_str()
        .unwrap()
        .to_owned();
    (anchor, response.text().unwrap())
}

#[test]
fn exports_carry_every_record_are_spreadsheet_safe_and_match_the_offline_export() {
    let s = story();
    let (anchor, jsonl) = export(&s, "jsonl");
    let (_, csv) = export(&s, "csv");
    assert_eq!(anchor, s.revoked.to_string());
    let rows: Vec<Value> = jsonl
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(rows.len() as u64, s.revoked);
    let issued = &rows[s.issued as usize - 1];
    assert_eq!(issued["action"], "TokenIssued");
    assert_eq!(
        issued["intent"], FORMULA,
        "JSON lines keep the value as it was"
    );

    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(header[..3], ["seq", "hash", "ts"]);
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len() as u64, s.revoked);
    let intent = header.iter().position(|h| h == "intent").unwrap();
    let target = header.iter().position(|h| h == "target").unwrap();
    assert_eq!(
        &records[s.issued as usize - 1][intent],
        format!("'{FORMULA}")
    );
    assert!(
        !csv.contains(&format!(",{FORMULA}")) && !csv.contains(&format!(",\"{}", &FORMULA[..5]))
    );
    let op_target = &records[s.used as usize - 1][target];
    assert!(op_target.starts_with("tools/call =1+2"), "{op_target}");
    // Every row carries its record's seq and hash, as the records export has them.
    assert_eq!(s.server.stop(), Some(0));
    let dir = s.home.dir.path().display().to_string();
    let hashes = record_hashes(&s.home);
    for (row, record) in rows.iter().zip(&hashes) {
        assert_eq!(row["hash"].as_str(), Some(record.as_str()));
    }
    for (row, record) in records.iter().zip(&hashes) {
        assert_eq!(&row[1], record);
    }
    offline_exports_are(&s.home, &jsonl, &csv);
    let run = writ(&["export", "--data-dir", &dir, "--format", "csv"]);
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("add --audit"), "{}", run.stderr);
}

/// The hash of every record, from `writ export` of the stopped server's ledger.
fn record_hashes(home: &Home) -> Vec<String> {
    let out = home.dir.path().join("records.jsonl");
    let (dir, shown) = (
        home.dir.path().display().to_string(),
        out.display().to_string(),
    );
    let mut args = vec!["export", "--data-dir", &dir, "-o", &shown];
    let store = home.store_args();
    args.extend(store.iter().map(String::as_str));
    let run = writ(&args);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|line| {
            let record: Value = serde_json::from_str(line).unwrap();
            record["hash"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// `writ export --audit` of the stopped server's ledger, replaying it: the same bytes as
/// the server's exports.
fn offline_exports_are(home: &Home, jsonl: &str, csv: &str) {
    let dir = home.dir.path().display().to_string();
    for (format, served) in [("jsonl", jsonl), ("csv", csv)] {
        let out = home.dir.path().join(format!("trail.{format}"));
        let shown = out.display().to_string();
        let mut args = vec![
            "export",
            "--data-dir",
            &dir,
            "--audit",
            "--format",
            format,
            "-o",
            &shown,
        ];
        let store = home.store_args();
        args.extend(store.iter().map(String::as_str));
        let run = writ(&args);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        assert_eq!(std::fs::read_to_string(&out).unwrap(), served, "{format}");
    }
}

#[test]
fn on_postgresql_the_past_and_the_trail_read_the_same() {
    let s = story_in(Home::postgres());
    let (in_force, acting, view, _) = s.moment(&format!("as_of_seq={}", s.issued));
    assert_eq!(in_force, vec![s.delegation.clone()]);
    assert_eq!(acting, vec![s.jti.clone()]);
    assert_eq!(view, (1, 1));
    let (in_force, acting, _, _) = s.moment(&format!("as_of_seq={}", s.revoked));
    assert!(in_force.is_empty() && acting.is_empty());
    let paged = entries(&s.ok(&format!("/api/v1/audit?as_of_seq={}&limit=1000", s.revoked)));
    assert_eq!(paged.len() as u64, s.revoked);
    let (anchor, jsonl) = export(&s, "jsonl");
    let (_, csv) = export(&s, "csv");
    assert_eq!(anchor, s.revoked.to_string());
    assert_eq!(jsonl.lines().count() as u64, s.revoked);
    assert_eq!(s.server.stop(), Some(0));
    offline_exports_are(&s.home, &jsonl, &csv);
}

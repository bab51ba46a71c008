//! Rows, CSV safety and filters, on hand-made entries.

use writ_projections::AuditEntry;
use writ_schemas::{ClientId, Hash, Timestamp, UserId};

use super::*;

fn entry(intent: &str, target: &str) -> AuditEntry {
    AuditEntry {
        seq: 7,
        hash: Hash([0xab; 32]),
        ts: Timestamp::parse("2026-11-23T10:00:00.000000Z").unwrap(),
        actor: "agent:a2".into(),
        user: Some(UserId::from("u1")),
        agents: vec![ClientId::from("a2"), ClientId::from("a1")],
        action: "TokenIssued".into(),
        target: target.into(),
        outcome: "issued (client_credentials, scope \"s\")".into(),
        intent: Some(intent.into()),
    }
}

#[test]
fn cells_a_spreadsheet_would_run_get_a_leading_quote() {
    for risky in ["=1+2", "+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
        assert_eq!(spreadsheet_safe(risky), format!("'{risky}"));
    }
    for plain in ["user u1", "", "1=1", "a-b", "'=already"] {
        assert_eq!(spreadsheet_safe(plain), plain);
    }
}

#[test]
fn a_formula_in_an_intent_is_escaped_and_quoted_in_csv_but_kept_in_json_lines() {
    let formula = "=HYPERLINK(\"http://evil.example\",\"click\")";
    let entry = entry(formula, "-t1");
    let mut csv = TrailFormat::Csv.start();
    TrailFormat::Csv.write_rows([&entry], &mut csv);
    let text = String::from_utf8(csv).unwrap();
    let mut lines = text.split("\r\n");
    assert_eq!(lines.next(), Some(CSV_COLUMNS.join(",").as_str()));
    let row = lines.next().unwrap();
    assert!(
        row.contains(",\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"click\"\")\","),
        "{row}"
    );
    assert!(row.contains(",'-t1,"), "{row}");
    assert!(row.starts_with(&format!(
        "7,{},2026-11-23T10:00:00.000000Z,u1,a1 a2,",
        "ab".repeat(32)
    )));
    // A CSV reader gets the escaped cell back, one field per column.
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let record = reader.records().next().unwrap().unwrap();
    assert_eq!(record.len(), CSV_COLUMNS.len());
    assert_eq!(&record[9], format!("'{formula}"));

    let mut jsonl = TrailFormat::Jsonl.start();
    TrailFormat::Jsonl.write_rows([&entry], &mut jsonl);
    let row: serde_json::Value = serde_json::from_slice(&jsonl).unwrap();
    assert_eq!(row["intent"], formula);
    assert_eq!(row["agents"], serde_json::json!(["a1", "a2"]));
    assert_eq!(row["hash"], "ab".repeat(32));
    assert!(
        row["sentence"]
            .as_str()
            .unwrap()
            .starts_with("user u1, via agent a1 then agent a2, did TokenIssued")
    );
}

#[test]
fn every_filter_given_must_hold() {
    let entry = entry("x", "t1");
    let at = |text: &str| Some(Timestamp::parse(text).unwrap());
    let all = TrailFilter {
        user: Some(UserId::from("u1")),
        agent: Some(ClientId::from("a1")),
        action: Some("TokenIssued".into()),
        outcome: Some("issued".into()),
        from: at("2026-11-23T10:00:00.000000Z"),
        to: at("2026-11-23T10:00:00.000000Z"),
    };
    assert!(all.matches(&entry));
    assert!(TrailFilter::default().matches(&entry));
    for miss in [
        TrailFilter {
            user: Some(UserId::from("u2")),
            ..all.clone()
        },
        TrailFilter {
            agent: Some(ClientId::from("a3")),
            ..all.clone()
        },
        TrailFilter {
            action: Some("TokenRevoked".into()),
            ..all.clone()
        },
        TrailFilter {
            outcome: Some("revoked".into()),
            ..all.clone()
        },
        TrailFilter {
            from: at("2026-11-23T10:00:00.000001Z"),
            ..all.clone()
        },
        TrailFilter {
            to: at("2026-11-23T09:59:59.999999Z"),
            ..all.clone()
        },
    ] {
        assert!(!miss.matches(&entry), "{miss:?}");
    }
}

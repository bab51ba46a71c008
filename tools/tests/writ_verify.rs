//! `writ-verify` run as the auditor runs it: on the published vectors and on a tampered copy.
#![allow(missing_docs, clippy::expect_used)]

use std::process::Command;

fn run(path: &std::path::Path) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_writ-verify"))
        .arg(path)
        .output()
        .expect("runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn the_published_test_vectors_verify_and_a_tampered_copy_does_not() {
    let vectors =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/vectors/ledger.jsonl");
    let (code, out) = run(&vectors);
    assert_eq!(code, Some(0), "{out}");
    let records = std::fs::read_to_string(&vectors)
        .expect("vectors")
        .lines()
        .count();
    assert!(
        out.starts_with(&format!("ok: {records} records verified")),
        "{out}"
    );

    let text = std::fs::read_to_string(&vectors).expect("vectors");
    let tampered = text.replacen("\"files:read\"", "\"files:write\"", 1);
    let dir = tempfile::tempdir().expect("temp");
    let path = dir.path().join("tampered.jsonl");
    std::fs::write(&path, tampered).expect("write");
    let (code, out) = run(&path);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.starts_with("FAILED: record 1: hash does not match"),
        "{out}"
    );

    let (code, _) = run(&dir.path().join("absent.jsonl"));
    assert_eq!(code, Some(2));
}

//! Bad input to the command line gets a clear error and a non-zero exit, never a panic.

use crate::kit::*;

fn no_panic(run: &Run) {
    assert!(
        !run.stderr.contains("panicked"),
        "writ panicked: {}",
        run.stderr
    );
}

#[test]
fn verifying_a_folder_that_is_not_a_ledger_says_so() {
    let dir = temp();
    std::fs::write(dir.path().join("notes.txt"), "hello").unwrap_or_else(|err| panic!("{err}"));
    let run = writ(&["verify", &dir.path().display().to_string()]);
    no_panic(&run);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr
            .contains("is not a writ data directory (it has no WRIT_LEDGER file)"),
        "{}",
        run.stderr
    );
}

#[test]
fn verifying_a_path_that_does_not_exist_says_so() {
    let run = writ(&["verify", "/nonexistent/writ/ledger.jsonl"]);
    no_panic(&run);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr
            .contains("cannot read /nonexistent/writ/ledger.jsonl"),
        "{}",
        run.stderr
    );
}

#[test]
fn verifying_a_file_of_garbage_names_record_1() {
    let dir = temp();
    let path = dir.path().join("export.jsonl");
    std::fs::write(&path, [0xff, 0xfe, 0x00, b'\n', b'{']).unwrap_or_else(|err| panic!("{err}"));
    let run = writ(&["verify", &path.display().to_string()]);
    no_panic(&run);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stdout
            .starts_with("FAILED: record 1: unreadable: line 1: not an export record"),
        "{}",
        run.stdout
    );
}

#[test]
fn replaying_past_the_end_says_where_the_end_is() {
    let dir = temp();
    make_ledger(dir.path(), 3);
    let run = writ(&[
        "replay",
        "--data-dir",
        &dir.path().display().to_string(),
        "--as-of-seq",
        "99",
    ]);
    no_panic(&run);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr
            .contains("--as-of-seq 99 is past the end of the ledger (its last record is 5)"),
        "{}",
        run.stderr
    );
}

#[test]
fn replay_summarises_the_state_at_a_past_record() {
    let dir = temp();
    make_ledger(dir.path(), 10);
    let shown = dir.path().display().to_string();
    let run = writ(&["replay", "--data-dir", &shown, "--as-of-seq", "7", "--json"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let summary: serde_json::Value = serde_json::from_str(&run.stdout).unwrap_or_default();
    assert_eq!(summary["seq"], 7);
    assert_eq!(summary["tokens"]["operations"], 5);
    assert_eq!(summary["agents"]["total"], 1);
    let run = writ(&["replay", "--data-dir", &shown]);
    assert!(
        run.stdout.contains(
            "tokens:           1 (1 active, 0 revoked, 0 expired, 0 exhausted; 10 operations)"
        ),
        "{}",
        run.stdout
    );
}

#[test]
fn a_truncated_snapshot_is_ignored_with_a_warning() {
    about_the_embedded_store("`writ replay` reads snapshots beside an embedded ledger only");
    let dir = temp();
    make_ledger(dir.path(), 10);
    let snapshots: Vec<_> = std::fs::read_dir(dir.path().join("snapshots"))
        .unwrap_or_else(|err| panic!("{err}"))
        .flatten()
        .map(|entry| entry.path())
        .collect();
    assert_eq!(snapshots.len(), 1);
    let bytes = std::fs::read(&snapshots[0]).unwrap_or_default();
    std::fs::write(&snapshots[0], &bytes[..bytes.len() - 10]).unwrap_or_else(|err| panic!("{err}"));
    let run = writ(&[
        "replay",
        "--data-dir",
        &dir.path().display().to_string(),
        "--json",
    ]);
    no_panic(&run);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr.contains("ignoring snapshot") && run.stderr.contains("truncated"),
        "{}",
        run.stderr
    );
    let summary: serde_json::Value = serde_json::from_str(&run.stdout).unwrap_or_default();
    assert_eq!(summary["tokens"]["operations"], 10);
    // The server-side open recovers the same way and appends on.
    make_ledger(dir.path(), 1);
}

#[test]
fn a_second_writer_on_one_data_directory_is_refused() {
    let dir = temp();
    let (ledger, _) = writ::Ledger::open_embedded(dir.path(), writ::LedgerOptions::default())
        .unwrap_or_else(|err| panic!("{err}"));
    let run = append_load(dir.path(), 1);
    no_panic(&run);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains("is in use by another writ process"),
        "{}",
        run.stderr
    );
    drop(ledger);
}

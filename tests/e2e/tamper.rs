//! `writ verify` catches every kind of tampering with a real ledger directory or export,
//! and names the first bad record.

use std::path::Path;

use rand::RngExt as _;

use crate::kit::*;

const RECORDS: usize = 40;

fn ledger() -> tempfile::TempDir {
    about_the_embedded_store("it alters the bytes of segment files and exports");
    let dir = temp();
    make_ledger(dir.path(), RECORDS as u64 - 2);
    dir
}

fn assert_fails_at(path: &Path, seq: usize, what: &str) {
    let run = writ(&["verify", &path.display().to_string()]);
    assert_eq!(
        run.code,
        Some(1),
        "{what}: verify should fail; it said {} {}",
        run.stdout,
        run.stderr
    );
    let expected = format!("FAILED: record {seq}:");
    assert!(
        run.stdout.starts_with(&expected),
        "{what}: expected `{expected}`, got `{}`",
        run.stdout.trim()
    );
}

/// Copies the ledger and rewrites its segment with `change`.
fn tampered(original: &Path, change: impl FnOnce(&mut Vec<u8>)) -> tempfile::TempDir {
    let copy = temp();
    copy_dir(original, copy.path());
    let path = segment(copy.path());
    let mut bytes = std::fs::read(&path).unwrap_or_default();
    change(&mut bytes);
    std::fs::write(&path, bytes).unwrap_or_else(|err| panic!("{err}"));
    copy
}

#[test]
fn an_untouched_ledger_verifies() {
    let dir = ledger();
    let run = writ(&["verify", &dir.path().display().to_string()]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout
            .starts_with(&format!("ok: {RECORDS} records verified")),
        "{}",
        run.stdout
    );
}

#[test]
fn flipping_one_byte_in_any_record_fails_at_that_record() {
    let dir = ledger();
    let ranges = frame_ranges(&std::fs::read(segment(dir.path())).unwrap_or_default());
    assert_eq!(ranges.len(), RECORDS);
    let mut rng = rand::rng();
    for (index, range) in ranges.iter().enumerate() {
        let offset = rng.random_range(range.clone());
        let bit = 1u8 << rng.random_range(0..8);
        let copy = tampered(dir.path(), |bytes| bytes[offset] ^= bit);
        assert_fails_at(
            copy.path(),
            index + 1,
            &format!("bit {bit:#04x} flipped at byte {offset}"),
        );
    }
}

#[test]
fn deleting_a_record_fails_where_it_was() {
    let dir = ledger();
    let ranges = frame_ranges(&std::fs::read(segment(dir.path())).unwrap_or_default());
    for seq in [1, 17, RECORDS - 1] {
        let range = ranges[seq - 1].clone();
        let copy = tampered(dir.path(), |bytes| {
            bytes.drain(range);
        });
        assert_fails_at(copy.path(), seq, &format!("record {seq} deleted"));
    }
}

#[test]
fn swapping_two_records_fails_at_the_first() {
    let dir = ledger();
    let ranges = frame_ranges(&std::fs::read(segment(dir.path())).unwrap_or_default());
    for (a, b) in [(5, 6), (10, 30)] {
        let (first, second) = (ranges[a - 1].clone(), ranges[b - 1].clone());
        let copy = tampered(dir.path(), |bytes| {
            let mut swapped = bytes[..first.start].to_vec();
            swapped.extend_from_slice(&bytes[second.clone()]);
            swapped.extend_from_slice(&bytes[first.end..second.start]);
            swapped.extend_from_slice(&bytes[first.clone()]);
            swapped.extend_from_slice(&bytes[second.end..]);
            *bytes = swapped;
        });
        assert_fails_at(copy.path(), a, &format!("records {a} and {b} swapped"));
    }
}

#[test]
fn truncating_in_the_middle_fails_at_the_cut_record() {
    let dir = ledger();
    let ranges = frame_ranges(&std::fs::read(segment(dir.path())).unwrap_or_default());
    let cut = ranges[20].start + (ranges[20].end - ranges[20].start) / 2;
    let copy = tampered(dir.path(), |bytes| bytes.truncate(cut));
    assert_fails_at(copy.path(), 21, "truncated inside record 21");
}

#[test]
fn truncating_at_a_record_boundary_is_caught_by_the_snapshot_that_outlived_it() {
    let dir = ledger();
    let ranges = frame_ranges(&std::fs::read(segment(dir.path())).unwrap_or_default());
    let copy = tampered(dir.path(), |bytes| bytes.truncate(ranges[29].end));
    assert_fails_at(copy.path(), 31, "cut after record 30 with a snapshot at 40");
}

fn export(dir: &Path) -> Vec<String> {
    let out = dir.join("export.jsonl");
    export_to(dir, &out);
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn verify_lines(lines: &[String], seq: Option<usize>, what: &str) {
    let dir = temp();
    let path = dir.path().join("export.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap_or_else(|err| panic!("{err}"));
    match seq {
        Some(seq) => assert_fails_at(&path, seq, what),
        None => {
            let run = writ(&["verify", &path.display().to_string()]);
            assert_eq!(
                (run.code, run.stdout.starts_with("ok: ")),
                (Some(0), true),
                "{what}: {}",
                run.stdout
            );
        }
    }
}

#[test]
fn an_export_verifies_and_its_tampering_is_named() {
    let dir = ledger();
    let lines = export(dir.path());
    assert_eq!(lines.len(), RECORDS);
    verify_lines(&lines, None, "untouched export");

    let mut altered = lines.clone();
    altered[11] = altered[11].replacen("\"load\"", "\"lead\"", 1);
    verify_lines(&altered, Some(12), "operation renamed in record 12");

    let mut deleted = lines.clone();
    deleted.remove(3);
    verify_lines(&deleted, Some(4), "record 4 deleted");

    let mut swapped = lines.clone();
    swapped.swap(7, 8);
    verify_lines(&swapped, Some(8), "records 8 and 9 swapped");

    let mut not_json = lines.clone();
    not_json[25] = "this is not json".into();
    verify_lines(&not_json, Some(26), "record 26 replaced by text");

    let mut reformatted = lines;
    reformatted[2] = reformatted[2].replacen("{\"data\":{", "{\"data\": {", 1);
    verify_lines(
        &reformatted,
        Some(3),
        "whitespace added inside record 3's event",
    );
}

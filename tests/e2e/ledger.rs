//! The auditor's endpoints: the head with its signed checkpoint, and inclusion and
//! consistency proofs that verify against it with `writ-schemas` alone.

use serde_json::Value;
use writ_schemas::{Hash, NoteKey, open_checkpoint, verify_consistency, verify_inclusion};

use crate::kit::*;

fn hashes(value: &Value) -> Vec<Hash> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .map(|hex| Hash::from_hex(hex.as_str().unwrap_or_default()).unwrap())
        .collect()
}

fn hash(value: &Value) -> Hash {
    Hash::from_hex(value.as_str().unwrap_or_default()).unwrap()
}

#[test]
fn proofs_from_the_server_verify_against_its_signed_checkpoint() {
    let dir = temp();
    make_ledger(dir.path(), 300);
    let server = Server::start(dir.path(), &["--checkpoint-every-records", "1"]);
    let admin = server.admin_token();
    let (status, head) = call(&server, &admin, "GET", "/api/v1/ledger/head", None);
    assert_eq!(status, 200, "{head}");
    let size = head["tree_size"].as_u64().unwrap();
    assert_eq!(head["seq"].as_u64(), Some(size));
    assert!(size > 300, "{head}");

    // The first checkpoint is signed before the server answers; nothing was written since.
    let key = NoteKey::parse_verifier_key(head["checkpoint_key"].as_str().unwrap()).unwrap();
    let note = head["checkpoint"].as_str().unwrap();
    let checkpoint = open_checkpoint(note, &key).unwrap();
    assert_eq!(checkpoint.tree_size, size);
    assert_eq!(checkpoint.root, hash(&head["root"]));
    assert_eq!(events_in_ledger(dir.path(), "CheckpointKeyPublished"), 1);

    let path = format!("/api/v1/ledger/proofs/inclusion?seq=150&size={size}");
    let (status, inclusion) = call(&server, &admin, "GET", &path, None);
    assert_eq!(status, 200, "{inclusion}");
    let record = hash(&inclusion["record_hash"]);
    let proof = hashes(&inclusion["proof"]);
    assert_eq!(
        verify_inclusion(149, size, &record, &proof, &checkpoint.root),
        Ok(())
    );
    assert!(verify_inclusion(148, size, &record, &proof, &checkpoint.root).is_err());

    let path = format!("/api/v1/ledger/proofs/consistency?from=149&to={size}");
    let (status, consistency) = call(&server, &admin, "GET", &path, None);
    assert_eq!(status, 200, "{consistency}");
    let old_root = hash(&consistency["from_root"]);
    let proof = hashes(&consistency["proof"]);
    assert_eq!(
        verify_consistency(149, size, &old_root, &checkpoint.root, &proof),
        Ok(())
    );
    server.stop();
}

#[test]
fn impossible_proof_requests_get_a_400_that_names_the_parameter() {
    let dir = temp();
    let server = Server::start(dir.path(), &[]);
    let admin = server.admin_token();
    let (_, head) = call(&server, &admin, "GET", "/api/v1/ledger/head", None);
    let size = head["tree_size"].as_u64().unwrap();
    let inclusion = "/api/v1/ledger/proofs/inclusion";
    let consistency = "/api/v1/ledger/proofs/consistency";
    for (path, names) in [
        (format!("{inclusion}?seq=1&size={}", size + 1), "size: "),
        (format!("{inclusion}?seq={}&size={size}", size + 1), "seq: "),
        (format!("{inclusion}?seq=0&size={size}"), "seq: "),
        (format!("{inclusion}?seq=1"), "size: required"),
        (
            format!("{inclusion}?seq=1&seq=1&size=1"),
            "seq: required, exactly once",
        ),
        (format!("{inclusion}?seq=-1&size=1"), "seq: "),
        (
            format!("{inclusion}?seq=1&size=1&tree=1"),
            "tree: unknown parameter",
        ),
        (format!("{consistency}?from=2&to=1"), "from: "),
        (format!("{consistency}?from=0&to=1"), "from: "),
        (format!("{consistency}?from=1&to={}", size + 1), "to: "),
    ] {
        let (status, body) = call(&server, &admin, "GET", &path, None);
        assert_eq!(status, 400, "{path}: {body}");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(detail.starts_with(names), "{path}: {detail}");
    }
    let (status, _) = call(&server, "wrong", "GET", "/api/v1/ledger/head", None);
    assert_eq!(status, 401);
    server.stop();
}

/// The `writ-verify` executable, built beside `writ` by `cargo test --workspace`.
fn writ_verify(args: &[&str]) -> Run {
    let writ = std::path::PathBuf::from(env!("CARGO_BIN_EXE_writ"));
    let verify = writ.with_file_name(format!("writ-verify{}", std::env::consts::EXE_SUFFIX));
    assert!(
        verify.is_file(),
        "{} is missing: run `cargo build -p writ-tools`",
        verify.display()
    );
    let output = std::process::Command::new(&verify)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("running writ-verify: {err}"));
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A copy of a stopped server's data directory: the same ledger, keys and checkpoint key.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// What an auditor keeps of a server at one moment: its signed checkpoint (as a file),
/// the size it covers, and the checkpoint key.
struct Kept {
    note: std::path::PathBuf,
    size: u64,
    key: String,
}

/// Starts the server on `dir` (signing a checkpoint of its whole ledger before it
/// answers), keeps its checkpoint as `name`, asks it for `proofs` (path → file name),
/// and stops it.
fn keep(dir: &std::path::Path, admin: &str, name: &str, proofs: &[(String, &str)]) -> Kept {
    let server = Server::start(dir, &[]);
    let (status, head) = call(&server, admin, "GET", "/api/v1/ledger/head", None);
    assert_eq!(status, 200, "{head}");
    let note = dir.parent().unwrap().join(name);
    std::fs::write(&note, head["checkpoint"].as_str().unwrap()).unwrap();
    for (path, file) in proofs {
        let (status, proof) = call(&server, admin, "GET", path, None);
        assert_eq!(status, 200, "{path}: {proof}");
        std::fs::write(dir.parent().unwrap().join(file), proof.to_string()).unwrap();
    }
    assert_eq!(server.stop(), Some(0));
    Kept {
        note,
        size: head["checkpoint_size"].as_u64().unwrap(),
        key: head["checkpoint_key"].as_str().unwrap().to_owned(),
    }
}

/// The export with record `seq`'s event changed and every later record re-chained, as
/// someone rewriting history would: it still verifies on its own.
fn rewritten(export: &str, seq: u64) -> String {
    let mut out = Vec::new();
    let mut prev: Option<Hash> = None;
    for line in export.lines() {
        let record = writ_schemas::parse_export_line(line.as_bytes()).unwrap();
        let mut event = record.event.to_vec();
        if record.seq == seq {
            let text = String::from_utf8(event).unwrap();
            let changed = text.replacen("op-", "oq-", 1);
            assert_ne!(changed, text, "record {seq} names an operation");
            event = changed.into_bytes();
        }
        let prev_hash = if record.seq > seq {
            prev.unwrap()
        } else {
            record.prev_hash
        };
        let hash = writ_schemas::record_hash(record.seq, &prev_hash, record.ts, &event);
        let rewritten = writ_schemas::RecordRef {
            prev_hash,
            hash,
            event: &event,
            ..record
        };
        rewritten.write_export_line(&mut out);
        prev = Some(hash);
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn writ_verify_holds_an_export_to_its_checkpoint_and_catches_a_rewrite_and_a_fork() {
    about_the_embedded_store("it forks the ledger by copying its data directory");
    let root = temp();
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    std::fs::create_dir(&a).unwrap();
    make_ledger(&a, 300);
    let server = Server::start(&a, &[]);
    let admin = server.admin_token();
    assert_eq!(server.stop(), Some(0));

    // The auditor keeps a checkpoint, an inclusion proof and an export of that moment.
    let first = keep(&a, &admin, "first.note", &[]);
    let inclusion = format!(
        "/api/v1/ledger/proofs/inclusion?seq=150&size={}",
        first.size
    );
    let first = keep(&a, &admin, "first.note", &[(inclusion, "inclusion.json")]);
    let export = root.path().join("first.jsonl");
    export_to(&a, &export);
    let (export_s, note_s) = (
        export.display().to_string(),
        first.note.display().to_string(),
    );
    let with_key = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--key", &first.key]);
        writ_verify(&all)
    };
    let run = with_key(&[&export_s, "--checkpoint", &note_s]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(&format!(
            "the export's first {} records are the ones",
            first.size
        )),
        "{}",
        run.stdout
    );
    let proof = root.path().join("inclusion.json").display().to_string();
    let run = with_key(&[&export_s, "--checkpoint", &note_s, "--inclusion", &proof]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("ok: record 150 (hash"),
        "{}",
        run.stdout
    );

    // History rewritten from record 150 on, re-chained: the chain alone cannot tell...
    let forged = root.path().join("forged.jsonl");
    std::fs::write(
        &forged,
        rewritten(&std::fs::read_to_string(&export).unwrap(), 150),
    )
    .unwrap();
    let forged_s = forged.display().to_string();
    assert_eq!(
        writ_verify(&[&forged_s]).code,
        Some(0),
        "the forgery is self-consistent"
    );
    // ...the signed checkpoint can.
    let run = with_key(&[&forged_s, "--checkpoint", &note_s]);
    assert_eq!(run.code, Some(4), "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("they are not the records it commits to"),
        "{}",
        run.stdout
    );
    let run = with_key(&[&forged_s, "--checkpoint", &note_s, "--inclusion", &proof]);
    assert_eq!(run.code, Some(4), "{}", run.stdout);

    // An altered note, and a key that is not the server's.
    let altered = root.path().join("altered.note");
    let note = std::fs::read_to_string(&first.note).unwrap();
    let size_line = format!("\n{}\n", first.size);
    std::fs::write(
        &altered,
        note.replacen(&size_line, &format!("\n{}\n", first.size - 1), 1),
    )
    .unwrap();
    let run = with_key(&[&export_s, "--checkpoint", &altered.display().to_string()]);
    assert_eq!(run.code, Some(3), "{}{}", run.stdout, run.stderr);
    let run = writ_verify(&[&export_s, "--checkpoint", &note_s]);
    assert_eq!(
        run.code,
        Some(2),
        "a checkpoint without a key: {}",
        run.stderr
    );

    // A fork: the same first records, then two different histories under one key.
    copy_dir(&a, &b);
    let register = |dir: &std::path::Path, names: &[&str]| {
        let server = Server::start(dir, &[]);
        for name in names {
            register_agent(
                &server,
                &admin,
                serde_json::json!({"name": name, "scopes": ["s"], "grant_types": ["client_credentials"]}),
            );
        }
        assert_eq!(server.stop(), Some(0));
    };
    register(&a, &["only-in-a"]);
    let kept_a = keep(&a, &admin, "a.note", &[]);
    register(&b, &["only-in-b", "also-only-in-b"]);
    let to_b = |from: u64| format!("/api/v1/ledger/proofs/consistency?from={from}&to=");
    let probe = keep(&b, &admin, "b.note", &[]);
    let kept_b = keep(
        &b,
        &admin,
        "b.note",
        &[
            (format!("{}{}", to_b(kept_a.size), probe.size), "fork.json"),
            (format!("{}{}", to_b(first.size), probe.size), "shared.json"),
        ],
    );
    assert_eq!(kept_b.size, probe.size);
    assert!(kept_b.size > kept_a.size && kept_a.size > first.size);
    let (a_s, b_s) = (
        kept_a.note.display().to_string(),
        kept_b.note.display().to_string(),
    );
    let fork = root.path().join("fork.json").display().to_string();
    let run = with_key(&[
        "--old-checkpoint",
        &a_s,
        "--checkpoint",
        &b_s,
        "--consistency",
        &fork,
    ]);
    assert_eq!(run.code, Some(5), "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("does not extend the older one's"),
        "{}",
        run.stdout
    );
    let shared = root.path().join("shared.json").display().to_string();
    let run = with_key(&[
        "--old-checkpoint",
        &note_s,
        "--checkpoint",
        &b_s,
        "--consistency",
        &shared,
    ]);
    assert_eq!(
        run.code,
        Some(0),
        "B's ledger does extend the shared one: {}{}",
        run.stdout,
        run.stderr
    );
}

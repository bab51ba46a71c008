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

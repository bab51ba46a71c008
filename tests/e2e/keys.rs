//! Signing keys: made on first start, published in the JWKS, private parts kept out of
//! the ledger in owner-only files, rotated with the predecessor still published.

use std::os::unix::fs::PermissionsExt as _;

use base64::Engine as _;
use serde_json::Value;

use crate::kit::*;

fn jwks(server: &Server) -> Vec<Value> {
    let body: Value = http()
        .get(server.url("/.well-known/jwks.json"))
        .send()
        .and_then(|r| r.json())
        .unwrap_or_else(|err| panic!("{err}"));
    body["keys"].as_array().cloned().unwrap_or_default()
}

#[test]
fn the_jwks_publishes_the_recorded_key_and_the_private_part_stays_private() {
    let dir = temp();
    let server = Server::start(dir.path(), &[]);
    let keys = jwks(&server);
    assert_eq!(keys.len(), 1, "{keys:?}");
    let key = &keys[0];
    assert_eq!(
        (
            key["kty"].as_str(),
            key["crv"].as_str(),
            key["alg"].as_str(),
            key["use"].as_str()
        ),
        (Some("OKP"), Some("Ed25519"), Some("EdDSA"), Some("sig"))
    );
    let kid = key["kid"].as_str().unwrap_or_default().to_owned();
    assert_eq!(server.stop(), Some(0));

    let private = dir.path().join("keys").join(format!("{kid}.pk8"));
    let mode = std::fs::metadata(&private)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0);
    assert_eq!(mode, 0o600, "{}", private.display());
    let folder = std::fs::metadata(dir.path().join("keys"))
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0);
    assert_eq!(folder, 0o700);

    let export = dir.path().join("export.jsonl");
    export_to(dir.path(), &export);
    let text = std::fs::read_to_string(&export).unwrap_or_default();
    assert!(
        text.contains("\"type\":\"SigningKeyRotated\"") && text.contains(&kid),
        "the rotation is a ledger event"
    );
    assert!(
        text.contains(key["x"].as_str().unwrap_or("missing")),
        "with the public key"
    );
    let document = std::fs::read(&private).unwrap_or_default();
    // The PKCS#8 document's last 32 bytes hold the seed or the public key; the seed sits
    // before them. No encoding of the private document may appear in the export.
    let secret_b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&document);
    let secret_std = base64::engine::general_purpose::STANDARD.encode(&document);
    let seed_hex: String = document[16..48]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    for leaked in [secret_b64, secret_std, seed_hex] {
        assert!(
            !text.contains(&leaked),
            "the private key reached the ledger"
        );
    }
}

#[test]
fn rotation_keeps_the_previous_key_published_and_a_lost_key_fails_closed() {
    let dir = temp();
    let server = Server::start(dir.path(), &[]);
    let first = jwks(&server)[0]["kid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(server.stop(), Some(0));

    let run = writ(&[
        "admin",
        "keys",
        "rotate",
        "--data-dir",
        &dir.path().display().to_string(),
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let second = run.stdout.trim().to_owned();
    assert_ne!(second, first);
    let server = Server::start(dir.path(), &[]);
    let kids: Vec<String> = jwks(&server)
        .iter()
        .filter_map(|k| k["kid"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        kids,
        vec![second.clone(), first],
        "current first, the predecessor still published"
    );
    assert_eq!(server.stop(), Some(0));

    std::fs::remove_file(dir.path().join("keys").join(format!("{second}.pk8")))
        .unwrap_or_else(|err| panic!("{err}"));
    let run = writ(&[
        "serve",
        "--data-dir",
        &dir.path().display().to_string(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains(&format!(
            "the ledger's current signing key {second} has no private key"
        )),
        "{}",
        run.stderr
    );
}

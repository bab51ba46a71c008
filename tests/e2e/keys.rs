//! Signing keys: made on first start, published in the JWKS, private parts kept out of
//! the ledger in owner-only files, rotated with the predecessor still published.

use std::os::unix::fs::PermissionsExt as _;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::kit::*;
use crate::tokens::{client_token, jwt_header, tampered, verify_with_pyjwt, verify_with_pyjwt_for};

fn jwks(server: &Server) -> Vec<Value> {
    let body: Value = http()
        .get(server.url("/.well-known/jwks.json"))
        .send()
        .and_then(|r| r.json())
        .unwrap_or_else(|err| panic!("{err}"));
    body["keys"].as_array().cloned().unwrap_or_default()
}

/// The bytes of a PKCS#8 `document` that are private alone (the Ed25519 seed, the EC
/// scalar, the RSA private exponent and primes), given the key's published JWK.
fn private_bytes(document: &[u8], jwk: &Value) -> Vec<u8> {
    use aws_lc_rs::encoding::AsBigEndian as _;
    match jwk["kty"].as_str() {
        // PKCS#8 v2 of Ed25519: a 16-byte header, then the 32-byte seed.
        Some("OKP") => document[16..48].to_vec(),
        Some("EC") => {
            let pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
                &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                document,
            )
            .unwrap_or_else(|err| panic!("{err}"));
            let scalar = pair
                .private_key()
                .as_be_bytes()
                .unwrap_or_else(|err| panic!("{err}"));
            scalar.as_ref().to_vec()
        }
        // RSAPrivateKey is (version, n, e, d, p, q, dP, dQ, qInv): all after e is private.
        Some("RSA") => {
            let info =
                pkcs8::PrivateKeyInfoRef::try_from(document).unwrap_or_else(|err| panic!("{err}"));
            let pkcs1 = info.private_key.as_bytes();
            let n = URL_SAFE_NO_PAD
                .decode(jwk["n"].as_str().unwrap_or_default())
                .unwrap_or_default();
            let at = pkcs1
                .windows(n.len())
                .position(|window| window == n.as_slice())
                .unwrap_or_else(|| panic!("n is in the private key"));
            let e = [0x02, 0x03, 0x01, 0x00, 0x01];
            let after = &pkcs1[at + n.len()..];
            assert!(after.starts_with(&e), "e = 65537 follows n");
            after[e.len()..].to_vec()
        }
        other => panic!("unexpected kty {other:?}"),
    }
}

/// Every string in the export, decoded as base64url, base64 or hex where it decodes,
/// shares no 16 bytes with `secret`.
fn assert_absent(export: &str, secret: &[u8]) {
    fn strings(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::String(text) => out.push(text.clone()),
            Value::Array(items) => items.iter().for_each(|item| strings(item, out)),
            Value::Object(members) => members.values().for_each(|item| strings(item, out)),
            _ => {}
        }
    }
    let windows: std::collections::HashSet<&[u8]> = secret.windows(16).collect();
    assert!(!windows.is_empty());
    let mut texts = Vec::new();
    for line in export.lines() {
        strings(
            &serde_json::from_str(line).unwrap_or(Value::Null),
            &mut texts,
        );
    }
    for text in texts {
        let decoded = [
            URL_SAFE_NO_PAD.decode(&text).ok(),
            STANDARD.decode(&text).ok(),
            hex::decode(&text).ok(),
            Some(text.clone().into_bytes()),
        ];
        for bytes in decoded.into_iter().flatten() {
            assert!(
                !bytes.windows(16).any(|window| windows.contains(window)),
                "private key material reached the ledger in {text}"
            );
        }
    }
}

#[test]
fn the_jwks_publishes_the_recorded_key_and_the_private_part_stays_private() {
    for (alg, kty, crv) in [
        ("EdDSA", "OKP", Some("Ed25519")),
        ("ES256", "EC", Some("P-256")),
        ("RS256", "RSA", None),
    ] {
        let dir = temp();
        let server = Server::start(dir.path(), &["--signing-alg", alg]);
        let keys = jwks(&server);
        assert_eq!(keys.len(), 1, "{keys:?}");
        let key = keys[0].clone();
        assert_eq!(
            (
                key["kty"].as_str(),
                key["crv"].as_str(),
                key["alg"].as_str(),
                key["use"].as_str()
            ),
            (Some(kty), crv, Some(alg), Some("sig"))
        );
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(key.get(private).is_none(), "{alg} JWKS has {private}");
        }
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
        let rotation = rotations(&text)
            .into_iter()
            .find(|data| data["kid"] == kid.as_str())
            .unwrap_or_else(|| panic!("the rotation is a ledger event"));
        let public = match alg {
            "EdDSA" => {
                json!({"alg": alg, "kid": kid, "public_key": key["x"], "by": {"kind": "system"}})
            }
            _ => {
                let mut jwk = key.clone();
                for published_only in ["kid", "alg", "use"] {
                    jwk.as_object_mut().map(|m| m.remove(published_only));
                }
                json!({"alg": alg, "kid": kid, "jwk": jwk, "by": {"kind": "system"}})
            }
        };
        assert_eq!(
            rotation, public,
            "the event holds the public key and nothing else"
        );
        let document = std::fs::read(&private).unwrap_or_default();
        assert_absent(&text, &private_bytes(&document, &key));
    }
}

/// The payloads of the `SigningKeyRotated` events of an export, in order.
fn rotations(export: &str) -> Vec<Value> {
    export
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|record| record["event"]["type"] == "SigningKeyRotated")
        .map(|record| record["event"]["data"].clone())
        .collect()
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
        "--alg",
        "es256",
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let second = run.stdout.trim().to_owned();
    assert_ne!(second, first);
    let server = Server::start(dir.path(), &[]);
    let published: Vec<(String, String)> = jwks(&server)
        .iter()
        .map(|k| {
            (
                k["kid"].as_str().unwrap_or_default().to_owned(),
                k["alg"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        published,
        vec![(second.clone(), "ES256".into()), (first, "EdDSA".into())],
        "current first, the predecessor still published"
    );
    assert_eq!(server.stop(), Some(0));

    // A key file that is not the recorded key (here, a P-256 key of our own making):
    // refused, not signed with.
    let second_file = dir.path().join("keys").join(format!("{second}.pk8"));
    let stranger = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &aws_lc_rs::rand::SystemRandom::new(),
    )
    .unwrap_or_else(|err| panic!("{err}"));
    std::fs::write(&second_file, stranger.as_ref()).unwrap_or_else(|err| panic!("{err}"));
    refuses_to_start(
        dir.path(),
        &format!(
            "is not the ES256 key the ledger recorded: its public key is not the one recorded for {second}"
        ),
    );

    std::fs::remove_file(&second_file).unwrap_or_else(|err| panic!("{err}"));
    refuses_to_start(
        dir.path(),
        &format!("the ledger's current signing key {second} has no private key"),
    );
}

/// An agent on `server` and a token it got; (client_id, secret, token).
fn agent_with_token(server: &Server, admin: &str) -> (String, String, String) {
    let (client_id, secret) = register_agent(
        server,
        admin,
        json!({"name": "signer", "scopes": ["files:read"], "grant_types": ["client_credentials"]}),
    );
    let token = client_token(server, &client_id, &secret);
    (client_id, secret, token)
}

fn kids_and_algs(server: &Server) -> Vec<(String, String)> {
    jwks(server)
        .iter()
        .map(|k| {
            (
                k["kid"].as_str().unwrap_or_default().to_owned(),
                k["alg"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn restarting_with_another_algorithm_rotates_and_tokens_of_the_old_key_still_verify() {
    let dir = temp();
    // A fixed issuer: the token from before the restart names it, not the old port.
    let issuer = "https://writ.example";
    let server = Server::start(dir.path(), &["--issuer", issuer]);
    let admin = server.admin_token();
    let (client_id, secret, before) = agent_with_token(&server, &admin);
    let first = jwt_header(&before)["kid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(jwt_header(&before)["alg"], "EdDSA");
    assert_eq!(server.stop(), Some(0));

    let server = Server::start(dir.path(), &["--issuer", issuer, "--signing-alg", "ES256"]);
    let published = kids_and_algs(&server);
    assert_eq!(published.len(), 2, "{published:?}");
    let second = published[0].0.clone();
    assert_eq!(
        published,
        vec![
            (second.clone(), "ES256".into()),
            (first.clone(), "EdDSA".into())
        ]
    );
    let said = format!(
        "  signing key: {second} (ES256), rotated from {first} (EdDSA) as --signing-alg asked; {first} stays published for 24 hours"
    );
    assert!(server.banner.contains(&said), "{:?}", server.banner);
    let verified = verify_with_pyjwt_for(&server, &before, issuer);
    assert!(
        verified.is_ok(),
        "a token of the previous key still verifies: {verified:?}"
    );
    let after = client_token(&server, &client_id, &secret);
    assert_eq!(
        (
            jwt_header(&after)["alg"].as_str(),
            jwt_header(&after)["kid"].as_str()
        ),
        (Some("ES256"), Some(second.as_str()))
    );
    assert!(verify_with_pyjwt_for(&server, &after, issuer).is_ok());
    assert_eq!(server.stop(), Some(0));

    // The same algorithm again: nothing to rotate.
    let server = Server::start(dir.path(), &["--issuer", issuer, "--signing-alg", "ES256"]);
    assert!(
        server
            .banner
            .contains(&format!("  signing key: {second} (ES256)")),
        "{:?}",
        server.banner
    );
    assert_eq!(kids_and_algs(&server).len(), 2);
    assert_eq!(server.stop(), Some(0));
}

#[test]
fn rotating_through_the_api_while_serving_signs_the_next_token_with_the_new_key() {
    let dir = temp();
    let server = Server::start(dir.path(), &[]);
    let admin = server.admin_token();
    let (client_id, secret, before) = agent_with_token(&server, &admin);
    let first = jwt_header(&before)["kid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let (status, rotated) = call(
        &server,
        &admin,
        "POST",
        "/api/v1/keys/rotate",
        Some(json!({"alg": "RS256"})),
    );
    assert_eq!(status, 201, "{rotated}");
    let second = rotated["kid"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        (rotated["alg"].as_str(), rotated["previous_kid"].as_str()),
        (Some("RS256"), Some(first.as_str()))
    );
    assert_eq!(
        kids_and_algs(&server),
        vec![
            (second.clone(), "RS256".into()),
            (first.clone(), "EdDSA".into())
        ],
        "the JWKS shows the new key at once, the old one still published"
    );
    let after = client_token(&server, &client_id, &secret);
    assert_eq!(
        (
            jwt_header(&after)["alg"].as_str(),
            jwt_header(&after)["kid"].as_str()
        ),
        (Some("RS256"), Some(second.as_str()))
    );
    for token in [&before, &after] {
        let verified = verify_with_pyjwt(&server, token);
        assert!(verified.is_ok(), "{verified:?}");
    }
    assert!(verify_with_pyjwt(&server, &tampered(&after)).is_err());

    // No body: a new key of the current algorithm.
    let response = http()
        .post(server.url("/api/v1/keys/rotate"))
        .bearer_auth(&admin)
        .send()
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(response.status().as_u16(), 201);
    let third: Value = response.json().unwrap_or_default();
    assert_eq!(
        (third["alg"].as_str(), third["previous_kid"].as_str()),
        (Some("RS256"), Some(second.as_str()))
    );

    // Refusals: no admin, a bad algorithm, a bad body.
    let anonymous = http()
        .post(server.url("/api/v1/keys/rotate"))
        .send()
        .map(|r| r.status().as_u16());
    assert_eq!(anonymous.ok(), Some(401));
    let (status, _) = call(
        &server,
        "wrt_admin_not-a-token",
        "POST",
        "/api/v1/keys/rotate",
        None,
    );
    assert_eq!(status, 401);
    let (status, body) = call(
        &server,
        &admin,
        "POST",
        "/api/v1/keys/rotate",
        Some(json!({"alg": "HS256"})),
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    assert_eq!(
        body["detail"],
        "alg: `HS256` is not a signing algorithm writ offers; use EdDSA, ES256 or RS256"
    );
    let (status, body) = call(
        &server,
        &admin,
        "POST",
        "/api/v1/keys/rotate",
        Some(json!({"algorithm": "ES256"})),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(kids_and_algs(&server).len(), 3, "refusals rotate nothing");

    // The command line cannot rotate under a running server, and says what to do.
    let run = writ(&[
        "admin",
        "keys",
        "rotate",
        "--data-dir",
        &dir.path().display().to_string(),
    ]);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains("in use by a running `writ serve`")
            && run.stderr.contains("POST /api/v1/keys/rotate"),
        "{}",
        run.stderr
    );
    assert_eq!(server.stop(), Some(0));

    let export = dir.path().join("export.jsonl");
    export_to(dir.path(), &export);
    let text = std::fs::read_to_string(&export).unwrap_or_default();
    let recorded = rotations(&text);
    assert_eq!(recorded.len(), 3, "{recorded:?}");
    let by_api = &recorded[1];
    let mut keys: Vec<&str> = by_api
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["alg", "by", "jwk", "kid", "previous_kid"],
        "{by_api}"
    );
    let mut members: Vec<&str> = by_api["jwk"]
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    members.sort_unstable();
    assert_eq!(members, ["e", "kty", "n"], "public members only: {by_api}");
    assert_eq!(by_api["by"]["kind"], "admin");
    let document =
        std::fs::read(dir.path().join("keys").join(format!("{second}.pk8"))).unwrap_or_default();
    assert_absent(&text, &private_bytes(&document, &by_api["jwk"]));
    for target in [
        dir.path().display().to_string(),
        export.display().to_string(),
    ] {
        let run = writ(&["verify", &target]);
        assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    }
}

/// `writ serve` on `dir` exits 2 at start, saying `why` on standard error.
fn refuses_to_start(dir: &std::path::Path, why: &str) {
    let shown = dir.display().to_string();
    let run = writ(&["serve", "--data-dir", &shown, "--listen", "127.0.0.1:0"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains(why), "{}", run.stderr);
}

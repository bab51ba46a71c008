//! `private_key_jwt` (RFC 7523 §2.2) over real HTTP: an agent registers public keys, gets
//! tokens with assertions signed by them, and every assertion that does not prove the
//! client (replayed, even across a restart or in a race; expired; for another audience
//! or client; signed by another key or not signed at all; without a jti) is refused as
//! `invalid_client` with a sentence saying why.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::kit::*;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The issuer the servers here name: fixed, so an assertion made for it stays good for
/// the same server restarted on another port.
const ISSUER: &str = "https://writ.example";

/// A signing key made for the test: what signs, its algorithm and its public JWK.
pub struct Key {
    encoding: jsonwebtoken::EncodingKey,
    alg: jsonwebtoken::Algorithm,
    pub jwk: Value,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn ed25519_key(kid: &str) -> Key {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
        .unwrap_or_else(|err| panic!("{err}"));
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap_or_else(|err| panic!("{err}"));
    Key {
        encoding: jsonwebtoken::EncodingKey::from_ed_der(pkcs8.as_ref()),
        alg: jsonwebtoken::Algorithm::EdDSA,
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref()),
                    "kid": kid, "alg": "EdDSA", "use": "sig"}),
    }
}

fn es256_key(kid: &str) -> Key {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .unwrap_or_else(|err| panic!("{err}"));
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
        .unwrap_or_else(|err| panic!("{err}"));
    let point = pair.public_key().as_ref();
    Key {
        encoding: jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref()),
        alg: jsonwebtoken::Algorithm::ES256,
        jwk: json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]),
                    "y": b64(&point[33..65]), "kid": kid}),
    }
}

/// A good assertion of `client_id` for `token_endpoint`, signed with `key`.
pub fn sign_assertion(key: &Key, client_id: &str, token_endpoint: &str) -> String {
    let now = unix_now();
    let claims = json!({"iss": client_id, "sub": client_id, "aud": token_endpoint,
                        "exp": now + 120, "jti": uuid::Uuid::new_v4().to_string()});
    let mut header = jsonwebtoken::Header::new(key.alg);
    header.kid = key.jwk["kid"].as_str().map(str::to_owned);
    jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap_or_else(|err| panic!("{err}"))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A server with one `private_key_jwt` agent holding an Ed25519 and an ES256 key.
struct Keyed {
    home: Home,
    server: Server,
    admin: String,
    client_id: String,
    ed25519: Key,
    es256: Key,
}

fn keyed() -> Keyed {
    writ::jose::install();
    let home = Home::embedded();
    let server = Server::start_in(&home, &["--issuer", ISSUER]);
    let admin = server.admin_token();
    let (ed25519, es256) = (ed25519_key("ed-1"), es256_key("ec-1"));
    let body = json!({"name": "reconciler", "scopes": ["s"], "grant_types": ["client_credentials"],
                      "token_endpoint_auth_method": "private_key_jwt",
                      "jwks": {"keys": [ed25519.jwk, es256.jwk]}});
    let (status, created) = call(&server, &admin, "POST", "/api/v1/agents", Some(body));
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["client_secret"],
        Value::Null,
        "no secret: {created}"
    );
    assert_eq!(
        created["agent"]["token_endpoint_auth_method"],
        "private_key_jwt"
    );
    let client_id = created["agent"]["client_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_owned();
    Keyed {
        home,
        server,
        admin,
        client_id,
        ed25519,
        es256,
    }
}

impl Keyed {
    /// The claims a good assertion carries, for this server's token endpoint.
    fn claims(&self) -> Value {
        let now = unix_now();
        json!({"iss": self.client_id, "sub": self.client_id,
               "aud": format!("{ISSUER}/oauth/token"), "iat": now, "exp": now + 120,
               "jti": uuid::Uuid::new_v4().to_string()})
    }

    /// `claims` over the good ones (a null removes one), signed with `key` under its kid.
    fn assertion(&self, key: &Key, changes: Value) -> String {
        let mut claims = self.claims();
        for (name, value) in changes.as_object().into_iter().flatten() {
            match value {
                Value::Null => {
                    claims.as_object_mut().map(|c| c.remove(name));
                }
                value => claims[name] = value.clone(),
            }
        }
        let mut header = jsonwebtoken::Header::new(key.alg);
        header.kid = key.jwk["kid"].as_str().map(str::to_owned);
        jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap_or_else(|err| panic!("{err}"))
    }

    /// A client_credentials request authenticated by `assertion`, with `extra` form fields.
    fn token(&self, assertion: &str, extra: &[(&str, &str)]) -> (u16, Value) {
        token_request(&self.server, assertion, extra, None)
    }
}

fn token_request(
    server: &Server,
    assertion: &str,
    extra: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion),
    ];
    form.extend_from_slice(extra);
    let mut request = http().post(server.url("/oauth/token")).form(&form);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    let response = request.send().unwrap_or_else(|err| panic!("{err}"));
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

/// Asserts a 401 `invalid_client` whose description contains `why`.
fn refused(answer: (u16, Value), why: &str) {
    let (status, body) = answer;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    let description = body["error_description"].as_str().unwrap_or_default();
    assert!(
        description.contains(why),
        "`{description}` does not say `{why}`"
    );
}

#[test]
fn a_private_key_jwt_agent_gets_a_token_for_each_assertion_and_a_replay_never_pays_again() {
    let mut k = keyed();
    let assertion = k.assertion(&k.ed25519, json!({}));
    let (status, issued) = k.token(&assertion, &[("client_id", &k.client_id)]);
    assert_eq!(status, 200, "{issued}");
    assert_eq!(issued["token_type"], "Bearer");
    // The other key, picked by its kid, with the issuer as the audience (RFC 7523 §3
    // allows either), and no client_id in the form: the assertion's sub names the client.
    let by_es256 = k.assertion(&k.es256, json!({"aud": ISSUER}));
    assert_eq!(k.token(&by_es256, &[]).0, 200);

    let replayed = "the client assertion was already used";
    refused(k.token(&assertion, &[]), replayed);
    // The spent jti is in the ledger, so a restart does not forget it.
    k.server.kill();
    k.server = Server::start_in(&k.home, &["--issuer", ISSUER]);
    refused(k.token(&assertion, &[]), replayed);
    refused(k.token(&by_es256, &[]), replayed);
    assert_eq!(k.token(&k.assertion(&k.ed25519, json!({})), &[]).0, 200);
    assert_eq!(k.server.stop(), Some(0));
    assert_eq!(k.home.events("TokenIssued"), 3);
}

#[test]
fn of_eight_requests_racing_with_one_assertion_exactly_one_gets_a_token() {
    let k = keyed();
    let assertion = k.assertion(&k.ed25519, json!({}));
    let statuses = std::sync::Mutex::new(Vec::new());
    let server = &k.server;
    concurrently(8, || {
        let (status, body) = token_request(server, &assertion, &[], None);
        if status != 200 {
            refused((status, body), "the client assertion was already used");
        }
        statuses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(status);
    });
    let statuses = statuses.into_inner().unwrap_or_else(|e| e.into_inner());
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
}

#[test]
fn an_assertion_that_does_not_prove_the_client_is_refused_as_invalid_client() {
    let k = keyed();
    let now = unix_now();
    let good = |changes: Value| k.assertion(&k.ed25519, changes);
    refused(
        k.token(&good(json!({"exp": now - 120, "iat": now - 300})), &[]),
        "has expired",
    );
    refused(
        k.token(&good(json!({"exp": now + 3600})), &[]),
        "lives too long",
    );
    refused(
        k.token(
            &good(json!({"aud": "https://elsewhere.example/oauth/token"})),
            &[],
        ),
        "must have aud",
    );
    refused(
        k.token(
            &good(json!({"iss": "agt_someone_else"})),
            &[("client_id", &k.client_id)],
        ),
        "must have iss and sub both",
    );
    refused(
        k.token(
            &good(json!({"sub": "agt_someone_else"})),
            &[("client_id", &k.client_id)],
        ),
        "must have iss and sub both",
    );
    refused(k.token(&good(json!({"jti": null})), &[]), "must have a jti");
    refused(k.token(&good(json!({"exp": null})), &[]), "must have exp");
    // Signed by a key the client never registered, under a registered kid or another.
    let mut stranger = ed25519_key("ed-1");
    refused(
        k.token(&k.assertion(&stranger, json!({})), &[]),
        "does not verify with the registered key",
    );
    stranger.jwk["kid"] = json!("ed-9");
    refused(
        k.token(&k.assertion(&stranger, json!({})), &[]),
        "names the key `ed-9`, which this client did not register",
    );
    // Not signed at all, and "signed" with the public key as an HMAC secret.
    let encode = |part: &Value| b64(part.to_string().as_bytes());
    let unsigned = format!(
        "{}.{}.",
        encode(&json!({"alg": "none", "kid": "ed-1"})),
        encode(&k.claims())
    );
    refused(k.token(&unsigned, &[]), "has no readable JWS header");
    let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs.kid = Some("ed-1".into());
    let secret = k.ed25519.jwk.to_string();
    let hmac = jsonwebtoken::encode(
        &hs,
        &k.claims(),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap_or_else(|err| panic!("{err}"));
    refused(k.token(&hmac, &[]), "is signed with HS256");
    // The EdDSA key's kid on an ES256 signature.
    let mut crossed = es256_key("ed-1");
    crossed.jwk["kid"] = json!("ed-1");
    refused(
        k.token(&k.assertion(&crossed, json!({})), &[]),
        "the key `ed-1` is not for it",
    );
    // A client_id in the form that is not the assertion's client.
    let (other, _) = register_agent(
        &k.server,
        &k.admin,
        json!({"name": "other", "scopes": ["s"], "grant_types": ["client_credentials"]}),
    );
    refused(
        k.token(&good(json!({})), &[("client_id", &other)]),
        "not a client assertion",
    );
    // One authentication method per request (RFC 6749 §2.3): an assertion with Basic is
    // `invalid_request`, the code RFC 6749 §5.2 names for it.
    let (status, body) = token_request(
        &k.server,
        &good(json!({})),
        &[],
        Some((k.client_id.as_str(), "guess")),
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    // A client assertion is for the token endpoint only: introspection cannot spend it.
    let (status, body) = {
        let response = http()
            .post(k.server.url("/oauth/introspect"))
            .form(&[
                ("token", "anything"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &good(json!({}))),
            ])
            .send()
            .unwrap_or_else(|err| panic!("{err}"));
        (
            response.status().as_u16(),
            response.json().unwrap_or(Value::Null),
        )
    };
    refused((status, body), "accepted at the token endpoint only");
    // Nothing above got a token.
    assert_eq!(k.server.stop(), Some(0));
    assert_eq!(k.home.events("TokenIssued"), 0);
}

#[test]
fn registration_takes_public_signature_keys_only_and_a_keyed_agent_has_no_secret_to_rotate() {
    let k = keyed();
    let ed = ed25519_key("k");
    let register = |extra: Value| {
        let mut body = json!({"name": "keyed", "scopes": ["s"],
                              "grant_types": ["client_credentials"],
                              "token_endpoint_auth_method": "private_key_jwt"});
        for (name, value) in extra.as_object().into_iter().flatten() {
            body[name] = value.clone();
        }
        call(&k.server, &k.admin, "POST", "/api/v1/agents", Some(body))
    };
    let mut private = ed.jwk.clone();
    private["d"] = json!(b64(&[7; 32]));
    let many: Vec<Value> = (0..11).map(|i| ed25519_key(&format!("k{i}")).jwk).collect();
    let cases = [
        (json!({}), "registers its public keys"),
        (json!({"jwks": {"keys": [private]}}), "private member `d`"),
        (
            json!({"jwks": {"keys": [{"kty": "oct", "k": b64(b"shared")}]}}),
            "private member `k`",
        ),
        (json!({"jwks": {"keys": [{"kty": "oct"}]}}), "symmetric"),
        (json!({"jwks": {"keys": many}}), "1 to 10 keys"),
        (json!({"jwks": {"keys": [ed.jwk, ed.jwk]}}), "distinct"),
        (
            json!({"jwks": {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "alg": "ES256"}]}}),
            "does not fit the key",
        ),
        (
            json!({"token_endpoint_auth_method": "client_secret_basic", "jwks": {"keys": [ed.jwk]}}),
            "only for token_endpoint_auth_method private_key_jwt",
        ),
    ];
    for (extra, why) in cases {
        let (status, body) = register(extra.clone());
        assert_eq!(status, 400, "{extra}: {body}");
        let detail = body.to_string();
        assert!(
            detail.contains(why),
            "{extra}: `{detail}` does not say `{why}`"
        );
    }
    let path = format!("/api/v1/agents/{}/secret", k.client_id);
    let (status, body) = call(&k.server, &k.admin, "POST", &path, None);
    assert_eq!(status, 409, "{body}");
    // Its public keys do not stand in for a secret either.
    let (status, body) = http()
        .post(k.server.url("/oauth/token"))
        .basic_auth(&k.client_id, Some(""))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .map(|r| {
            (
                r.status().as_u16(),
                r.json::<Value>().unwrap_or(Value::Null),
            )
        })
        .unwrap_or_else(|err| panic!("{err}"));
    refused((status, body), "send a client assertion");
}

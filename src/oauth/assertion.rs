//! `private_key_jwt` client authentication (RFC 7523 §2.2 and §3, RFC 7521 §4.2): the
//! client signs a short-lived JWT with a key whose public half it registered, and sends
//! it as `client_assertion`. This module checks a registered key set and verifies an
//! assertion against it, reading the agent and taking `now` as a value.
//!
//! Whether an assertion's `jti` was spent before is asked of the projections here, to
//! answer early; it is decided exactly in the sequencer (`decide::issue_token`), which
//! records the `jti` with the token the assertion pays for. Nothing here records.

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use writ_projections::Agent;
use writ_schemas::{AssertionUsed, ClientJwk, ClientJwks, Timestamp};

use crate::http::oauth_error::OAuthError;

/// `client_assertion_type` for a JWT client assertion (RFC 7523 §2.2).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Clock skew allowed on `exp`, `nbf` and `iat`.
pub const ASSERTION_LEEWAY_SECONDS: i64 = 60;
/// Furthest ahead an assertion's `exp` may be: an assertion is made for one request, and
/// a short life bounds what a captured one is worth.
pub const ASSERTION_LIFETIME_SECONDS_MAX: i64 = 300;
/// Longest `jti` accepted (it is kept in the ledger).
pub const ASSERTION_JTI_BYTES_MAX: usize = 256;
/// Most keys an agent may register.
pub const JWKS_KEYS_MAX: usize = 10;
/// Largest registered key set, as JSON.
pub const JWKS_BYTES_MAX: usize = 16 * 1024;
/// Smallest RSA modulus accepted.
const RSA_MODULUS_BITS_MIN: usize = 2048;
/// The algorithms an assertion may be signed with, as discovery lists them.
pub const ASSERTION_ALGORITHMS: &[&str] = &["EdDSA", "ES256", "RS256"];

/// Members that only a private or symmetric key has (RFC 7518 §6.2.2, §6.3.2, §6.4).
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// A registration's `jwks`, checked: public signature keys writ verifies with, at most
/// [`JWKS_KEYS_MAX`], distinct `kid`s. The error says what to change.
pub fn registered_jwks(value: &serde_json::Value) -> Result<ClientJwks, String> {
    if value.to_string().len() > JWKS_BYTES_MAX {
        return Err(format!("at most {JWKS_BYTES_MAX} bytes of JSON"));
    }
    let keys = value
        .get("keys")
        .and_then(serde_json::Value::as_array)
        .ok_or("a JWK Set: an object with a `keys` array")?;
    if keys.is_empty() || keys.len() > JWKS_KEYS_MAX {
        return Err(format!("1 to {JWKS_KEYS_MAX} keys"));
    }
    for (index, key) in keys.iter().enumerate() {
        if let Some(member) = PRIVATE_MEMBERS.iter().find(|m| key.get(**m).is_some()) {
            return Err(format!(
                "key {index} holds the private member `{member}`; register the public key only"
            ));
        }
    }
    let set: ClientJwks = serde_json::from_value(value.clone())
        .map_err(|err| format!("not a set of public EC, RSA or OKP keys: {err}"))?;
    for (index, key) in set.keys.iter().enumerate() {
        check_key(key).map_err(|why| format!("key {index}: {why}"))?;
    }
    let mut kids: Vec<&str> = set.keys.iter().filter_map(|k| k.kid.as_deref()).collect();
    kids.sort_unstable();
    if kids.windows(2).any(|pair| pair[0] == pair[1]) {
        return Err("each key's `kid` must be distinct".into());
    }
    Ok(set)
}

fn check_key(key: &ClientJwk) -> Result<(), String> {
    let shape_fits = match key.kty.as_str() {
        "EC" => key.crv.as_deref() == Some("P-256") && key.x.is_some() && key.y.is_some(),
        "OKP" => key.crv.as_deref() == Some("Ed25519") && key.x.is_some() && key.y.is_none(),
        "RSA" => key.n.is_some() && key.e.is_some() && key.crv.is_none(),
        "oct" => return Err("a symmetric (`oct`) key is a shared secret, not a public key".into()),
        other => return Err(format!("key type `{other}` is not EC, RSA or OKP")),
    };
    if !shape_fits {
        return Err(
            "an EC key is P-256 with x and y, an OKP key Ed25519 with x, an RSA key n and e".into(),
        );
    }
    if key.use_.as_deref().is_some_and(|u| u != "sig") {
        return Err("`use` must be `sig`".into());
    }
    if let Some(alg) = key.alg.as_deref() {
        let fits = algorithm(alg).is_some_and(|alg| fits_type(key, alg));
        if !fits {
            return Err(format!(
                "`alg` `{alg}` does not fit the key; use one of {}",
                ASSERTION_ALGORITHMS.join(", ")
            ));
        }
    }
    if key.kty == "RSA" {
        let n = key.n.as_deref().unwrap_or_default();
        // base64url without padding: four characters carry three bytes.
        let bits = n.trim_start_matches('A').len() * 6;
        if bits < RSA_MODULUS_BITS_MIN {
            return Err(format!(
                "an RSA modulus of at least {RSA_MODULUS_BITS_MIN} bits"
            ));
        }
    }
    decoding_key(key).map(|_| ())
}

fn algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "EdDSA" => Some(Algorithm::EdDSA),
        "ES256" => Some(Algorithm::ES256),
        "RS256" => Some(Algorithm::RS256),
        _ => None,
    }
}

/// Whether the key's type and curve are the ones `alg` signs with.
fn fits_type(key: &ClientJwk, alg: Algorithm) -> bool {
    match alg {
        Algorithm::EdDSA => key.kty == "OKP" && key.crv.as_deref() == Some("Ed25519"),
        Algorithm::ES256 => key.kty == "EC" && key.crv.as_deref() == Some("P-256"),
        Algorithm::RS256 => key.kty == "RSA",
        _ => false,
    }
}

/// Whether the key may verify an assertion signed with `alg`: its type fits, and its own
/// `alg`, if it names one, is that one.
fn fits(key: &ClientJwk, alg: Algorithm) -> bool {
    fits_type(key, alg)
        && key
            .alg
            .as_deref()
            .is_none_or(|named| algorithm(named) == Some(alg))
}

fn decoding_key(key: &ClientJwk) -> Result<DecodingKey, String> {
    let jwk: Jwk = serde_json::to_value(key)
        .and_then(serde_json::from_value)
        .map_err(|err| format!("not a usable key ({err})"))?;
    DecodingKey::from_jwk(&jwk).map_err(|err| format!("not a usable key ({err})"))
}

/// The claims writ reads from a client assertion.
#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    sub: Option<String>,
    #[serde(default)]
    aud: Audience,
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
    jti: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(untagged)]
enum Audience {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, wanted: &str) -> bool {
        match self {
            Audience::None => false,
            Audience::One(one) => one == wanted,
            Audience::Many(many) => many.iter().any(|a| a == wanted),
        }
    }
}

/// The `sub` of an assertion, read without verifying it: which client it claims to be,
/// so that client's keys can verify it.
pub fn claimed_client(assertion: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Unverified {
        sub: Option<String>,
    }
    jsonwebtoken::dangerous::insecure_decode_claims::<Unverified>(assertion)
        .ok()
        .and_then(|claims| claims.sub)
}

/// Verifies `assertion` as `agent`'s proof of itself at `issuer`'s token endpoint at
/// `now`: what to record with the token, or why it is refused (`invalid_client`).
pub fn verify(
    agent: &Agent,
    assertion: &str,
    issuer: &str,
    now: Timestamp,
) -> Result<AssertionUsed, OAuthError> {
    let refuse = |why: String| OAuthError::invalid_client(format!("the client assertion {why}"));
    let keys: ClientJwks = agent
        .jwks
        .as_deref()
        .and_then(|text| serde_json::from_str(text).ok())
        .ok_or_else(|| refuse("cannot be checked: this client registered no keys".into()))?;
    let header = jsonwebtoken::decode_header(assertion).map_err(|err| {
        refuse(format!(
            "has no readable JWS header ({err}); sign it with {}",
            ASSERTION_ALGORITHMS.join(", ")
        ))
    })?;
    let alg = match header.alg {
        alg @ (Algorithm::EdDSA | Algorithm::ES256 | Algorithm::RS256) => alg,
        other => {
            return Err(refuse(format!(
                "is signed with {other:?}; writ accepts {} with a registered key",
                ASSERTION_ALGORITHMS.join(", ")
            )));
        }
    };
    let key = select_key(&keys, header.kid.as_deref(), alg).map_err(refuse)?;
    let decoding = decoding_key(key).map_err(refuse)?;
    let mut validation = Validation::new(alg);
    // Times, audience and parties are checked below, against writ's clock and rules.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Claims>(assertion, &decoding, &validation)
        .map_err(|err| refuse(format!("does not verify with the registered key ({err})")))?
        .claims;
    check_claims(&claims, agent.client_id.as_str(), issuer, now).map_err(refuse)
}

/// The key the header's `kid` names, or without one the only key fitting `alg`.
fn select_key<'k>(
    keys: &'k ClientJwks,
    kid: Option<&str>,
    alg: Algorithm,
) -> Result<&'k ClientJwk, String> {
    let Some(kid) = kid else {
        let mut fitting = keys.keys.iter().filter(|k| fits(k, alg));
        return match (fitting.next(), fitting.next()) {
            (Some(key), None) => Ok(key),
            (None, _) => Err(format!(
                "is signed with {alg:?}, which no registered key is for"
            )),
            (Some(_), Some(_)) => {
                Err("has no `kid`, and several registered keys could verify it".into())
            }
        };
    };
    let key = keys
        .keys
        .iter()
        .find(|k| k.kid.as_deref() == Some(kid))
        .ok_or_else(|| format!("names the key `{kid}`, which this client did not register"))?;
    if !fits(key, alg) {
        return Err(format!(
            "is signed with {alg:?}, but the key `{kid}` is not for it"
        ));
    }
    Ok(key)
}

fn check_claims(
    claims: &Claims,
    client_id: &str,
    issuer: &str,
    now: Timestamp,
) -> Result<AssertionUsed, String> {
    if claims.iss.as_deref() != Some(client_id) || claims.sub.as_deref() != Some(client_id) {
        return Err(format!("must have iss and sub both {client_id}"));
    }
    let token_endpoint = format!("{issuer}/oauth/token");
    if !(claims.aud.contains(&token_endpoint) || claims.aud.contains(issuer)) {
        return Err(format!(
            "must have aud {token_endpoint} (or the issuer {issuer})"
        ));
    }
    let now_seconds = now.unix_seconds();
    let exp = claims.exp.ok_or("must have exp")?;
    if exp.saturating_add(ASSERTION_LEEWAY_SECONDS) <= now_seconds {
        return Err("has expired; sign a new one".into());
    }
    if exp > now_seconds.saturating_add(ASSERTION_LIFETIME_SECONDS_MAX + ASSERTION_LEEWAY_SECONDS) {
        return Err(format!(
            "lives too long: its exp may be at most {ASSERTION_LIFETIME_SECONDS_MAX} seconds ahead"
        ));
    }
    let ahead = |t: Option<i64>| t.is_some_and(|t| t > now_seconds + ASSERTION_LEEWAY_SECONDS);
    if ahead(claims.nbf) || ahead(claims.iat) {
        return Err("is not valid yet (nbf or iat is in the future)".into());
    }
    let jti = claims
        .jti
        .as_deref()
        .filter(|j| !j.is_empty() && j.len() <= ASSERTION_JTI_BYTES_MAX)
        .ok_or(format!(
            "must have a jti of 1 to {ASSERTION_JTI_BYTES_MAX} bytes, unique for each assertion"
        ))?;
    let expires_at =
        Timestamp::from_unix_micros(exp.saturating_mul(1_000_000)).ok_or("has exp out of range")?;
    Ok(AssertionUsed {
        jti: jti.to_owned(),
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::signature::{KeyPair as _, RsaKeyPair};
    use base64::Engine as _;
    use serde_json::json;

    use super::*;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn an_rsa_key_is_registered_from_2048_bits_and_refused_below() {
        let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .unwrap_or_else(|err| unreachable!("{err}"));
        let public = pair.public_key();
        let n = public.modulus().big_endian_without_leading_zero().to_vec();
        let e = b64(public.exponent().big_endian_without_leading_zero());
        let key = |n: &[u8]| json!({"keys": [{"kty": "RSA", "n": b64(n), "e": e, "alg": "RS256"}]});
        let set = registered_jwks(&key(&n)).unwrap_or_else(|why| unreachable!("{why}"));
        assert!(fits(&set.keys[0], Algorithm::RS256));
        assert!(!fits(&set.keys[0], Algorithm::ES256));
        assert_eq!(
            registered_jwks(&key(&n[..128])).err().as_deref(),
            Some("key 0: an RSA modulus of at least 2048 bits")
        );
    }

    #[test]
    fn a_registered_set_has_a_size_limit() {
        let padding = "A".repeat(JWKS_BYTES_MAX);
        let set = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": padding}]});
        assert_eq!(
            registered_jwks(&set).err(),
            Some(format!("at most {JWKS_BYTES_MAX} bytes of JSON"))
        );
    }
}

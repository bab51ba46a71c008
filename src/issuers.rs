//! Trusted external issuers: identity providers whose JWTs token exchange accepts as a
//! person's `subject_token`. Configured as `ISSUER_URL=JWKS_URL_OR_FILE`
//! (`writ serve --trusted-issuer`, repeatable, or `WRIT_TRUSTED_ISSUERS`, comma-separated).
//! This module owns their key sets (fetched, cached, refreshed) and the verification of
//! their JWTs; what a verified token may then get is `oauth::exchange`'s to say.
//!
//! These are the only JWTs writ verifies cryptographically: its own tokens are found by
//! digest. A token is accepted when
//! - its `iss` is exactly a configured issuer (the same bytes),
//! - its header's `alg` is the one its key names (`alg` in the JWK), or, when the key
//!   names none, one of the key's type (EdDSA for an Ed25519 key, ES256/ES384 for a
//!   P-256/P-384 key, RS*/PS* for RSA); never `none`, never a symmetric (HS*) algorithm,
//! - its signature verifies with the key its `kid` names (or the set's only key when it
//!   names none),
//! - `exp` is present and not past, and `nbf`, if present, not ahead, each within
//!   [`CLOCK_SKEW_SECONDS`] of writ's clock,
//! - `aud`, if present, names writ's issuer URL: a token meant for another service is
//!   not one to trade here. An absent `aud` is accepted, since many providers' access
//!   tokens carry none; the issuer still has to be trusted and the token fresh.
//! - `email_verified`, if present, is not false.
//!
//! Key sets are fetched on first use (a file is read at start, so a bad path fails the
//! start), kept [`JWKS_AGE_SECONDS_MAX`], and fetched again early when a token names a
//! `kid` the set lacks (a rotation), but never more often than every
//! [`JWKS_REFRESH_SECONDS_MIN`] per issuer, so a flood of made-up `kid`s cannot turn into a
//! flood of fetches. A failed fetch keeps the keys already held. Fetches time out after
//! [`JWKS_FETCH_SECONDS_MAX`] and read at most [`JWKS_BYTES_MAX`].

use std::path::PathBuf;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use writ_schemas::Timestamp;

use crate::http::oauth_error::OAuthError;
use crate::oauth::ExternalSubject;

/// Most trusted issuers one server is configured with.
pub const TRUSTED_ISSUERS_MAX: usize = 32;
/// Largest key set read from an issuer (bytes).
pub const JWKS_BYTES_MAX: usize = 64 * 1024;
/// Most keys kept from one issuer's set.
pub const JWKS_KEYS_MAX: usize = 100;
/// Longest wait for an issuer's key set (connect and read).
pub const JWKS_FETCH_SECONDS_MAX: u64 = 5;
/// Shortest time between two fetches of one issuer's key set.
pub const JWKS_REFRESH_SECONDS_MIN: u64 = 60;
/// Longest a fetched key set is used before it is fetched again.
pub const JWKS_AGE_SECONDS_MAX: u64 = 3600;
/// Clock difference tolerated on `exp` and `nbf`.
pub const CLOCK_SKEW_SECONDS: i64 = 60;

/// One configured issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedIssuer {
    /// Its `iss`, exactly.
    pub issuer: String,
    /// Where its public keys are.
    pub jwks: JwksSource,
}

/// Where an issuer's JWKS is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// Fetched over HTTP(S).
    Url(String),
    /// Read from a file.
    File(PathBuf),
}

/// Parses `ISSUER_URL=JWKS_URL_OR_FILE`, as `--trusted-issuer` takes it.
pub fn parse_trusted_issuer(text: &str) -> Result<TrustedIssuer, String> {
    let (issuer, jwks) = text.split_once('=').ok_or_else(|| {
        format!("`{text}` is not ISSUER_URL=JWKS_URL_OR_FILE (an `=` between the two)")
    })?;
    let is_url = |s: &str| s.starts_with("https://") || s.starts_with("http://");
    if !is_url(issuer) {
        return Err(format!("the issuer `{issuer}` is not an http(s) URL"));
    }
    if jwks.is_empty() {
        return Err(format!("issuer {issuer} names no JWKS URL or file"));
    }
    let jwks = if is_url(jwks) {
        JwksSource::Url(jwks.to_owned())
    } else {
        JwksSource::File(PathBuf::from(jwks))
    };
    Ok(TrustedIssuer {
        issuer: issuer.to_owned(),
        jwks,
    })
}

/// Why the trusted issuers could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum IssuersError {
    /// More than [`TRUSTED_ISSUERS_MAX`], or one named twice.
    #[error("{0}")]
    Config(String),
    /// A JWKS file that could not be read or is not a key set.
    #[error("the JWKS of trusted issuer {issuer}: {why}")]
    Jwks {
        /// The issuer.
        issuer: String,
        /// Why.
        why: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot make the HTTP client for trusted issuers' keys: {0}")]
    Client(String),
}

/// The configured issuers and their cached keys.
pub struct TrustedIssuers {
    issuers: Vec<Issuer>,
    /// Made only when an issuer is configured: a server with none needs no TLS setup.
    client: Option<reqwest::Client>,
}

struct Issuer {
    config: TrustedIssuer,
    // An async lock: a fetch is awaited while it is held, so concurrent requests for one
    // issuer wait for one fetch instead of each making their own.
    cache: tokio::sync::Mutex<KeyCache>,
}

/// One issuer's keys and when they were fetched.
#[derive(Debug, Default)]
struct KeyCache {
    keys: Vec<Jwk>,
    fetched_at: Option<Instant>,
    attempted_at: Option<Instant>,
}

impl KeyCache {
    /// Whether to fetch the set again before looking for a key at `now`, knowing whether
    /// the key sought is among those held.
    fn should_fetch(&self, key_held: bool, now: Instant) -> bool {
        let since = |at: Option<Instant>| at.map(|at| now.saturating_duration_since(at));
        match since(self.attempted_at) {
            None => true,
            Some(recent) if recent < Duration::from_secs(JWKS_REFRESH_SECONDS_MIN) => false,
            Some(_) if !key_held => true,
            Some(_) => since(self.fetched_at)
                .is_none_or(|age| age >= Duration::from_secs(JWKS_AGE_SECONDS_MAX)),
        }
    }

    /// The key for `kid`, or the only key when no `kid` is named.
    fn find(&self, kid: Option<&str>) -> Option<&Jwk> {
        match (kid, self.keys.as_slice()) {
            (Some(kid), keys) => keys
                .iter()
                .find(|key| key.common.key_id.as_deref() == Some(kid)),
            (None, [only]) => Some(only),
            (None, _) => None,
        }
    }
}

impl TrustedIssuers {
    /// Sets up `configs`, reading every JWKS file now (fail closed at start).
    pub fn new(configs: Vec<TrustedIssuer>) -> Result<TrustedIssuers, IssuersError> {
        if configs.len() > TRUSTED_ISSUERS_MAX {
            return Err(IssuersError::Config(format!(
                "{} trusted issuers are configured; at most {TRUSTED_ISSUERS_MAX} are allowed",
                configs.len()
            )));
        }
        let mut issuers: Vec<Issuer> = Vec::new();
        for config in configs {
            if issuers.iter().any(|i| i.config.issuer == config.issuer) {
                return Err(IssuersError::Config(format!(
                    "trusted issuer {} is configured twice",
                    config.issuer
                )));
            }
            let mut cache = KeyCache::default();
            if let JwksSource::File(path) = &config.jwks {
                cache.keys = read_file(path).map_err(|why| IssuersError::Jwks {
                    issuer: config.issuer.clone(),
                    why,
                })?;
                cache.fetched_at = Some(Instant::now());
                cache.attempted_at = cache.fetched_at;
            }
            issuers.push(Issuer {
                config,
                cache: tokio::sync::Mutex::new(cache),
            });
        }
        // Fetches are rare, and actix runs one runtime per worker: no pooled connection
        // is kept, so none is tied to another worker's runtime.
        let client = match issuers.is_empty() {
            true => None,
            false => Some(
                reqwest::Client::builder()
                    .timeout(Duration::from_secs(JWKS_FETCH_SECONDS_MAX))
                    .connect_timeout(Duration::from_secs(JWKS_FETCH_SECONDS_MAX))
                    .pool_max_idle_per_host(0)
                    .redirect(reqwest::redirect::Policy::limited(3))
                    .build()
                    .map_err(|err| IssuersError::Client(err.to_string()))?,
            ),
        };
        Ok(TrustedIssuers { issuers, client })
    }

    /// The configured issuers' URLs.
    pub fn issuers(&self) -> impl Iterator<Item = &str> {
        self.issuers.iter().map(|i| i.config.issuer.as_str())
    }

    /// Verifies `token` if a trusted issuer issued it (by its unverified `iss`): the
    /// person it vouches for, `None` when no trusted issuer claims it (not a JWT, or
    /// another issuer, writ itself included), or why a trusted issuer's token fails.
    pub async fn verify(
        &self,
        token: &str,
        writ_issuer: &str,
        now: Timestamp,
    ) -> Result<Option<ExternalSubject>, OAuthError> {
        #[derive(Deserialize)]
        struct Unverified {
            iss: Option<String>,
        }
        let Ok(Unverified { iss: Some(iss) }) =
            jsonwebtoken::dangerous::insecure_decode_claims::<Unverified>(token)
        else {
            return Ok(None);
        };
        let Some(issuer) = self.issuers.iter().find(|i| i.config.issuer == iss) else {
            return Ok(None);
        };
        let refuse = |why: String| {
            OAuthError::invalid_grant(format!(
                "the external token from trusted issuer {iss} did not verify: {why}"
            ))
        };
        let header = jsonwebtoken::decode_header(token)
            .map_err(|err| refuse(format!("its header cannot be read ({err})")))?;
        let key = self
            .key(issuer, header.kid.as_deref())
            .await
            .map_err(refuse)?;
        let alg = algorithm_for(&key, header.alg).map_err(refuse)?;
        let decoding = DecodingKey::from_jwk(&key)
            .map_err(|err| refuse(format!("its key is unusable ({err})")))?;
        let mut validation = Validation::new(alg);
        // Times are checked against writ's clock below, and the audience by writ's rule.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "iss"]);
        validation.set_issuer(&[iss.as_str()]);
        let claims = jsonwebtoken::decode::<Claims>(token, &decoding, &validation)
            .map_err(|err| refuse(format!("{err}")))?
            .claims;
        claims.check(writ_issuer, now).map_err(refuse)?;
        let expires_at = Timestamp::from_unix_micros(claims.exp.saturating_mul(1_000_000))
            .ok_or_else(|| refuse("its exp is out of range".into()))?;
        Ok(Some(ExternalSubject {
            issuer: iss.clone(),
            email: claims.email,
            email_hash: None,
            expires_at,
        }))
    }

    /// The issuer's key for `kid`, fetching its set first when it is due.
    async fn key(&self, issuer: &Issuer, kid: Option<&str>) -> Result<Jwk, String> {
        let mut cache = issuer.cache.lock().await;
        let now = Instant::now();
        if cache.should_fetch(cache.find(kid).is_some(), now) {
            cache.attempted_at = Some(now);
            match self.fetch(&issuer.config.jwks).await {
                Ok(keys) => {
                    cache.keys = keys;
                    cache.fetched_at = Some(now);
                }
                Err(why) => {
                    tracing::warn!(issuer = %issuer.config.issuer, %why, "fetching a trusted issuer's JWKS failed; keeping the keys held");
                }
            }
        }
        cache.find(kid).cloned().ok_or_else(|| match kid {
            Some(kid) => format!("its kid `{kid}` is not in the issuer's JWKS"),
            None => "it names no kid, and the issuer's JWKS does not hold exactly one key".into(),
        })
    }

    async fn fetch(&self, source: &JwksSource) -> Result<Vec<Jwk>, String> {
        let url = match source {
            JwksSource::File(path) => {
                let path = path.clone();
                return actix_web::web::block(move || read_file(&path))
                    .await
                    .map_err(|err| err.to_string())?;
            }
            JwksSource::Url(url) => url,
        };
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| "no HTTP client: no issuer is configured".to_owned())?;
        let mut response = client
            .get(url)
            .header("accept", "application/jwk-set+json, application/json")
            .send()
            .await
            .map_err(|err| format!("GET {url}: {err}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url} answered {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|err| format!("GET {url}: {err}"))?
        {
            if body.len() + chunk.len() > JWKS_BYTES_MAX {
                return Err(format!(
                    "GET {url}: the JWKS is over {JWKS_BYTES_MAX} bytes"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        parse_jwks(&body)
    }
}

fn read_file(path: &std::path::Path) -> Result<Vec<Jwk>, String> {
    let shown = path.display();
    let size = std::fs::metadata(path)
        .map_err(|err| format!("{shown}: {err}"))?
        .len();
    if size > JWKS_BYTES_MAX as u64 {
        return Err(format!("{shown} is over {JWKS_BYTES_MAX} bytes"));
    }
    let bytes = std::fs::read(path).map_err(|err| format!("{shown}: {err}"))?;
    parse_jwks(&bytes).map_err(|why| format!("{shown}: {why}"))
}

/// The usable keys of a JWKS document: signature keys of a type writ verifies; others
/// (encryption keys, symmetric keys, types jsonwebtoken does not know) are skipped.
fn parse_jwks(bytes: &[u8]) -> Result<Vec<Jwk>, String> {
    #[derive(Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_slice(bytes).map_err(|err| format!("not a JWK set ({err})"))?;
    let keys: Vec<Jwk> = set
        .keys
        .into_iter()
        .filter_map(|key| serde_json::from_value::<Jwk>(key).ok())
        .filter(|key| {
            !matches!(
                key.algorithm,
                AlgorithmParameters::OctetKey(_) | AlgorithmParameters::Other(_)
            ) && key
                .common
                .public_key_use
                .as_ref()
                .is_none_or(|u| *u == jsonwebtoken::jwk::PublicKeyUse::Signature)
        })
        .take(JWKS_KEYS_MAX)
        .collect();
    if keys.is_empty() {
        return Err("it holds no signature key writ can use".into());
    }
    Ok(keys)
}

/// The algorithm to verify with: the key's own `alg` if it names one (the header must
/// agree), else the header's if it fits the key's type. Symmetric algorithms never.
fn algorithm_for(key: &Jwk, header_alg: Algorithm) -> Result<Algorithm, String> {
    if let Some(named) = key.common.key_algorithm {
        let named = Algorithm::try_from(named).map_err(|_| {
            format!("its key names the algorithm {named}, which writ does not verify")
        })?;
        if named != header_alg {
            return Err(format!(
                "its header says {header_alg:?} but its key is for {named:?}"
            ));
        }
    }
    let fits = match (&key.algorithm, header_alg) {
        (AlgorithmParameters::OctetKeyPair(p), Algorithm::EdDSA) => {
            p.curve == EllipticCurve::Ed25519
        }
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES256) => p.curve == EllipticCurve::P256,
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES384) => p.curve == EllipticCurve::P384,
        (
            AlgorithmParameters::RSA(_),
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512,
        ) => true,
        _ => false,
    };
    if fits {
        Ok(header_alg)
    } else {
        Err(format!(
            "its header's algorithm {header_alg:?} does not fit its key"
        ))
    }
}

/// The claims writ reads from an external token.
#[derive(Debug, Deserialize)]
struct Claims {
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Claims {
    /// Times against writ's clock, the audience, and the email's verification.
    fn check(&self, writ_issuer: &str, now: Timestamp) -> Result<(), String> {
        let now = now.unix_seconds();
        if self.exp.saturating_add(CLOCK_SKEW_SECONDS) <= now {
            return Err("it has expired".into());
        }
        if let Some(nbf) = self
            .nbf
            .filter(|nbf| nbf.saturating_sub(CLOCK_SKEW_SECONDS) > now)
        {
            return Err(format!("it is not valid before {nbf} (nbf)"));
        }
        let ours = |aud: &String| aud.trim_end_matches('/') == writ_issuer.trim_end_matches('/');
        let for_writ = match &self.aud {
            None => true,
            Some(Audience::One(aud)) => ours(aud),
            Some(Audience::Many(auds)) => auds.iter().any(ours),
        };
        if !for_writ {
            return Err(format!(
                "its aud does not name writ ({writ_issuer}); it was meant for another service"
            ));
        }
        if self.email_verified == Some(false) {
            return Err("its email is not verified (email_verified is false)".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trusted_issuer_is_an_issuer_url_and_a_jwks_url_or_file() {
        assert_eq!(
            parse_trusted_issuer("https://id.example=https://id.example/jwks"),
            Ok(TrustedIssuer {
                issuer: "https://id.example".into(),
                jwks: JwksSource::Url("https://id.example/jwks".into())
            })
        );
        assert_eq!(
            parse_trusted_issuer("https://id.example=/etc/writ/id.jwks"),
            Ok(TrustedIssuer {
                issuer: "https://id.example".into(),
                jwks: JwksSource::File("/etc/writ/id.jwks".into())
            })
        );
        for bad in ["https://id.example", "id.example=/x", "https://id.example="] {
            assert!(parse_trusted_issuer(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_key_set_is_fetched_again_when_due_and_never_twice_a_minute() {
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        let mut cache = KeyCache::default();
        assert!(cache.should_fetch(false, at(0)), "never fetched");
        cache.attempted_at = Some(at(0));
        cache.fetched_at = Some(at(0));
        assert!(!cache.should_fetch(false, at(1)), "an unknown kid waits");
        assert!(cache.should_fetch(false, at(JWKS_REFRESH_SECONDS_MIN)));
        assert!(!cache.should_fetch(true, at(JWKS_REFRESH_SECONDS_MIN)));
        assert!(
            cache.should_fetch(true, at(JWKS_AGE_SECONDS_MAX)),
            "too old"
        );
        cache.attempted_at = Some(at(JWKS_AGE_SECONDS_MAX));
        assert!(
            !cache.should_fetch(true, at(JWKS_AGE_SECONDS_MAX + 1)),
            "a failed fetch waits too"
        );
    }

    #[test]
    fn an_external_token_is_for_writ_fresh_and_verified_by_email() {
        let now = Timestamp::from_unix_micros(1_800_000_000_000_000)
            .unwrap_or_else(|| unreachable!("in range"));
        let writ = "https://writ.example";
        let claims = |exp: i64, aud: Option<Audience>| Claims {
            exp,
            nbf: None,
            aud,
            email: Some("ada@example.com".into()),
            email_verified: None,
        };
        let t = now.unix_seconds();
        assert_eq!(claims(t + 60, None).check(writ, now), Ok(()));
        let ours = Audience::Many(vec!["x".into(), format!("{writ}/")]);
        assert_eq!(claims(t + 60, Some(ours)).check(writ, now), Ok(()));
        let theirs = Audience::One("https://mail.example".into());
        assert!(claims(t + 60, Some(theirs)).check(writ, now).is_err());
        assert!(
            claims(t - CLOCK_SKEW_SECONDS, None)
                .check(writ, now)
                .is_err()
        );
        let mut early = claims(t + 600, None);
        early.nbf = Some(t + 120);
        assert!(early.check(writ, now).is_err());
        let mut unverified = claims(t + 60, None);
        unverified.email_verified = Some(false);
        assert!(unverified.check(writ, now).is_err());
    }
}

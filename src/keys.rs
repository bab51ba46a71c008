//! Signing keys: generated here, private parts kept in `<data-dir>/keys/<kid>.pk8`
//! (PKCS#8, owner-only, never in the ledger), public parts recorded as `SigningKeyRotated`
//! events and published in the JWKS.
//!
//! Three algorithms: EdDSA (Ed25519, the default), ES256 (P-256) and RS256 (RSA, 2048-bit
//! keys). Keys are generated and checked with aws-lc-rs and handed to jsonwebtoken as its
//! `EncodingKey`; nothing here does cryptography of its own.
//!
//! A key stays in the JWKS after its successor takes over for as long as a token it
//! signed can still be valid (`PREVIOUS_KEY_PUBLISHED_SECONDS`, the longest TTL a policy
//! may allow), so resource servers never meet a token whose `kid` they cannot find.
//!
//! While serving, [`SigningKeys`] holds the key in use: the token endpoint loads it with
//! one atomic read, and a rotation stores the new key's file, records the event, and only
//! then swaps the key in.

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::sync::Arc;

use arc_swap::ArcSwap;
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use writ_projections::{SigningKey, State};
use writ_schemas::{
    Actor, EcCurve, KeyId, PublicJwk, SigningAlgorithm, SigningKeyRotated, Timestamp,
};

use crate::decide::{Command, Refusal};
use crate::ledger::datadir::{DataDir, sync_dir};
use crate::ledger::{Ledger, SubmitError};
use crate::secrets::new_id;

/// How long a replaced key stays published: the longest token lifetime a policy allows.
pub const PREVIOUS_KEY_PUBLISHED_SECONDS: i64 = 24 * 3600;

/// The size of generated RSA keys. 2048 bits is the size RFC 7518 requires at least and
/// NIST accepts through 2030; 3072 would sign about three times slower (see the decision
/// in ARCHITECTURE.md).
pub const RSA_KEY_SIZE: KeySize = KeySize::Rsa2048;

/// The algorithm of a data directory's first key.
pub const DEFAULT_ALGORITHM: SigningAlgorithm = SigningAlgorithm::EdDsa;

/// Reads an algorithm's name as the command line and the API take it: the JWS name, in
/// any case. The error names the accepted values.
pub fn parse_algorithm(text: &str) -> Result<SigningAlgorithm, String> {
    SigningAlgorithm::ALL
        .into_iter()
        .find(|alg| alg.name().eq_ignore_ascii_case(text))
        .ok_or_else(|| {
            format!("`{text}` is not a signing algorithm writ offers; use EdDSA, ES256 or RS256")
        })
}

/// Why keys could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key file could not be written or read, or the generator failed.
    #[error("{0}")]
    Io(String),
    /// The ledger names a current key whose private part is not on this machine.
    #[error(
        "the ledger's current signing key {kid} has no private key at {path}; every node of a ledger needs the same keys: copy the keys folder of the node that made it (or point --keys-dir at it), restore it from backup, or run `writ admin keys rotate`"
    )]
    Missing {
        /// The key.
        kid: String,
        /// Where it was looked for.
        path: String,
    },
    /// The key file does not hold the key the ledger recorded.
    #[error("{path} is not the {alg} key the ledger recorded: {why}")]
    Unusable {
        /// The file.
        path: String,
        /// The algorithm the ledger names.
        alg: SigningAlgorithm,
        /// Why.
        why: String,
    },
    /// Recording the key failed.
    #[error("recording the new key: {0}")]
    Ledger(#[from] SubmitError),
}

/// The key tokens are signed with now.
pub struct CurrentKey {
    /// Its `kid`.
    pub kid: KeyId,
    /// Its algorithm.
    pub alg: SigningAlgorithm,
    /// For `jsonwebtoken::encode`.
    pub encoding: EncodingKey,
}

impl CurrentKey {
    /// The algorithm as jsonwebtoken names it, for the JWS header.
    pub fn jws_algorithm(&self) -> Algorithm {
        match self.alg {
            SigningAlgorithm::EdDsa => Algorithm::EdDSA,
            SigningAlgorithm::Es256 => Algorithm::ES256,
            SigningAlgorithm::Rs256 => Algorithm::RS256,
        }
    }
}

impl std::fmt::Debug for CurrentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CurrentKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish()
    }
}

/// What starting on a data directory did about its signing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Startup {
    /// The current key stays current.
    Kept,
    /// The data directory had no key: its first one was made.
    Made,
    /// The current key was of another algorithm than asked: this key replaced it.
    Rotated {
        /// The replaced key, still published.
        from: KeyId,
        /// Its algorithm.
        from_alg: SigningAlgorithm,
    },
}

/// A rotation that happened: the new key, and the one it replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    /// The new current key.
    pub kid: KeyId,
    /// Its algorithm.
    pub alg: SigningAlgorithm,
    /// The key it replaced (still published), if there was one.
    pub previous_kid: Option<KeyId>,
}

/// A key generated and stored, not yet recorded: the event that records it, and the key
/// loaded for signing.
struct Prepared {
    event: SigningKeyRotated,
    key: CurrentKey,
}

/// The key the server signs with, swapped whole when a rotation lands.
pub struct SigningKeys {
    dir: DataDir,
    current: ArcSwap<CurrentKey>,
    /// One rotation at a time, so that the order of the swaps is the order of the events.
    rotating: tokio::sync::Mutex<()>,
}

impl SigningKeys {
    /// Holds `key` (the ledger's current key) for signing; new keys go to `dir`.
    pub fn new(dir: DataDir, key: CurrentKey) -> SigningKeys {
        SigningKeys {
            dir,
            current: ArcSwap::from_pointee(key),
            rotating: tokio::sync::Mutex::new(()),
        }
    }

    /// The key to sign with now: one atomic load, no lock.
    pub fn current(&self) -> arc_swap::Guard<Arc<CurrentKey>> {
        self.current.load()
    }

    /// Makes a new key current while serving: generates it (off the async workers: an
    /// RSA key takes a while), stores its private part, records its public part, and only
    /// once that is durable swaps it in. `alg` defaults to the current key's algorithm.
    pub async fn rotate(
        &self,
        ledger: &Ledger,
        alg: Option<SigningAlgorithm>,
        by: Actor,
    ) -> Result<Rotated, KeyError> {
        let _one_at_a_time = self.rotating.lock().await;
        let previous = latest(ledger);
        let alg = chosen(alg, previous.as_ref());
        let previous_kid = previous.map(|key| key.kid);
        let dir = self.dir.clone();
        let prepared = tokio::task::spawn_blocking(move || prepare(&dir, alg, previous_kid, by))
            .await
            .map_err(|err| KeyError::Io(format!("generating the key: {err}")))??;
        ledger
            .submit(Command::RotateSigningKey(prepared.event.clone()))
            .await?;
        let rotated = rotated(&prepared.event);
        self.current.store(Arc::new(prepared.key));
        Ok(rotated)
    }

    /// Keeps the key in use the ledger's current one when another node of the ledger
    /// rotates: after each batch this node applies, a newer current key is loaded from the
    /// keys directory the nodes share and swapped in. Returns when the ledger closes.
    pub async fn follow(self: Arc<Self>, ledger: std::sync::Weak<Ledger>) {
        let Some(mut sizes) = ledger.upgrade().map(|l| l.subscribe_tree()) else {
            return;
        };
        let mut missing: Option<KeyId> = None;
        while sizes.changed().await.is_ok() {
            let Some(ledger) = ledger.upgrade() else {
                return;
            };
            let current = self.current().kid.clone();
            let newer = ledger.read(|s| {
                s.signing_keys()
                    .last()
                    .filter(|key| key.kid != current)
                    .cloned()
            });
            let Some(newer) = newer else { continue };
            // A rotation of this node's own is under way: it swaps the key itself.
            let Ok(_one_at_a_time) = self.rotating.try_lock() else {
                continue;
            };
            match load(&self.dir, &newer) {
                Ok(key) => {
                    tracing::info!(kid = %newer.kid, previous = %current, "the ledger's signing key changed; signing with it");
                    self.current.store(Arc::new(key));
                }
                Err(err) if missing.as_ref() != Some(&newer.kid) => {
                    tracing::error!(%err, kid = %newer.kid, "the ledger's current signing key is not in this node's keys directory; tokens stay signed with the previous key, which stays published for 24 hours");
                    missing = Some(newer.kid);
                }
                Err(_) => {}
            }
        }
    }
}

/// Generates a key of `alg` (the current key's if `None`, EdDSA on a new ledger), stores
/// its private part and records its public part. With the server stopped: a running
/// server rotates through [`SigningKeys::rotate`].
pub fn rotate(
    dir: &DataDir,
    ledger: &Ledger,
    alg: Option<SigningAlgorithm>,
    by: Actor,
) -> Result<Rotated, KeyError> {
    let previous = latest(ledger);
    let alg = chosen(alg, previous.as_ref());
    let prepared = prepare(dir, alg, previous.map(|key| key.kid), by)?;
    ledger.submit_blocking(Command::RotateSigningKey(prepared.event.clone()))?;
    Ok(rotated(&prepared.event))
}

/// The key to sign with at start: the current one, a first one on a new data directory,
/// or, when `wanted` names another algorithm than the current key's, a new key of that
/// algorithm (recorded; the previous key stays published).
pub fn current(
    dir: &DataDir,
    ledger: &Ledger,
    wanted: Option<SigningAlgorithm>,
) -> Result<(CurrentKey, Startup), KeyError> {
    let startup = match latest(ledger) {
        None => Startup::Made,
        Some(key) if wanted.is_some_and(|alg| alg != key.alg) => Startup::Rotated {
            from: key.kid,
            from_alg: key.alg,
        },
        Some(_) => Startup::Kept,
    };
    let startup = match rotate_unless_kept(dir, ledger, wanted, startup) {
        // Another node of this ledger recorded a key first (nodes starting together): it
        // stands, and this node signs with it (from the keys directory they share).
        Err(KeyError::Ledger(SubmitError::Refused(Refusal::KeyRotatedMeanwhile(_)))) => {
            Startup::Kept
        }
        other => other?,
    };
    let Some(key) = latest(ledger) else {
        return Err(KeyError::Io("the new signing key was not recorded".into()));
    };
    Ok((load(dir, &key)?, startup))
}

fn rotate_unless_kept(
    dir: &DataDir,
    ledger: &Ledger,
    wanted: Option<SigningAlgorithm>,
    startup: Startup,
) -> Result<Startup, KeyError> {
    if startup != Startup::Kept {
        rotate(dir, ledger, wanted, Actor::System)?;
    }
    Ok(startup)
}

fn latest(ledger: &Ledger) -> Option<SigningKey> {
    ledger.read(|s| s.signing_keys().last().cloned())
}

fn chosen(alg: Option<SigningAlgorithm>, previous: Option<&SigningKey>) -> SigningAlgorithm {
    alg.or(previous.map(|key| key.alg))
        .unwrap_or(DEFAULT_ALGORITHM)
}

fn rotated(event: &SigningKeyRotated) -> Rotated {
    Rotated {
        kid: event.kid.clone(),
        alg: event.alg,
        previous_kid: event.previous_kid.clone(),
    }
}

/// Generates a key, stores it (durably, owner-only) and loads it, with the event that
/// will record it.
fn prepare(
    dir: &DataDir,
    alg: SigningAlgorithm,
    previous_kid: Option<KeyId>,
    by: Actor,
) -> Result<Prepared, KeyError> {
    let document = generate(alg)?;
    let kid = KeyId(new_id("k_"));
    let path = store(dir, &kid, &document)?;
    let unusable = |why: String| {
        KeyError::Io(format!(
            "the new {alg} key {} is unusable: {why}",
            path.display()
        ))
    };
    let (public_key, jwk) = public_members(alg, &document).map_err(unusable)?;
    let encoding = encoding_key(alg, &document).map_err(unusable)?;
    let event = SigningKeyRotated {
        kid: kid.clone(),
        alg,
        public_key,
        jwk,
        previous_kid,
        by: Some(by),
    };
    Ok(Prepared {
        event,
        key: CurrentKey { kid, alg, encoding },
    })
}

/// A new private key of `alg`, as a PKCS#8 document.
fn generate(alg: SigningAlgorithm) -> Result<Vec<u8>, KeyError> {
    let failed = |_| KeyError::Io(format!("generating an {alg} key failed"));
    Ok(match alg {
        SigningAlgorithm::EdDsa => Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(failed)?
            .as_ref()
            .to_vec(),
        SigningAlgorithm::Es256 => {
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(failed)?
                .as_ref()
                .to_vec()
        }
        SigningAlgorithm::Rs256 => RsaKeyPair::generate(RSA_KEY_SIZE)
            .and_then(|pair| pair.as_der())
            .map_err(failed)?
            .as_ref()
            .to_vec(),
    })
}

/// Writes `<keys>/<kid>.pk8`, owner-only, and makes it durable before anything names it.
pub(crate) fn store(
    dir: &DataDir,
    kid: &KeyId,
    document: &[u8],
) -> Result<std::path::PathBuf, KeyError> {
    let keys = dir.keys();
    let path = keys.join(format!("{kid}.pk8"));
    let io = |err: std::io::Error| KeyError::Io(format!("writing {}: {err}", path.display()));
    std::fs::create_dir_all(&keys).map_err(io)?;
    let mut file = File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io)?;
    file.write_all(document)
        .and_then(|()| file.sync_all())
        .map_err(io)?;
    sync_dir(&keys).map_err(|err| KeyError::Io(err.to_string()))?;
    Ok(path)
}

/// Loads the private part of the ledger's `key` and checks that it is the key recorded.
fn load(dir: &DataDir, key: &SigningKey) -> Result<CurrentKey, KeyError> {
    let path = dir.keys().join(format!("{}.pk8", key.kid));
    let shown = path.display().to_string();
    let document = std::fs::read(&path).map_err(|_| KeyError::Missing {
        kid: key.kid.to_string(),
        path: shown.clone(),
    })?;
    let unusable = |why: String| KeyError::Unusable {
        path: shown.clone(),
        alg: key.alg,
        why,
    };
    let members = public_members(key.alg, &document).map_err(unusable)?;
    if members != (key.public_key.clone(), key.jwk.clone()) {
        return Err(unusable(format!(
            "its public key is not the one recorded for {}",
            key.kid
        )));
    }
    Ok(CurrentKey {
        kid: key.kid.clone(),
        alg: key.alg,
        encoding: encoding_key(key.alg, &document).map_err(unusable)?,
    })
}

/// The public members of the PKCS#8 `document`'s key, as `SigningKeyRotated` records
/// them: `public_key` for Ed25519, `jwk` for EC and RSA.
fn public_members(
    alg: SigningAlgorithm,
    document: &[u8],
) -> Result<(Option<String>, Option<PublicJwk>), String> {
    let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    match alg {
        SigningAlgorithm::EdDsa => {
            let pair = Ed25519KeyPair::from_pkcs8(document).map_err(|err| err.to_string())?;
            Ok((Some(b64(pair.public_key().as_ref())), None))
        }
        SigningAlgorithm::Es256 => {
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, document)
                .map_err(|err| err.to_string())?;
            // The uncompressed SEC1 point: 0x04, then x and y, 32 bytes each.
            match pair.public_key().as_ref() {
                [0x04, point @ ..] if point.len() == 64 => {
                    let (x, y) = point.split_at(32);
                    let jwk = PublicJwk::Ec {
                        crv: EcCurve::P256,
                        x: b64(x),
                        y: b64(y),
                    };
                    Ok((None, Some(jwk)))
                }
                _ => Err("its public key is not an uncompressed P-256 point".into()),
            }
        }
        SigningAlgorithm::Rs256 => {
            let pair = RsaKeyPair::from_pkcs8(document).map_err(|err| err.to_string())?;
            // Big-endian without leading zeros: RFC 7518's Base64urlUInt.
            let parts = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
            let jwk = PublicJwk::Rsa {
                n: b64(&parts.n),
                e: b64(&parts.e),
            };
            Ok((None, Some(jwk)))
        }
    }
}

/// jsonwebtoken's key for the PKCS#8 `document`. Its EdDSA and ES256 signers read PKCS#8;
/// its RS256 signer reads the PKCS#1 `RSAPrivateKey` that PKCS#8 wraps.
fn encoding_key(alg: SigningAlgorithm, document: &[u8]) -> Result<EncodingKey, String> {
    Ok(match alg {
        SigningAlgorithm::EdDsa => EncodingKey::from_ed_der(document),
        SigningAlgorithm::Es256 => EncodingKey::from_ec_der(document),
        SigningAlgorithm::Rs256 => {
            let info =
                pkcs8::PrivateKeyInfoRef::try_from(document).map_err(|err| err.to_string())?;
            EncodingKey::from_rsa_der(info.private_key.as_bytes())
        }
    })
}

/// The JWKS at `now`: the current key and every predecessor a live token may carry.
pub fn jwks(state: &State, now: Timestamp) -> Value {
    let keys = state.signing_keys();
    let published = keys
        .iter()
        .enumerate()
        .filter(|(index, _)| match keys.get(index + 1) {
            None => true,
            Some(successor) => {
                now < successor
                    .activated_at
                    .plus_seconds(PREVIOUS_KEY_PUBLISHED_SECONDS)
            }
        });
    let keys: Vec<Value> = published.rev().map(|(_, key)| jwk(key)).collect();
    json!({ "keys": keys })
}

fn jwk(key: &SigningKey) -> Value {
    let mut jwk = match (&key.public_key, &key.jwk) {
        (_, Some(members)) => serde_json::to_value(members).unwrap_or_default(),
        (x, None) => json!({ "kty": "OKP", "crv": "Ed25519", "x": x }),
    };
    if let Some(members) = jwk.as_object_mut() {
        members.insert("kid".into(), json!(key.kid.as_str()));
        members.insert("alg".into(), json!(key.alg.name()));
        members.insert("use".into(), json!("sig"));
    }
    jwk
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each algorithm's key, from generation to a JWS that its own recorded public
    /// members verify: the members are the key's, and jsonwebtoken signs with it.
    #[test]
    fn every_algorithm_signs_what_its_recorded_public_members_verify() {
        crate::jose::install();
        for alg in SigningAlgorithm::ALL {
            let document = generate(alg).unwrap_or_else(|err| panic!("{err}"));
            let (public_key, members) =
                public_members(alg, &document).unwrap_or_else(|err| panic!("{err}"));
            let key = CurrentKey {
                kid: KeyId::from("k"),
                alg,
                encoding: encoding_key(alg, &document).unwrap_or_else(|err| panic!("{err}")),
            };
            let header = jsonwebtoken::Header::new(key.jws_algorithm());
            let token = jsonwebtoken::encode(&header, &json!({"sub": "a"}), &key.encoding)
                .unwrap_or_else(|err| panic!("{alg}: {err}"));
            let decoding = match (&public_key, &members) {
                (Some(x), None) => jsonwebtoken::DecodingKey::from_ed_components(x),
                (None, Some(PublicJwk::Ec { x, y, .. })) => {
                    jsonwebtoken::DecodingKey::from_ec_components(x, y)
                }
                (None, Some(PublicJwk::Rsa { n, e })) => {
                    jsonwebtoken::DecodingKey::from_rsa_components(n, e)
                }
                other => panic!("{alg}: {other:?}"),
            }
            .unwrap_or_else(|err| panic!("{alg}: {err}"));
            let mut validation = jsonwebtoken::Validation::new(key.jws_algorithm());
            validation.required_spec_claims.clear();
            validation.validate_exp = false;
            let verified = jsonwebtoken::decode::<Value>(&token, &decoding, &validation);
            assert!(verified.is_ok(), "{alg}: {verified:?}");
            let rotation = SigningKeyRotated {
                kid: key.kid.clone(),
                alg,
                public_key,
                jwk: members,
                previous_kid: None,
                by: None,
            };
            assert_eq!(rotation.check(), Ok(()), "{alg}");
        }
    }

    /// writ's provider keeps parsed keys; what it signs must be what jsonwebtoken's own
    /// aws-lc-rs provider signs (byte for byte where the scheme is deterministic, Ed25519
    /// and RSA PKCS#1 v1.5) and verify, for the first signature and the cached ones.
    #[test]
    fn cached_keys_sign_exactly_as_jsonwebtokens_own_provider() {
        crate::jose::install();
        let message = b"eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhIn0";
        for alg in SigningAlgorithm::ALL {
            let document = generate(alg).unwrap_or_else(|err| panic!("{err}"));
            let encoding = encoding_key(alg, &document).unwrap_or_else(|err| panic!("{err}"));
            let jws_alg = CurrentKey {
                kid: KeyId::from("k"),
                alg,
                encoding: encoding.clone(),
            }
            .jws_algorithm();
            let sign = |provider: &jsonwebtoken::crypto::CryptoProvider| {
                let signer = (provider.signer_factory)(&jws_alg, &encoding)
                    .unwrap_or_else(|err| panic!("{alg}: {err}"));
                signature::Signer::<Vec<u8>>::try_sign(&*signer, message)
                    .unwrap_or_else(|err| panic!("{alg}: {err}"))
            };
            let theirs = sign(&jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER);
            let (first, cached) = (sign(&crate::jose::PROVIDER), sign(&crate::jose::PROVIDER));
            if alg == SigningAlgorithm::Es256 {
                // ECDSA draws a fresh nonce: compare lengths; the test above verifies what
                // the installed provider signs with every algorithm.
                assert_eq!((first.len(), cached.len()), (theirs.len(), theirs.len()));
            } else {
                assert_eq!((&first, &cached), (&theirs, &theirs), "{alg}");
            }
        }
    }

    #[test]
    fn algorithm_names_are_read_in_any_case_and_a_wrong_one_names_the_right_ones() {
        assert_eq!(parse_algorithm("ES256"), Ok(SigningAlgorithm::Es256));
        assert_eq!(parse_algorithm("eddsa"), Ok(SigningAlgorithm::EdDsa));
        assert_eq!(
            parse_algorithm("HS256"),
            Err("`HS256` is not a signing algorithm writ offers; use EdDSA, ES256 or RS256".into())
        );
        for alg in SigningAlgorithm::ALL {
            assert!(
                parse_algorithm("").unwrap_err().contains(alg.name()),
                "the message names {alg}"
            );
        }
    }

    #[test]
    fn a_key_file_of_another_algorithm_is_refused() {
        let document = generate(SigningAlgorithm::Es256).unwrap_or_else(|err| panic!("{err}"));
        for alg in [SigningAlgorithm::EdDsa, SigningAlgorithm::Rs256] {
            assert!(public_members(alg, &document).is_err(), "{alg}");
        }
    }
}

//! Signing keys: generated here, private parts kept in `<data-dir>/keys/<kid>.pk8`
//! (owner-only, never in the ledger), public parts recorded as `SigningKeyRotated` events
//! and published in the JWKS.
//!
//! A key stays in the JWKS after its successor takes over for as long as a token it
//! signed can still be valid (`PREVIOUS_KEY_PUBLISHED_SECONDS`, the longest TTL a policy
//! may allow), so resource servers never meet a token whose `kid` they cannot find.

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use writ_projections::{SigningKey, State};
use writ_schemas::{Actor, KeyId, SigningAlgorithm, SigningKeyRotated, Timestamp};

use crate::decide::Command;
use crate::ledger::datadir::{DataDir, sync_dir};
use crate::ledger::{Ledger, SubmitError};
use crate::secrets::new_id;

/// How long a replaced key stays published: the longest token lifetime a policy allows.
pub const PREVIOUS_KEY_PUBLISHED_SECONDS: i64 = 24 * 3600;

/// Why keys could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key file could not be written or read.
    #[error("{0}")]
    Io(String),
    /// The ledger names a current key whose private part is not on this machine.
    #[error(
        "the ledger's current signing key {kid} has no private key at {path}; restore the keys folder from backup or run `writ admin keys rotate`"
    )]
    Missing {
        /// The key.
        kid: String,
        /// Where it was looked for.
        path: String,
    },
    /// The key file does not hold a usable key.
    #[error("{path} is not an Ed25519 PKCS#8 key: {why}")]
    Unusable {
        /// The file.
        path: String,
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
    /// The JWS algorithm.
    pub algorithm: Algorithm,
    /// For `jsonwebtoken::encode`.
    pub encoding: EncodingKey,
}

impl std::fmt::Debug for CurrentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CurrentKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish()
    }
}

/// Generates a new Ed25519 key, stores its private part and records its public part.
pub fn rotate(dir: &DataDir, ledger: &Ledger) -> Result<KeyId, KeyError> {
    let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map_err(|_| KeyError::Io("the system random generator failed".into()))?;
    let pair = Ed25519KeyPair::from_pkcs8(document.as_ref())
        .map_err(|err| KeyError::Io(err.to_string()))?;
    let kid = KeyId(new_id("k_"));
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
    file.write_all(document.as_ref())
        .and_then(|()| file.sync_all())
        .map_err(io)?;
    sync_dir(&keys).map_err(|err| KeyError::Io(err.to_string()))?;
    let previous_kid = ledger.read(|s| s.signing_keys().last().map(|key| key.kid.clone()));
    let event = SigningKeyRotated {
        kid: kid.clone(),
        alg: SigningAlgorithm::EdDsa,
        public_key: Some(URL_SAFE_NO_PAD.encode(pair.public_key().as_ref())),
        jwk: None,
        previous_kid,
        by: Some(Actor::System),
    };
    ledger.submit_blocking(Command::RotateSigningKey(event))?;
    Ok(kid)
}

/// The current key, made on the first start of a data directory.
pub fn current(dir: &DataDir, ledger: &Ledger) -> Result<CurrentKey, KeyError> {
    let kid = match ledger.read(|s| s.signing_keys().last().map(|key| key.kid.clone())) {
        Some(kid) => kid,
        None => rotate(dir, ledger)?,
    };
    let path = dir.keys().join(format!("{kid}.pk8"));
    let shown = path.display().to_string();
    let document = std::fs::read(&path).map_err(|_| KeyError::Missing {
        kid: kid.to_string(),
        path: shown.clone(),
    })?;
    Ed25519KeyPair::from_pkcs8(&document).map_err(|err| KeyError::Unusable {
        path: shown,
        why: err.to_string(),
    })?;
    Ok(CurrentKey {
        kid,
        algorithm: Algorithm::EdDSA,
        encoding: EncodingKey::from_ed_der(&document),
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
    json!({ "kty": "OKP", "crv": "Ed25519", "x": key.public_key, "kid": key.kid.as_str(), "alg": key.alg, "use": "sig" })
}

//! The JOSE provider writ installs into jsonwebtoken: jsonwebtoken's own aws-lc-rs
//! provider, except that signing keys are parsed once and kept.
//!
//! jsonwebtoken's provider rebuilds the key pair from its DER bytes on every signature;
//! for Ed25519 that is a second scalar multiplication per token (deriving and checking
//! the public key), for RSA a full key parse. Its `signer_factory` is the extension
//! point made for this: here it finds the parsed aws-lc-rs key pair for the key's bytes
//! (parsing it on first use) and signs with it. The JWS itself (header, claims,
//! base64url, the signing input) is still built by jsonwebtoken; verification is
//! jsonwebtoken's unchanged.

use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, KeyUtils, aws_lc};
use jsonwebtoken::{Algorithm, EncodingKey};
use parking_lot::RwLock;

/// Parsed signing keys kept at most: the current key and a few predecessors. Beyond it
/// the cache starts over (a key is parsed again on its next use, nothing fails).
const KEYS_CACHED_MAX: usize = 8;

/// The provider `writ serve` installs (`CryptoProvider::install_default`).
pub static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: signer,
    verifier_factory: aws_lc::DEFAULT_PROVIDER.verifier_factory,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: aws_lc::DEFAULT_PROVIDER
            .key_utils
            .rsa_pub_components_from_private_key,
        rsa_pub_components_from_public_key: aws_lc::DEFAULT_PROVIDER
            .key_utils
            .rsa_pub_components_from_public_key,
        ec_pub_components_from_private_key: aws_lc::DEFAULT_PROVIDER
            .key_utils
            .ec_pub_components_from_private_key,
        ed_pub_components_from_private_key: aws_lc::DEFAULT_PROVIDER
            .key_utils
            .ed_pub_components_from_private_key,
        compute_digest: aws_lc::DEFAULT_PROVIDER.key_utils.compute_digest,
    },
};

/// Installs [`PROVIDER`] for this process; a second call (tests, embedding) is harmless.
pub fn install() {
    let _ = PROVIDER.install_default();
}

enum KeyPair {
    Ed25519(Ed25519KeyPair),
    EcdsaP256(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

type Cache = RwLock<Vec<(Algorithm, Vec<u8>, Arc<KeyPair>)>>;

static CACHE: Cache = RwLock::new(Vec::new());

fn signer(
    algorithm: &Algorithm,
    key: &EncodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn JwtSigner>> {
    if !matches!(
        algorithm,
        Algorithm::EdDSA | Algorithm::ES256 | Algorithm::RS256
    ) || key.family() != algorithm.family()
    {
        return (aws_lc::DEFAULT_PROVIDER.signer_factory)(algorithm, key);
    }
    let bytes = key.as_bytes();
    let cached = CACHE
        .read()
        .iter()
        .find(|(alg, known, _)| alg == algorithm && known.as_slice() == bytes)
        .map(|(.., pair)| Arc::clone(pair));
    let pair = match cached {
        Some(pair) => pair,
        None => {
            let Some(parsed) = parse(*algorithm, bytes) else {
                // Let jsonwebtoken's provider say what is wrong with the key.
                return (aws_lc::DEFAULT_PROVIDER.signer_factory)(algorithm, key);
            };
            let pair = Arc::new(parsed);
            let mut cache = CACHE.write();
            if cache.len() >= KEYS_CACHED_MAX {
                cache.clear();
            }
            cache.push((*algorithm, bytes.to_vec(), Arc::clone(&pair)));
            pair
        }
    };
    Ok(Box::new(Signer {
        algorithm: *algorithm,
        pair,
    }))
}

/// The DER forms jsonwebtoken's aws-lc-rs provider reads: PKCS#8 for Ed25519 and
/// P-256, PKCS#1 for RSA.
fn parse(algorithm: Algorithm, bytes: &[u8]) -> Option<KeyPair> {
    match algorithm {
        Algorithm::EdDSA => Ed25519KeyPair::from_pkcs8(bytes).ok().map(KeyPair::Ed25519),
        Algorithm::ES256 => EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, bytes)
            .ok()
            .map(KeyPair::EcdsaP256),
        Algorithm::RS256 => RsaKeyPair::from_der(bytes).ok().map(KeyPair::Rsa),
        _ => None,
    }
}

struct Signer {
    algorithm: Algorithm,
    pair: Arc<KeyPair>,
}

impl signature::Signer<Vec<u8>> for Signer {
    fn try_sign(&self, message: &[u8]) -> Result<Vec<u8>, signature::Error> {
        match &*self.pair {
            KeyPair::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
            KeyPair::EcdsaP256(pair) => pair
                .sign(&SystemRandom::new(), message)
                .map(|signature| signature.as_ref().to_vec())
                .map_err(signature::Error::from_source),
            KeyPair::Rsa(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(
                    &RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    message,
                    &mut signature,
                )
                .map_err(signature::Error::from_source)?;
                Ok(signature)
            }
        }
    }
}

impl JwtSigner for Signer {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

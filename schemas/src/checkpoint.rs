//! Checkpoints: "the ledger named O has N records and Merkle root R", signed, in the
//! text forms of C2SP `tlog-checkpoint` and `signed-note` (LEDGER.md §11).
//!
//! A checkpoint note is
//!
//! ```text
//! <origin>\n<tree size>\n<base64 root>\n\n— <key name> <base64(key id || Ed25519 signature)>\n
//! ```
//!
//! with the signature over the body (the three lines, final newline included) and the key
//! id the first 4 bytes of `SHA-256(key name || 0x0A || 0x01 || public key)`. Signing is
//! the server's; this module builds the text, and parses and verifies it for auditors.

use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use crate::Hash;

/// The signature type byte of Ed25519 in signed notes.
pub const NOTE_ED25519: u8 = 0x01;
/// Bytes a checkpoint note may have at most (a body and a handful of signatures).
pub const CHECKPOINT_NOTE_BYTES_MAX: usize = 16 * 1024;

/// The body of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Which ledger: the server's issuer host and path, or a configured name.
    pub origin: String,
    /// Records covered: the tree of records 1 to `tree_size`.
    pub tree_size: u64,
    /// The Merkle root of that tree.
    pub root: Hash,
}

/// A checkpoint note that does not parse or does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The text is not a signed checkpoint note.
    #[error("not a signed checkpoint note: {0}")]
    Malformed(String),
    /// No signature line is by the expected key.
    #[error("the note has no signature by the key {name} (key id {id:08x})")]
    NotSignedByKey {
        /// The expected key's name.
        name: String,
        /// Its key id.
        id: u32,
    },
    /// A signature by the expected key does not verify.
    #[error("the signature by {0} does not verify: the note was altered or signed by another key")]
    BadSignature(String),
}

impl Checkpoint {
    /// The note text that is signed: origin, size and base64 root, one per line.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.tree_size,
            STANDARD.encode(self.root.0)
        )
    }

    /// Reads a body (extension lines after the root are allowed and ignored).
    pub fn parse_body(body: &str) -> Result<Checkpoint, NoteError> {
        let bad = |why: &str| NoteError::Malformed(why.to_owned());
        let mut lines = body
            .strip_suffix('\n')
            .ok_or_else(|| bad("the body must end with a newline"))?
            .split('\n');
        let origin = lines.next().filter(|o| !o.is_empty());
        let origin = origin.ok_or_else(|| bad("the first line must name the origin"))?;
        let size = lines.next().unwrap_or_default();
        let canonical = size == "0" || (!size.starts_with('0') && !size.is_empty());
        let tree_size = size
            .parse::<u64>()
            .ok()
            .filter(|_| canonical && size.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| bad("the second line must be the tree size in decimal"))?;
        let root = STANDARD
            .decode(lines.next().unwrap_or_default())
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .ok_or_else(|| bad("the third line must be the 32-byte root in base64"))?;
        Ok(Checkpoint {
            origin: origin.to_owned(),
            tree_size,
            root: Hash(root),
        })
    }
}

/// An Ed25519 note key: what signs checkpoints, or what an auditor trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteKey {
    /// The key name in signature lines.
    pub name: String,
    /// The 32-byte public key.
    pub public_key: [u8; 32],
}

impl NoteKey {
    /// The key as the ledger published it (`CheckpointKeyPublished`).
    pub fn from_published(name: &str, public_key: &str) -> Result<NoteKey, String> {
        check_key_name(name)?;
        Ok(NoteKey {
            name: name.to_owned(),
            public_key: decode_public_key(public_key)?,
        })
    }

    /// The key id: the first 4 bytes of `SHA-256(name || 0x0A || 0x01 || public key)`.
    pub fn id(&self) -> u32 {
        let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        context.update(self.name.as_bytes());
        context.update(&[b'\n', NOTE_ED25519]);
        context.update(&self.public_key);
        let digest = context.finish();
        let mut id = [0u8; 4];
        id.copy_from_slice(&digest.as_ref()[..4]);
        u32::from_be_bytes(id)
    }

    /// The verifier key text `<name>+<key id, 8 hex>+<base64(0x01 || public key)>`, the
    /// form transparency-log tools take.
    pub fn verifier_key(&self) -> String {
        let mut typed = vec![NOTE_ED25519];
        typed.extend_from_slice(&self.public_key);
        format!("{}+{:08x}+{}", self.name, self.id(), STANDARD.encode(typed))
    }

    /// Reads a verifier key text (see [`NoteKey::verifier_key`]); its id must match.
    pub fn parse_verifier_key(text: &str) -> Result<NoteKey, String> {
        let text = text.trim();
        // The name has no '+'; the base64 key may.
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err("a verifier key is <name>+<key id>+<base64 key>".into());
        };
        check_key_name(name)?;
        let typed = STANDARD
            .decode(key)
            .map_err(|_| "the verifier key's last part is not base64".to_owned())?;
        let public_key = match typed.split_first() {
            Some((&NOTE_ED25519, rest)) => <[u8; 32]>::try_from(rest).ok(),
            _ => None,
        }
        .ok_or_else(|| "the verifier key is not an Ed25519 key (0x01 and 32 bytes)".to_owned())?;
        let key = NoteKey {
            name: name.to_owned(),
            public_key,
        };
        if format!("{:08x}", key.id()) != id {
            return Err(format!(
                "the verifier key's id {id} is not the id of its name and key ({:08x})",
                key.id()
            ));
        }
        Ok(key)
    }

    /// The signature line for `signature` (64 bytes of Ed25519 over the body).
    pub fn signature_line(&self, signature: &[u8]) -> String {
        let mut bytes = self.id().to_be_bytes().to_vec();
        bytes.extend_from_slice(signature);
        format!("\u{2014} {} {}\n", self.name, STANDARD.encode(bytes))
    }
}

/// Checks that `name` can be a key name: not empty, no spaces, no `+`.
pub fn check_key_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '+') {
        return Err(format!(
            "key name {name:?} must be non-empty, without spaces or '+'"
        ));
    }
    Ok(())
}

/// The 32 bytes of an Ed25519 public key written as unpadded base64url.
pub fn decode_public_key(text: &str) -> Result<[u8; 32], String> {
    URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| "an Ed25519 public key is 32 bytes in unpadded base64url".to_owned())
}

/// Verifies a checkpoint note against `key` (C2SP signed-note: signatures by other keys
/// are ignored, a bad one by `key` fails) and reads its body.
pub fn open_checkpoint(note: &str, key: &NoteKey) -> Result<Checkpoint, NoteError> {
    let bad = |why: &str| NoteError::Malformed(why.to_owned());
    if note.len() > CHECKPOINT_NOTE_BYTES_MAX {
        return Err(bad("longer than a checkpoint can be"));
    }
    if note.chars().any(|c| c.is_ascii_control() && c != '\n') {
        return Err(bad("control characters other than newline"));
    }
    let split = note
        .rfind("\n\n")
        .ok_or_else(|| bad("no blank line between the text and the signatures"))?;
    let (body, signatures) = (&note[..=split], &note[split + 2..]);
    if signatures.is_empty() || !signatures.ends_with('\n') {
        return Err(bad(
            "signature lines must follow the blank line, each ending in newline",
        ));
    }
    let mut verified = false;
    for line in signatures.trim_end_matches('\n').split('\n') {
        let rest = line
            .strip_prefix("\u{2014} ")
            .ok_or_else(|| bad("a signature line must start with an em dash and a space"))?;
        let (name, signature) = rest
            .split_once(' ')
            .ok_or_else(|| bad("a signature line is: — <key name> <base64 signature>"))?;
        let bytes = STANDARD
            .decode(signature)
            .map_err(|_| bad("a signature is not base64"))?;
        if bytes.len() < 4 {
            return Err(bad("a signature is shorter than its key id"));
        }
        if name != key.name || bytes[..4] != key.id().to_be_bytes() {
            continue;
        }
        UnparsedPublicKey::new(&ED25519, &key.public_key)
            .verify(body.as_bytes(), &bytes[4..])
            .map_err(|_| NoteError::BadSignature(key.name.clone()))?;
        verified = true;
    }
    if !verified {
        return Err(NoteError::NotSignedByKey {
            name: key.name.clone(),
            id: key.id(),
        });
    }
    Checkpoint::parse_body(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};

    fn pair() -> Ed25519KeyPair {
        let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .unwrap_or_else(|err| unreachable!("{err}"));
        Ed25519KeyPair::from_pkcs8(document.as_ref()).unwrap_or_else(|err| unreachable!("{err}"))
    }

    fn signed(pair: &Ed25519KeyPair, key: &NoteKey, checkpoint: &Checkpoint) -> String {
        let body = checkpoint.body();
        let signature = pair.sign(body.as_bytes());
        format!("{body}\n{}", key.signature_line(signature.as_ref()))
    }

    fn key_of(pair: &Ed25519KeyPair, name: &str) -> NoteKey {
        let mut public_key = [0u8; 32];
        public_key.copy_from_slice(pair.public_key().as_ref());
        NoteKey {
            name: name.into(),
            public_key,
        }
    }

    #[test]
    fn a_signed_checkpoint_opens_with_its_key_and_with_no_other() {
        let (pair, other) = (pair(), pair());
        let key = key_of(&pair, "auth.example.com");
        let checkpoint = Checkpoint {
            origin: "auth.example.com".into(),
            tree_size: 1234,
            root: Hash([5; 32]),
        };
        let note = signed(&pair, &key, &checkpoint);
        assert!(note.starts_with("auth.example.com\n1234\nBQUF"));
        assert_eq!(open_checkpoint(&note, &key), Ok(checkpoint.clone()));

        let stranger = key_of(&other, "auth.example.com");
        assert!(matches!(
            open_checkpoint(&note, &stranger),
            Err(NoteError::NotSignedByKey { .. })
        ));
        let altered = note.replacen("1234", "1235", 1);
        assert_eq!(
            open_checkpoint(&altered, &key),
            Err(NoteError::BadSignature("auth.example.com".into()))
        );
        // A second signature by an unknown key is ignored.
        let cosigned = format!(
            "{note}{}",
            stranger.signature_line(other.sign(checkpoint.body().as_bytes()).as_ref())
        );
        assert_eq!(open_checkpoint(&cosigned, &key), Ok(checkpoint));
    }

    #[test]
    fn verifier_keys_round_trip_and_the_id_is_the_c2sp_one() {
        let pair = pair();
        let key = key_of(&pair, "auth.example.com/ledger");
        let text = key.verifier_key();
        assert_eq!(NoteKey::parse_verifier_key(&text), Ok(key.clone()));
        let mut material = b"auth.example.com/ledger\n\x01".to_vec();
        material.extend_from_slice(&key.public_key);
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &material);
        assert_eq!(key.id().to_be_bytes(), digest.as_ref()[..4]);
        let wrong_id = text.replacen(&format!("+{:08x}+", key.id()), "+00000000+", 1);
        assert!(NoteKey::parse_verifier_key(&wrong_id).is_err());
    }

    #[test]
    fn malformed_notes_and_bodies_are_refused_with_a_reason() {
        let key = key_of(&pair(), "k");
        for note in [
            "",
            "a\n1\nAA==\n",
            "a\n1\nAA==\n\nnot a signature\n",
            "a\n\n\u{2014} k\n",
        ] {
            assert!(
                matches!(open_checkpoint(note, &key), Err(NoteError::Malformed(_))),
                "{note:?}"
            );
        }
        for body in ["a\n01\n", "a\n-1\n", "\n1\n", "a\n1\nAAAA\n", "a\n1\n"] {
            assert!(Checkpoint::parse_body(body).is_err(), "{body:?}");
        }
    }
}

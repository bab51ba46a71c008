//! Signed checkpoints: every `every_records` records or `every_ms` milliseconds (whichever
//! comes first, and only when the ledger grew), the Merkle root at the durable head is
//! signed as a C2SP signed note (`writ_schemas::Checkpoint`, LEDGER.md §11) and kept as
//! the latest checkpoint, which `GET /api/v1/ledger/head` serves.
//!
//! The checkpoint key is Ed25519, its private part in `<data-dir>/keys/checkpoint.pk8`
//! (PKCS#8, owner-only, never in the ledger), its public part recorded as a
//! `CheckpointKeyPublished` event before it signs anything, so an auditor finds the key
//! of every checkpoint in the ledger itself. A new origin (another issuer) or a lost key
//! file publishes again; older checkpoints still verify with the key recorded earlier.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use writ_schemas::{Checkpoint, CheckpointKeyPublished, KeyId, NoteKey, check_key_name};

use crate::decide::Command;
use crate::keys::KeyError;
use crate::ledger::Ledger;
use crate::ledger::datadir::DataDir;

/// Records after which a new checkpoint is signed, by default.
pub const CHECKPOINT_EVERY_RECORDS_DEFAULT: u64 = 10_000;
/// Milliseconds after which a grown ledger gets a new checkpoint, by default.
pub const CHECKPOINT_EVERY_MS_DEFAULT: u64 = 1_000;
/// The key file's name in the keys folder (without `.pk8`).
const KEY_FILE_STEM: &str = "checkpoint";

/// While the ledger grows, how often the signer looks at its size (milliseconds).
pub const GROWTH_POLL_MS: u64 = 50;

/// A signed checkpoint: what it says and its note text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The body.
    pub checkpoint: Checkpoint,
    /// The whole signed note.
    pub note: String,
}

/// The checkpoint key and the latest checkpoint it signed.
pub struct Checkpoints {
    pair: Ed25519KeyPair,
    key: NoteKey,
    latest: ArcSwapOption<SignedCheckpoint>,
}

/// The checkpoint origin for an issuer URL: its host and path, without scheme or
/// trailing slash (`https://auth.example.com/t1/` is `auth.example.com/t1`).
pub fn origin_of_issuer(issuer: &str) -> String {
    let rest = issuer.split_once("://").map_or(issuer, |(_, rest)| rest);
    rest.trim_end_matches('/').to_owned()
}

impl Checkpoints {
    /// Loads the checkpoint key (making one on first start) and makes sure the ledger
    /// has published it under `origin`.
    pub async fn start(
        dir: &DataDir,
        ledger: &Ledger,
        origin: &str,
    ) -> Result<Checkpoints, KeyError> {
        check_key_name(origin).map_err(|why| {
            KeyError::Io(format!("the checkpoint origin cannot be a key name: {why}"))
        })?;
        let path = dir.keys().join(format!("{KEY_FILE_STEM}.pk8"));
        let pair = match std::fs::read(&path) {
            Ok(document) => Ed25519KeyPair::from_pkcs8(&document)
                .map_err(|_| KeyError::Io(format!("{} is not an Ed25519 key", path.display())))?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                    .map_err(|_| KeyError::Io("generating the checkpoint key failed".into()))?;
                crate::keys::store(dir, &KeyId::from(KEY_FILE_STEM), document.as_ref())?;
                Ed25519KeyPair::from_pkcs8(document.as_ref())
                    .map_err(|_| KeyError::Io("the new checkpoint key is unusable".into()))?
            }
            Err(err) => return Err(KeyError::Io(format!("reading {}: {err}", path.display()))),
        };
        let mut public_key = [0u8; 32];
        public_key.copy_from_slice(pair.public_key().as_ref());
        let published = CheckpointKeyPublished {
            name: origin.to_owned(),
            public_key: URL_SAFE_NO_PAD.encode(public_key),
        };
        let latest = ledger.read(|s| s.checkpoint_keys().last().cloned());
        if latest
            .is_none_or(|key| key.name != published.name || key.public_key != published.public_key)
        {
            ledger
                .submit(Command::PublishCheckpointKey(published))
                .await?;
        }
        Ok(Checkpoints {
            pair,
            key: NoteKey {
                name: origin.to_owned(),
                public_key,
            },
            latest: ArcSwapOption::empty(),
        })
    }

    /// The public key checkpoints are signed with.
    pub fn key(&self) -> &NoteKey {
        &self.key
    }

    /// The latest checkpoint signed, if any.
    pub fn latest(&self) -> Option<Arc<SignedCheckpoint>> {
        self.latest.load_full()
    }

    /// Signs the root at the tree's current size (the durable head) and keeps it.
    pub fn sign_now(&self, ledger: &Ledger) -> Arc<SignedCheckpoint> {
        let (tree_size, root) = ledger.merkle(|tree| (tree.size(), tree.root(tree.size())));
        let root = root.unwrap_or_else(|err| unreachable!("the tree's own size: {err}"));
        let checkpoint = Checkpoint {
            origin: self.key.name.clone(),
            tree_size,
            root,
        };
        let body = checkpoint.body();
        let signature = self.pair.sign(body.as_bytes());
        let note = format!("{body}\n{}", self.key.signature_line(signature.as_ref()));
        let signed = Arc::new(SignedCheckpoint { checkpoint, note });
        self.latest.store(Some(Arc::clone(&signed)));
        metrics::counter!("writ_checkpoints_signed_total").increment(1);
        signed
    }

    /// Signs whenever `every_records` records were added since the last
    /// checkpoint, or `every_ms` passed and any were; returns when the ledger closes. It
    /// holds the ledger only while signing, so it never keeps a closing ledger open. An
    /// idle ledger's first append wakes it; while the ledger grows it looks every
    /// [`GROWTH_POLL_MS`], so a checkpoint may cover up to that much more than
    /// `every_records`.
    pub async fn run(
        self: Arc<Self>,
        ledger: std::sync::Weak<Ledger>,
        every_records: u64,
        every_ms: u64,
    ) {
        let Some(mut sizes) = ledger.upgrade().map(|l| l.subscribe_tree()) else {
            return;
        };
        let sign = |ledger: &std::sync::Weak<Ledger>| {
            ledger
                .upgrade()
                .map(|ledger| self.sign_now(&ledger).checkpoint.tree_size)
        };
        let every = Duration::from_millis(every_ms.max(1));
        let mut signed_size = match self.latest() {
            Some(signed) => signed.checkpoint.tree_size,
            None => match sign(&ledger) {
                Some(size) => size,
                None => return,
            },
        };
        let mut signed_at = Instant::now();
        loop {
            let size = *sizes.borrow_and_update();
            if size == signed_size {
                // Nothing new to sign: sleep until the ledger grows.
                if sizes.changed().await.is_err() {
                    return;
                }
                continue;
            }
            if size - signed_size >= every_records.max(1) || signed_at.elapsed() >= every {
                let Some(size) = sign(&ledger) else { return };
                signed_size = size;
                signed_at = Instant::now();
                continue;
            }
            // Growing: look again shortly rather than on every append (thousands a second
            // under load, each a wake-up on a core the workers need).
            let due = every.saturating_sub(signed_at.elapsed());
            tokio::time::sleep(due.min(Duration::from_millis(GROWTH_POLL_MS))).await;
            if ledger.strong_count() == 0 {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_origin_is_the_issuers_host_and_path() {
        assert_eq!(
            origin_of_issuer("https://auth.example.com/"),
            "auth.example.com"
        );
        assert_eq!(origin_of_issuer("http://127.0.0.1:8080"), "127.0.0.1:8080");
        assert_eq!(origin_of_issuer("https://a.example/t1/"), "a.example/t1");
    }
}

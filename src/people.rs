//! People's personal data (emails, names, what an agent said it would do for them): sealed
//! under a key per person, held outside the ledger, so that erasing a person (GDPR Art.
//! 17) destroys one key and leaves every record, and the chain, as it was.
//!
//! - [`PersonKeyStore`] keeps the keys: a file per person in the data directory
//!   ([`FileKeys`], embedded ledgers) or a row per person in PostgreSQL
//!   ([`PostgresKeys`], several nodes over one database). Destroying a key deletes it
//!   there for good.
//! - [`People`] is the directory the serving and offline layers read people through: it
//!   seals a datum for a record ([`People::seal`]), reads one back from a record or the
//!   projections ([`People::reveal`]: the text, or `"[erased]"`), and finds a person by
//!   email through the keyed hash the ledger keeps ([`People::email_hash`]). Exports
//!   and audit rows rendered from records show a personal field with
//!   [`People::render`] (offline: [`People::open_offline`]).
//! - [`erase`] records a `UserErased` and then destroys the key.
//!
//! Architecture Invariant: plaintext personal data never reaches the ledger, the
//! projections or a snapshot. Projections keep ciphertext (`Personal::Sealed`); only this
//! module decrypts, with keys no record or snapshot contains. A seal binds its person and
//! field (the AEAD's associated data), so a value moved to another person or field fails
//! to open rather than reads as theirs.

mod files;
pub mod identity;
mod postgres;

use std::collections::HashMap;
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use writ_projections::{Personal, State, Token, User};
use writ_schemas::{Actor, Digest, SEALED_NONCE_BYTES, Sealed, UserId};
use zeroize::Zeroizing;

use crate::decide::{Answer, Command};
use crate::ledger::datadir::DataDir;
use crate::ledger::storage::StorageError;
use crate::ledger::{Ledger, SubmitError};
use crate::secrets::SecretHasher;

pub use files::FileKeys;
pub use postgres::PostgresKeys;

/// What an erased person's data reads as, wherever it is shown.
pub const ERASED: &str = "[erased]";
/// What a sealed value reads as when its key exists but does not open it (damage, or a
/// value moved between people): never the text of someone else.
pub const UNREADABLE: &str = "[unreadable]";
/// The associated data's prefix: the format of a seal, so a later one cannot be confused
/// with it.
const SEAL_CONTEXT: &[u8] = b"writ personal v1";
/// The BLAKE3 context that derives the email-hashing key from the deployment's key.
const EMAIL_HASH_CONTEXT: &str = "writ email hash v1";
/// The BLAKE3 context that derives the key hashing emails' TR39 skeletons.
const EMAIL_SKELETON_CONTEXT: &str = "writ email skeleton v1";

/// Which personal datum a sealed value holds; its name is bound into the seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// A person's email address.
    Email,
    /// A person's display name.
    Name,
    /// What an agent said it means to do for a person.
    IntentDescription,
    /// The arguments of a critical tool call the person is asked to approve.
    Arguments,
}

impl Field {
    /// The field's name, as bound into the seal (LEDGER.md §12).
    pub fn name(self) -> &'static str {
        match self {
            Field::Email => "email",
            Field::Name => "name",
            Field::IntentDescription => "intent_description",
            Field::Arguments => "arguments",
        }
    }
}

/// A person's 256-bit key. Zeroed when dropped; `Debug` does not print it.
#[derive(Clone)]
pub struct PersonKey(Zeroizing<[u8; 32]>);

impl PersonKey {
    /// A new random key.
    pub fn generate() -> PersonKey {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::fill(&mut key[..]);
        PersonKey(key)
    }

    /// The key made of these bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> PersonKey {
        PersonKey(Zeroizing::new(bytes))
    }

    /// The key's bytes (for its store only).
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&(*self.0).into())
    }
}

impl std::fmt::Debug for PersonKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PersonKey(***)")
    }
}

/// Where people's keys are kept: outside the ledger, its exports and its snapshots.
pub trait PersonKeyStore: Send + Sync {
    /// The person's key, if there is one.
    fn get(&self, user_id: &UserId) -> Result<Option<PersonKey>, StorageError>;
    /// Stores `key` as the person's key unless they have one already; returns the key in
    /// force either way, durably stored.
    fn put_new(&self, user_id: &UserId, key: PersonKey) -> Result<PersonKey, StorageError>;
    /// Deletes the person's key for good; true if there was one.
    fn destroy(&self, user_id: &UserId) -> Result<bool, StorageError>;
}

/// Why personal data could not be sealed.
#[derive(Debug, thiserror::Error)]
pub enum PeopleError {
    /// The key store failed.
    #[error("the key store failed: {0}")]
    Store(#[from] StorageError),
    /// The person was erased; nothing of theirs is sealed any more.
    #[error("user {0} was erased")]
    Erased(UserId),
}

/// A person's datum copied out of the read models under [`Ledger::read`]'s lock, to be
/// opened ([`People::reveal_datum`]) after it: opening may read the person's key from a
/// file or PostgreSQL, and every batch waits for that lock to publish.
#[derive(Debug, Clone)]
pub struct Datum {
    user_id: UserId,
    field: Field,
    value: Personal,
}

impl Datum {
    /// The person's email, as the read models hold it.
    pub fn email_of(user: &User) -> Datum {
        Datum {
            user_id: user.user_id.clone(),
            field: Field::Email,
            value: user.email.clone(),
        }
    }
}

/// What a token's agent said it would do, copied out of the read models under
/// [`Ledger::read`]'s lock, to be opened ([`People::open_intent`]) after it.
#[derive(Debug, Clone)]
pub struct Intent {
    user_id: Option<UserId>,
    text: Personal,
}

impl Intent {
    /// The token's stated intent, if it has one.
    pub fn of(token: &Token) -> Option<Intent> {
        Some(Intent {
            user_id: token.user_id.clone(),
            text: token.intent_description.clone()?,
        })
    }
}

/// The people directory: seals and reads personal data with people's keys, which it keeps
/// in memory once read.
pub struct People {
    store: Arc<dyn PersonKeyStore>,
    email_key: Zeroizing<[u8; 32]>,
    skeleton_key: Zeroizing<[u8; 32]>,
    keys: parking_lot::RwLock<HashMap<UserId, PersonKey>>,
    /// Skeleton hashes of people registered before registrations recorded one, computed
    /// from their emails at start ([`People::index_older_skeletons`]). No new record adds
    /// such a person, so the set only shrinks (by erasure, checked when it is read).
    older_skeletons: parking_lot::RwLock<HashMap<Digest, UserId>>,
}

impl std::fmt::Debug for People {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("People(***)")
    }
}

impl People {
    /// The directory of an existing data directory's keys, for reading personal data
    /// offline (exports from a data directory with the server stopped): nothing is
    /// created, and without the deployment's keys there is nothing to read with.
    pub fn open_offline(data: &DataDir) -> Result<People, StorageError> {
        if !crate::secrets::key_exists(data.root()) {
            return Err(StorageError::NotALedger(format!(
                "{} has no keys/ folder of a writ deployment; personal data cannot be read without it",
                data.root().display()
            )));
        }
        let secrets = SecretHasher::load_or_create(data)?;
        Ok(People::new(Arc::new(FileKeys::existing(data)), &secrets))
    }

    /// A directory over `store`, hashing emails with a key derived from the deployment's.
    pub fn new(store: Arc<dyn PersonKeyStore>, secrets: &SecretHasher) -> People {
        People {
            store,
            email_key: Zeroizing::new(secrets.derive_key(EMAIL_HASH_CONTEXT)),
            skeleton_key: Zeroizing::new(secrets.derive_key(EMAIL_SKELETON_CONTEXT)),
            keys: parking_lot::RwLock::new(HashMap::new()),
            older_skeletons: parking_lot::RwLock::new(HashMap::new()),
        }
    }

    /// The keyed hash of an email's comparison form ([`identity::Email::compared`]): how
    /// the ledger finds a person by email and keeps emails unique without holding one. A
    /// text that is not an email writ would register is hashed lowercased, as records
    /// before normalization were.
    pub fn email_hash(&self, email: &str) -> Digest {
        match identity::email(email) {
            Ok(email) => self.compared_hash(&email),
            Err(_) => self.lowercase_hash(email),
        }
    }

    /// The keyed hash of a normalized email's comparison form.
    pub fn compared_hash(&self, email: &identity::Email) -> Digest {
        Digest(*blake3::keyed_hash(&self.email_key, email.compared.as_bytes()).as_bytes())
    }

    /// The keyed hash of a normalized email's TR39 skeleton.
    pub fn skeleton_hash(&self, email: &identity::Email) -> Digest {
        Digest(*blake3::keyed_hash(&self.skeleton_key, email.skeleton.as_bytes()).as_bytes())
    }

    /// The hash records made before emails were normalized: the text lowercased (ASCII).
    fn lowercase_hash(&self, email: &str) -> Digest {
        let lower = Zeroizing::new(email.to_ascii_lowercase());
        Digest(*blake3::keyed_hash(&self.email_key, lower.as_bytes()).as_bytes())
    }

    /// The person with this email: by its comparison form, then as records made before
    /// normalization hashed it, then (records from before sealing) in the clear. Hashing
    /// only: no key is read, so it may run under [`Ledger::read`].
    pub fn user_by_email<'s>(&self, state: &'s State, email: &str) -> Option<&'s User> {
        state
            .user_by_email_hash(&self.email_hash(email))
            .or_else(|| state.user_by_email_hash(&self.lowercase_hash(email)))
            .or_else(|| state.user_by_email(email))
    }

    /// The live person an email with this skeleton hash could be mistaken for, among those
    /// registered before registrations recorded skeletons (the sequencer checks the
    /// others). In memory only: it may run under [`Ledger::read`].
    pub fn older_look_alike(&self, state: &State, skeleton_hash: &Digest) -> Option<UserId> {
        let older = self.older_skeletons.read();
        let user_id = older.get(skeleton_hash)?;
        state
            .user(user_id)
            .filter(|user| !user.erased)
            .map(|user| user.user_id.clone())
    }

    /// Computes the skeleton hashes of people registered before registrations recorded
    /// one, from their emails (opened with their keys, after the read lock), so that a
    /// look-alike of theirs is refused too. Returns how many it indexed; an email writ would
    /// refuse now (an invisible character in it, say) has no skeleton and is left out.
    pub fn index_older_skeletons(&self, ledger: &Ledger) -> usize {
        let older: Vec<(UserId, Personal)> = ledger.read(|state| {
            let recorded: std::collections::HashSet<&UserId> =
                state.email_skeletons().map(|(_, id)| id).collect();
            state
                .users()
                .filter(|user| !user.erased && !recorded.contains(&user.user_id))
                .map(|user| (user.user_id.clone(), user.email.clone()))
                .collect()
        });
        let mut index = HashMap::with_capacity(older.len());
        for (user_id, email) in older {
            let text = Zeroizing::new(self.reveal(&user_id, Field::Email, &email));
            if text.as_str() == ERASED || text.as_str() == UNREADABLE {
                continue;
            }
            if let Ok(normalized) = identity::email(&text) {
                index.insert(self.skeleton_hash(&normalized), user_id);
            }
        }
        let indexed = index.len();
        *self.older_skeletons.write() = index;
        indexed
    }

    /// Seals `text` as the person's `field`, creating their key if they have none yet.
    pub fn seal(&self, user_id: &UserId, field: Field, text: &str) -> Result<Sealed, PeopleError> {
        let key = self.key_or_new(user_id)?;
        Ok(seal_with(&key, user_id, field, text, random_nonce()))
    }

    /// The text of a person's datum as the projections hold it: in the clear, opened with
    /// their key, or [`ERASED`] once the key is gone.
    pub fn reveal(&self, user_id: &UserId, field: Field, value: &Personal) -> String {
        match value {
            Personal::Clear(text) => text.clone(),
            Personal::Erased => ERASED.to_owned(),
            Personal::Sealed(sealed) => self.open(user_id, field, sealed),
        }
    }

    /// The one way an export or audit row shows a person's datum read from a record: as
    /// the record has it in the clear (older records), or opened from `sealed`; and
    /// [`ERASED`] for a person erased by `state`, whose key is gone (or, for a clear
    /// value, who asked for it to be forgotten). `None` when the record has neither.
    pub fn render(
        &self,
        state: &State,
        user_id: &UserId,
        field: Field,
        clear: Option<&str>,
        sealed: Option<&Sealed>,
    ) -> Option<String> {
        let erased = state.user(user_id).is_some_and(|user| user.erased);
        self.render_as(erased, user_id, field, clear, sealed)
    }

    /// [`People::render`] with whether the person was erased read from the state before
    /// (under [`Ledger::read`]'s lock, while this runs after it).
    pub fn render_as(
        &self,
        erased: bool,
        user_id: &UserId,
        field: Field,
        clear: Option<&str>,
        sealed: Option<&Sealed>,
    ) -> Option<String> {
        if erased {
            return (clear.is_some() || sealed.is_some()).then(|| ERASED.to_owned());
        }
        match (clear, sealed) {
            (_, Some(sealed)) => Some(self.open(user_id, field, sealed)),
            (Some(text), None) => Some(text.to_owned()),
            (None, None) => None,
        }
    }

    /// [`People::reveal`] of a datum copied out of the read models.
    pub fn reveal_datum(&self, datum: &Datum) -> String {
        self.reveal(&datum.user_id, datum.field, &datum.value)
    }

    /// [`People::reveal`] of a datum that may be absent.
    pub fn reveal_opt(
        &self,
        user_id: &UserId,
        field: Field,
        value: Option<&Personal>,
    ) -> Option<String> {
        value.map(|value| self.reveal(user_id, field, value))
    }

    /// What a token's agent said it would do: in the clear for a token acting for no one,
    /// else opened with the key of the person it acts for.
    pub fn intent_of(&self, token: &Token) -> Option<String> {
        Intent::of(token).map(|intent| self.open_intent(&intent))
    }

    /// [`People::intent_of`] for an intent copied out of the read models.
    pub fn open_intent(&self, intent: &Intent) -> String {
        match (&intent.text, &intent.user_id) {
            (Personal::Sealed(sealed), Some(user_id)) => {
                self.open(user_id, Field::IntentDescription, sealed)
            }
            (Personal::Sealed(_), None) => UNREADABLE.to_owned(),
            (Personal::Clear(text), _) => text.clone(),
            (Personal::Erased, _) => ERASED.to_owned(),
        }
    }

    /// The text of a sealed value, as a record holds it (for exports rendered from
    /// records): opened with the person's key, [`ERASED`] when the key is gone,
    /// [`UNREADABLE`] when it does not open.
    pub fn open(&self, user_id: &UserId, field: Field, sealed: &Sealed) -> String {
        let key = match self.key(user_id) {
            Ok(Some(key)) => key,
            Ok(None) => return ERASED.to_owned(),
            Err(err) => {
                tracing::warn!(%user_id, %err, "a person's key could not be read");
                return UNREADABLE.to_owned();
            }
        };
        match open_with(&key, user_id, field, sealed) {
            Some(text) => text,
            None => {
                tracing::warn!(%user_id, field = field.name(), "a sealed value does not open with its person's key");
                UNREADABLE.to_owned()
            }
        }
    }

    /// Destroys the person's key in the store and forgets it here; true if there was one.
    pub fn destroy_key(&self, user_id: &UserId) -> Result<bool, StorageError> {
        crate::ledger::assert_not_reading("destroying a person's key");
        self.keys.write().remove(user_id);
        self.store.destroy(user_id)
    }

    /// Destroys the keys of everyone the ledger says was erased, in case a crash came
    /// between recording an erasure and destroying the key. Returns how many it found.
    pub fn destroy_erased_keys(&self, ledger: &Ledger) -> Result<usize, StorageError> {
        let erased: Vec<UserId> = ledger.read(|state| {
            state
                .users()
                .filter(|user| user.erased)
                .map(|user| user.user_id.clone())
                .collect()
        });
        let mut destroyed = 0;
        for user_id in &erased {
            if self.destroy_key(user_id)? {
                destroyed += 1;
            }
        }
        Ok(destroyed)
    }

    fn key(&self, user_id: &UserId) -> Result<Option<PersonKey>, StorageError> {
        // Even a key in memory now may be a file or a row after a restart: the rule holds
        // for every read, so a test with a warm cache still catches a call under the lock.
        crate::ledger::assert_not_reading("reading a person's key");
        if let Some(key) = self.keys.read().get(user_id) {
            return Ok(Some(key.clone()));
        }
        let found = self.store.get(user_id)?;
        if let Some(key) = &found {
            self.keys.write().insert(user_id.clone(), key.clone());
        }
        Ok(found)
    }

    fn key_or_new(&self, user_id: &UserId) -> Result<PersonKey, StorageError> {
        if let Some(key) = self.key(user_id)? {
            return Ok(key);
        }
        let key = self.store.put_new(user_id, PersonKey::generate())?;
        self.keys.write().insert(user_id.clone(), key.clone());
        Ok(key)
    }
}

fn random_nonce() -> [u8; SEALED_NONCE_BYTES] {
    let mut nonce = [0u8; SEALED_NONCE_BYTES];
    rand::fill(&mut nonce);
    nonce
}

/// The associated data of a seal: `"writ personal v1" 0x00 user_id 0x00 field`.
fn associated_data(user_id: &UserId, field: Field) -> Vec<u8> {
    let mut aad = Vec::with_capacity(SEAL_CONTEXT.len() + user_id.as_str().len() + 24);
    aad.extend_from_slice(SEAL_CONTEXT);
    aad.push(0);
    aad.extend_from_slice(user_id.as_str().as_bytes());
    aad.push(0);
    aad.extend_from_slice(field.name().as_bytes());
    aad
}

/// Seals `text` with `key` and `nonce` (random in use; fixed in the test vectors).
pub fn seal_with(
    key: &PersonKey,
    user_id: &UserId,
    field: Field,
    text: &str,
    nonce: [u8; SEALED_NONCE_BYTES],
) -> Sealed {
    let aad = associated_data(user_id, field);
    let payload = Payload {
        msg: text.as_bytes(),
        aad: &aad,
    };
    // AES-GCM fails only beyond 64 GiB of plaintext; a person's datum is bounded far
    // below it by the API's limits.
    let ciphertext = key
        .cipher()
        .encrypt(&Nonce::from(nonce), payload)
        .unwrap_or_default();
    Sealed {
        nonce: URL_SAFE_NO_PAD.encode(nonce),
        ciphertext: URL_SAFE_NO_PAD.encode(ciphertext),
    }
}

/// Opens a sealed value with `key`; `None` if it was not sealed with that key for that
/// person and field, or is damaged.
pub fn open_with(
    key: &PersonKey,
    user_id: &UserId,
    field: Field,
    sealed: &Sealed,
) -> Option<String> {
    let nonce: [u8; SEALED_NONCE_BYTES] = URL_SAFE_NO_PAD
        .decode(&sealed.nonce)
        .ok()?
        .try_into()
        .ok()?;
    let ciphertext = URL_SAFE_NO_PAD.decode(&sealed.ciphertext).ok()?;
    let aad = associated_data(user_id, field);
    let payload = Payload {
        msg: &ciphertext,
        aad: &aad,
    };
    let text = key.cipher().decrypt(&Nonce::from(nonce), payload).ok()?;
    String::from_utf8(text).ok()
}

/// Why an erasure did not complete.
#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    /// The ledger refused or could not record it.
    #[error(transparent)]
    Submit(#[from] SubmitError),
    /// The erasure is recorded, but the key could not be destroyed yet; it is destroyed at
    /// the next start (or by asking again).
    #[error(
        "the erasure of user {user_id} is recorded, but their key could not be destroyed yet ({source}); it is destroyed at the next start"
    )]
    KeyNotDestroyed {
        /// The person.
        user_id: UserId,
        /// Why.
        source: StorageError,
    },
}

/// What an erasure did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erased {
    /// Tokens acting for the person that the erasure revoked.
    pub tokens_revoked: usize,
    /// A key was found and destroyed (false for a person registered before sealing, whose
    /// email and name the ledger holds in the clear; see README "Erasure").
    pub key_destroyed: bool,
}

/// Erases a person: records `UserErased` (deactivating them first, with their tokens, if
/// they are active), and once that is durable destroys their key. The record comes first,
/// so a crash in between leaves an erasure the next start completes, never a destroyed key
/// the ledger does not explain.
pub async fn erase(
    ledger: &Ledger,
    people: &People,
    user_id: &UserId,
    by: Actor,
) -> Result<Erased, EraseError> {
    let command = Command::EraseUser {
        user_id: user_id.clone(),
        by,
    };
    let receipt = ledger.submit(command).await?;
    erased(people, user_id, &receipt.answer)
}

/// [`erase`] from a thread outside any runtime (the offline `writ admin erase-user`).
pub fn erase_blocking(
    ledger: &Ledger,
    people: &People,
    user_id: &UserId,
    by: Actor,
) -> Result<Erased, EraseError> {
    let command = Command::EraseUser {
        user_id: user_id.clone(),
        by,
    };
    let receipt = ledger.submit_blocking(command)?;
    erased(people, user_id, &receipt.answer)
}

fn erased(people: &People, user_id: &UserId, answer: &Answer) -> Result<Erased, EraseError> {
    let tokens_revoked = match answer {
        Answer::Revoked { tokens } => *tokens,
        _ => 0,
    };
    let key_destroyed =
        people
            .destroy_key(user_id)
            .map_err(|source| EraseError::KeyNotDestroyed {
                user_id: user_id.clone(),
                source,
            })?;
    Ok(Erased {
        tokens_revoked,
        key_destroyed,
    })
}

#[cfg(test)]
mod tests;

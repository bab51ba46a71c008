use std::os::unix::fs::PermissionsExt as _;

use super::*;
use crate::ledger::datadir::DataDir;

fn vector_key() -> PersonKey {
    let mut bytes = [0u8; 32];
    for (at, byte) in bytes.iter_mut().enumerate() {
        *byte = at as u8 + 1;
    }
    PersonKey::from_bytes(bytes)
}

/// The sealed values in `schemas/vectors/ledger.jsonl` (the conformance samples): the key
/// is bytes 0x01..0x20, the nonces 0x00.. with the last byte 1, 2, 3.
#[test]
fn sealing_vectors_are_reproduced() {
    let user = UserId::from("9a7c4f1e-2b3d-4e5f-8a6b-7c8d9e0f1a2b");
    let key = vector_key();
    let cases = [
        (Field::Email, "grace@example.com", 1u8),
        (Field::Name, "Grace", 2),
        (
            Field::IntentDescription,
            "file the quarterly expense report",
            3,
        ),
    ];
    let pinned = [
        (
            "AAAAAAAAAAAAAAAB",
            "y7qL38BAVHYWpbAF9_oYxbjfDCnqWLNAwPBYxJ4r0sth",
        ),
        ("AAAAAAAAAAAAAAAC", "L1l3Ugr5jcguZ1NbW_vR272hthN5"),
        (
            "AAAAAAAAAAAAAAAD",
            "CqrxvAT3A6WE0I2eh7d4hoQ5HrNCI_lb6K1H7bzPsjv6QNbh_aGznR6J4oc4_o6NnA",
        ),
    ];
    for ((field, text, last), (nonce_text, ciphertext)) in cases.into_iter().zip(pinned) {
        let mut nonce = [0u8; SEALED_NONCE_BYTES];
        nonce[SEALED_NONCE_BYTES - 1] = last;
        let sealed = seal_with(&key, &user, field, text, nonce);
        assert_eq!(
            (sealed.nonce.as_str(), sealed.ciphertext.as_str()),
            (nonce_text, ciphertext)
        );
        assert_eq!(
            open_with(&key, &user, field, &sealed).as_deref(),
            Some(text)
        );
    }
}

#[test]
fn a_seal_opens_only_for_its_person_and_field() {
    let key = PersonKey::generate();
    let ada = UserId::from("ada");
    let sealed = seal_with(&key, &ada, Field::Email, "ada@example.com", random_nonce());
    assert_eq!(
        open_with(&key, &ada, Field::Email, &sealed).as_deref(),
        Some("ada@example.com")
    );
    assert_eq!(
        open_with(&key, &UserId::from("bob"), Field::Email, &sealed),
        None
    );
    assert_eq!(open_with(&key, &ada, Field::Name, &sealed), None);
    assert_eq!(
        open_with(&PersonKey::generate(), &ada, Field::Email, &sealed),
        None
    );
    let mut tampered = sealed.clone();
    tampered.ciphertext.replace_range(
        0..1,
        if sealed.ciphertext.starts_with('A') {
            "B"
        } else {
            "A"
        },
    );
    assert_eq!(open_with(&key, &ada, Field::Email, &tampered), None);
    // Two seals of one text differ (random nonces), and neither holds the text.
    let again = seal_with(&key, &ada, Field::Email, "ada@example.com", random_nonce());
    assert_ne!(again, sealed);
    assert!(!sealed.ciphertext.contains("ada"));
}

#[test]
fn file_keys_are_owner_only_kept_once_and_really_destroyed() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path());
    let keys = FileKeys::open(&data).unwrap();
    let ada = UserId::from("5f0c6a4e-8d1b-4c1e-9a53-3f7e2b9d0c11");
    assert!(keys.get(&ada).unwrap().is_none());
    let first = keys.put_new(&ada, PersonKey::generate()).unwrap();
    let second = keys.put_new(&ada, PersonKey::generate()).unwrap();
    assert_eq!(
        first.bytes(),
        second.bytes(),
        "an existing key is never replaced"
    );
    let path = FileKeys::dir_of(&data).join(format!("{ada}.key"));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let folder = std::fs::metadata(FileKeys::dir_of(&data))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(folder & 0o777, 0o700);
    assert_eq!(keys.get(&ada).unwrap().unwrap().bytes(), first.bytes());
    assert!(keys.destroy(&ada).unwrap());
    assert!(!path.exists());
    assert!(keys.get(&ada).unwrap().is_none());
    assert!(
        !keys.destroy(&ada).unwrap(),
        "destroying twice finds nothing"
    );
    // Nothing else is left behind: no staged copy of the key.
    assert_eq!(
        std::fs::read_dir(FileKeys::dir_of(&data)).unwrap().count(),
        0
    );
    // An id that could leave the folder names no file.
    let outside = UserId::from("../secret-hash");
    assert!(keys.get(&outside).unwrap().is_none());
    assert!(!keys.destroy(&outside).unwrap());
    assert!(keys.put_new(&outside, PersonKey::generate()).is_err());
}

#[test]
fn the_directory_reads_erased_once_the_key_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path());
    let secrets = SecretHasher::load_or_create(&data).unwrap();
    let people = People::new(Arc::new(FileKeys::open(&data).unwrap()), &secrets);
    let ada = UserId::from("ada");
    let sealed = people.seal(&ada, Field::Email, "Ada@Example.com").unwrap();
    let value = Personal::Sealed(sealed);
    assert_eq!(people.reveal(&ada, Field::Email, &value), "Ada@Example.com");
    assert_eq!(
        people.email_hash("ada@example.com"),
        people.email_hash("ADA@example.COM")
    );
    assert_ne!(
        people.email_hash("ada@example.com"),
        people.email_hash("bob@example.com")
    );
    assert!(people.destroy_key(&ada).unwrap());
    assert_eq!(people.reveal(&ada, Field::Email, &value), ERASED);
    assert_eq!(people.reveal(&ada, Field::Email, &Personal::Erased), ERASED);
    // A second directory on the same data directory (a restart) agrees.
    let again = People::new(Arc::new(FileKeys::open(&data).unwrap()), &secrets);
    assert_eq!(again.reveal(&ada, Field::Email, &value), ERASED);
}

#[test]
fn postgres_keys_are_kept_once_and_deleted() {
    let db = crate::ledger::postgres::ScratchDatabase::for_test().unwrap();
    let keys = PostgresKeys::open(&db.url).unwrap();
    let ada = UserId::from("5f0c6a4e-8d1b-4c1e-9a53-3f7e2b9d0c11");
    assert!(keys.get(&ada).unwrap().is_none());
    let first = keys.put_new(&ada, PersonKey::generate()).unwrap();
    let second = keys.put_new(&ada, PersonKey::generate()).unwrap();
    assert_eq!(
        first.bytes(),
        second.bytes(),
        "an existing key is never replaced"
    );
    // A second node over the same database sees the same key.
    let other = PostgresKeys::open(&db.url).unwrap();
    assert_eq!(other.get(&ada).unwrap().unwrap().bytes(), first.bytes());
    assert!(other.destroy(&ada).unwrap());
    assert!(keys.get(&ada).unwrap().is_none());
    assert!(!keys.destroy(&ada).unwrap());
    drop((keys, other));
}

#[test]
fn tenant_key_stores_on_one_database_keep_their_own_keys() {
    // The README's tenant URL (`?schema=NAME`) was refused as "invalid PostgreSQL URL for
    // people's keys", and the key table was not schema-qualified: tenants would share it.
    let db = crate::ledger::postgres::ScratchDatabase::for_test().unwrap();
    let acme = PostgresKeys::open(&format!("{}?schema=acme", db.url)).unwrap();
    let globex = PostgresKeys::open(&format!("{}?schema=globex", db.url)).unwrap();
    let bare = PostgresKeys::open(&db.url).unwrap();
    let ada = UserId::from("5f0c6a4e-8d1b-4c1e-9a53-3f7e2b9d0c11");
    let acme_key = acme.put_new(&ada, PersonKey::generate()).unwrap();
    assert!(
        globex.get(&ada).unwrap().is_none(),
        "globex reads no acme key"
    );
    assert!(
        bare.get(&ada).unwrap().is_none(),
        "nor does the default schema"
    );
    let globex_key = globex.put_new(&ada, PersonKey::generate()).unwrap();
    assert_ne!(acme_key.bytes(), globex_key.bytes());
    assert!(globex.destroy(&ada).unwrap());
    assert_eq!(acme.get(&ada).unwrap().unwrap().bytes(), acme_key.bytes());
    drop((acme, globex, bare));
}

#[test]
fn a_record_s_personal_field_renders_as_text_until_its_person_is_erased() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path());
    assert!(
        People::open_offline(&data).is_err(),
        "no deployment keys, nothing to read with"
    );
    let secrets = SecretHasher::load_or_create(&data).unwrap();
    let people = People::new(Arc::new(FileKeys::open(&data).unwrap()), &secrets);
    let ada = UserId::from("ada");
    let sealed = people
        .seal(&ada, Field::IntentDescription, "pay Ada's invoice")
        .unwrap();
    let offline = People::open_offline(&data).unwrap();
    let mut state = State::new();
    let head = |seq: u64| writ_projections::Head {
        seq,
        hash: writ_schemas::Hash([1; 32]),
        ts: None,
    };
    let registered = writ_schemas::UserRegistered {
        user_id: ada.clone(),
        email: Some("ada@example.com".into()),
        name: None,
        email_sealed: None,
        email_hash: None,
        name_sealed: None,
        email_skeleton_hash: None,
        by: Actor::System,
    };
    state.apply(head(1), &registered.into());
    let render = |state: &State, clear: Option<&str>, sealed: Option<&Sealed>| {
        offline.render(state, &ada, Field::IntentDescription, clear, sealed)
    };
    assert_eq!(
        render(&state, None, Some(&sealed)).as_deref(),
        Some("pay Ada's invoice")
    );
    assert_eq!(
        render(&state, Some("old text"), None).as_deref(),
        Some("old text")
    );
    assert_eq!(render(&state, None, None), None);
    let erased = writ_schemas::UserErased {
        user_id: ada.clone(),
        by: Actor::System,
    };
    state.apply(head(2), &erased.into());
    assert_eq!(render(&state, None, Some(&sealed)).as_deref(), Some(ERASED));
    assert_eq!(
        render(&state, Some("old text"), None).as_deref(),
        Some(ERASED)
    );
}

#[test]
fn opening_a_person_s_datum_inside_ledger_read_stops_a_debug_build() {
    // People::reveal ran inside ledger.read(..): on PostgreSQL an uncached key is a
    // round trip while every batch waits for the lock to publish.
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path());
    let secrets = SecretHasher::load_or_create(&data).unwrap();
    let people = People::new(Arc::new(FileKeys::open(&data).unwrap()), &secrets);
    let records = tempfile::tempdir().unwrap();
    let (ledger, _) =
        Ledger::open_embedded(records.path(), crate::ledger::LedgerOptions::default()).unwrap();
    let ada = UserId::from("ada");
    let value = Personal::Sealed(people.seal(&ada, Field::Email, "ada@example.com").unwrap());
    // Copied out under the lock and opened after it: fine.
    let copied = ledger.read(|_| value.clone());
    assert_eq!(
        people.reveal(&ada, Field::Email, &copied),
        "ada@example.com"
    );
    let inside = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ledger.read(|_| people.reveal(&ada, Field::Email, &value))
    }));
    let message = inside
        .err()
        .and_then(|panic| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    assert_eq!(
        message,
        "reading a person's key inside Ledger::read: copy what is needed out of the closure and do it after"
    );
    assert!(
        !crate::ledger::reading(),
        "the mark is gone once the closure unwound"
    );
    ledger.shutdown();
}

#[test]
fn a_look_alike_of_a_person_registered_before_skeletons_were_recorded_is_found() {
    use crate::ledger::storage::Storage as _;
    // A ledger from before: ada's registration has an email hash and no skeleton.
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path());
    let (storage, _) = crate::ledger::embedded::Embedded::open(
        &data,
        crate::ledger::embedded::SEGMENT_BYTES_MAX_DEFAULT,
    )
    .unwrap();
    let secrets = SecretHasher::load_or_create(&data).unwrap();
    let people = People::new(Arc::new(FileKeys::open(&data).unwrap()), &secrets);
    let ada = UserId::from("5f0c6a4e-8d1b-4c1e-9a53-3f7e2b9d0c11");
    let registered = writ_schemas::UserRegistered {
        user_id: ada.clone(),
        email: None,
        name: None,
        email_sealed: Some(people.seal(&ada, Field::Email, "Ada@Example.com").unwrap()),
        email_hash: Some(people.email_hash("Ada@Example.com")),
        name_sealed: None,
        email_skeleton_hash: None,
        by: Actor::System,
    };
    let bytes = writ_schemas::Event::from(registered).encode().unwrap();
    let at = writ_schemas::Timestamp::parse("2026-11-23T09:00:00.000000Z").unwrap();
    let record = writ_schemas::Record::seal(1, at, writ_schemas::Hash([0; 32]), bytes);
    storage.append(&[record]).unwrap();
    drop(storage);
    let (ledger, _) =
        Ledger::open_embedded(dir.path(), crate::ledger::LedgerOptions::default()).unwrap();
    let look_alike = identity::email("adá@example.com").unwrap();
    let skeleton = people.skeleton_hash(&look_alike);
    assert_eq!(ledger.read(|s| people.older_look_alike(s, &skeleton)), None);
    assert_eq!(people.index_older_skeletons(&ledger), 1);
    assert_eq!(
        ledger.read(|s| people.older_look_alike(s, &skeleton)),
        Some(ada.clone())
    );
    // The older email hash still finds her by any case of her email.
    assert_eq!(
        ledger.read(|s| people
            .user_by_email(s, "ada@example.COM")
            .map(|u| u.user_id.clone())),
        Some(ada)
    );
    ledger.shutdown();
}

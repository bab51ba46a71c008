//! The one place a submitted email or display name becomes the form writ keeps, and the
//! keys it compares people by: so that two people who look the same on a consent page or
//! in the trail cannot both be registered.
//!
//! An email is kept (sealed) as its local part in NFKC and its domain in its UTS 46 ASCII
//! form (`xn--…` for an internationalised domain): `ＡＤＡ@Example.COM` is kept as
//! `ADA@example.com`. People are compared by two keys, each hashed with the deployment's
//! key before it reaches the ledger:
//! - [`Email::compared`]: the local part in NFKC with Unicode full case folding (NFKC
//!   again after), `@`, the ASCII domain. For an ASCII email it is the lowercased email,
//!   the key older records were hashed by; so `Ada@…` and `ada@…` are one person.
//! - [`Email::skeleton`]: the Unicode TR39 skeleton of the folded local part and of the
//!   domain's Unicode form, after dropping the combining marks on Latin, Greek and
//!   Cyrillic letters: two emails with one skeleton can be mistaken for each other
//!   (`rn` and `m`, Cyrillic `а` and Latin `a`, `adá` and `ada`), and the second is
//!   refused. Dropping the marks goes beyond TR39, which tells `á` from `a`: an accent is
//!   a dot or two on a consent page, so `zoë@` and `zoe@` cannot both be registered.
//!
//! Refused outright, with the code point named as U+XXXX: invisible characters
//! (default-ignorable code points: zero-width joiners and spaces, the soft hyphen, variation
//! selectors), bidirectional controls (U+202E RIGHT-TO-LEFT OVERRIDE and its kin), other
//! control characters, and in an email a part (the local part, each domain label) that
//! mixes scripts beyond what TR39's Highly Restrictive level allows (Latin with Han and
//! Japanese kana, or Han with Hangul, is fine; Latin with Cyrillic is not). Names may
//! mix scripts; they are not unique, so they have no skeleton.
//!
//! This module reads nothing and keeps nothing: plain functions of the text.

use icu_casemap::CaseMapper;
use icu_properties::CodePointSetData;
use icu_properties::props::{BidiControl, DefaultIgnorableCodePoint};
use unicode_normalization::UnicodeNormalization as _;
use unicode_normalization::char::is_combining_mark;
use unicode_script::{Script, UnicodeScript as _};
use unicode_security::{GeneralSecurityProfile as _, RestrictionLevel, RestrictionLevelDetection};
use zeroize::Zeroizing;

/// Longest email accepted, as submitted and as kept (RFC 5321's path limit).
pub const EMAIL_BYTES_MAX: usize = 254;
/// Longest display name accepted, as submitted and as kept.
pub const NAME_BYTES_MAX: usize = 200;
/// Most combining marks one letter may carry (UTS 39 §5.4 suggests four).
pub const MARKS_PER_LETTER_MAX: usize = 4;

/// Why a submitted email or name was refused: the field and a sentence that says what to
/// change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {detail}")]
pub struct Refused {
    /// `email` or `name`.
    pub field: &'static str,
    /// What is wrong, naming the character.
    pub detail: String,
}

/// A submitted email, in the form writ keeps and the forms it compares.
pub struct Email {
    /// What is sealed and shown: NFKC local part, `@`, the domain's ASCII form.
    pub stored: String,
    /// What uniqueness compares (hashed): the local part case-folded.
    pub compared: Zeroizing<String>,
    /// What look-alike detection compares (hashed): the TR39 skeleton.
    pub skeleton: Zeroizing<String>,
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // An email is personal data: it stays out of logs.
        f.write_str("Email(***)")
    }
}

/// The email `submitted` as writ keeps and compares it, or why it is refused.
pub fn email(submitted: &str) -> Result<Email, Refused> {
    let refuse = |detail: String| Refused {
        field: "email",
        detail,
    };
    let shape = format!("an email address is name@domain, at most {EMAIL_BYTES_MAX} bytes");
    if submitted.len() > EMAIL_BYTES_MAX {
        return Err(refuse(format!(
            "longer than {EMAIL_BYTES_MAX} bytes; {shape}"
        )));
    }
    check_characters(submitted, "email")?;
    if let Some(space) = submitted.chars().find(|c| c.is_whitespace()) {
        return Err(refuse(format!("{} is a space; {shape}", code_point(space))));
    }
    let nfkc: String = submitted.nfkc().collect();
    let Some((local, domain)) = nfkc.split_once('@') else {
        return Err(refuse(format!("has no `@`; {shape}")));
    };
    if local.is_empty() || domain.is_empty() || domain.contains('@') {
        return Err(refuse(format!(
            "needs one `@` with a name before it and a domain after it; {shape}"
        )));
    }
    check_marks(local, "email")?;
    check_scripts(local, "its local part")?;
    let ascii = idna::domain_to_ascii_strict(domain).map_err(|_| {
        refuse(format!(
            "`{}` is not a domain name (UTS 46: letters, digits and hyphens in labels of at most 63 bytes, separated by dots)",
            printable(domain)
        ))
    })?;
    let (unicode, _) = idna::domain_to_unicode(&ascii);
    for label in unicode.split('.') {
        check_marks(label, "email")?;
        check_scripts(label, &format!("the domain label `{label}`"))?;
    }
    let stored = format!("{local}@{ascii}");
    if stored.len() > EMAIL_BYTES_MAX {
        return Err(refuse(format!(
            "longer than {EMAIL_BYTES_MAX} bytes once normalized (NFKC, the domain in ASCII); {shape}"
        )));
    }
    let folded = Zeroizing::new(fold(local));
    let compared = Zeroizing::new(format!("{}@{ascii}", *folded));
    let skeleton = Zeroizing::new(format!(
        "{}@{}",
        skeleton(&folded),
        skeleton(&fold(&unicode))
    ));
    Ok(Email {
        stored,
        compared,
        skeleton,
    })
}

/// The display name `submitted` as writ keeps it (NFC: canonically equivalent spellings
/// become one), or why it is refused.
pub fn name(submitted: &str) -> Result<String, Refused> {
    let refuse = |detail: String| Refused {
        field: "name",
        detail,
    };
    if submitted.trim().is_empty() {
        return Err(refuse("must not be blank; leave it out instead".into()));
    }
    if submitted.len() > NAME_BYTES_MAX {
        return Err(refuse(format!("at most {NAME_BYTES_MAX} bytes")));
    }
    check_characters(submitted, "name")?;
    let nfc: String = submitted.nfc().collect();
    check_marks(&nfc, "name")?;
    if nfc.len() > NAME_BYTES_MAX {
        return Err(refuse(format!(
            "at most {NAME_BYTES_MAX} bytes once normalized (NFC)"
        )));
    }
    Ok(nfc)
}

/// `U+XXXX`, the way a person can look a character up.
fn code_point(c: char) -> String {
    format!("U+{:04X}", u32::from(c))
}

/// The text with anything that could not be shown safely written as U+XXXX.
fn printable(text: &str) -> String {
    text.chars()
        .take(64)
        .map(
            |c| match c.is_control() || is_invisible(c) || is_bidi_control(c) {
                true => code_point(c),
                false => c.to_string(),
            },
        )
        .collect()
}

fn is_invisible(c: char) -> bool {
    CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c)
}

fn is_bidi_control(c: char) -> bool {
    CodePointSetData::new::<BidiControl>().contains(c)
}

/// Refuses bidirectional controls, invisible characters and control characters.
fn check_characters(text: &str, field: &'static str) -> Result<(), Refused> {
    for c in text.chars() {
        let why = if is_bidi_control(c) {
            "is a bidirectional control character: it changes the order in which the text is shown, so what is shown is not what is kept"
        } else if is_invisible(c) {
            "is invisible (a default-ignorable code point, such as a zero-width joiner): two texts that differ by it look the same"
        } else if c.is_control() {
            "is a control character"
        } else {
            continue;
        };
        return Err(Refused {
            field,
            detail: format!("{} {why}; remove it", code_point(c)),
        });
    }
    Ok(())
}

/// Refuses a combining mark with no letter before it, and marks stacked on one letter
/// beyond [`MARKS_PER_LETTER_MAX`] or repeated (UTS 39 §5.4): they draw over their
/// neighbours.
fn check_marks(text: &str, field: &'static str) -> Result<(), Refused> {
    let refuse = |c: char, why: &str| Refused {
        field,
        detail: format!("{} (a combining mark) {why}; remove it", code_point(c)),
    };
    let mut on_letter: Vec<char> = Vec::new();
    let mut after_base = false;
    for c in text.nfd() {
        if !is_combining_mark(c) {
            on_letter.clear();
            after_base = true;
            continue;
        }
        if !after_base {
            return Err(refuse(c, "has no letter before it"));
        }
        if on_letter.contains(&c) {
            return Err(refuse(c, "is repeated on one letter"));
        }
        on_letter.push(c);
        if on_letter.len() > MARKS_PER_LETTER_MAX {
            return Err(refuse(
                c,
                &format!("is more than {MARKS_PER_LETTER_MAX} marks on one letter"),
            ));
        }
    }
    Ok(())
}

/// Refuses a part of an email whose letters mix scripts beyond TR39's Highly Restrictive
/// level, or use a character TR39's General Security Profile keeps out of identifiers,
/// naming the first character that does.
fn check_scripts(part: &str, what: &str) -> Result<(), Refused> {
    let letters: Vec<char> = part.chars().filter(|c| c.is_alphanumeric()).collect();
    let fits = |letters: &[char]| {
        let text: String = letters.iter().collect();
        text.as_str().detect_restriction_level() <= RestrictionLevel::HighlyRestrictive
    };
    if fits(&letters) {
        return Ok(());
    }
    if let Some(&odd) = letters.iter().find(|c| !c.identifier_allowed()) {
        return Err(Refused {
            field: "email",
            detail: format!(
                "{} in {what} is a character Unicode TR39 keeps out of identifiers (rarely used, obsolete, or easily confused); use another",
                code_point(odd)
            ),
        });
    }
    // Name a letter of the minority script: the one that mixes into the others.
    let scripts: Vec<Script> = letters.iter().map(|c| c.script()).collect();
    let count = |script: Script| scripts.iter().filter(|&&s| s == script).count();
    let at_most = scripts
        .iter()
        .copied()
        .filter(|script| !matches!(script, Script::Common | Script::Inherited))
        .max_by_key(|&script| count(script))
        .unwrap_or(Script::Common);
    let majority = letters
        .iter()
        .copied()
        .find(|c| c.script() == at_most)
        .unwrap_or('a');
    let culprit = letters
        .iter()
        .copied()
        .find(|&c| c.script() != at_most && !fits(&[majority, c]))
        .or_else(|| {
            // Only the three scripts together do not fit: name the first that makes it so.
            (1..=letters.len())
                .find(|&end| !fits(&letters[..end]))
                .and_then(|end| letters.get(end - 1).copied())
        })
        .unwrap_or(majority);
    let detail = format!(
        "{} in {what} is {} among {} letters: mixing scripts makes look-alikes (Unicode TR39); write it in one script",
        code_point(culprit),
        culprit.script().full_name(),
        at_most.full_name()
    );
    Err(Refused {
        field: "email",
        detail,
    })
}

/// Unicode full case folding, NFKC after (so the result is NFKC_Casefold's for any text
/// that was NFKC before).
fn fold(text: &str) -> String {
    CaseMapper::new().fold_string(text).nfkc().collect()
}

/// The TR39 skeleton of `text` with the combining marks on Latin, Greek and Cyrillic
/// letters dropped first (see the module's doc).
fn skeleton(text: &str) -> String {
    let mut bare = String::with_capacity(text.len());
    let mut base = Script::Common;
    for c in text.nfd() {
        if is_combining_mark(c) {
            if matches!(base, Script::Latin | Script::Greek | Script::Cyrillic) {
                continue;
            }
        } else {
            base = c.script();
        }
        bare.push(c);
    }
    unicode_security::skeleton(&bare).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skeleton_of(text: &str) -> String {
        email(text)
            .map(|e| e.skeleton.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn an_ascii_email_compares_as_its_lowercase_as_older_records_were_hashed() {
        let e = email("Ada.Lovelace@Example.COM").unwrap();
        assert_eq!(e.stored, "Ada.Lovelace@example.com");
        assert_eq!(*e.compared, "ada.lovelace@example.com");
    }

    #[test]
    fn fullwidth_forms_become_the_ascii_they_stand_for() {
        let e = email("ａｄａ＠ｅｘａｍｐｌｅ．ｃｏｍ").unwrap();
        assert_eq!(e.stored, "ada@example.com");
        assert_eq!(*e.compared, "ada@example.com");
    }

    #[test]
    fn look_alikes_share_a_skeleton_and_real_differences_do_not() {
        let ada = skeleton_of("ada@example.com");
        assert_eq!(skeleton_of("ad\u{0301}a@example.com"), ada);
        assert_eq!(skeleton_of("adá@example.com"), ada);
        assert_eq!(skeleton_of("ADA@EXAMPLE.COM"), ada);
        assert_eq!(
            skeleton_of("adrn@example.com"),
            skeleton_of("adm@example.com")
        );
        // Whole-script Cyrillic "аеор" against Latin "aeop".
        assert_eq!(
            skeleton_of("\u{0430}\u{0435}\u{043E}\u{0440}@example.com"),
            skeleton_of("aeop@example.com")
        );
        assert_ne!(skeleton_of("bob@example.com"), ada);
        assert_ne!(skeleton_of("李@example.com"), ada);
    }

    #[test]
    fn an_internationalised_domain_is_kept_in_ascii() {
        let e = email("zoë@bücher.example").unwrap();
        assert_eq!(e.stored, "zoë@xn--bcher-kva.example");
        let again = email("zoë@xn--bcher-kva.example").unwrap();
        assert_eq!(*again.compared, *e.compared);
        assert_eq!(*again.skeleton, *e.skeleton);
    }

    #[test]
    fn refusals_name_the_code_point() {
        let detail = |text: &str| email(text).err().map(|r| r.detail).unwrap_or_default();
        assert!(detail("a\u{200D}da@example.com").starts_with("U+200D is invisible"));
        assert!(detail("\u{202E}ada@example.com").starts_with("U+202E is a bidirectional"));
        assert!(
            detail("\u{0430}da@example.com")
                .starts_with("U+0430 in its local part is Cyrillic among Latin letters"),
            "{}",
            detail("\u{0430}da@example.com")
        );
        assert!(
            detail("ada@ex\u{0430}mple.com")
                .starts_with("U+0430 in the domain label `ex\u{0430}mple` is Cyrillic"),
            "{}",
            detail("ada@ex\u{0430}mple.com")
        );
        assert!(detail("a\u{0301}\u{0301}@example.com").contains("repeated on one letter"));
        assert!(email("李@example.com").is_ok());
        assert!(
            email("li李@例え.jp").is_ok(),
            "Latin with Han is Highly Restrictive"
        );
    }

    #[test]
    fn names_are_nfc_and_refuse_what_hides() {
        assert_eq!(name("Zoe\u{0308} Ōkubo").unwrap(), "Zoë Ōkubo");
        assert!(name("Ada\u{202E}").is_err());
        assert!(name("A\u{200B}da").is_err());
        assert_eq!(name("李 Lee").unwrap(), "李 Lee");
    }
}

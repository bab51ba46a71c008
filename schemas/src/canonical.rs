//! Canonical JSON (RFC 8785, JCS) for the bytes that are hashed.
//!
//! The ledger's events use a subset of JSON on which JCS is simple: objects, arrays,
//! strings, booleans, null and integers of magnitude below 2^53. Floats are refused, so
//! the ECMAScript number formatting of JCS never comes into play. Object members are
//! ordered by their names' UTF-16 code units, as JCS requires.

use serde::Serialize;
use serde_json::Value;

mod writer;

pub use writer::write;

/// The largest integer magnitude allowed in canonical JSON (2^53 - 1).
pub const INTEGER_MAGNITUDE_MAX: u64 = (1 << 53) - 1;

/// A value that has no canonical encoding in the ledger's JSON subset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// A non-integer number.
    #[error("numbers in the ledger must be integers; found {0}")]
    NotAnInteger(String),
    /// An integer of magnitude 2^53 or more.
    #[error("integers in the ledger must be below 2^53 in magnitude; found {0}")]
    IntegerTooLarge(String),
    /// Text that is not JSON at all.
    #[error("not JSON: {0}")]
    NotJson(String),
}

/// Encodes any serializable value canonically.
pub fn to_canonical_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    let value =
        serde_json::to_value(value).map_err(|err| CanonicalError::NotJson(err.to_string()))?;
    let mut out = Vec::with_capacity(256);
    write_value(&value, &mut out)?;
    Ok(out)
}

/// Encodes a JSON value canonically.
pub fn write_value(value: &Value, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => write_integer(number, out)?,
        Value::String(text) => write_string(text, out),
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(members) => {
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            sorted.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
            out.push(b'{');
            for (index, (name, member)) in sorted.into_iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_string(name, out);
                out.push(b':');
                write_value(member, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_integer(number: &serde_json::Number, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    let magnitude = if let Some(unsigned) = number.as_u64() {
        unsigned
    } else if let Some(signed) = number.as_i64() {
        signed.unsigned_abs()
    } else {
        return Err(CanonicalError::NotAnInteger(number.to_string()));
    };
    if magnitude > INTEGER_MAGNITUDE_MAX {
        return Err(CanonicalError::IntegerTooLarge(number.to_string()));
    }
    out.extend_from_slice(number.to_string().as_bytes());
    Ok(())
}

/// JSON string escaping as JCS has it: `"` and `\` escaped, the two-letter escapes for
/// backspace, tab, newline, form feed and carriage return, `\u00xx` (lowercase hex) for the
/// other control characters, everything else as its UTF-8 bytes. serde_json writes exactly
/// this, which the tests below pin.
fn write_string(text: &str, out: &mut Vec<u8>) {
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// True when `bytes` are JSON in the ledger's subset and already in canonical form.
pub fn is_canonical(bytes: &[u8]) -> Result<bool, CanonicalError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|err| CanonicalError::NotJson(err.to_string()))?;
    let mut out = Vec::with_capacity(bytes.len());
    write_value(&value, &mut out)?;
    Ok(out == bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The direct writer, held to `write_value` over a `serde_json::Value`.
    fn both(
        value: &(impl Serialize + ?Sized),
    ) -> (
        Result<String, CanonicalError>,
        Result<String, CanonicalError>,
    ) {
        let mut direct = Vec::new();
        let direct =
            write(value, &mut direct).map(|()| String::from_utf8_lossy(&direct).into_owned());
        (
            direct,
            to_canonical_vec(value).map(|v| String::from_utf8_lossy(&v).into_owned()),
        )
    }

    #[test]
    fn the_direct_writer_matches_the_value_path_on_shapes_events_use_and_more() {
        #[derive(Serialize)]
        #[allow(dead_code)]
        enum Shape {
            Unit,
            Newtype(u8),
            Tuple(u8, String),
            Struct { z: bool, a: Option<u8> },
        }
        #[derive(Serialize)]
        struct Outer {
            zeta: Vec<Shape>,
            #[serde(rename = "\u{e9}t\u{e9}")]
            accented: &'static str,
            #[serde(rename = "\u{1F600}")]
            astral: i64,
            #[serde(rename = "\u{FB01}")]
            ligature: i64,
            alpha: std::collections::BTreeMap<String, Option<bool>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            skipped: Option<u8>,
            bytes: &'static [u8],
            text: &'static str,
        }
        let value = Outer {
            zeta: vec![
                Shape::Unit,
                Shape::Newtype(7),
                Shape::Tuple(1, "x".into()),
                Shape::Struct { z: true, a: None },
            ],
            accented: "caf\u{e9}",
            astral: -5,
            ligature: 9_007_199_254_740_991,
            alpha: [("b".to_owned(), Some(true)), ("a".to_owned(), None)].into(),
            skipped: None,
            bytes: b"\x00\xff",
            text: "quote \" backslash \\ tab \t nul \u{0} del \u{7f} line\u{2028}",
        };
        let (direct, via_value) = both(&value);
        assert!(direct.is_ok(), "{direct:?}");
        assert_eq!(direct, via_value);
        // U+1F600 (surrogates D83D..) sorts before U+FB01 in UTF-16, after it in UTF-8.
        let text = direct.unwrap_or_default();
        assert!(text.find("\u{1F600}") < text.find("\u{FB01}"), "{text}");
    }

    #[test]
    fn the_direct_writer_refuses_what_the_value_path_refuses() {
        for refused in [
            both(&9_007_199_254_740_992u64),
            both(&-9_007_199_254_740_992i64),
            both(&1.5f64),
        ] {
            assert!(refused.0.is_err() && refused.1.is_err(), "{refused:?}");
        }
        let raw = serde_json::value::RawValue::from_string("{\"b\":1,\"a\":2}".into());
        let raw = raw.unwrap_or_else(|err| unreachable!("{err}"));
        assert!(
            write(&raw, &mut Vec::new()).is_err(),
            "raw text is not re-ordered blindly"
        );
    }

    fn canon(value: Value) -> String {
        String::from_utf8(to_canonical_vec(&value).unwrap_or_default()).unwrap_or_default()
    }

    #[test]
    fn members_sort_by_utf16_code_units() {
        // RFC 8785 §3.2.3: U+FB33 is one UTF-16 unit (0xFB33) and sorts after the surrogate
        // pair of U+1F600 (0xD83D ...), although its UTF-8 bytes sort before.
        let value = json!({"\u{fb33}": 1, "\u{1f600}": 2, "\u{20ac}": 3, "a": 4, "\r": 5, "1": 6});
        assert_eq!(
            canon(value),
            "{\"\\r\":5,\"1\":6,\"a\":4,\"\u{20ac}\":3,\"\u{1f600}\":2,\"\u{fb33}\":1}"
        );
    }

    #[test]
    fn strings_escape_exactly_as_jcs() {
        let value = json!("\u{8}\t\n\u{c}\r\"\\/\u{1}\u{1f}\u{7f}é");
        assert_eq!(
            canon(value),
            "\"\\b\\t\\n\\f\\r\\\"\\\\/\\u0001\\u001f\u{7f}é\""
        );
    }

    #[test]
    fn only_safe_integers_are_numbers() {
        assert_eq!(
            canon(json!([0, -1, 9007199254740991i64])),
            "[0,-1,9007199254740991]"
        );
        assert!(matches!(
            to_canonical_vec(&json!(1.5)),
            Err(CanonicalError::NotAnInteger(_))
        ));
        assert!(matches!(
            to_canonical_vec(&json!(9007199254740992u64)),
            Err(CanonicalError::IntegerTooLarge(_))
        ));
    }

    #[test]
    fn recognises_canonical_bytes() {
        assert_eq!(is_canonical(b"{\"a\":[1,true,null],\"b\":\"x\"}"), Ok(true));
        assert_eq!(is_canonical(b"{\"b\":1,\"a\":2}"), Ok(false));
        assert_eq!(is_canonical(b"{\"a\": 1}"), Ok(false));
        assert!(is_canonical(b"{").is_err());
    }
}

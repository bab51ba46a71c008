//! Canonical JSON (RFC 8785, JCS) for the bytes that are hashed.
//!
//! The ledger's events use a subset of JSON on which JCS is simple: objects, arrays,
//! strings, booleans, null and integers of magnitude below 2^53. Floats are refused, so
//! the ECMAScript number formatting of JCS never comes into play. Object members are
//! ordered by their names' UTF-16 code units, as JCS requires.

use serde::Serialize;
use serde_json::Value;

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

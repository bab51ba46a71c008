//! Identifier and digest newtypes, so that a user id is never passed where a client id is
//! expected and a secret's hash never lands in a log by accident.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! string_id {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The identifier's text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl From<&str> for $name {
            fn from(text: &str) -> Self {
                $name(text.to_owned())
            }
        }
    )*};
}

string_id! {
    /// A person's id (a UUID).
    UserId;
    /// An agent's OAuth client id (a random url-safe string).
    ClientId;
    /// An access token's `jti` (a random url-safe string).
    Jti;
    /// A delegation's id (a UUID).
    DelegationId;
    /// A user API key's id (a UUID; the key itself is never stored).
    ApiKeyId;
    /// A session grant's id (a UUID).
    GrantId;
    /// An MCP server's id.
    ServerId;
    /// A refresh token's id (the token itself is never stored).
    RefreshId;
    /// A refresh token family: every refresh token rotated from one authorization.
    FamilyId;
    /// A signing key's `kid`.
    KeyId;
}

/// A 32-byte digest inside an event (of a secret, an API key or a token's bytes), written
/// as unpadded base64url. `Debug` and `Display` print `***`: it is derived from a secret.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The unpadded base64url text of this digest.
    pub fn to_base64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// BLAKE3 of `bytes`: how a token's bytes become the key it is found by.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(*blake3::hash(bytes).as_bytes())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Digest(***)")
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_base64url())
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if !deserializer.is_human_readable() {
            return <[u8; 32]>::deserialize(deserializer).map(Digest);
        }
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        let mut bytes = [0u8; 32];
        match URL_SAFE_NO_PAD.decode_slice(text.as_bytes(), &mut bytes) {
            Ok(32) => Ok(Digest(bytes)),
            _ => Err(serde::de::Error::custom(
                "a digest must be 32 bytes as unpadded base64url",
            )),
        }
    }
}

impl schemars::JsonSchema for Digest {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Digest".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[A-Za-z0-9_-]{43}$",
            "description": "32 bytes as unpadded base64url"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_hides_itself_and_round_trips() {
        let digest = Digest::of(b"secret");
        assert_eq!(format!("{digest:?}"), "Digest(***)");
        let text = serde_json::to_string(&digest).unwrap_or_default();
        assert_eq!(text.len(), 45);
        assert_eq!(serde_json::from_str::<Digest>(&text).ok(), Some(digest));
        assert!(serde_json::from_str::<Digest>("\"AAAA\"").is_err());
    }
}

//! The ledger's vocabulary: every fact writ records, as past-tense events.
//!
//! An event is stored as canonical JSON `{"data":{...},"type":"<Kind>","v":<version>}`.
//! Adding a kind is local: write its payload struct below and add one line to the
//! `events!` list; the enum, the kind names, decoding and the JSON Schema files follow.
//! Evolving a kind adds optional fields (absent means "as before") or bumps its version
//! with an upcast in [`Event::decode`]; history is never re-serialized.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::canonical::{self, CanonicalError};
use crate::ids::{
    ApiKeyId, ClientId, DelegationId, Digest, FamilyId, GrantId, Jti, KeyId, RefreshId, ServerId,
    UserId,
};
use crate::time::Timestamp;

/// Who caused a management event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Actor {
    /// An administrator, by the id of the admin token used.
    Admin {
        /// The admin token's id (never the token).
        token_id: String,
    },
    /// A person, by API key or user token.
    User {
        /// The person.
        user_id: UserId,
    },
    /// An agent acting as itself.
    Agent {
        /// The agent.
        client_id: ClientId,
    },
    /// writ itself (expiry sweeps, cascades, start-up).
    System,
}

/// How an agent runs, which sets token defaults and gateway behaviour.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AgentType {
    /// Acts on its own within its grants.
    Autonomous,
    /// A person approves its critical actions.
    Supervised,
    /// Short-lived, few operations, expires on completion.
    Ephemeral,
}

/// Why a token stopped being valid before its expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RevocationCause {
    /// Revoked directly (RFC 7009 or the management API).
    Requested {
        /// Who asked.
        by: Actor,
    },
    /// The token it was derived from was revoked.
    ParentRevoked {
        /// The parent token.
        parent_jti: Jti,
    },
    /// The delegation it acted under was revoked.
    DelegationRevoked {
        /// The delegation.
        delegation_id: DelegationId,
    },
    /// The person it acted for was deactivated.
    UserDeactivated {
        /// The person.
        user_id: UserId,
    },
    /// Its agent was disabled.
    AgentDisabled {
        /// The agent.
        client_id: ClientId,
    },
    /// Its refresh family was revoked (reuse of a spent refresh token, or a grant withdrawn).
    RefreshFamilyRevoked {
        /// The family.
        family_id: FamilyId,
    },
    /// Its last allowed operation was recorded and it expires on completion.
    Completed,
}

/// An agent (OAuth client) was registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentRegistered {
    /// The agent's client id.
    pub client_id: ClientId,
    /// Its display name.
    pub name: String,
    /// The person accountable for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<UserId>,
    /// The scopes it may ever be granted.
    pub scopes: Vec<String>,
    /// The OAuth grant types it may use.
    pub grant_types: Vec<String>,
    /// Exact redirect URIs for the authorization code flow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirect_uris: Vec<String>,
    /// How it authenticates at the token endpoint.
    pub token_endpoint_auth_method: String,
    /// Keyed hash of its client secret (absent for `private_key_jwt` or public clients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_hash: Option<Digest>,
    /// When the secret stops being accepted (none: it does not expire).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_expires_at: Option<Timestamp>,
    /// The public keys its `private_key_jwt` assertions are signed with (RFC 7523 §2.2);
    /// absent for every other method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<ClientJwks>,
    /// It may act for a person only under an active delegation.
    pub require_consent: bool,
    /// How it runs.
    pub agent_type: AgentType,
    /// After this instant it gets no token (fail closed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// Who registered it.
    pub by: Actor,
}

/// A client's public signing keys, as a JWK Set (RFC 7517 §5). Only the public members
/// writ verifies with are kept: a private member (`d`, `p`, ...) or a symmetric key
/// cannot be written here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientJwks {
    /// The keys.
    pub keys: Vec<ClientJwk>,
}

/// One public key of a [`ClientJwks`]: EC P-256, RSA or OKP Ed25519.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientJwk {
    /// Key type: `EC`, `RSA` or `OKP`.
    pub kty: String,
    /// Key id, which an assertion's header names to pick the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// The one algorithm the key is for (`ES256`, `RS256`, `EdDSA`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// Intended use; only `sig` is accepted.
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// Curve (`P-256`, `Ed25519`) of an EC or OKP key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// x coordinate (EC) or public key (OKP), base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// y coordinate of an EC key, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// Modulus of an RSA key, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// Exponent of an RSA key, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
}

/// An agent's accountable owner or expiry changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentIdentitySet {
    /// The agent.
    pub client_id: ClientId,
    /// The new owner; absent clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<UserId>,
    /// The new expiry; absent clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// Who changed it.
    pub by: Actor,
}

/// An agent's client secret was replaced; the previous one stays valid for a grace period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentSecretRotated {
    /// The agent.
    pub client_id: ClientId,
    /// Keyed hash of the new secret.
    pub secret_hash: Digest,
    /// Until when the previous secret is still accepted (the rotation's own time: refused
    /// from then on).
    pub previous_valid_until: Timestamp,
    /// When the new secret stops being accepted (none: it does not expire).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_expires_at: Option<Timestamp>,
    /// Who rotated it.
    pub by: Actor,
}

/// An agent was disabled: it gets no token, and its tokens are revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentDisabled {
    /// The agent.
    pub client_id: ClientId,
    /// Who disabled it.
    pub by: Actor,
}

/// A disabled agent was enabled again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentEnabled {
    /// The agent.
    pub client_id: ClientId,
    /// Who enabled it.
    pub by: Actor,
}

/// Someone attested that they reviewed an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentReviewed {
    /// The agent.
    pub client_id: ClientId,
    /// The reviewer's note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The reviewer.
    pub by: Actor,
}

/// Whose Cedar policy set a [`PolicySetAssigned`] replaces.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PolicySubject {
    /// An agent's set: what it may do, whoever it acts for.
    Agent {
        /// The agent.
        client_id: ClientId,
    },
    /// A person's set: what any agent may do on their behalf.
    User {
        /// The person.
        user_id: UserId,
    },
}

/// A Cedar policy set (validated against writ's schema when written) replaced an agent's
/// or a person's previous one. Tool calls are allowed only where both apply and allow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicySetAssigned {
    /// Whose set it is.
    pub subject: PolicySubject,
    /// The policies, in the Cedar language, as written.
    pub policies: String,
    /// Who set it.
    pub by: Actor,
}

/// An agent's governance ceilings were set (absent fields: no ceiling beyond the defaults).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentPolicySet {
    /// The agent.
    pub client_id: ClientId,
    /// Longest token lifetime, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ttl_seconds: Option<u64>,
    /// Scopes a token may carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_scopes: Option<Vec<String>>,
    /// Audiences a token may name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_audiences: Option<Vec<String>>,
    /// Deepest chain of `act` a token may carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delegation_depth: Option<u32>,
    /// Most operations one token may record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_operations: Option<u64>,
    /// Token requests per minute the agent may make (the server's default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_requests_per_minute: Option<u32>,
    /// Who set them.
    pub by: Actor,
}

/// Personal data sealed under its person's key (AES-256-GCM, LEDGER.md §12): the key is
/// held outside the ledger, so destroying it erases the data and leaves the record, and
/// the chain, as they were.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sealed {
    /// The 12-byte nonce, unpadded base64url (random per value).
    pub nonce: String,
    /// The ciphertext followed by its 16-byte tag, unpadded base64url.
    pub ciphertext: String,
}

/// Length of a sealed value's nonce, in bytes.
pub const SEALED_NONCE_BYTES: usize = 12;
/// Length of a sealed value's authentication tag, in bytes.
pub const SEALED_TAG_BYTES: usize = 16;

impl Sealed {
    /// Checks that the nonce is 12 bytes and the ciphertext holds at least a tag, both as
    /// unpadded base64url.
    pub fn check(&self) -> Result<(), String> {
        use base64::Engine as _;
        let decode = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text);
        match (decode(&self.nonce), decode(&self.ciphertext)) {
            (Ok(nonce), Ok(sealed))
                if nonce.len() == SEALED_NONCE_BYTES && sealed.len() >= SEALED_TAG_BYTES =>
            {
                Ok(())
            }
            _ => Err(format!(
                "a sealed value is a {SEALED_NONCE_BYTES}-byte nonce and a ciphertext of at least {SEALED_TAG_BYTES} bytes, as unpadded base64url"
            )),
        }
    }
}

/// A person was registered.
///
/// Their email and name are sealed under their own key (`email_sealed`, `name_sealed`),
/// with `email_hash` to find them by email; records written before sealing existed carry
/// `email` and `name` in the clear instead. Which one, decoding checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = email_in_one_form)]
pub struct UserRegistered {
    /// The person's id.
    pub user_id: UserId,
    /// Their email address in the clear (records from before sealing only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Their display name in the clear (records from before sealing only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Their email address, sealed under their key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_sealed: Option<Sealed>,
    /// Keyed hash of the email's comparison form (the deployment's key, never in the
    /// ledger): the local part in NFKC and case-folded, the domain in its UTS 46 ASCII
    /// form; for an ASCII email, the email lowercased. How writ finds a person by email
    /// and keeps emails unique without reading them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_hash: Option<Digest>,
    /// Their display name, sealed under their key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_sealed: Option<Sealed>,
    /// Keyed hash (the deployment's key, another context than `email_hash`'s) of the
    /// email's Unicode TR39 skeleton: people whose emails could be mistaken for each other
    /// share it, and a second one is refused. Records from before it carry none; writ
    /// computes theirs from the sealed email at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_skeleton_hash: Option<Digest>,
    /// Who registered them.
    pub by: Actor,
}

impl UserRegistered {
    /// Checks that the email is there in exactly one form (in the clear, or sealed with
    /// its hash), the name in at most one, and every sealed value is well formed.
    pub fn check(&self) -> Result<(), String> {
        match (&self.email, &self.email_sealed, &self.email_hash) {
            (Some(_), None, None) | (None, Some(_), Some(_)) => {}
            _ => {
                return Err(
                    "a person's email is either `email`, or `email_sealed` with `email_hash`"
                        .into(),
                );
            }
        }
        if self.name.is_some() && self.name_sealed.is_some() {
            return Err("a person's name is either `name` or `name_sealed`, not both".into());
        }
        for sealed in [&self.email_sealed, &self.name_sealed]
            .into_iter()
            .flatten()
        {
            sealed.check()?;
        }
        Ok(())
    }
}

/// The schema's statement of [`UserRegistered::check`]'s rule for the email.
fn email_in_one_form(schema: &mut schemars::Schema) {
    schema.insert(
        "oneOf".into(),
        serde_json::json!([
            { "required": ["email"], "not": { "anyOf": [{ "required": ["email_sealed"] }, { "required": ["email_hash"] }] } },
            { "required": ["email_sealed", "email_hash"], "not": { "required": ["email"] } }
        ]),
    );
    schema.insert(
        "not".into(),
        serde_json::json!({ "required": ["name", "name_sealed"] }),
    );
}

/// A person was erased (GDPR Art. 17): the key their personal data was sealed under has
/// been destroyed. Their records stay, and the chain with them; what was sealed can no
/// longer be read, and the person stays in the trail by their pseudonymous id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserErased {
    /// The person.
    pub user_id: UserId,
    /// Who erased them.
    pub by: Actor,
}

/// A person was deactivated: their delegations stop working and their tokens are revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserDeactivated {
    /// The person.
    pub user_id: UserId,
    /// Who deactivated them.
    pub by: Actor,
}

/// A deactivated person was reactivated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserReactivated {
    /// The person.
    pub user_id: UserId,
    /// Who reactivated them.
    pub by: Actor,
}

/// A user API key was issued (the key was shown once; only its keyed hash is kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyIssued {
    /// The key's id.
    pub key_id: ApiKeyId,
    /// The person it acts as.
    pub user_id: UserId,
    /// Keyed hash of the key.
    pub key_hash: Digest,
    /// Who issued it.
    pub by: Actor,
}

/// A user API key was revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyRevoked {
    /// The key.
    pub key_id: ApiKeyId,
    /// Who revoked it.
    pub by: Actor,
}

/// A person delegated to an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DelegationGranted {
    /// The delegation's id.
    pub delegation_id: DelegationId,
    /// The delegating person.
    pub user_id: UserId,
    /// The agent that may act for them.
    pub client_id: ClientId,
    /// The scopes delegated; absent means all of the agent's scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// When the delegation lapses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// Who granted it (the person, or an admin for them).
    pub by: Actor,
}

/// A delegation was withdrawn; every token derived from it is revoked in the same append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DelegationRevoked {
    /// The delegation.
    pub delegation_id: DelegationId,
    /// Who revoked it.
    pub by: Actor,
}

/// A person let an agent use their session with an upstream MCP server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionGrantCreated {
    /// The grant's id.
    pub grant_id: GrantId,
    /// The agent.
    pub client_id: ClientId,
    /// The upstream server.
    pub server_id: ServerId,
    /// The person whose session it is.
    pub user_id: UserId,
    /// Shared: any person acting through this agent may use it.
    pub shared: bool,
    /// Who created it.
    pub by: Actor,
}

/// A session grant was switched between personal and shared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionGrantToggled {
    /// The grant.
    pub grant_id: GrantId,
    /// Its new state.
    pub shared: bool,
    /// Who toggled it.
    pub by: Actor,
}

/// A session grant was revoked (the delegation stays).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionGrantRevoked {
    /// The grant.
    pub grant_id: GrantId,
    /// Who revoked it.
    pub by: Actor,
}

/// A secret wrapped under one of the deployment's key-encryption keys (AES-256-GCM): an
/// upstream server's client secret, a connection's tokens. The key stays outside the
/// ledger; `kek_id` names which one, so keys can rotate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Wrapped {
    /// The key-encryption key's id.
    pub kek_id: String,
    /// The 12-byte nonce, unpadded base64url (random per value).
    pub nonce: String,
    /// The ciphertext followed by its 16-byte tag, unpadded base64url.
    pub ciphertext: String,
}

/// How writ authenticates to an upstream MCP server on a person's behalf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerAuth {
    /// No credential: the server is open to whoever reaches it.
    None,
    /// An upstream OAuth provider: each person connects with the authorization code flow
    /// (PKCE), and calls carry that person's access token.
    Oauth(UpstreamOAuth),
}

/// The organisation's own OAuth client at an upstream provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamOAuth {
    /// The provider's authorization endpoint.
    pub authorization_url: String,
    /// The provider's token endpoint.
    pub token_url: String,
    /// The provider's revocation endpoint (RFC 7009), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_url: Option<String>,
    /// writ's client id at the provider.
    pub client_id: String,
    /// writ's client secret at the provider, wrapped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Wrapped>,
    /// The scopes asked for when a person connects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

/// An MCP server was registered with the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerRegistered {
    /// Its id.
    pub server_id: ServerId,
    /// A name people recognise.
    pub name: String,
    /// Its MCP streamable HTTP endpoint.
    pub url: String,
    /// How calls to it are authenticated.
    pub auth: ServerAuth,
    /// Who registered it.
    pub by: Actor,
}

/// A person connected their account at an MCP server's OAuth provider (the authorization
/// code flow with PKCE): their tokens there, wrapped. A new connection to the same server
/// replaces the previous one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionEstablished {
    /// The person.
    pub user_id: UserId,
    /// The server.
    pub server_id: ServerId,
    /// Their access token at the provider, wrapped.
    pub access_token: Wrapped,
    /// Their refresh token at the provider, wrapped, if it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<Wrapped>,
    /// When the access token expires, if the provider said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// The scopes the provider granted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

/// A connection's access token was refreshed at the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionRefreshed {
    /// The person.
    pub user_id: UserId,
    /// The server.
    pub server_id: ServerId,
    /// Which state of the connection was refreshed (its count of tokens so far), so that a
    /// refresh decided on an older state is refused.
    pub generation: u64,
    /// The new access token, wrapped.
    pub access_token: Wrapped,
    /// The new refresh token, wrapped, when the provider rotated it (absent: keep the old).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<Wrapped>,
    /// When the new access token expires, if the provider said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

/// Refreshing a connection failed. `broken`: the provider rejected the refresh token, so the
/// connection is not tried again until the person connects anew.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionRefreshFailed {
    /// The person.
    pub user_id: UserId,
    /// The server.
    pub server_id: ServerId,
    /// Which state of the connection the refresh was tried on.
    pub generation: u64,
    /// What the provider or the network said (never a token).
    pub reason: String,
    /// The refresh token was rejected: the connection is broken.
    pub broken: bool,
}

/// A connection was deleted (by the person or an admin); its tokens are forgotten.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionDeleted {
    /// The person.
    pub user_id: UserId,
    /// The server.
    pub server_id: ServerId,
    /// Who deleted it.
    pub by: Actor,
}

/// Which of a connection's upstream tokens a revocation was about; the names are RFC 7009's
/// `token_type_hint` values.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamTokenKind {
    /// The access token.
    AccessToken,
    /// The refresh token.
    RefreshToken,
}

/// What came of revoking an upstream token at the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "result", rename_all = "snake_case", deny_unknown_fields)]
pub enum RevocationOutcome {
    /// The provider answered 200 (RFC 7009 §2.2: also for a token it already held
    /// invalid): the token is dead there.
    Revoked,
    /// Nothing can be revoked there: the server names no `revocation_url`, or the provider
    /// does not revoke tokens of this kind (`unsupported_token_type`). Not tried again.
    NotRevocable {
        /// Why.
        reason: String,
    },
    /// The provider could not be reached or refused; tried again while attempts are left.
    Failed {
        /// The provider's HTTP status, when it answered.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
        /// What the provider or the network said (never a token).
        reason: String,
    },
}

/// writ asked a server's provider to revoke an upstream token of a connection that ended
/// (RFC 7009), or found it could not: one record per token and attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamRevocationCompleted {
    /// The person whose connection it was.
    pub user_id: UserId,
    /// The server.
    pub server_id: ServerId,
    /// The generation the connection had when it ended: whose tokens these are, even if
    /// the person has connected again since.
    pub generation: u64,
    /// Which token.
    pub token: UpstreamTokenKind,
    /// What came of it.
    pub outcome: RevocationOutcome,
    /// Which attempt this was, from 1; 0 when no request could be made at all.
    pub attempt: u32,
}

/// An MCP server's OAuth client secret was wrapped again, under the current key-encryption
/// key (a key rotation), so that the key it was wrapped under before can be retired. The
/// secret itself is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerSecretRewrapped {
    /// The server.
    pub server_id: ServerId,
    /// The same client secret, wrapped under the current key.
    pub client_secret: Wrapped,
}

/// A connection's tokens were wrapped again, under the current key-encryption key (a key
/// rotation), so that the key they were wrapped under before can be retired. The tokens
/// themselves, their expiry and the connection's generation are unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionRewrapped {
    /// The person.
    pub user_id: UserId,
    /// The server.
    pub server_id: ServerId,
    /// Which state of the connection was re-wrapped, so that a re-wrap of tokens a refresh
    /// has since replaced is refused.
    pub generation: u64,
    /// The same access token, wrapped under the current key.
    pub access_token: Wrapped,
    /// The same refresh token, wrapped under the current key; absent when the connection
    /// holds none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<Wrapped>,
}

/// An access token was issued. It is found later by the digest of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenIssued {
    /// The token's `jti`.
    pub jti: Jti,
    /// BLAKE3 of the token's bytes.
    pub digest: Digest,
    /// The signing key.
    pub kid: KeyId,
    /// The grant that produced it (`client_credentials`, token exchange, ...).
    pub grant_type: String,
    /// The agent holding it.
    pub client_id: ClientId,
    /// The `sub` claim: the agent itself, or the person it acts for.
    pub subject: String,
    /// The person it acts for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
    /// The `act` chain, outermost (current) actor first; empty for a token of its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actors: Vec<ClientId>,
    /// The delegation it acts under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegation_id: Option<DelegationId>,
    /// The token it was exchanged from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_jti: Option<Jti>,
    /// The refresh family it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_id: Option<FamilyId>,
    /// The `aud` claim.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audience: Vec<String>,
    /// The granted scopes.
    pub scopes: Vec<String>,
    /// `iat`.
    pub issued_at: Timestamp,
    /// `exp`.
    pub expires_at: Timestamp,
    /// How the agent runs.
    pub agent_type: AgentType,
    /// The task it was issued for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// Most operations it may record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_operations: Option<u64>,
    /// Revoke it when its last operation is recorded.
    pub expires_on_completion: bool,
    /// What the agent said it means to do, in the clear: a token acting for no person, or
    /// one recorded before sealing existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent_description: Option<String>,
    /// What the agent said it means to do, sealed under the key of the person the token
    /// acts for (`user_id`).
    // Boxed: most tokens have none, and every event is as large as its largest kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent_sealed: Option<Box<Sealed>>,
    /// The `private_key_jwt` assertion the client authenticated with, recorded with the
    /// token so the same assertion is refused ever after, on any node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_assertion: Option<AssertionUsed>,
}

/// A client assertion (RFC 7523 §3) spent on a token request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssertionUsed {
    /// The assertion's `jti`, unique per client.
    pub jti: String,
    /// Its `exp`: until then a replay would otherwise verify.
    pub expires_at: Timestamp,
}

impl TokenIssued {
    /// Checks that a sealed intent belongs to a person and stands alone.
    pub fn check(&self) -> Result<(), String> {
        let Some(sealed) = &self.intent_sealed else {
            return Ok(());
        };
        if self.user_id.is_none() {
            return Err("`intent_sealed` needs the person whose key sealed it (`user_id`)".into());
        }
        if self.intent_description.is_some() {
            return Err("an intent is either `intent_description` or `intent_sealed`".into());
        }
        sealed.check()
    }
}

/// An access token was revoked before its expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRevoked {
    /// The token.
    pub jti: Jti,
    /// Why.
    pub cause: RevocationCause,
}

/// A token recorded its last allowed operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenExhausted {
    /// The token.
    pub jti: Jti,
}

/// A token was used for one operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OperationRecorded {
    /// The token used.
    pub jti: Jti,
    /// What was done (a tool name, an API operation).
    pub operation: String,
    /// What it was done to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The caller's idempotency key: the same key on the same token never counts twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// How a tool call forwarded to an MCP server ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ToolCallOutcome {
    /// The tool ran and answered a result.
    Succeeded,
    /// The tool ran and reported an error (`isError`) in its result.
    ToolError,
    /// The MCP server failed: unreachable, a refusal, or an answer that is not MCP.
    UpstreamFailed,
    /// The MCP server did not answer in time.
    UpstreamTimedOut,
    /// Policy denied the call: it was neither counted nor forwarded.
    PolicyDenied,
}

/// The upstream credential a tool call was forwarded with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolCallCredential {
    /// The session grant that lent it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<GrantId>,
    /// The person whose upstream connection it is.
    pub user_id: UserId,
}

/// A tool call was forwarded through the gateway to an MCP server, and ended so.
/// The operation it counted is the `OperationRecorded` before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolCallCompleted {
    /// The call's id, answered to the caller.
    pub call_id: String,
    /// The token that made the call.
    pub jti: Jti,
    /// The MCP server.
    pub server_id: ServerId,
    /// The tool.
    pub tool_name: String,
    /// How it ended.
    pub outcome: ToolCallOutcome,
    /// What went wrong, for the failures (never a credential or a tool's output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The upstream credential used (none for a server that needs none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<ToolCallCredential>,
    /// The policies that allowed the call, prefixed by whose set they came from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_ids: Vec<String>,
}

/// A supervised agent asked to make a tool call that policy marks critical: it is not
/// forwarded until the person it acts for (or, for the agent's own token, its owner)
/// approves it, and then only once, with the same arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRequested {
    /// The approval's id, answered to the agent and named when it retries.
    pub approval_id: String,
    /// The token that asked.
    pub jti: Jti,
    /// The agent.
    pub client_id: ClientId,
    /// The person the token acts for (absent for the agent's own token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
    /// Who may approve or deny it.
    pub approver: UserId,
    /// The MCP server.
    pub server_id: ServerId,
    /// The tool.
    pub tool_name: String,
    /// BLAKE3 of the call's arguments as JSON with members sorted: the retry must match.
    pub arguments_digest: Digest,
    /// The arguments, sealed under the approver's key (so the approver can read what they
    /// approve, and erasing them shreds it).
    pub arguments_sealed: Sealed,
    /// The policies that allowed the call and marked it critical.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_ids: Vec<String>,
    /// When it lapses, approved or not.
    pub expires_at: Timestamp,
}

/// What a person decided about a critical tool call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalDecision {
    /// The call may be made, once.
    Approved,
    /// The call may not be made.
    Denied,
}

/// The approver approved or denied a critical tool call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalDecided {
    /// The approval.
    pub approval_id: String,
    /// What they decided.
    pub decision: ApprovalDecision,
    /// Who decided.
    pub by: Actor,
}

/// An approved critical tool call was made: the approval is spent. The operation it
/// counted follows in the same batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalUsed {
    /// The approval.
    pub approval_id: String,
    /// The token that made the call (the agent's current one, not necessarily the one
    /// that asked).
    pub jti: Jti,
}

/// A person's sign-in password was set (by an admin, or by themselves). Only its
/// argon2id hash is kept, as a PHC string (salt and parameters included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPasswordSet {
    /// The person.
    pub user_id: UserId,
    /// `$argon2id$v=19$m=...,t=...,p=...$<salt>$<hash>`.
    pub password_hash: String,
    /// Who set it.
    pub by: Actor,
}

/// An authorization code was issued to a client after the person's consent (only its
/// digest is kept). It is redeemed once, by that client, with the PKCE verifier whose
/// S256 challenge it holds, at the redirect URI it was sent to, before it lapses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationCodeIssued {
    /// The code's id.
    pub code_id: String,
    /// BLAKE3 of the code's bytes.
    pub digest: Digest,
    /// The client it was issued to.
    pub client_id: ClientId,
    /// The person who consented.
    pub user_id: UserId,
    /// The delegation their consent recorded (or the one it found in force).
    pub delegation_id: DelegationId,
    /// The redirect URI it was sent to, which the redemption must name again.
    pub redirect_uri: String,
    /// The PKCE `code_challenge` (S256).
    pub code_challenge: String,
    /// The scopes consented to.
    pub scopes: Vec<String>,
    /// The resources (RFC 8707) the tokens are for: their `aud`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audience: Vec<String>,
    /// When it lapses.
    pub expires_at: Timestamp,
}

/// An authorization code was redeemed for the access token named (and a refresh token,
/// recorded beside it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationCodeRedeemed {
    /// The code.
    pub code_id: String,
    /// The access token issued for it.
    pub jti: Jti,
}

/// A redeemed authorization code was presented again: the tokens issued from it are
/// revoked (the revocations follow in the same batch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationCodeReplayed {
    /// The code.
    pub code_id: String,
    /// The client that presented it.
    pub client_id: ClientId,
}

/// A refresh token was issued (only its digest is kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshTokenIssued {
    /// The refresh token's id.
    pub refresh_id: RefreshId,
    /// BLAKE3 of the refresh token's bytes.
    pub digest: Digest,
    /// Its family.
    pub family_id: FamilyId,
    /// The agent holding it.
    pub client_id: ClientId,
    /// The person it acts for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
    /// The scopes it may refresh to.
    pub scopes: Vec<String>,
    /// When it lapses.
    pub expires_at: Timestamp,
    /// The access token issued beside it.
    pub access_jti: Jti,
}

/// A refresh token was spent and replaced by a new one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshTokenRotated {
    /// The spent refresh token.
    pub refresh_id: RefreshId,
    /// The one that replaces it.
    pub replaced_by: RefreshId,
}

/// A spent refresh token was presented again: the family is revoked, the agent flagged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshTokenReuseDetected {
    /// The spent refresh token that was presented.
    pub refresh_id: RefreshId,
    /// Its family.
    pub family_id: FamilyId,
    /// The agent it belongs to.
    pub client_id: ClientId,
}

/// A refresh token's holder revoked it (RFC 7009): its family ends, and the access
/// tokens issued in it are revoked (the revocations follow in the same batch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshTokenRevoked {
    /// The refresh token presented.
    pub refresh_id: RefreshId,
    /// Its family.
    pub family_id: FamilyId,
    /// Who revoked it.
    pub by: Actor,
}

/// A person's one sign-in session ended (they signed out): a cookie naming it is refused
/// from now on, on every node. The read models keep it until `expires_at`, when the
/// cookie would lapse anyway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionEnded {
    /// The person.
    pub user_id: UserId,
    /// The session's random id, as its cookie carries it.
    pub session_id: String,
    /// When the session's cookie lapses by itself.
    pub expires_at: Timestamp,
}

/// Why all of a person's sessions were ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionsEndedReason {
    /// "Sign out everywhere", by the person or an admin.
    SignOutEverywhere,
    /// The person's password was set again.
    PasswordChanged,
    /// They signed out while holding more ended sessions than are kept one by one.
    SignOut,
}

/// Every session a person signed in before this record ended: their session generation
/// becomes `generation`, and a cookie of an older generation is refused on every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionsEnded {
    /// The person.
    pub user_id: UserId,
    /// Their new session generation (one more than the last).
    pub generation: u64,
    /// Why.
    pub reason: SessionsEndedReason,
    /// Who ended them.
    pub by: Actor,
}

/// Sign-ins to a person's account failed `failures` times in a row within the sign-in
/// throttle's window, as one node counted them: recorded once as the count reaches the
/// throttle's threshold, not once per guess, and counted on the person for admins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInFailuresDetected {
    /// The person whose account was guessed at.
    pub user_id: UserId,
    /// Failed attempts counted when it was recorded.
    pub failures: u32,
    /// When the first of them failed.
    pub first_failure_at: Timestamp,
}

/// What an administrator credential may do.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AdminRole {
    /// Reads only: the audit trail, time travel, exports, the ledger head, checkpoints,
    /// proofs and every other listing; nothing that writes.
    Auditor,
    /// Everything the management API offers.
    Admin,
}

impl AdminRole {
    /// The role's name as recorded and as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminRole::Auditor => "auditor",
            AdminRole::Admin => "admin",
        }
    }
}

impl std::fmt::Display for AdminRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An administrator credential was created (shown once; only its keyed hash is kept).
/// Records from before credentials had names carry none of `name`, `role` and
/// `expires_at`: such a credential is an `admin` that never expires, named `initial`
/// when it was the ledger's first and by its id otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminTokenIssued {
    /// The credential's id, which audit entries name (never the credential).
    pub token_id: String,
    /// Keyed hash of the credential.
    pub token_hash: Digest,
    /// Who created it (`system` on first start and from the command line, or an admin).
    pub by: Actor,
    /// The name operators know it by, unique among credentials not revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What it may do (absent: `admin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<AdminRole>,
    /// When it stops being accepted (absent: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

/// An administrator credential was revoked: it is refused from the next request on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminTokenRevoked {
    /// The credential's id.
    pub token_id: String,
    /// Who revoked it.
    pub by: Actor,
}

/// A JWS algorithm writ signs tokens with (RFC 7518 names).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
pub enum SigningAlgorithm {
    /// Ed25519 (RFC 8037), the default.
    #[serde(rename = "EdDSA")]
    EdDsa,
    /// ECDSA on P-256 with SHA-256.
    #[serde(rename = "ES256")]
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    #[serde(rename = "RS256")]
    Rs256,
}

impl SigningAlgorithm {
    /// Every algorithm, the default first.
    pub const ALL: [SigningAlgorithm; 3] = [
        SigningAlgorithm::EdDsa,
        SigningAlgorithm::Es256,
        SigningAlgorithm::Rs256,
    ];

    /// Its name as JWS writes it (`alg`).
    pub fn name(self) -> &'static str {
        match self {
            SigningAlgorithm::EdDsa => "EdDSA",
            SigningAlgorithm::Es256 => "ES256",
            SigningAlgorithm::Rs256 => "RS256",
        }
    }

    /// The algorithm named `name` (exactly as JWS writes it), if writ signs with it.
    pub fn from_name(name: &str) -> Option<SigningAlgorithm> {
        SigningAlgorithm::ALL
            .into_iter()
            .find(|alg| alg.name() == name)
    }

    /// What a `SigningKeyRotated` of this algorithm carries, for error messages.
    fn key_members(self) -> &'static str {
        match self {
            SigningAlgorithm::EdDsa => "`public_key` and no `jwk`",
            SigningAlgorithm::Es256 => "`jwk` with kty EC and no `public_key`",
            SigningAlgorithm::Rs256 => "`jwk` with kty RSA and no `public_key`",
        }
    }
}

impl std::fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An elliptic curve of an EC signing key (RFC 7518 §6.2.1.1).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
pub enum EcCurve {
    /// NIST P-256, for ES256.
    #[serde(rename = "P-256")]
    P256,
}

/// The public members of an EC or RSA signing key's JWK (RFC 7518 §6), each unpadded
/// base64url of the big-endian value. There is no member for private material, so none
/// can be recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kty", deny_unknown_fields)]
pub enum PublicJwk {
    /// An elliptic-curve key.
    #[serde(rename = "EC")]
    Ec {
        /// The curve.
        crv: EcCurve,
        /// The point's x coordinate.
        x: String,
        /// The point's y coordinate.
        y: String,
    },
    /// An RSA key.
    #[serde(rename = "RSA")]
    Rsa {
        /// The modulus.
        n: String,
        /// The public exponent.
        e: String,
    },
}

/// The key that signs checkpoints (signed notes over the Merkle root, LEDGER.md §11)
/// was published. Only its public part enters the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckpointKeyPublished {
    /// The key name in the checkpoints' signature lines (no spaces, no `+`).
    pub name: String,
    /// The Ed25519 public key (32 bytes), unpadded base64url.
    pub public_key: String,
}

impl CheckpointKeyPublished {
    /// Checks that the name can stand in a signature line and the key is 32 bytes.
    pub fn check(&self) -> Result<(), String> {
        crate::checkpoint::check_key_name(&self.name)?;
        crate::checkpoint::decode_public_key(&self.public_key).map(|_| ())
    }
}

/// A new signing key became current. Only public material enters the ledger.
///
/// An Ed25519 key carries `public_key`, as the event always has (so those records keep
/// their bytes); an ES256 or RS256 key carries `jwk` instead. Which one, and the key
/// type, must fit `alg`: decoding refuses a record where they do not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = key_members_fit_the_algorithm)]
pub struct SigningKeyRotated {
    /// The new key's `kid`.
    pub kid: KeyId,
    /// Its JWS algorithm.
    pub alg: SigningAlgorithm,
    /// An Ed25519 key's public key (its JWK's `x`), unpadded base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// An ES256 or RS256 key's public JWK members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwk: Option<PublicJwk>,
    /// The key it replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_kid: Option<KeyId>,
    /// Who rotated it (absent: writ itself, as in records from before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<Actor>,
}

impl SigningKeyRotated {
    /// Checks that the key's members fit its algorithm: `public_key` alone for EdDSA,
    /// an EC `jwk` on P-256 alone for ES256, an RSA `jwk` alone for RS256.
    pub fn check(&self) -> Result<(), String> {
        match (self.alg, &self.public_key, &self.jwk) {
            (SigningAlgorithm::EdDsa, Some(_), None)
            | (
                SigningAlgorithm::Es256,
                None,
                Some(PublicJwk::Ec {
                    crv: EcCurve::P256, ..
                }),
            )
            | (SigningAlgorithm::Rs256, None, Some(PublicJwk::Rsa { .. })) => Ok(()),
            (alg, ..) => Err(format!(
                "an {alg} signing key carries {}",
                alg.key_members()
            )),
        }
    }
}

/// The schema's statement of [`SigningKeyRotated::check`], so that a JSON Schema
/// validator refuses what the decoder refuses.
fn key_members_fit_the_algorithm(schema: &mut schemars::Schema) {
    let absent = serde_json::json!({ "type": "null" });
    let jwk = |kty: &str| serde_json::json!({ "type": "object", "properties": { "kty": { "const": kty } } });
    schema.insert(
        "oneOf".into(),
        serde_json::json!([
            {
                "properties": { "alg": { "const": "EdDSA" }, "public_key": { "type": "string" }, "jwk": absent },
                "required": ["public_key"]
            },
            {
                "properties": { "alg": { "const": "ES256" }, "jwk": jwk("EC"), "public_key": absent },
                "required": ["jwk"]
            },
            {
                "properties": { "alg": { "const": "RS256" }, "jwk": jwk("RSA"), "public_key": absent },
                "required": ["jwk"]
            }
        ]),
    );
}

macro_rules! events {
    ($($kind:ident = $version:literal,)*) => {
        /// One fact in the ledger.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Event {
            $(
                #[doc = concat!("See [`", stringify!($kind), "`].")]
                $kind($kind),
            )*
        }

        /// The kind of an event: its `type` member.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum EventKind {
            $(
                #[doc = concat!("`", stringify!($kind), "`")]
                $kind,
            )*
        }

        impl EventKind {
            /// Every kind, in the order of the vocabulary.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$kind),*];

            /// The kind's name as written in the `type` member.
            pub fn name(self) -> &'static str {
                match self { $(EventKind::$kind => stringify!($kind),)* }
            }

            /// The current version of the kind's payload.
            pub fn version(self) -> u32 {
                match self { $(EventKind::$kind => $version,)* }
            }

            /// The kind named `name`, if there is one.
            pub fn from_name(name: &str) -> Option<EventKind> {
                match name { $(stringify!($kind) => Some(EventKind::$kind),)* _ => None }
            }

            /// The JSON Schema of the kind's payload.
            pub fn payload_schema(self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
                match self { $(EventKind::$kind => generator.root_schema_for::<$kind>(),)* }
            }
        }

        impl Event {
            /// The event's kind.
            pub fn kind(&self) -> EventKind {
                match self { $(Event::$kind(_) => EventKind::$kind,)* }
            }

            #[cfg(test)]
            fn data_value(&self) -> Result<serde_json::Value, serde_json::Error> {
                match self { $(Event::$kind(data) => serde_json::to_value(data),)* }
            }

            fn write_data(&self, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
                match self { $(Event::$kind(data) => canonical::write(data, out),)* }
            }

            fn decode_data(kind: EventKind, data: &[u8]) -> Result<Event, serde_json::Error> {
                let event = match kind { $(EventKind::$kind => serde_json::from_slice(data).map(Event::$kind),)* }?;
                event.check().map_err(<serde_json::Error as serde::de::Error>::custom)?;
                Ok(event)
            }
        }

        $(
            impl From<$kind> for Event {
                fn from(data: $kind) -> Event {
                    Event::$kind(data)
                }
            }
        )*
    };
}

events! {
    AgentRegistered = 1,
    AgentIdentitySet = 1,
    AgentSecretRotated = 1,
    AgentDisabled = 1,
    AgentEnabled = 1,
    AgentReviewed = 1,
    AgentPolicySet = 1,
    UserRegistered = 1,
    UserDeactivated = 1,
    UserReactivated = 1,
    ApiKeyIssued = 1,
    ApiKeyRevoked = 1,
    DelegationGranted = 1,
    DelegationRevoked = 1,
    SessionGrantCreated = 1,
    SessionGrantToggled = 1,
    SessionGrantRevoked = 1,
    TokenIssued = 1,
    TokenRevoked = 1,
    TokenExhausted = 1,
    OperationRecorded = 1,
    RefreshTokenIssued = 1,
    RefreshTokenRotated = 1,
    RefreshTokenReuseDetected = 1,
    SigningKeyRotated = 1,
    AdminTokenIssued = 1,
    CheckpointKeyPublished = 1,
    UserErased = 1,
    ServerRegistered = 1,
    ConnectionEstablished = 1,
    ConnectionRefreshed = 1,
    ConnectionRefreshFailed = 1,
    ConnectionDeleted = 1,
    ToolCallCompleted = 1,
    PolicySetAssigned = 1,
    ApprovalRequested = 1,
    ApprovalDecided = 1,
    ApprovalUsed = 1,
    ServerSecretRewrapped = 1,
    ConnectionRewrapped = 1,
    UserPasswordSet = 1,
    AuthorizationCodeIssued = 1,
    AuthorizationCodeRedeemed = 1,
    AuthorizationCodeReplayed = 1,
    RefreshTokenRevoked = 1,
    AdminTokenRevoked = 1,
    UpstreamRevocationCompleted = 1,
    SessionEnded = 1,
    SessionsEnded = 1,
    SignInFailuresDetected = 1,
}

/// Event bytes that are not a valid event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or not an object of `data`, `type` and `v`.
    #[error("event is not a JSON object of \"data\", \"type\" and \"v\": {0}")]
    Envelope(String),
    /// A `type` this vocabulary does not know.
    #[error("unknown event type `{0}`")]
    UnknownKind(String),
    /// A version newer than this reader knows.
    #[error("{kind} version {version} is newer than this reader (knows up to {known})")]
    UnsupportedVersion {
        /// The kind.
        kind: &'static str,
        /// The version found.
        version: u32,
        /// The newest version this reader knows.
        known: u32,
    },
    /// The payload does not match the kind's schema.
    #[error("{kind} payload does not match its schema: {message}")]
    Data {
        /// The kind.
        kind: &'static str,
        /// serde's account of what was wrong.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<'a> {
    #[serde(borrow)]
    data: &'a RawValue,
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    v: u32,
}

impl Event {
    /// Rules between a payload's members that its type cannot state; decoding refuses a
    /// payload that breaks them, so no reader meets one.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Event::SigningKeyRotated(rotation) => rotation.check(),
            Event::CheckpointKeyPublished(key) => key.check(),
            Event::UserRegistered(user) => user.check(),
            Event::TokenIssued(token) => token.check(),
            Event::ApprovalRequested(approval) => approval.arguments_sealed.check(),
            _ => Ok(()),
        }
    }

    /// The event's canonical bytes: exactly what is hashed, stored and exported.
    pub fn encode(&self) -> Result<Vec<u8>, CanonicalError> {
        let kind = self.kind();
        let mut out = Vec::with_capacity(512);
        // The envelope's members are already in canonical order: data, type, v.
        out.extend_from_slice(b"{\"data\":");
        self.write_data(&mut out)?;
        out.extend_from_slice(b",\"type\":");
        canonical::write(kind.name(), &mut out)?;
        out.extend_from_slice(b",\"v\":");
        canonical::write(&kind.version(), &mut out)?;
        out.push(b'}');
        Ok(out)
    }

    /// `encode` by way of a `serde_json::Value` tree: the plain statement of canonical
    /// form that the direct writer is tested against.
    #[cfg(test)]
    pub(crate) fn encode_via_value(&self) -> Result<Vec<u8>, CanonicalError> {
        let data = self
            .data_value()
            .map_err(|err| CanonicalError::NotJson(err.to_string()))?;
        let kind = self.kind();
        let envelope =
            serde_json::json!({ "data": data, "type": kind.name(), "v": kind.version() });
        let mut out = Vec::with_capacity(256);
        canonical::write_value(&envelope, &mut out)?;
        Ok(out)
    }

    /// Reads an event from its stored bytes, checking it against its kind's schema.
    pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
        if let Some(event) = Event::decode_canonical(bytes) {
            return Ok(event);
        }
        Event::decode_strict(bytes)
    }

    /// The fast path for bytes in canonical form, one parse of the payload. Canonical
    /// order puts `data` first and `type`, `v` last, so the bytes must read exactly
    /// `{"data":<payload>,"type":"<Kind>","v":<n>}`; the kind comes from that suffix and
    /// the payload is parsed once, straight into its type. Anything else (including every
    /// invalid event) returns `None` and goes through [`Event::decode_strict`], which
    /// also produces the error.
    pub(crate) fn decode_canonical(bytes: &[u8]) -> Option<Event> {
        let body = bytes.strip_prefix(b"{\"data\":")?.strip_suffix(b"}")?;
        let v_at = memrchr(body, b",\"v\":")?;
        let version_text = std::str::from_utf8(&body[v_at + 5..]).ok()?;
        let version: u32 = version_text.parse().ok()?;
        // `parse` takes "01" and "+1", which are not JSON numbers.
        if version.to_string() != version_text {
            return None;
        }
        let head = &body[..v_at];
        let kind_quote = head.strip_suffix(b"\"")?;
        let type_at = memrchr(kind_quote, b",\"type\":\"")?;
        let kind = EventKind::from_name(std::str::from_utf8(&kind_quote[type_at + 9..]).ok()?)?;
        if version != kind.version() {
            return None;
        }
        Event::decode_data(kind, &head[..type_at]).ok()
    }

    /// Decoding with the envelope parsed as JSON first: any member order, precise errors.
    pub(crate) fn decode_strict(bytes: &[u8]) -> Result<Event, DecodeError> {
        let envelope: Envelope<'_> =
            serde_json::from_slice(bytes).map_err(|err| DecodeError::Envelope(err.to_string()))?;
        let kind = EventKind::from_name(&envelope.kind)
            .ok_or_else(|| DecodeError::UnknownKind(envelope.kind.chars().take(64).collect()))?;
        // Every kind is at version 1: there is nothing to upcast yet. A kind that moves to
        // version 2 reads version-1 payloads here and converts them.
        if envelope.v == 0 || envelope.v > kind.version() {
            return Err(DecodeError::UnsupportedVersion {
                kind: kind.name(),
                version: envelope.v,
                known: kind.version(),
            });
        }
        Event::decode_data(kind, envelope.data.get().as_bytes()).map_err(|err| DecodeError::Data {
            kind: kind.name(),
            message: err.to_string(),
        })
    }
}

/// The position of the last occurrence of `needle` in `haystack`.
fn memrchr(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .rposition(|window| window == needle)
}

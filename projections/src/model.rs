//! The read models' rows: what the folds keep about each agent, person, key, delegation,
//! session grant, token, refresh token and signing key.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use writ_schemas::{
    AdminRole, AgentType, ApiKeyId, ClientId, DelegationId, Digest, FamilyId, GrantId, Jti, KeyId,
    PublicJwk, RefreshId, RevocationCause, Sealed, ServerId, SigningAlgorithm, Timestamp, UserId,
};

/// Where a snapshot or a state stands in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Head {
    /// Seq of the last record folded in (0: none).
    pub seq: u64,
    /// Its hash.
    pub hash: writ_schemas::Hash,
    /// Its timestamp (absent before the first record).
    pub ts: Option<Timestamp>,
}

/// Governance ceilings on an agent's tokens.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Ceilings {
    /// Longest token lifetime, in seconds.
    pub max_ttl_seconds: Option<u64>,
    /// Scopes a token may carry.
    pub allowed_scopes: Option<Vec<String>>,
    /// Audiences a token may name.
    pub allowed_audiences: Option<Vec<String>>,
    /// Deepest `act` chain.
    pub max_delegation_depth: Option<u32>,
    /// Most operations per token.
    pub max_operations: Option<u64>,
    /// Token requests per minute (the server's default when absent).
    pub token_requests_per_minute: Option<u32>,
}

/// An agent's inventory row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    /// Client id.
    pub client_id: ClientId,
    /// Display name.
    pub name: String,
    /// Accountable person.
    pub owner: Option<UserId>,
    /// Scopes it may ever be granted.
    pub scopes: Vec<String>,
    /// Grant types it may use.
    pub grant_types: Vec<String>,
    /// Exact redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Token endpoint authentication method.
    pub token_endpoint_auth_method: String,
    /// Keyed hash of the current secret.
    pub secret_hash: Option<Digest>,
    /// When the current secret stops being accepted (none: it does not expire).
    pub secret_expires_at: Option<Timestamp>,
    /// The previous secret's hash and until when it is still accepted: the rotation's
    /// grace, never beyond that secret's own expiry.
    pub previous_secret: Option<(Digest, Timestamp)>,
    /// The public keys of a `private_key_jwt` client: its registered `ClientJwks` as
    /// JSON text. Text, because postcard (the snapshots) is not self-describing and
    /// cannot carry the absence of a key's optional members.
    pub jwks: Option<String>,
    /// Acts for a person only under a delegation.
    pub require_consent: bool,
    /// How it runs.
    pub agent_type: AgentType,
    /// No token after this instant.
    pub expires_at: Option<Timestamp>,
    /// When it was registered.
    pub registered_at: Timestamp,
    /// Last token issued to it or operation recorded by it.
    pub last_used_at: Option<Timestamp>,
    /// Not disabled.
    pub enabled: bool,
    /// When it was last reviewed (none: it needs review).
    pub reviewed_at: Option<Timestamp>,
    /// Unresolved anomalies (refresh token reuse).
    pub open_anomalies: u32,
    /// Governance ceilings.
    pub ceilings: Ceilings,
}

/// An agent's status at an instant, as the inventory shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentStatus {
    /// May get tokens.
    Active,
    /// Past its expiry.
    Expired,
    /// Disabled by an admin.
    Disabled,
    /// Its owner is deactivated.
    Orphaned,
}

impl AgentStatus {
    /// The status as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Active => "active",
            AgentStatus::Expired => "expired",
            AgentStatus::Disabled => "disabled",
            AgentStatus::Orphaned => "orphaned",
        }
    }
}

/// A person's datum as the ledger holds it. Projections never decrypt: the key is held
/// outside the ledger, and the serving layer (`writ::people`) reads a sealed value with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Personal {
    /// In the clear, as recorded before sealing existed.
    Clear(String),
    /// Sealed under the person's key.
    Sealed(Sealed),
    /// The person was erased: whatever was recorded is no longer kept here.
    Erased,
}

/// A person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Id.
    pub user_id: UserId,
    /// Email, unique.
    pub email: Personal,
    /// Display name.
    pub name: Option<Personal>,
    /// Not deactivated.
    pub active: bool,
    /// Erased: their key is destroyed, and they cannot be reactivated.
    pub erased: bool,
    /// When registered.
    pub registered_at: Timestamp,
    /// Their sign-in password's argon2id hash (PHC string), once one is set.
    #[serde(default)]
    pub password_hash: Option<String>,
    /// Their session generation: a session cookie of an older one is refused. Starts at
    /// 0; each `SessionsEnded` sets it.
    pub session_generation: u64,
    /// Sessions of the current generation ended one by one (signed out), by session id,
    /// with when each would have lapsed anyway; at most [`SESSIONS_ENDED_KEPT_MAX`].
    pub sessions_ended: BTreeMap<String, Timestamp>,
    /// Runs of failed sign-ins recorded against them (`SignInFailuresDetected`).
    pub sign_in_anomalies: u32,
    /// When the last such run began.
    pub sign_in_anomaly_last_at: Option<Timestamp>,
}

/// Ended sessions a person's read model keeps one by one; a sign-out beyond it ends all
/// their sessions instead (a new generation), so the set stays bounded.
pub const SESSIONS_ENDED_KEPT_MAX: usize = 16;

/// A user API key (its hash only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// Id.
    pub key_id: ApiKeyId,
    /// The person it acts as.
    pub user_id: UserId,
    /// Keyed hash of the key.
    pub key_hash: Digest,
    /// When issued.
    pub issued_at: Timestamp,
    /// When revoked.
    pub revoked_at: Option<Timestamp>,
}

/// An administrator credential not revoked (its keyed hash is the key it is found by).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminCredential {
    /// Its id, which the records of its actions name.
    pub token_id: String,
    /// The name operators know it by, unique among credentials not revoked.
    pub name: String,
    /// What it may do.
    pub role: AdminRole,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it stops being accepted (`None`: never).
    pub expires_at: Option<Timestamp>,
}

impl AdminCredential {
    /// Whether it is accepted at `now` (it has not expired).
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

/// A person's delegation to an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegation {
    /// Id.
    pub delegation_id: DelegationId,
    /// The delegating person.
    pub user_id: UserId,
    /// The agent.
    pub client_id: ClientId,
    /// Delegated scopes (none: all of the agent's).
    pub scopes: Option<Vec<String>>,
    /// When it lapses.
    pub expires_at: Option<Timestamp>,
    /// When granted.
    pub granted_at: Timestamp,
    /// When revoked.
    pub revoked_at: Option<Timestamp>,
    /// Last token issued under it.
    pub last_used_at: Option<Timestamp>,
}

impl Delegation {
    /// In force at `now`: not revoked, not lapsed.
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|end| now < end)
    }

    /// Whether it delegates `scope` (one without a scope list delegates all the agent's).
    pub fn allows(&self, scope: &str) -> bool {
        self.scopes
            .as_ref()
            .is_none_or(|scopes| scopes.iter().any(|s| s == scope))
    }

    /// Whether it delegates every one of `scopes`.
    pub fn covers(&self, scopes: &[String]) -> bool {
        scopes.iter().all(|scope| self.allows(scope))
    }
}

/// An MCP server the gateway forwards tool calls to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Server {
    /// Id.
    pub server_id: ServerId,
    /// Its name.
    pub name: String,
    /// Its MCP streamable HTTP endpoint.
    pub url: String,
    /// How calls to it are authenticated (a client secret only wrapped).
    pub auth: writ_schemas::ServerAuth,
    /// When registered.
    pub registered_at: Timestamp,
}

/// A person's account at an MCP server's OAuth provider: their tokens there, wrapped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    /// The person.
    pub user_id: UserId,
    /// The server.
    pub server_id: ServerId,
    /// Their access token, wrapped.
    pub access_token: writ_schemas::Wrapped,
    /// Their refresh token, wrapped.
    pub refresh_token: Option<writ_schemas::Wrapped>,
    /// When the access token expires, if known.
    pub expires_at: Option<Timestamp>,
    /// Scopes granted upstream.
    pub scopes: Vec<String>,
    /// Tokens recorded so far (the establishment and each refresh): a refresh names the
    /// generation it was tried on.
    pub generation: u64,
    /// When connected.
    pub established_at: Timestamp,
    /// When last refreshed.
    pub refreshed_at: Option<Timestamp>,
    /// Refreshes that failed since the last success.
    pub refresh_failures: u64,
    /// Where it stands.
    pub status: ConnectionStatus,
}

/// Where a connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnectionStatus {
    /// Usable (its access token may still need a refresh).
    Active,
    /// The provider rejected its refresh token: the person must connect again.
    Broken,
    /// Deleted: its tokens are forgotten.
    Deleted,
}

impl Connection {
    /// Held: neither broken nor deleted.
    pub fn is_held(&self) -> bool {
        self.status == ConnectionStatus::Active
    }
}

/// Most attempts at revoking one upstream token at its provider; after the last one fails
/// writ gives up on it (the failures stay in the ledger). With the default backoff
/// (30 s, doubling) the eighth attempt comes about an hour after the first.
pub const UPSTREAM_REVOCATION_ATTEMPTS_MAX: u32 = 8;

/// The upstream tokens of a connection that ended (deleted, or its person erased) that
/// writ has yet to revoke at the provider (RFC 7009). Kept until each is revoked, found
/// not revocable, or out of attempts; then forgotten.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRevocation {
    /// The person whose connection it was.
    pub user_id: UserId,
    /// The server.
    pub server_id: ServerId,
    /// The connection's generation when it ended.
    pub generation: u64,
    /// When it ended.
    pub ended_at: Timestamp,
    /// The access token, while it is still to revoke.
    pub access_token: Option<PendingToken>,
    /// The refresh token, while it is still to revoke.
    pub refresh_token: Option<PendingToken>,
}

/// One upstream token still to revoke.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingToken {
    /// The token, wrapped as the connection held it.
    pub token: writ_schemas::Wrapped,
    /// Attempts that failed so far.
    pub attempts: u32,
    /// When the last failed attempt was recorded.
    pub last_attempt_at: Option<Timestamp>,
}

impl PendingRevocation {
    /// The token of that kind, while it is still to revoke.
    pub fn token(&self, kind: writ_schemas::UpstreamTokenKind) -> Option<&PendingToken> {
        match kind {
            writ_schemas::UpstreamTokenKind::AccessToken => self.access_token.as_ref(),
            writ_schemas::UpstreamTokenKind::RefreshToken => self.refresh_token.as_ref(),
        }
    }
}

/// A person's session with an MCP server lent to an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionGrant {
    /// Id.
    pub grant_id: GrantId,
    /// The agent.
    pub client_id: ClientId,
    /// The server.
    pub server_id: ServerId,
    /// Whose session.
    pub user_id: UserId,
    /// Usable by anyone acting through the agent.
    pub shared: bool,
    /// When created.
    pub created_at: Timestamp,
    /// When revoked.
    pub revoked_at: Option<Timestamp>,
}

/// An authorization code, and whether it was redeemed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationCode {
    /// As issued.
    pub issued: writ_schemas::AuthorizationCodeIssued,
    /// The access token it was redeemed for.
    pub redeemed: Option<Jti>,
    /// Presented again after its redemption.
    pub replayed: bool,
}

/// A critical tool call a supervised agent asked to make, and where its approval stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// What was asked, as recorded.
    pub request: writ_schemas::ApprovalRequested,
    /// When it was asked.
    pub requested_at: Timestamp,
    /// Where it stands.
    pub status: ApprovalStatus,
}

/// Where an approval stands. Expiry is not a status: it is read against `now`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApprovalStatus {
    /// Waiting for the approver.
    Pending,
    /// Approved, not yet used.
    Approved {
        /// When.
        at: Timestamp,
    },
    /// Denied.
    Denied {
        /// When.
        at: Timestamp,
    },
    /// Approved and used by one call.
    Used {
        /// When.
        at: Timestamp,
        /// The token that made the call.
        jti: Jti,
    },
}

impl ApprovalStatus {
    /// The status's name in the API: `pending`, `approved`, `denied` or `used`.
    pub fn name(&self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved { .. } => "approved",
            ApprovalStatus::Denied { .. } => "denied",
            ApprovalStatus::Used { .. } => "used",
        }
    }
}

impl Approval {
    /// Past its expiry at `now` without having been used.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        !matches!(
            self.status,
            ApprovalStatus::Used { .. } | ApprovalStatus::Denied { .. }
        ) && now >= self.request.expires_at
    }
}

/// Why a token is no longer usable, if it is not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenStatus {
    /// Usable until expiry.
    Live,
    /// Revoked, with the cause and when.
    Revoked {
        /// Why.
        #[serde(with = "as_json_text")]
        cause: RevocationCause,
        /// When.
        at: Timestamp,
    },
}

/// An access token's row: what introspection, the operations API and cascades read.
///
/// It mirrors [`writ_schemas::TokenIssued`] rather than embedding it: the event omits
/// absent optional members when serialized (canonical JSON has no `null`s), which a
/// snapshot's postcard encoding, having no field names, could not read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// `jti`.
    pub jti: Jti,
    /// BLAKE3 of the token's bytes.
    pub digest: Digest,
    /// Signing key.
    pub kid: KeyId,
    /// Grant type that produced it.
    pub grant_type: String,
    /// The agent holding it.
    pub client_id: ClientId,
    /// `sub`.
    pub subject: String,
    /// The person it acts for.
    pub user_id: Option<UserId>,
    /// `act` chain, outermost first.
    pub actors: Vec<ClientId>,
    /// Delegation it acts under.
    pub delegation_id: Option<DelegationId>,
    /// Token it was exchanged from.
    pub parent_jti: Option<Jti>,
    /// Tokens exchanged from it.
    pub children: Vec<Jti>,
    /// Refresh family.
    pub family_id: Option<FamilyId>,
    /// `aud`.
    pub audience: Vec<String>,
    /// Scopes.
    pub scopes: Vec<String>,
    /// `iat`.
    pub issued_at: Timestamp,
    /// `exp`.
    pub expires_at: Timestamp,
    /// How the agent runs.
    pub agent_type: AgentType,
    /// Task.
    pub task_id: Option<String>,
    /// Operation quota.
    pub max_operations: Option<u64>,
    /// Operations recorded so far.
    pub operations_used: u64,
    /// Revoked when the quota is used up.
    pub expires_on_completion: bool,
    /// Stated intent (sealed under the key of the person the token acts for, if any).
    pub intent_description: Option<Personal>,
    /// Live or revoked.
    pub status: TokenStatus,
    /// The quota was used up.
    pub exhausted: bool,
    /// Idempotency keys already used, with the operations remaining that use answered.
    pub idempotency: std::collections::BTreeMap<IdempotencyKey, Option<u64>>,
}

impl Token {
    /// Usable at `now`: not revoked, not expired.
    pub fn is_active(&self, now: Timestamp) -> bool {
        matches!(self.status, TokenStatus::Live) && now < self.expires_at
    }

    /// Operations left under the quota (none: no quota).
    pub fn operations_remaining(&self) -> Option<u64> {
        self.max_operations
            .map(|max| max.saturating_sub(self.operations_used))
    }

    /// The answer already given for an idempotency key, if the key was used.
    pub fn idempotent_answer(&self, key: &str) -> Option<Option<u64>> {
        self.idempotency.get(&IdempotencyKey::of(key)).copied()
    }

    /// The `act` chain's depth (0: the agent acts for itself; 1: for a person, directly).
    pub fn delegation_depth(&self) -> usize {
        self.actors.len()
    }
}

/// An idempotency key as the projection keeps it: the first 16 bytes of its BLAKE3.
/// Fixed-size keys sit inline in the map's nodes, so a token with many keys is looked up
/// without chasing a pointer per comparison; a collision needs ~2^64 keys on one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IdempotencyKey(pub [u8; 16]);

impl IdempotencyKey {
    /// The projection's form of the caller's key.
    pub fn of(key: &str) -> IdempotencyKey {
        let mut out = [0u8; 16];
        out.copy_from_slice(&blake3::hash(key.as_bytes()).as_bytes()[..16]);
        IdempotencyKey(out)
    }
}

/// A refresh token's row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshToken {
    /// Id.
    pub refresh_id: RefreshId,
    /// BLAKE3 of its bytes.
    pub digest: Digest,
    /// Family.
    pub family_id: FamilyId,
    /// Holder.
    pub client_id: ClientId,
    /// Person it acts for.
    pub user_id: Option<UserId>,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Lapses at.
    pub expires_at: Timestamp,
    /// Access token issued beside it.
    pub access_jti: Jti,
    /// Spent: replaced by this one.
    pub replaced_by: Option<RefreshId>,
}

/// A refresh family: one authorization's chain of rotations.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Family {
    /// Refresh tokens in rotation order.
    pub refresh_ids: Vec<RefreshId>,
    /// Access tokens issued in the family.
    pub access_jtis: Vec<Jti>,
    /// A spent token was reused; the family is dead.
    pub reuse_detected: bool,
    /// Its holder revoked it; the family is dead.
    #[serde(default)]
    pub revoked: bool,
}

impl Family {
    /// Whether its refresh tokens may still be spent.
    pub fn is_dead(&self) -> bool {
        self.reuse_detected || self.revoked
    }
}

/// A checkpoint key's public record, as its `CheckpointKeyPublished` carried it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointKey {
    /// The key name in signature lines.
    pub name: String,
    /// The Ed25519 public key, unpadded base64url.
    pub public_key: String,
    /// When it was published.
    pub published_at: Timestamp,
}

/// A signing key's public record, as its `SigningKeyRotated` carried it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKey {
    /// `kid`.
    pub kid: KeyId,
    /// Algorithm.
    pub alg: SigningAlgorithm,
    /// An Ed25519 key's public key (its JWK's `x`), unpadded base64url.
    pub public_key: Option<String>,
    /// An EC or RSA key's public JWK members. Internally tagged by `kty`, which postcard
    /// cannot read back: carried as JSON text.
    #[serde(with = "as_json_text")]
    pub jwk: Option<PublicJwk>,
    /// When it became current.
    pub activated_at: Timestamp,
}

/// Carries a value as its JSON text. The causes of revocation are internally tagged in
/// the ledger's JSON (`{"kind": ...}`), which postcard, having no self-description, cannot
/// read back; as text they round-trip through any format.
mod as_json_text {
    use serde::{Deserialize, Deserializer, Serialize, Serializer, de::DeserializeOwned};

    pub fn serialize<T: Serialize, S: Serializer>(
        value: &T,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let text = serde_json::to_string(value).map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(&text)
    }

    pub fn deserialize<'de, T: DeserializeOwned, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<T, D::Error> {
        let text = String::deserialize(deserializer)?;
        serde_json::from_str(&text).map_err(serde::de::Error::custom)
    }
}

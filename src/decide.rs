//! Commands and the decisions they lead to: `decide(&state, command, now)` is a pure
//! function from the current state to the events that record the outcome, or a refusal.
//!
//! Architecture Invariant: nothing here reads a clock, draws randomness or does I/O. Ids,
//! secrets' hashes and token digests arrive in the command; time arrives as `now`. The
//! sequencer can therefore replay a run decision for decision.

use writ_projections::{State, TokenStatus};
use writ_schemas::{
    Actor, AdminRole, AgentDisabled, AgentEnabled, AgentIdentitySet, AgentPolicySet,
    AgentRegistered, AgentReviewed, AgentSecretRotated, ApiKeyId, ApiKeyIssued, ApiKeyRevoked,
    CheckpointKeyPublished, ClientId, ConnectionEstablished, ConnectionRefreshFailed,
    ConnectionRefreshed, ConnectionRewrapped, DelegationGranted, DelegationId, DelegationRevoked,
    Digest, Event, GrantId, Jti, OperationRecorded, RevocationCause, Sealed, ServerId,
    ServerRegistered, ServerSecretRewrapped, SessionGrantCreated, SigningKeyRotated, Timestamp,
    TokenExhausted, TokenIssued, TokenRevoked, UserDeactivated, UserErased, UserId,
    UserReactivated, UserRegistered,
};

mod admin;
pub mod approvals;
mod authorization;
mod connections;
pub mod session_grants;
pub mod strictness;

pub use admin::{ADMIN_CREDENTIAL_NAME_CHARS_MAX, ADMIN_CREDENTIALS_MAX};
pub use approvals::ApprovalUse;
pub use authorization::Issued;

/// Most API keys a person may hold unrevoked: enough for a key per device or script,
/// few enough that a leaked admin token cannot mint keys without end.
pub const API_KEYS_PER_USER_MAX: usize = 20;
/// Most delegations a person may have in force (neither revoked nor lapsed) at once.
pub const DELEGATIONS_PER_USER_MAX: usize = 1000;
/// Deepest `act` chain (agents acting for a person, one delegating to the next) an agent
/// takes part in when its policy sets no `max_delegation_depth`: deep enough for an
/// orchestrator, a planner and a few tools under it, shallow enough that a chain stays
/// something a person can read in an audit trail. A policy may set 0 to 10.
pub const DELEGATION_DEPTH_DEFAULT: u32 = 5;

/// Something asked of the ledger.
#[derive(Debug, Clone)]
pub enum Command {
    /// Register a person. Their email and name arrive sealed under their key; the keyed
    /// hash of their email keeps emails unique (case-insensitively) without the email.
    RegisterUser {
        /// Their new id.
        user_id: UserId,
        /// Their email, sealed.
        email_sealed: Sealed,
        /// The keyed hash of their email's comparison form (`people::identity`).
        email_hash: Digest,
        /// The keyed hash of their email's TR39 skeleton: no one else live may have it.
        email_skeleton_hash: Digest,
        /// Their display name, sealed.
        name_sealed: Option<Sealed>,
        /// Who asks.
        by: Actor,
    },
    /// Erase a person (GDPR Art. 17): deactivate them with their tokens if they are
    /// active, and record that their key is to be destroyed.
    EraseUser {
        /// The person.
        user_id: UserId,
        /// Who asks.
        by: Actor,
    },
    /// Deactivate a person: their tokens, and everything derived from them, are revoked.
    DeactivateUser {
        /// The person.
        user_id: UserId,
        /// Who asks.
        by: Actor,
    },
    /// Reactivate a deactivated person (their revoked tokens stay revoked).
    ReactivateUser {
        /// The person.
        user_id: UserId,
        /// Who asks.
        by: Actor,
    },
    /// Record a person's new API key (its keyed hash; the key was shown once).
    IssueApiKey {
        /// Its id.
        key_id: ApiKeyId,
        /// The person it acts as.
        user_id: UserId,
        /// Its keyed hash.
        key_hash: Digest,
        /// Who asks.
        by: Actor,
    },
    /// Revoke an API key. A person may revoke only their own keys; an admin any.
    RevokeApiKey {
        /// The key.
        key_id: ApiKeyId,
        /// Who asks.
        by: Actor,
    },
    /// Let an agent act for a person, within some of its scopes, until some instant.
    GrantDelegation(DelegationGranted),
    /// Withdraw a delegation and revoke every token derived from it. Only the person who
    /// granted it, or an admin, may.
    RevokeDelegation {
        /// The delegation.
        delegation_id: DelegationId,
        /// Who asks.
        by: Actor,
    },
    /// Record a new admin credential (its keyed hash; the credential was shown once).
    IssueAdminToken {
        /// Its id.
        token_id: String,
        /// Its keyed hash.
        token_hash: Digest,
        /// Who asks.
        by: Actor,
        /// Only as the ledger's first admin credential (a node's first start): refused
        /// once the ledger has one, so that nodes starting together on a new ledger make one.
        first: bool,
        /// Its name, unique among credentials not revoked.
        name: String,
        /// What it may do.
        role: AdminRole,
        /// When it stops being accepted (`None`: never).
        expires_at: Option<Timestamp>,
    },
    /// Revoke an admin credential: refused from the next request on.
    RevokeAdminToken {
        /// Its id.
        token_id: String,
        /// Who asks.
        by: Actor,
    },
    /// Register an agent as described.
    RegisterAgent(AgentRegistered),
    /// Set (or clear) an agent's accountable owner and expiry.
    SetAgentIdentity(AgentIdentitySet),
    /// Attest that someone reviewed an agent.
    ReviewAgent(AgentReviewed),
    /// Replace an agent's secret; the previous one stays valid until the given instant.
    RotateAgentSecret(AgentSecretRotated),
    /// Disable an agent: no new tokens, and every token it holds or acted in is revoked.
    DisableAgent {
        /// The agent.
        client_id: ClientId,
        /// Who asks.
        by: Actor,
    },
    /// Enable a disabled agent (tokens revoked when it was disabled stay revoked).
    EnableAgent {
        /// The agent.
        client_id: ClientId,
        /// Who asks.
        by: Actor,
    },
    /// Set an agent's governance ceilings.
    SetAgentPolicy(AgentPolicySet),
    /// Replace an agent's or a person's Cedar policy set (already validated).
    AssignPolicySet(writ_schemas::PolicySetAssigned),
    /// Make a new signing key current (its private part is already stored).
    RotateSigningKey(SigningKeyRotated),
    /// Publish the key that signs checkpoints (its private part is already stored).
    PublishCheckpointKey(CheckpointKeyPublished),
    /// Record a token that was just signed (it is handed out only once this is durable).
    IssueToken(TokenIssued),
    /// Record one use of a token, enforcing its operation quota exactly.
    RecordOperation {
        /// Digest of the token's bytes.
        digest: Digest,
        /// What was done.
        operation: String,
        /// What it was done to.
        resource: Option<String>,
        /// The caller's retry key.
        idempotency_key: Option<String>,
        /// The approval a critical tool call is made under, spent with this operation.
        approval: Option<ApprovalUse>,
    },
    /// Set a person's sign-in password (its argon2id hash): an admin, or the person.
    SetPassword {
        /// The person.
        user_id: UserId,
        /// The PHC string.
        password_hash: String,
        /// Who.
        by: Actor,
    },
    /// End one of a person's sign-in sessions (they signed out).
    EndSession {
        /// The person.
        user_id: UserId,
        /// The session's id, from its cookie.
        session_id: String,
        /// When its cookie lapses by itself.
        expires_at: Timestamp,
    },
    /// End every sign-in session of a person ("sign out everywhere"): the person or an
    /// admin.
    EndSessions {
        /// The person.
        user_id: UserId,
        /// Who.
        by: Actor,
    },
    /// Record that sign-ins to a person's account kept failing (the sign-in throttle's
    /// threshold was reached).
    RecordSignInFailures {
        /// The person.
        user_id: UserId,
        /// Failures counted.
        failures: u32,
        /// When the first of them failed.
        first_failure_at: Timestamp,
    },
    /// Issue an authorization code under the person's delegation (their consent).
    IssueCode(writ_schemas::AuthorizationCodeIssued),
    /// Redeem an authorization code for an access token and a refresh token.
    RedeemCode {
        /// Digest of the code's bytes.
        digest: Digest,
        /// The authenticated client redeeming it.
        client_id: ClientId,
        /// What it is redeemed for (none: it was seen spent, and only a replay is left
        /// to record).
        issued: Option<Box<Issued>>,
    },
    /// Spend a refresh token for a new access token and the refresh token replacing it.
    Refresh {
        /// Digest of the refresh token's bytes.
        digest: Digest,
        /// The authenticated client presenting it.
        client_id: ClientId,
        /// What it is spent for (none: it was seen spent, and only a reuse is left to
        /// record).
        issued: Option<Box<Issued>>,
    },
    /// Revoke a refresh token its holder presents (RFC 7009), and its family.
    RevokeRefreshToken {
        /// Digest of the refresh token's bytes.
        digest: Digest,
        /// The authenticated client.
        client_id: ClientId,
    },
    /// Ask the approver of a supervised agent's critical tool call to decide it.
    RequestApproval(writ_schemas::ApprovalRequested),
    /// Approve or deny a critical tool call (its approver only).
    DecideApproval {
        /// The approval.
        approval_id: String,
        /// What was decided.
        decision: writ_schemas::ApprovalDecision,
        /// Who decided.
        by: Actor,
    },
    /// Register an MCP server with the gateway (an admin).
    RegisterServer(ServerRegistered),
    /// Record a person's new connection to a server's OAuth provider.
    EstablishConnection(ConnectionEstablished),
    /// Record a connection's refreshed tokens.
    RefreshConnection(ConnectionRefreshed),
    /// Record that refreshing a connection failed.
    FailConnectionRefresh(ConnectionRefreshFailed),
    /// Record a connection's tokens wrapped again under the current key-encryption key.
    RewrapConnection(ConnectionRewrapped),
    /// Record a server's OAuth client secret wrapped again under the current
    /// key-encryption key.
    RewrapServerSecret(ServerSecretRewrapped),
    /// Delete a person's connection (the person, or an admin).
    DeleteConnection {
        /// The person.
        user_id: UserId,
        /// The server.
        server_id: ServerId,
        /// Who asks.
        by: Actor,
    },
    /// Record what came of revoking an ended connection's upstream token at the provider.
    RecordUpstreamRevocation(writ_schemas::UpstreamRevocationCompleted),
    /// Lend the calling person's upstream session to an agent (`shared`: to everyone
    /// acting through it). See `session_grants`.
    CreateSessionGrant(SessionGrantCreated),
    /// Flip the calling person's grant to the agent for the server between personal and
    /// shared.
    ToggleSessionGrant {
        /// The agent.
        client_id: ClientId,
        /// The server.
        server_id: ServerId,
        /// Who asks (the person whose grant it is).
        by: Actor,
    },
    /// Revoke a session grant (the delegation stays).
    RevokeSessionGrant {
        /// The grant.
        grant_id: GrantId,
        /// Who asks (the person whose session it is, or an admin).
        by: Actor,
    },
    /// Record how a tool call forwarded through the gateway ended.
    RecordToolCall(writ_schemas::ToolCallCompleted),
    /// Revoke a token and everything derived from it.
    RevokeToken {
        /// The token.
        jti: Jti,
        /// Who asks.
        by: Actor,
    },
}

/// What a command's success tells the caller besides "done".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Nothing more.
    Done,
    /// After recording an operation.
    Operation {
        /// Operations left (none: no quota).
        operations_remaining: Option<u64>,
        /// The token can still be used.
        active: bool,
    },
    /// After a revocation: how many tokens it ended.
    Revoked {
        /// Tokens revoked by this command (0 when already revoked or unknown).
        tokens: usize,
    },
    /// A spent authorization code or refresh token was presented again: the replay is
    /// recorded and the tokens issued from it revoked; the request itself is refused.
    Replayed {
        /// Tokens revoked.
        tokens: usize,
    },
}

/// Why a command was refused. Each refusal names what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A user id already in use.
    #[error("user {0} already exists")]
    UserExists(UserId),
    /// An email already in use (not repeated here: errors and logs carry no email).
    #[error("a user with that email already exists")]
    EmailTaken,
    /// An email that can be mistaken for a live person's (the same Unicode TR39 skeleton);
    /// the other person's id is named (registering is an admin's), their email is not.
    #[error(
        "the email looks like the email of user {0} (the same Unicode TR39 skeleton: characters that can be mistaken for one another, such as Cyrillic and Latin letters, `rn` and `m`, or a letter with and without an accent); register an address that cannot be confused with theirs"
    )]
    EmailLooksTaken(UserId),
    /// A person who was erased: nothing can be done for them any more.
    #[error("user {0} was erased")]
    UserErased(UserId),
    /// A client id already in use.
    #[error("agent {0} already exists")]
    AgentExists(String),
    /// A person who is not registered.
    #[error("user {0} is not registered")]
    UnknownUser(UserId),
    /// Deactivating a deactivated person, or reactivating an active one.
    #[error("user {0} is already {1}")]
    UserAlready(UserId, &'static str),
    /// A person who is deactivated.
    #[error("user {0} is deactivated; reactivate them first")]
    UserDeactivated(UserId),
    /// An API key id or hash already recorded.
    #[error("API key {0} already exists")]
    ApiKeyExists(ApiKeyId),
    /// An API key writ does not know.
    #[error("API key {0} does not exist")]
    UnknownApiKey(ApiKeyId),
    /// Revoking a revoked API key.
    #[error("API key {0} is already revoked")]
    ApiKeyRevoked(ApiKeyId),
    /// A person setting a policy set that is not theirs.
    #[error(
        "only an admin (or, for a person's own set, that person) may set the policy set of {0}"
    )]
    NotPolicyOwner(String),
    /// A person acting on another person's API key.
    #[error("API key {0} belongs to another person; only they or an admin may revoke it")]
    NotKeyHolder(ApiKeyId),
    /// A person holding as many unrevoked API keys as they may.
    #[error(
        "user {0} already holds {1} unrevoked API keys, the most a person may; revoke one first"
    )]
    TooManyApiKeys(UserId, usize),
    /// A person with as many delegations in force as they may have.
    #[error(
        "user {0} already has {1} delegations in force, the most a person may; revoke one first"
    )]
    TooManyDelegations(UserId, usize),
    /// A delegation id already recorded.
    #[error("delegation {0} already exists")]
    DelegationExists(DelegationId),
    /// A delegation writ does not know.
    #[error("delegation {0} does not exist")]
    UnknownDelegation(DelegationId),
    /// Revoking a revoked delegation.
    #[error("delegation {0} is already revoked")]
    DelegationAlreadyRevoked(DelegationId),
    /// A person acting on a delegation someone else granted.
    #[error("delegation {0} was granted by another person; only they or an admin may revoke it")]
    NotDelegator(DelegationId),
    /// A delegation only a person can grant, asked by someone else.
    #[error("only a person can delegate: call with their API key (`x-api-key: wrt_...`)")]
    NotAPerson,
    /// Delegated scopes the agent does not hold.
    #[error("agent {0} does not hold the scopes {1:?}; delegate only scopes it holds")]
    ScopesNotHeld(ClientId, Vec<String>),
    /// A delegation naming an empty list of scopes.
    #[error(
        "a delegation names at least one scope; leave `scopes` out to delegate all the agent's scopes"
    )]
    NoScopes,
    /// An instant that should be in the future and is not.
    #[error("{0} is not in the future")]
    NotInFuture(Timestamp),
    /// An admin token whose hash is already recorded.
    #[error("that admin token already exists")]
    AdminTokenExists,
    /// A first start's admin token on a ledger that has one (another node started first).
    #[error(
        "the ledger already has an admin token; use it, or create another with `writ admin token create`"
    )]
    NotFirstAdminToken,
    /// An admin credential name that breaks the naming rules (the detail says which).
    #[error("{0}")]
    BadAdminCredentialName(String),
    /// An admin credential name a credential not revoked already has.
    #[error("an admin credential named {0:?} exists; pick another name, or revoke that one first")]
    AdminCredentialNameTaken(String),
    /// More admin credentials than the ledger keeps unrevoked.
    #[error(
        "there are {0} admin credentials not revoked, the most writ keeps; revoke one you no longer use (`DELETE /api/v1/admin/credentials/{{id}}`)"
    )]
    TooManyAdminCredentials(usize),
    /// An admin credential id writ does not know, or one already revoked.
    #[error("no admin credential {0} (unknown, or already revoked)")]
    UnknownAdminCredential(String),
    /// Revoking the last live `admin` credential, which would leave nobody able to manage
    /// writ through its API.
    #[error(
        "admin credential {0} is the last live one with role admin; create another admin credential first, then revoke this one"
    )]
    LastAdminCredential(String),
    /// Managing admin credentials as someone other than an admin or writ itself.
    #[error("only an admin credential manages admin credentials")]
    NotAdmin,
    /// An admin credential revoked or expired while its request was on its way.
    #[error("admin credential {0} is revoked or expired")]
    AdminCredentialNotLive(String),
    /// A credential whose role does not allow the command.
    #[error("admin credential {0} has role {1}, which only reads; this needs role admin")]
    InsufficientRole(String, AdminRole),
    /// A signing key id already recorded.
    #[error("signing key {0} already exists")]
    DuplicateKey(String),
    /// A signing key whose public members do not fit its algorithm.
    #[error("the signing key does not fit its algorithm: {0}")]
    BadSigningKey(String),
    /// A checkpoint key whose name or public key cannot be used in a signed note.
    #[error("the checkpoint key cannot be published: {0}")]
    BadCheckpointKey(String),
    /// A rotation that names as its predecessor a key that is no longer current.
    #[error("the signing key changed meanwhile (now {0}); rotate again")]
    KeyRotatedMeanwhile(String),
    /// Disabling a disabled agent, or enabling an enabled one.
    #[error("agent {0} is already {1}")]
    AgentAlready(String, &'static str),
    /// An owner that is not a registered user.
    #[error("owner {0} is not a registered user")]
    UnknownOwner(UserId),
    /// An agent that does not exist.
    #[error("agent {0} is not registered")]
    UnknownAgent(String),
    /// A disabled agent.
    #[error("agent {0} is disabled")]
    AgentDisabled(String),
    /// An agent past its expiry.
    #[error("agent {0} expired at {1}")]
    AgentExpired(String, Timestamp),
    /// A person who does not exist or is deactivated.
    #[error("user {0} is unknown or deactivated")]
    UserInactive(UserId),
    /// A jti or token digest already recorded.
    #[error("token {0} was already issued")]
    DuplicateToken(Jti),
    /// A secret rotation for an agent that authenticates by key and holds no secret.
    #[error("agent {0} authenticates with private_key_jwt and holds no secret to rotate")]
    AgentHoldsNoSecret(ClientId),
    /// A registration whose authentication method and credentials disagree.
    #[error("{0}")]
    BadAgentCredentials(String),
    /// A client assertion whose `jti` this client already spent on a token.
    #[error("the client assertion was already used; sign a new one with a fresh jti")]
    AssertionReplayed(ClientId),
    /// A parent token that is not live.
    #[error("parent token {0} is revoked, expired or unknown")]
    ParentInactive(Jti),
    /// A token whose `act` chain would be deeper than an agent in it allows.
    #[error(
        "the delegation chain would be {depth} agents deep, and agent {client_id} allows at most {ceiling} (its policy's max_delegation_depth; {DELEGATION_DEPTH_DEFAULT} when unset)"
    )]
    TooDeep {
        /// The chain's depth with the new actor.
        depth: usize,
        /// The agent whose ceiling it exceeds.
        client_id: ClientId,
        /// That agent's ceiling.
        ceiling: u32,
    },
    /// A token derived from another that does not stay within it (scopes, expiry,
    /// audience, operations, or the person, delegation and chain it acts in).
    #[error("the token would exceed parent token {0}: {1}")]
    ExceedsParent(Jti, String),
    /// A token laxer than the agent it is issued to is registered (`strictness`).
    #[error(
        "agent {0} is registered {ty}, so its tokens are {ty}: ask for agent_type={ty} or leave agent_type out",
        ty = strictness::name(*.1)
    )]
    LaxerThanAgent(ClientId, writ_schemas::AgentType),
    /// A client revoking a token that was issued to another client (RFC 7009 §2.1).
    #[error(
        "the token was not issued to client {0}: a client may revoke only its own tokens (RFC 7009 §2.1); the token stays active"
    )]
    NotTokenHolder(ClientId),
    /// A token whose `act` chain does not begin with the agent that holds it.
    #[error("the token's act chain must begin with its holder {0}")]
    ChainNotHeld(ClientId),
    /// A token whose expiry is not after its issue time.
    #[error("a token must expire after it is issued")]
    BadLifetime,
    /// An on-behalf-of token whose delegation is unknown, revoked, lapsed, or granted by
    /// another person or to another agent.
    #[error("delegation {0} is not in force for this person and agent")]
    DelegationInactive(DelegationId),
    /// An on-behalf-of token with a scope its delegation does not give.
    #[error("scope `{1}` is outside delegation {0}")]
    ScopeNotDelegated(DelegationId, String),
    /// A token that would outlive the agent holding it.
    #[error("the token would outlive agent {0}, which expires at {1}")]
    OutlivesAgent(ClientId, Timestamp),
    /// An on-behalf-of token that would outlive its delegation.
    #[error("the token would outlive delegation {0}, which lapses at {1}")]
    OutlivesDelegation(DelegationId, Timestamp),
    /// A token writ does not know.
    #[error("the token is not one writ issued")]
    UnknownToken,
    /// A token revoked or past expiry.
    #[error("the token is revoked or expired")]
    TokenInactive,
    /// A token with no operations left.
    #[error("the token's operation quota is used up")]
    QuotaExhausted,
    /// A server id already registered.
    #[error("server {0} already exists")]
    ServerExists(ServerId),
    /// A server writ does not know.
    #[error("no MCP server `{0}` is registered")]
    UnknownServer(ServerId),
    /// A connection the person does not hold (or an admin asked about no such one).
    #[error(
        "no connection to server {0} is held; connect first (GET /api/v1/connections/{0}/start)"
    )]
    UnknownConnection(ServerId),
    /// A connection to a server that needs none.
    #[error("server {0} takes no credential (`auth: none`): there is nothing to connect")]
    ServerNeedsNoConnection(ServerId),
    /// A refresh decided on a connection that another refresh has since replaced.
    #[error("the connection to server {0} was refreshed meanwhile")]
    ConnectionMovedOn(ServerId),
    /// A re-wrap of a connection that carries a refresh token the connection does not
    /// hold, or leaves out one it does.
    #[error("a re-wrap of the connection to server {0} must carry exactly the tokens it holds")]
    RewrapMismatch(ServerId),
    /// A re-wrap of the client secret of a server that holds none.
    #[error("server {0} holds no OAuth client secret to re-wrap")]
    ServerHoldsNoSecret(ServerId),
    /// A revocation outcome for an upstream token that is not waiting for one (revoked,
    /// given up on, or this attempt recorded already, by another node).
    #[error("the {1} of the ended connection to server {0} is not waiting for this attempt")]
    RevocationSettled(ServerId, &'static str),
    /// A session grant id already recorded.
    #[error("session grant {0} already exists")]
    SessionGrantExists(GrantId),
    /// A person lending their session again to the same agent for the same server.
    #[error(
        "you already lend this session to the agent as grant {0}; toggle it or revoke it instead"
    )]
    SessionGrantHeld(GrantId),
    /// A person with as many unrevoked session grants as they may have.
    #[error("user {0} already has {1} session grants, the most a person may; revoke one first")]
    TooManySessionGrants(UserId, usize),
    /// Toggling a grant the person does not have.
    #[error(
        "you lend no session to agent {0} for server {1}; create a grant first (POST /api/v1/agents/{0}/session-grants)"
    )]
    NoSessionGrant(ClientId, ServerId),
    /// A session grant that does not exist, or is another person's.
    #[error("session grant {0} does not exist, or is not yours")]
    UnknownSessionGrant(GrantId),
    /// Revoking a revoked session grant.
    #[error("session grant {0} is already revoked")]
    SessionGrantRevoked(GrantId),
    /// Lending a session to an upstream server the person holds no connection to.
    #[error(
        "you hold no connection to server {0}; connect first (GET /api/v1/connections/{0}/start)"
    )]
    NoConnection(ServerId),
    /// An authorization code id or digest already recorded.
    #[error("the authorization code already exists")]
    DuplicateCode,
    /// A code writ did not issue, or issued to another client.
    #[error("the authorization code is not one writ issued to this client")]
    UnknownCode,
    /// A code past its 60 seconds.
    #[error("the authorization code has expired; send the person through /oauth/authorize again")]
    CodeExpired,
    /// A refresh token writ did not issue, or issued to another client.
    #[error("the refresh token is not one writ issued to this client")]
    UnknownRefreshToken,
    /// A refresh token of a family revoked after a reuse or a replay.
    #[error("the refresh token's family was revoked; the person must authorize the agent again")]
    RefreshFamilyRevoked,
    /// A refresh token past its lifetime.
    #[error("the refresh token has expired; the person must authorize the agent again")]
    RefreshExpired,
    /// A refresh asking for a scope the refresh token does not carry.
    #[error("scope `{0}` is not among the refresh token's; a refresh may only narrow")]
    ScopeBeyondRefresh(String),
    /// An approval id already recorded.
    #[error("approval {0} already exists")]
    ApprovalExists(String),
    /// A critical call by an agent nobody can approve for (its own token, and no owner).
    #[error(
        "agent {0} acts for no one and has no active owner, so nobody can approve its critical calls"
    )]
    NoApprover(String),
    /// An approval asked of someone other than the person the token acts for (else its
    /// agent's owner), or recorded for another agent or person than the token's.
    #[error(
        "approval {0} must be asked of user {1} for the token's own agent and person: the person it acts for, else the agent's owner"
    )]
    WrongApprover(String, UserId),
    /// An approval that does not exist, or is not this agent's for this person.
    #[error("approval {0} does not exist, or is not for this agent and person")]
    UnknownApproval(String),
    /// Deciding an approval that is someone else's to decide.
    #[error("approval {0} is not yours to decide: only the person it was asked of may")]
    NotApprover(String),
    /// Deciding or using an approval past its expiry.
    #[error("approval {0} has lapsed; make the call again to ask for a new one")]
    ApprovalExpired(String),
    /// Deciding an approval already decided, or using one already used.
    #[error("approval {0} is already {1}")]
    ApprovalSettled(String, &'static str),
    /// Presenting an approval for another call than the one approved.
    #[error(
        "approval {0} was asked for another tool or other arguments; make the call again as approved, or without it to ask anew"
    )]
    ApprovalMismatch(String),
    /// Presenting an approval the approver has not decided yet.
    #[error("approval {0} is still waiting for its approver")]
    ApprovalPending(String),
    /// Presenting an approval the approver denied.
    #[error("approval {0} was denied")]
    ApprovalDenied(String),
    /// A tool call for which no person's session is lent to the agent.
    #[error("No credentials available for this server")]
    NoCredentials(ServerId),
    /// An event too large to store.
    #[error("the event is {0} bytes; the ledger stores events of at most {1} bytes")]
    EventTooLarge(usize, usize),
    /// A command whose events together exceed what one append may carry.
    #[error("the command's events take {0} bytes; one append carries at most {1} bytes")]
    TooLargeToAppend(usize, usize),
    /// An event with no canonical encoding (a bug in the caller, refused rather than stored).
    #[error("the event cannot be encoded canonically: {0}")]
    Unencodable(String),
}

impl Command {
    /// A registration with stand-in seals (decisions never open them) and the plain BLAKE3
    /// of the lowercased email as its hash, for tests of decisions and the ledger.
    #[cfg(test)]
    pub(crate) fn test_registration(user_id: UserId, email: &str) -> Command {
        let sealed = Sealed {
            nonce: "AAAAAAAAAAAAAAAA".into(),
            ciphertext: "AAAAAAAAAAAAAAAAAAAAAA".into(),
        };
        Command::RegisterUser {
            user_id,
            email_sealed: sealed,
            email_hash: Digest::of(email.to_ascii_lowercase().as_bytes()),
            email_skeleton_hash: Digest::of(
                format!("skeleton {}", email.to_ascii_lowercase()).as_bytes(),
            ),
            name_sealed: None,
            by: Actor::System,
        }
    }
}

/// Decides `command` against `state` at `now`.
pub fn decide(
    state: &State,
    command: &Command,
    now: Timestamp,
) -> Result<(Vec<Event>, Answer), Refusal> {
    match command {
        Command::RegisterUser {
            user_id,
            email_sealed,
            email_hash,
            email_skeleton_hash,
            name_sealed,
            by,
        } => {
            if state.user(user_id).is_some() {
                return Err(Refusal::UserExists(user_id.clone()));
            }
            if state.user_by_email_hash(email_hash).is_some() {
                return Err(Refusal::EmailTaken);
            }
            // Decided here, not only in the handler: two look-alikes registered at once
            // are in one batch, and the second sees the first.
            if let Some(existing) = state.user_by_email_skeleton(email_skeleton_hash) {
                return Err(Refusal::EmailLooksTaken(existing.user_id.clone()));
            }
            let event = UserRegistered {
                user_id: user_id.clone(),
                email: None,
                name: None,
                email_sealed: Some(email_sealed.clone()),
                email_hash: Some(*email_hash),
                email_skeleton_hash: Some(*email_skeleton_hash),
                name_sealed: name_sealed.clone(),
                by: by.clone(),
            };
            Ok((vec![event.into()], Answer::Done))
        }
        Command::DeactivateUser { user_id, by } => deactivate_user(state, user_id, by),
        Command::EraseUser { user_id, by } => erase_user(state, user_id, by),
        Command::ReactivateUser { user_id, by } => {
            match state.user(user_id) {
                None => return Err(Refusal::UnknownUser(user_id.clone())),
                Some(user) if user.erased => return Err(Refusal::UserErased(user_id.clone())),
                Some(user) if user.active => {
                    return Err(Refusal::UserAlready(user_id.clone(), "active"));
                }
                Some(_) => {}
            }
            let event = UserReactivated {
                user_id: user_id.clone(),
                by: by.clone(),
            };
            Ok((vec![event.into()], Answer::Done))
        }
        Command::IssueApiKey {
            key_id,
            user_id,
            key_hash,
            by,
        } => issue_api_key(state, key_id, user_id, key_hash, by),
        Command::RevokeApiKey { key_id, by } => revoke_api_key(state, key_id, by),
        Command::GrantDelegation(grant) => grant_delegation(state, grant, now),
        Command::EstablishConnection(c) => connections::establish(state, c),
        Command::RefreshConnection(r) => connections::refreshed(state, r),
        Command::FailConnectionRefresh(f) => connections::refresh_failed(state, f),
        Command::RewrapConnection(r) => connections::rewrapped(state, r),
        Command::RewrapServerSecret(r) => connections::server_secret_rewrapped(state, r),
        Command::DeleteConnection {
            user_id,
            server_id,
            by,
        } => connections::delete(state, user_id, server_id, by),
        Command::RecordUpstreamRevocation(r) => connections::revocation_recorded(state, r),
        Command::RegisterServer(server) => session_grants::register_server(state, server),
        Command::CreateSessionGrant(grant) => session_grants::create(state, grant, now),
        Command::ToggleSessionGrant {
            client_id,
            server_id,
            by,
        } => session_grants::toggle(state, client_id, server_id, by, now),
        Command::RevokeSessionGrant { grant_id, by } => session_grants::revoke(state, grant_id, by),
        Command::RevokeDelegation { delegation_id, by } => {
            revoke_delegation(state, delegation_id, by)
        }
        Command::IssueAdminToken {
            token_id,
            token_hash,
            by,
            first,
            name,
            role,
            expires_at,
        } => {
            let asked = admin::Issue {
                token_id,
                token_hash,
                by,
                first: *first,
                name,
                role: *role,
                expires_at: *expires_at,
            };
            admin::issue(state, asked, now)
        }
        Command::RevokeAdminToken { token_id, by } => admin::revoke(state, token_id, by, now),
        Command::SetAgentIdentity(identity) => {
            known_agent(state, &identity.client_id)?;
            if let Some(owner) = identity
                .owner
                .as_ref()
                .filter(|owner| state.user(owner).is_none())
            {
                return Err(Refusal::UnknownOwner(owner.clone()));
            }
            Ok((vec![identity.clone().into()], Answer::Done))
        }
        Command::ReviewAgent(review) => {
            known_agent(state, &review.client_id)?;
            Ok((vec![review.clone().into()], Answer::Done))
        }
        Command::RotateAgentSecret(rotation) => {
            if known_agent(state, &rotation.client_id)?.jwks.is_some() {
                return Err(Refusal::AgentHoldsNoSecret(rotation.client_id.clone()));
            }
            if let Some(end) = rotation.secret_expires_at.filter(|end| *end <= now) {
                return Err(Refusal::NotInFuture(end));
            }
            Ok((vec![rotation.clone().into()], Answer::Done))
        }
        Command::PublishCheckpointKey(key) => {
            key.check().map_err(Refusal::BadCheckpointKey)?;
            // Nodes sharing one checkpoint key each make sure it is published: once is enough.
            if state
                .checkpoint_keys()
                .last()
                .is_some_and(|last| last.name == key.name && last.public_key == key.public_key)
            {
                return Ok((Vec::new(), Answer::Done));
            }
            Ok((vec![key.clone().into()], Answer::Done))
        }
        Command::RotateSigningKey(rotation) => {
            if state
                .signing_keys()
                .iter()
                .any(|key| key.kid == rotation.kid)
            {
                return Err(Refusal::DuplicateKey(rotation.kid.to_string()));
            }
            rotation.check().map_err(Refusal::BadSigningKey)?;
            // A rotation names the key it replaces; if another rotation landed first, this
            // one was decided on a key that is no longer current.
            let current = state.signing_keys().last().map(|key| &key.kid);
            if rotation.previous_kid.as_ref() != current {
                return Err(Refusal::KeyRotatedMeanwhile(
                    current.map(ToString::to_string).unwrap_or_default(),
                ));
            }
            Ok((vec![rotation.clone().into()], Answer::Done))
        }
        Command::AssignPolicySet(e) => Ok((policy::assign(state, e)?, Answer::Done)),
        Command::SetAgentPolicy(policy) => {
            known_agent(state, &policy.client_id)?;
            Ok((vec![policy.clone().into()], Answer::Done))
        }
        Command::DisableAgent { client_id, by } => {
            if !known_agent(state, client_id)?.enabled {
                return Err(Refusal::AgentAlready(client_id.to_string(), "disabled"));
            }
            let mut events: Vec<Event> = vec![
                AgentDisabled {
                    client_id: client_id.clone(),
                    by: by.clone(),
                }
                .into(),
            ];
            events.extend(revoke_all(
                state,
                state.tokens_of_agent(client_id),
                |token| {
                    (token.client_id == *client_id || token.actors.contains(client_id)).then(|| {
                        RevocationCause::AgentDisabled {
                            client_id: client_id.clone(),
                        }
                    })
                },
            ));
            let tokens = events.len() - 1;
            Ok((events, Answer::Revoked { tokens }))
        }
        Command::EnableAgent { client_id, by } => {
            if known_agent(state, client_id)?.enabled {
                return Err(Refusal::AgentAlready(client_id.to_string(), "enabled"));
            }
            Ok((
                vec![
                    AgentEnabled {
                        client_id: client_id.clone(),
                        by: by.clone(),
                    }
                    .into(),
                ],
                Answer::Done,
            ))
        }
        Command::RegisterAgent(agent) => {
            if state.agent(&agent.client_id).is_some() {
                return Err(Refusal::AgentExists(agent.client_id.to_string()));
            }
            if let Some(owner) = agent
                .owner
                .as_ref()
                .filter(|owner| state.user(owner).is_none())
            {
                return Err(Refusal::UnknownOwner(owner.clone()));
            }
            agent_credentials_agree(agent)?;
            if let Some(end) = agent.secret_expires_at.filter(|end| *end <= now) {
                return Err(Refusal::NotInFuture(end));
            }
            Ok((vec![agent.clone().into()], Answer::Done))
        }
        Command::IssueToken(token) => issue_token(state, token, now),
        Command::RecordOperation {
            digest,
            operation,
            resource,
            idempotency_key,
            approval,
        } => record_operation(
            state,
            digest,
            Operation {
                operation,
                resource,
                idempotency_key,
                approval: approval.as_ref(),
            },
            now,
        ),
        Command::RequestApproval(request) => approvals::request(state, request, now),
        Command::SetPassword {
            user_id,
            password_hash,
            by,
        } => authorization::set_password(state, user_id, password_hash, by),
        Command::EndSession {
            user_id,
            session_id,
            expires_at,
        } => authorization::end_session(state, user_id, session_id, *expires_at, now),
        Command::EndSessions { user_id, by } => authorization::end_sessions(
            state,
            user_id,
            writ_schemas::SessionsEndedReason::SignOutEverywhere,
            by,
        ),
        Command::RecordSignInFailures {
            user_id,
            failures,
            first_failure_at,
        } => authorization::sign_in_failures(state, user_id, *failures, *first_failure_at),
        Command::IssueCode(code) => authorization::issue_code(state, code, now),
        Command::RevokeRefreshToken { digest, client_id } => {
            authorization::revoke_refresh(state, digest, client_id)
        }
        Command::RedeemCode {
            digest,
            client_id,
            issued,
        } => authorization::redeem_code(state, digest, client_id, issued.as_deref(), now),
        Command::Refresh {
            digest,
            client_id,
            issued,
        } => authorization::refresh(state, digest, client_id, issued.as_deref(), now),
        Command::DecideApproval {
            approval_id,
            decision,
            by,
        } => approvals::decide(state, approval_id, *decision, by, now),
        Command::RecordToolCall(call) => gateway::record_tool_call(state, call),
        Command::RevokeToken { jti, by } => {
            // RFC 7009 §2.1: a client revokes only what was issued to it (or what it is in
            // the chain of); an admin or the system may revoke any token.
            if let Actor::Agent { client_id } = by
                && state
                    .token(jti)
                    .is_some_and(|t| t.client_id != *client_id && !t.actors.contains(client_id))
            {
                return Err(Refusal::NotTokenHolder(client_id.clone()));
            }
            let events = cascade(state, jti, RevocationCause::Requested { by: by.clone() });
            let tokens = events.len();
            Ok((events, Answer::Revoked { tokens }))
        }
    }
}

fn known_agent<'s>(
    state: &'s State,
    client_id: &ClientId,
) -> Result<&'s writ_projections::Agent, Refusal> {
    state
        .agent(client_id)
        .ok_or_else(|| Refusal::UnknownAgent(client_id.to_string()))
}

/// Revocations for the live tokens among `jtis`: a token for which `direct` names a
/// cause is revoked for it; any other was derived from one and names its parent.
fn revoke_all(
    state: &State,
    jtis: Vec<Jti>,
    direct: impl Fn(&writ_projections::Token) -> Option<RevocationCause>,
) -> Vec<Event> {
    jtis.into_iter()
        .filter_map(|jti| {
            state
                .token(&jti)
                .filter(|t| matches!(t.status, TokenStatus::Live))
        })
        .filter_map(|token| {
            let parent = token.parent_jti.as_ref().and_then(|p| state.token(p));
            let parent_is_direct = parent.is_some_and(|p| direct(p).is_some());
            let cause = match (direct(token), &token.parent_jti) {
                (Some(_), Some(parent)) if parent_is_direct => RevocationCause::ParentRevoked {
                    parent_jti: parent.clone(),
                },
                (Some(cause), _) => cause,
                (None, Some(parent)) => RevocationCause::ParentRevoked {
                    parent_jti: parent.clone(),
                },
                // Neither revoked for itself nor derived: not this cascade's to revoke.
                (None, None) => return None,
            };
            Some(
                TokenRevoked {
                    jti: token.jti.clone(),
                    cause,
                }
                .into(),
            )
        })
        .collect()
}

fn deactivate_user(
    state: &State,
    user_id: &UserId,
    by: &Actor,
) -> Result<(Vec<Event>, Answer), Refusal> {
    match state.user(user_id) {
        None => return Err(Refusal::UnknownUser(user_id.clone())),
        Some(user) if !user.active => {
            return Err(Refusal::UserAlready(user_id.clone(), "deactivated"));
        }
        Some(_) => {}
    }
    let mut events: Vec<Event> = vec![
        UserDeactivated {
            user_id: user_id.clone(),
            by: by.clone(),
        }
        .into(),
    ];
    events.extend(revoke_all(state, state.tokens_for_user(user_id), |token| {
        (token.user_id.as_ref() == Some(user_id)).then(|| RevocationCause::UserDeactivated {
            user_id: user_id.clone(),
        })
    }));
    let tokens = events.len() - 1;
    Ok((events, Answer::Revoked { tokens }))
}

fn erase_user(
    state: &State,
    user_id: &UserId,
    by: &Actor,
) -> Result<(Vec<Event>, Answer), Refusal> {
    let (mut events, answer) = match state.user(user_id) {
        None => return Err(Refusal::UnknownUser(user_id.clone())),
        Some(user) if user.erased => return Err(Refusal::UserErased(user_id.clone())),
        Some(user) if user.active => deactivate_user(state, user_id, by)?,
        Some(_) => (Vec::new(), Answer::Revoked { tokens: 0 }),
    };
    // The person's connections end with them, so their upstream tokens are revoked at the
    // providers. Those tokens are wrapped under the key-encryption key, not the person's
    // key, so destroying the person's key after this append does not keep them from
    // being revoked.
    events.extend(connections::end_all(state, user_id, by));
    events.push(
        UserErased {
            user_id: user_id.clone(),
            by: by.clone(),
        }
        .into(),
    );
    Ok((events, answer))
}

fn issue_api_key(
    state: &State,
    key_id: &ApiKeyId,
    user_id: &UserId,
    key_hash: &Digest,
    by: &Actor,
) -> Result<(Vec<Event>, Answer), Refusal> {
    match state.user(user_id) {
        None => return Err(Refusal::UnknownUser(user_id.clone())),
        Some(user) if !user.active => return Err(Refusal::UserDeactivated(user_id.clone())),
        Some(_) => {}
    }
    let held = state
        .api_keys_of_user(user_id)
        .filter(|key| key.revoked_at.is_none())
        .count();
    if held >= API_KEYS_PER_USER_MAX {
        return Err(Refusal::TooManyApiKeys(user_id.clone(), held));
    }
    if state.api_key(key_id).is_some() || state.api_key_by_hash(key_hash).is_some() {
        return Err(Refusal::ApiKeyExists(key_id.clone()));
    }
    let event = ApiKeyIssued {
        key_id: key_id.clone(),
        user_id: user_id.clone(),
        key_hash: *key_hash,
        by: by.clone(),
    };
    Ok((vec![event.into()], Answer::Done))
}

fn revoke_api_key(
    state: &State,
    key_id: &ApiKeyId,
    by: &Actor,
) -> Result<(Vec<Event>, Answer), Refusal> {
    let key = state
        .api_key(key_id)
        .ok_or_else(|| Refusal::UnknownApiKey(key_id.clone()))?;
    if !may_act_for(by, &key.user_id) {
        return Err(Refusal::NotKeyHolder(key_id.clone()));
    }
    if key.revoked_at.is_some() {
        return Err(Refusal::ApiKeyRevoked(key_id.clone()));
    }
    let event = ApiKeyRevoked {
        key_id: key_id.clone(),
        by: by.clone(),
    };
    Ok((vec![event.into()], Answer::Done))
}

/// An admin may act for anyone; a person for themselves; nobody else for a person.
fn may_act_for(by: &Actor, user_id: &UserId) -> bool {
    match by {
        Actor::Admin { .. } | Actor::System => true,
        Actor::User { user_id: caller } => caller == user_id,
        Actor::Agent { .. } => false,
    }
}

fn grant_delegation(
    state: &State,
    grant: &DelegationGranted,
    now: Timestamp,
) -> Result<(Vec<Event>, Answer), Refusal> {
    if !matches!(&grant.by, Actor::User { user_id } if *user_id == grant.user_id) {
        return Err(Refusal::NotAPerson);
    }
    if !state.user(&grant.user_id).is_some_and(|user| user.active) {
        return Err(Refusal::UserInactive(grant.user_id.clone()));
    }
    let agent = known_agent(state, &grant.client_id)?;
    if !agent.enabled {
        return Err(Refusal::AgentDisabled(grant.client_id.to_string()));
    }
    if let Some(expired) = agent.expires_at.filter(|end| now >= *end) {
        return Err(Refusal::AgentExpired(grant.client_id.to_string(), expired));
    }
    if let Some(scopes) = &grant.scopes {
        if scopes.is_empty() {
            return Err(Refusal::NoScopes);
        }
        let missing: Vec<String> = scopes
            .iter()
            .filter(|scope| !agent.scopes.contains(scope))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(Refusal::ScopesNotHeld(grant.client_id.clone(), missing));
        }
    }
    if let Some(end) = grant.expires_at.filter(|end| *end <= now) {
        return Err(Refusal::NotInFuture(end));
    }
    let in_force = state
        .delegations_of_user(&grant.user_id)
        .filter(|delegation| delegation.is_active(now))
        .count();
    if in_force >= DELEGATIONS_PER_USER_MAX {
        return Err(Refusal::TooManyDelegations(grant.user_id.clone(), in_force));
    }
    if state.delegation(&grant.delegation_id).is_some() {
        return Err(Refusal::DelegationExists(grant.delegation_id.clone()));
    }
    Ok((vec![grant.clone().into()], Answer::Done))
}

fn revoke_delegation(
    state: &State,
    delegation_id: &DelegationId,
    by: &Actor,
) -> Result<(Vec<Event>, Answer), Refusal> {
    let delegation = state
        .delegation(delegation_id)
        .ok_or_else(|| Refusal::UnknownDelegation(delegation_id.clone()))?;
    if !may_act_for(by, &delegation.user_id) {
        return Err(Refusal::NotDelegator(delegation_id.clone()));
    }
    if delegation.revoked_at.is_some() {
        return Err(Refusal::DelegationAlreadyRevoked(delegation_id.clone()));
    }
    let mut events: Vec<Event> = vec![
        DelegationRevoked {
            delegation_id: delegation_id.clone(),
            by: by.clone(),
        }
        .into(),
    ];
    events.extend(revoke_all(
        state,
        state.tokens_under_delegation(delegation_id),
        |token| {
            (token.delegation_id.as_ref() == Some(delegation_id)).then(|| {
                RevocationCause::DelegationRevoked {
                    delegation_id: delegation_id.clone(),
                }
            })
        },
    ));
    let tokens = events.len() - 1;
    Ok((events, Answer::Revoked { tokens }))
}

fn issue_token(
    state: &State,
    token: &TokenIssued,
    now: Timestamp,
) -> Result<(Vec<Event>, Answer), Refusal> {
    let holder = usable_agent(state, &token.client_id, now)?;
    // Supervision belongs to the agent: a request for a laxer token is refused here too,
    // whatever the HTTP layer made of it.
    if !strictness::within(token.agent_type, holder.agent_type) {
        return Err(Refusal::LaxerThanAgent(
            token.client_id.clone(),
            holder.agent_type,
        ));
    }
    if let Some(end) = holder.expires_at.filter(|end| token.expires_at > *end) {
        return Err(Refusal::OutlivesAgent(token.client_id.clone(), end));
    }
    if let Some(user_id) = token
        .user_id
        .as_ref()
        .filter(|u| !state.user(u).is_some_and(|user| user.active))
    {
        return Err(Refusal::UserInactive(user_id.clone()));
    }
    if state.token(&token.jti).is_some() || state.token_by_digest(&token.digest).is_some() {
        return Err(Refusal::DuplicateToken(token.jti.clone()));
    }
    if token.expires_at <= token.issued_at {
        return Err(Refusal::BadLifetime);
    }
    // Two requests with one assertion can both verify before either is recorded; the
    // sequencer decides them one after the other, so here the second is found.
    if let Some(assertion) = &token.client_assertion
        && state.assertion_used(&token.client_id, &assertion.jti)
    {
        return Err(Refusal::AssertionReplayed(token.client_id.clone()));
    }
    // The parent first: disabling an agent of its chain revoked it, and that is the
    // refusal that says what happened.
    if let Some(parent) = &token.parent_jti {
        within_parent(state, token, parent, now)?;
    }
    if let Some(first) = token.actors.first() {
        if *first != token.client_id {
            return Err(Refusal::ChainNotHeld(token.client_id.clone()));
        }
        // Everyone in the chain is still in service: a disable sequenced first wins.
        for actor in &token.actors[1..] {
            usable_agent(state, actor, now)?;
        }
        within_depth(state, &token.actors)?;
    }
    if let Some(delegation_id) = &token.delegation_id {
        within_delegation(state, token, delegation_id, now)?;
    }
    Ok((vec![token.clone().into()], Answer::Done))
}

/// A `private_key_jwt` agent has keys and no secret; any other has no keys.
fn agent_credentials_agree(agent: &AgentRegistered) -> Result<(), Refusal> {
    let by_key = agent.token_endpoint_auth_method == "private_key_jwt";
    match (by_key, &agent.jwks, &agent.secret_hash) {
        (true, Some(jwks), None) if !jwks.keys.is_empty() => Ok(()),
        (true, _, _) => Err(Refusal::BadAgentCredentials(
            "a private_key_jwt agent is registered with its public keys (jwks) and no secret"
                .into(),
        )),
        (false, Some(_), _) => Err(Refusal::BadAgentCredentials(format!(
            "jwks is only for private_key_jwt, not {}",
            agent.token_endpoint_auth_method
        ))),
        (false, None, _) => Ok(()),
    }
}

/// The agent, registered, enabled and not expired at `now`.
fn usable_agent<'s>(
    state: &'s State,
    client_id: &ClientId,
    now: Timestamp,
) -> Result<&'s writ_projections::Agent, Refusal> {
    let agent = known_agent(state, client_id)?;
    if !agent.enabled {
        return Err(Refusal::AgentDisabled(client_id.to_string()));
    }
    if let Some(expired) = agent.expires_at.filter(|end| now >= *end) {
        return Err(Refusal::AgentExpired(client_id.to_string(), expired));
    }
    Ok(agent)
}

/// An `act` chain (`actors`, outermost first) is as deep as its length; it may be no
/// deeper than the ceiling of any agent in it (`max_delegation_depth`, else
/// [`DELEGATION_DEPTH_DEFAULT`]). An unknown agent has the default ceiling here; whether
/// it may act at all is checked apart.
pub fn within_depth(state: &State, actors: &[ClientId]) -> Result<(), Refusal> {
    let depth = actors.len();
    for client_id in actors {
        let ceiling = state
            .agent(client_id)
            .and_then(|agent| agent.ceilings.max_delegation_depth)
            .unwrap_or(DELEGATION_DEPTH_DEFAULT);
        if depth > ceiling as usize {
            return Err(Refusal::TooDeep {
                depth,
                client_id: client_id.clone(),
                ceiling,
            });
        }
    }
    Ok(())
}

/// A token exchanged from `parent_jti` stays within it, checked against the parent as it
/// stands when the token is recorded: the parent is live and has operations left; the
/// token acts for the same person (or, like it, for none), and, when the parent is itself an agent's token for
/// that person, under the same delegation with the parent's chain behind its new actor
/// and within the parent's audience (a person's own token is addressed to writ, so it
/// bounds no audience); it never has more scopes, a later expiry, or more operations
/// than the parent has left. So an operation, a revocation or a policy change sequenced
/// between the HTTP layer's reading and this append can never yield a wider child.
fn within_parent(
    state: &State,
    token: &TokenIssued,
    parent_jti: &Jti,
    now: Timestamp,
) -> Result<(), Refusal> {
    let parent = state
        .token(parent_jti)
        .filter(|p| p.is_active(now))
        .ok_or_else(|| Refusal::ParentInactive(parent_jti.clone()))?;
    let exceeds = |why: String| Err(Refusal::ExceedsParent(parent_jti.clone(), why));
    if parent.user_id != token.user_id {
        return exceeds("it must act for the person the parent acts for".into());
    }
    if !strictness::within(token.agent_type, parent.agent_type) {
        return exceeds(format!(
            "it must be {} like the parent: a derived token is never laxer",
            strictness::name(parent.agent_type)
        ));
    }
    if !parent.actors.is_empty() {
        if parent.delegation_id != token.delegation_id
            || token.actors.get(1..) != Some(parent.actors.as_slice())
        {
            return exceeds("it must extend the parent's chain under its delegation".into());
        }
        if let Some(outside) = token.audience.iter().find(|a| !parent.audience.contains(a)) {
            return exceeds(format!("audience `{outside}` is not the parent's"));
        }
    }
    if let Some(outside) = token.scopes.iter().find(|s| !parent.scopes.contains(s)) {
        return exceeds(format!("scope `{outside}` is not the parent's"));
    }
    if token.expires_at > parent.expires_at {
        return exceeds(format!(
            "it would outlive the parent, which expires at {}",
            parent.expires_at
        ));
    }
    if let Some(left) = parent.operations_remaining() {
        match token.max_operations {
            _ if left == 0 => return exceeds("the parent's operation quota is used up".into()),
            Some(max) if max <= left => {}
            _ => return exceeds(format!("the parent has {left} operations left")),
        }
    }
    Ok(())
}

/// A token under a delegation is issued only while it is in force, for the person who
/// granted it, with the agent it names innermost in the token's `act` chain (the one the
/// person delegated to; agents outward of it were delegated to by it, checked against
/// the parent token; with no chain recorded, the holder), and within its scopes and
/// expiry. Checked here, at
/// append time, so a revocation ordered before the issuance always wins: the cascade
/// revokes what was issued before it, and nothing is issued after it.
fn within_delegation(
    state: &State,
    token: &TokenIssued,
    delegation_id: &DelegationId,
    now: Timestamp,
) -> Result<(), Refusal> {
    let inactive = || Refusal::DelegationInactive(delegation_id.clone());
    let delegation = state.delegation(delegation_id).ok_or_else(inactive)?;
    if !delegation.is_active(now)
        || token.user_id.as_ref() != Some(&delegation.user_id)
        || token.actors.last().unwrap_or(&token.client_id) != &delegation.client_id
    {
        return Err(inactive());
    }
    if let Some(allowed) = &delegation.scopes
        && let Some(outside) = token.scopes.iter().find(|s| !allowed.contains(s))
    {
        return Err(Refusal::ScopeNotDelegated(
            delegation_id.clone(),
            outside.clone(),
        ));
    }
    if let Some(end) = delegation.expires_at.filter(|end| token.expires_at > *end) {
        return Err(Refusal::OutlivesDelegation(delegation_id.clone(), end));
    }
    Ok(())
}

/// One use of a token, as `RecordOperation` asks for it.
struct Operation<'c> {
    operation: &'c str,
    resource: &'c Option<String>,
    idempotency_key: &'c Option<String>,
    approval: Option<&'c ApprovalUse>,
}

fn record_operation(
    state: &State,
    digest: &Digest,
    Operation {
        operation,
        resource,
        idempotency_key,
        approval,
    }: Operation<'_>,
    now: Timestamp,
) -> Result<(Vec<Event>, Answer), Refusal> {
    let token = state.token_by_digest(digest).ok_or(Refusal::UnknownToken)?;
    if let Some(first) = idempotency_key
        .as_deref()
        .and_then(|key| token.idempotent_answer(key))
    {
        return Ok((
            vec![],
            Answer::Operation {
                operations_remaining: first,
                active: token.is_active(now),
            },
        ));
    }
    if !token.is_active(now) {
        return Err(Refusal::TokenInactive);
    }
    if token.operations_remaining() == Some(0) {
        return Err(Refusal::QuotaExhausted);
    }
    let spent = approval
        .map(|presented| approvals::spend(state, token, presented, now))
        .transpose()?;
    let mut events: Vec<Event> = spent.into_iter().collect();
    events.push(
        OperationRecorded {
            jti: token.jti.clone(),
            operation: operation.to_owned(),
            resource: resource.clone(),
            idempotency_key: idempotency_key.clone(),
        }
        .into(),
    );
    let remaining = token.operations_remaining().map(|left| left - 1);
    let mut active = true;
    if remaining == Some(0) {
        events.push(
            TokenExhausted {
                jti: token.jti.clone(),
            }
            .into(),
        );
        if token.expires_on_completion {
            events.extend(cascade(state, &token.jti, RevocationCause::Completed));
            active = false;
        }
    }
    Ok((
        events,
        Answer::Operation {
            operations_remaining: remaining,
            active,
        },
    ))
}

/// Revocations for `root` and every live token derived from it; the root carries `cause`,
/// each descendant names its parent.
pub fn cascade(state: &State, root: &Jti, cause: RevocationCause) -> Vec<Event> {
    state
        .lineage(root)
        .into_iter()
        .filter_map(|jti| state.token(&jti))
        .filter(|token| matches!(token.status, TokenStatus::Live))
        .map(|token| {
            let cause = match &token.parent_jti {
                Some(parent) if token.jti != *root => RevocationCause::ParentRevoked {
                    parent_jti: parent.clone(),
                },
                _ => cause.clone(),
            };
            TokenRevoked {
                jti: token.jti.clone(),
                cause,
            }
            .into()
        })
        .collect()
}

mod gateway;
mod policy;

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use writ_projections::Head;
    use writ_schemas::{Hash, KeyId, SigningAlgorithm};

    use super::*;

    fn ed25519(kid: &str, previous: Option<&str>) -> SigningKeyRotated {
        SigningKeyRotated {
            kid: KeyId::from(kid),
            alg: SigningAlgorithm::EdDsa,
            public_key: Some("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo".into()),
            jwk: None,
            previous_kid: previous.map(KeyId::from),
            by: Some(Actor::System),
        }
    }

    #[test]
    fn a_rotation_must_replace_the_current_key_and_fit_its_algorithm() {
        let now =
            Timestamp::from_unix_micros(1_800_000_000_000_000).unwrap_or_else(|| unreachable!());
        let mut state = State::new();
        let head = Head {
            seq: 1,
            hash: Hash([1; 32]),
            ts: Some(now),
        };
        state.apply(head, &Event::from(ed25519("k1", None)));
        let decided = |rotation: SigningKeyRotated| {
            decide(&state, &Command::RotateSigningKey(rotation), now)
                .map(|(events, _)| events.len())
        };
        assert_eq!(decided(ed25519("k2", Some("k1"))), Ok(1));
        assert_eq!(
            decided(ed25519("k2", None)),
            Err(Refusal::KeyRotatedMeanwhile("k1".into()))
        );
        assert_eq!(
            decided(ed25519("k2", Some("k0"))),
            Err(Refusal::KeyRotatedMeanwhile("k1".into()))
        );
        assert_eq!(
            decided(ed25519("k1", Some("k1"))),
            Err(Refusal::DuplicateKey("k1".into()))
        );
        let mut mismatched = ed25519("k2", Some("k1"));
        mismatched.alg = SigningAlgorithm::Es256;
        assert!(matches!(
            decided(mismatched),
            Err(Refusal::BadSigningKey(_))
        ));
    }

    fn credential(
        id: &str,
        name: &str,
        role: AdminRole,
        by: Actor,
        expires_at: Option<Timestamp>,
    ) -> Command {
        Command::IssueAdminToken {
            token_id: id.into(),
            token_hash: Digest::of(id.as_bytes()),
            by,
            first: false,
            name: name.into(),
            role,
            expires_at,
        }
    }

    fn by(id: &str) -> Actor {
        Actor::Admin {
            token_id: id.into(),
        }
    }

    /// An auditor credential reads only: the sequencer refuses it every credential
    /// command, as the HTTP layer does, so no other way in can skip the role.
    #[test]
    fn an_auditor_credential_can_neither_create_nor_revoke_credentials() {
        let state = given(
            &[
                credential("adm_1", "initial", AdminRole::Admin, Actor::System, None),
                credential("adm_2", "audit", AdminRole::Auditor, by("adm_1"), None),
            ],
            at(),
        );
        let escalate = credential("adm_3", "mine", AdminRole::Admin, by("adm_2"), None);
        assert_eq!(
            decide(&state, &escalate, at()).map(|(e, _)| e.len()),
            Err(Refusal::InsufficientRole(
                "adm_2".into(),
                AdminRole::Auditor
            ))
        );
        let revoke = Command::RevokeAdminToken {
            token_id: "adm_1".into(),
            by: by("adm_2"),
        };
        assert_eq!(
            decide(&state, &revoke, at()).map(|(e, _)| e.len()),
            Err(Refusal::InsufficientRole(
                "adm_2".into(),
                AdminRole::Auditor
            ))
        );
        let as_person = Command::RevokeAdminToken {
            token_id: "adm_2".into(),
            by: person("5f0c6a4e-8d1b-4c1e-9a53-3f7e2b9d0c11"),
        };
        assert_eq!(
            decide(&state, &as_person, at()).map(|(e, _)| e.len()),
            Err(Refusal::NotAdmin)
        );
    }

    #[test]
    fn credential_names_are_unique_readable_and_never_look_like_ids() {
        let state = given(
            &[credential(
                "adm_1",
                "initial",
                AdminRole::Admin,
                Actor::System,
                None,
            )],
            at(),
        );
        let named = |name: &str| credential("adm_9", name, AdminRole::Auditor, by("adm_1"), None);
        assert_eq!(
            decide(&state, &named("initial"), at()).map(|(e, _)| e.len()),
            Err(Refusal::AdminCredentialNameTaken("initial".into()))
        );
        let long = "n".repeat(ADMIN_CREDENTIAL_NAME_CHARS_MAX + 1);
        for bad in ["", "   ", " padded", "adm_0123", "tab\there", long.as_str()] {
            assert!(
                matches!(
                    decide(&state, &named(bad), at()),
                    Err(Refusal::BadAdminCredentialName(_))
                ),
                "{bad:?}"
            );
        }
        let longest = "n".repeat(ADMIN_CREDENTIAL_NAME_CHARS_MAX);
        assert_eq!(
            decide(&state, &named(&longest), at()).map(|(e, _)| e.len()),
            Ok(1)
        );
        let past = credential("adm_9", "late", AdminRole::Admin, by("adm_1"), Some(at()));
        assert_eq!(
            decide(&state, &past, at()).map(|(e, _)| e.len()),
            Err(Refusal::NotInFuture(at()))
        );
    }

    #[test]
    fn admin_credentials_stop_at_their_bound() {
        let mut commands = vec![credential(
            "adm_0",
            "initial",
            AdminRole::Admin,
            Actor::System,
            None,
        )];
        for n in 1..ADMIN_CREDENTIALS_MAX {
            let (id, name) = (format!("adm_{n}"), format!("n{n}"));
            commands.push(credential(
                &id,
                &name,
                AdminRole::Auditor,
                by("adm_0"),
                None,
            ));
        }
        let state = given(&commands, at());
        let one_more = credential("adm_x", "x", AdminRole::Auditor, by("adm_0"), None);
        assert_eq!(
            decide(&state, &one_more, at()).map(|(e, _)| e.len()),
            Err(Refusal::TooManyAdminCredentials(ADMIN_CREDENTIALS_MAX))
        );
    }

    /// Revoking the last live admin credential would leave nobody able to manage writ
    /// through its API: refused, also when the only other admin credential has expired.
    #[test]
    fn the_last_live_admin_credential_cannot_be_revoked() {
        let soon = at().plus_seconds(60);
        let state = given(
            &[
                credential("adm_1", "initial", AdminRole::Admin, Actor::System, None),
                credential("adm_2", "audit", AdminRole::Auditor, by("adm_1"), None),
                credential("adm_3", "brief", AdminRole::Admin, by("adm_1"), Some(soon)),
            ],
            at(),
        );
        let revoke = |id: &str, who: &str| Command::RevokeAdminToken {
            token_id: id.into(),
            by: by(who),
        };
        let later = soon.plus_seconds(1);
        assert_eq!(
            decide(&state, &revoke("adm_1", "adm_1"), later).map(|(e, _)| e.len()),
            Err(Refusal::LastAdminCredential("adm_1".into()))
        );
        // While the other admin credential is live, either may go, even by its own hand.
        assert_eq!(
            decide(&state, &revoke("adm_1", "adm_1"), at()).map(|(e, _)| e.len()),
            Ok(1)
        );
        // An expired credential acts no more.
        assert_eq!(
            decide(&state, &revoke("adm_2", "adm_3"), later).map(|(e, _)| e.len()),
            Err(Refusal::AdminCredentialNotLive("adm_3".into()))
        );
        let state = given(
            &[
                credential("adm_1", "initial", AdminRole::Admin, Actor::System, None),
                credential("adm_2", "audit", AdminRole::Auditor, by("adm_1"), None),
                revoke("adm_2", "adm_1"),
            ],
            at(),
        );
        assert_eq!(state.admin_token_count(), 1);
        assert_eq!(
            decide(&state, &revoke("adm_2", "adm_1"), at()).map(|(e, _)| e.len()),
            Err(Refusal::UnknownAdminCredential("adm_2".into()))
        );
        // Its name is free again.
        let again = credential("adm_4", "audit", AdminRole::Auditor, by("adm_1"), None);
        assert_eq!(decide(&state, &again, at()).map(|(e, _)| e.len()), Ok(1));
    }

    /// Nodes starting together on a new ledger each try their first-start records: the
    /// first admin token and the checkpoint key are recorded once, whoever comes second.
    #[test]
    fn first_start_records_are_recorded_once_however_many_nodes_start() {
        let first_admin = |id: &str, hash: u8| Command::IssueAdminToken {
            token_id: id.into(),
            token_hash: Digest([hash; 32]),
            by: Actor::System,
            first: true,
            name: "initial".into(),
            role: AdminRole::Admin,
            expires_at: None,
        };
        let state = given(&[first_admin("adm_a", 1)], at());
        assert_eq!(
            decide(&state, &first_admin("adm_b", 2), at()).map(|(events, _)| events.len()),
            Err(Refusal::NotFirstAdminToken)
        );
        let another = Command::IssueAdminToken {
            token_id: "adm_c".into(),
            token_hash: Digest([3; 32]),
            by: Actor::System,
            first: false,
            name: "ci".into(),
            role: AdminRole::Admin,
            expires_at: None,
        };
        assert_eq!(decide(&state, &another, at()).map(|(e, _)| e.len()), Ok(1));

        let published = CheckpointKeyPublished {
            name: "writ.example".into(),
            public_key: URL_SAFE_NO_PAD_KEY.into(),
        };
        let publish = Command::PublishCheckpointKey(published.clone());
        let state = given(std::slice::from_ref(&publish), at());
        assert_eq!(decide(&state, &publish, at()).map(|(e, _)| e.len()), Ok(0));
        let renamed = Command::PublishCheckpointKey(CheckpointKeyPublished {
            name: "other.example".into(),
            ..published
        });
        assert_eq!(decide(&state, &renamed, at()).map(|(e, _)| e.len()), Ok(1));
    }

    /// An Ed25519 public key's 32 bytes as unpadded base64url.
    const URL_SAFE_NO_PAD_KEY: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    /// A state built by deciding `commands` in order at `now` and folding what they record.
    fn given(commands: &[Command], now: Timestamp) -> State {
        let mut state = State::new();
        for command in commands {
            let (events, _) = decide(&state, command, now)
                .unwrap_or_else(|refusal| unreachable!("given {command:?}: {refusal}"));
            for event in events {
                let head = Head {
                    seq: state.head().seq + 1,
                    hash: Hash([7; 32]),
                    ts: Some(now),
                };
                state.apply(head, &event);
            }
        }
        state
    }

    fn at() -> Timestamp {
        Timestamp::from_unix_micros(1_800_000_000_000_000).unwrap_or_else(|| unreachable!())
    }

    /// Sign-outs are kept one by one up to the bound; the next ends every session, so a
    /// person's read model never holds more than `SESSIONS_ENDED_KEPT_MAX` of them.
    #[test]
    fn signin_sign_outs_beyond_the_kept_bound_end_every_session() {
        let ada = UserId::from("ada");
        let mut state = given(
            &[Command::test_registration(ada.clone(), "ada@example.com")],
            at(),
        );
        let expires_at = at().plus_seconds(3600);
        let sign_out = |n: usize| Command::EndSession {
            user_id: ada.clone(),
            session_id: format!("s{n}"),
            expires_at,
        };
        for n in 0..writ_projections::SESSIONS_ENDED_KEPT_MAX {
            let (events, _) = decide(&state, &sign_out(n), at())
                .unwrap_or_else(|refusal| unreachable!("{refusal}"));
            assert!(matches!(events.as_slice(), [Event::SessionEnded(_)]));
            for event in events {
                let head = Head {
                    seq: state.head().seq + 1,
                    hash: Hash([7; 32]),
                    ts: Some(at()),
                };
                state.apply(head, &event);
            }
        }
        // Ending one already ended, or one already lapsed, records nothing.
        let again = decide(&state, &sign_out(0), at()).map(|(events, _)| events.len());
        assert_eq!(again, Ok(0));
        let (events, _) =
            decide(&state, &sign_out(99), at()).unwrap_or_else(|refusal| unreachable!("{refusal}"));
        match events.as_slice() {
            [Event::SessionsEnded(ended)] => {
                assert_eq!(ended.generation, 1);
                assert_eq!(ended.reason, writ_schemas::SessionsEndedReason::SignOut);
            }
            other => panic!("{other:?}"),
        }
        let stranger = Command::EndSessions {
            user_id: ada.clone(),
            by: person("bob"),
        };
        assert_eq!(
            decide(&state, &stranger, at()).err(),
            Some(Refusal::NotAPerson)
        );
    }

    fn person(id: &str) -> Actor {
        Actor::User {
            user_id: UserId::from(id),
        }
    }

    fn admin() -> Actor {
        Actor::Admin {
            token_id: "adm_1".into(),
        }
    }

    fn register(id: &str) -> Command {
        Command::test_registration(UserId::from(id), &format!("{id}@example.com"))
    }

    fn agent(client_id: &str, scopes: &[&str]) -> Command {
        Command::RegisterAgent(AgentRegistered {
            client_id: ClientId::from(client_id),
            name: client_id.into(),
            owner: None,
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            grant_types: vec!["client_credentials".into()],
            redirect_uris: vec![],
            token_endpoint_auth_method: "client_secret_basic".into(),
            secret_hash: Some(Digest::of(b"secret")),
            secret_expires_at: None,
            require_consent: false,
            agent_type: writ_schemas::AgentType::Autonomous,
            expires_at: None,
            by: Actor::System,
            jwks: None,
        })
    }

    fn grant(id: &str, user: &str, scopes: Option<&[&str]>) -> DelegationGranted {
        DelegationGranted {
            delegation_id: DelegationId::from(id),
            user_id: UserId::from(user),
            client_id: ClientId::from("a1"),
            scopes: scopes.map(|s| s.iter().map(|s| (*s).to_owned()).collect()),
            expires_at: None,
            by: person(user),
        }
    }

    fn obo_token(jti: &str, delegation: Option<&str>, parent: Option<&str>) -> Command {
        chained(jti, &["a1"], delegation, parent)
    }

    /// A token for ada held by `actors[0]`, with `actors` as its chain (outermost first).
    fn chained(
        jti: &str,
        actors: &[&str],
        delegation: Option<&str>,
        parent: Option<&str>,
    ) -> Command {
        Command::IssueToken(TokenIssued {
            jti: Jti::from(jti),
            digest: Digest::of(jti.as_bytes()),
            kid: KeyId::from("k1"),
            grant_type: "client_credentials".into(),
            client_id: ClientId::from(actors[0]),
            subject: "ada".into(),
            user_id: Some(UserId::from("ada")),
            actors: actors.iter().map(|a| ClientId::from(*a)).collect(),
            delegation_id: delegation.map(DelegationId::from),
            parent_jti: parent.map(Jti::from),
            family_id: None,
            audience: vec![],
            scopes: vec!["files:read".into()],
            issued_at: at(),
            expires_at: at().plus_seconds(900),
            agent_type: writ_schemas::AgentType::Autonomous,
            task_id: None,
            max_operations: None,
            expires_on_completion: false,
            intent_description: None,
            intent_sealed: None,
            client_assertion: None,
        })
    }

    fn issued(command: Command) -> TokenIssued {
        match command {
            Command::IssueToken(token) => token,
            other => unreachable!("a token, not {other:?}"),
        }
    }

    /// ada delegates to a1, which holds t1 for her and asks approval `apr_1` of her for a
    /// critical call; a2 holds t2 for her.
    fn approval_asked() -> (Vec<Command>, ApprovalUse) {
        let mut commands = people();
        commands.push(Command::GrantDelegation(grant("d1", "ada", None)));
        commands.push(obo_token("t1", Some("d1"), None));
        commands.push(chained("t2", &["a2"], None, None));
        let digest = Digest::of(br#"{"table":"invoices"}"#);
        commands.push(Command::RequestApproval(writ_schemas::ApprovalRequested {
            approval_id: "apr_1".into(),
            jti: Jti::from("t1"),
            client_id: ClientId::from("a1"),
            user_id: Some(UserId::from("ada")),
            approver: UserId::from("ada"),
            server_id: ServerId::from("srv"),
            tool_name: "delete_records".into(),
            arguments_digest: digest,
            arguments_sealed: Sealed {
                nonce: "AAAAAAAAAAAAAAAA".into(),
                ciphertext: "AAAAAAAAAAAAAAAAAAAAAA".into(),
            },
            policy_ids: vec!["agent:deletes".into()],
            expires_at: at().plus_seconds(300),
        }));
        let presented = ApprovalUse {
            approval_id: "apr_1".into(),
            server_id: ServerId::from("srv"),
            tool_name: "delete_records".into(),
            arguments_digest: digest,
        };
        (commands, presented)
    }

    fn decide_approval(decision: writ_schemas::ApprovalDecision, by: Actor) -> Command {
        Command::DecideApproval {
            approval_id: "apr_1".into(),
            decision,
            by,
        }
    }

    fn call_under(jti: &str, approval: &ApprovalUse) -> Command {
        Command::RecordOperation {
            digest: Digest::of(jti.as_bytes()),
            operation: "tools/call".into(),
            resource: Some("srv/delete_records".into()),
            idempotency_key: None,
            approval: Some(approval.clone()),
        }
    }

    /// An agent's own token, paid for by the client assertion `assertion_jti`.
    fn paid_by_assertion(jti: &str, client_id: &str, assertion_jti: &str) -> Command {
        let mut token = issued(chained(jti, &[client_id], None, None));
        token.subject = client_id.into();
        token.user_id = None;
        token.actors = vec![];
        token.client_assertion = Some(writ_schemas::AssertionUsed {
            jti: assertion_jti.into(),
            expires_at: at().plus_seconds(120),
        });
        Command::IssueToken(token)
    }

    #[test]
    fn a_client_assertion_pays_for_one_token_and_its_replay_is_refused() {
        let commands = [
            agent("a1", &["files:read"]),
            agent("a2", &["files:read"]),
            paid_by_assertion("t1", "a1", "asn-1"),
        ];
        let state = given(&commands, at());
        // The same assertion again, for another token: refused, however it got past the
        // HTTP layer's early check (two requests verified before either was recorded).
        assert_eq!(
            decide(&state, &paid_by_assertion("t2", "a1", "asn-1"), at()).err(),
            Some(Refusal::AssertionReplayed(ClientId::from("a1")))
        );
        // A fresh jti is a new assertion; a jti is the client's own, so another client
        // may use the same string.
        for fresh in [
            paid_by_assertion("t3", "a1", "asn-2"),
            paid_by_assertion("t4", "a2", "asn-1"),
        ] {
            assert!(decide(&state, &fresh, at()).is_ok());
        }
    }

    #[test]
    fn only_the_approver_decides_once_and_the_approved_call_is_made_once_as_approved() {
        use writ_schemas::ApprovalDecision::Approved;
        let (mut commands, presented) = approval_asked();
        let state = given(&commands, at());
        let refused = |state: &State, command: &Command| decide(state, command, at()).err();
        assert_eq!(
            refused(&state, &call_under("t1", &presented)),
            Some(Refusal::ApprovalPending("apr_1".into()))
        );
        for other in [person("bob"), admin()] {
            assert_eq!(
                refused(&state, &decide_approval(Approved, other)),
                Some(Refusal::NotApprover("apr_1".into()))
            );
        }
        commands.push(decide_approval(Approved, person("ada")));
        let state = given(&commands, at());
        assert_eq!(
            refused(&state, &decide_approval(Approved, person("ada"))),
            Some(Refusal::ApprovalSettled("apr_1".into(), "approved"))
        );
        // Another tool, other arguments, or another agent's token: not this approval.
        let other_tool = ApprovalUse {
            tool_name: "whoami".into(),
            ..presented.clone()
        };
        let other_arguments = ApprovalUse {
            arguments_digest: Digest::of(b"{}"),
            ..presented.clone()
        };
        for wrong in [other_tool, other_arguments] {
            assert_eq!(
                refused(&state, &call_under("t1", &wrong)),
                Some(Refusal::ApprovalMismatch("apr_1".into()))
            );
        }
        assert_eq!(
            refused(&state, &call_under("t2", &presented)),
            Some(Refusal::UnknownApproval("apr_1".into()))
        );
        let (events, _) = decide(&state, &call_under("t1", &presented), at())
            .unwrap_or_else(|refusal| unreachable!("{refusal}"));
        let kinds: Vec<_> = events.iter().map(Event::kind).collect();
        assert_eq!(
            kinds,
            [
                writ_schemas::EventKind::ApprovalUsed,
                writ_schemas::EventKind::OperationRecorded
            ]
        );
        commands.push(call_under("t1", &presented));
        let state = given(&commands, at());
        assert_eq!(
            refused(&state, &call_under("t1", &presented)),
            Some(Refusal::ApprovalSettled("apr_1".into(), "used"))
        );
    }

    #[test]
    fn a_denied_or_lapsed_approval_is_refused() {
        use writ_schemas::ApprovalDecision::{Approved, Denied};
        let (mut commands, presented) = approval_asked();
        // The approval lapses 300 s after it was asked, the token only after 900 s.
        let late = at().plus_seconds(300);
        let state = given(&commands, at());
        assert_eq!(
            decide(&state, &decide_approval(Approved, person("ada")), late).err(),
            Some(Refusal::ApprovalExpired("apr_1".into()))
        );
        commands.push(decide_approval(Approved, person("ada")));
        let approved = given(&commands, at());
        assert_eq!(
            decide(&approved, &call_under("t1", &presented), late).err(),
            Some(Refusal::ApprovalExpired("apr_1".into()))
        );
        commands.pop();
        commands.push(decide_approval(Denied, person("ada")));
        let denied = given(&commands, at());
        assert_eq!(
            decide(&denied, &call_under("t1", &presented), at()).err(),
            Some(Refusal::ApprovalDenied("apr_1".into()))
        );
    }

    #[test]
    fn an_approval_is_asked_of_the_person_the_token_acts_for_only() {
        let (mut commands, _) = approval_asked();
        let Some(Command::RequestApproval(mut request)) = commands.pop() else {
            unreachable!("the last command asks for approval")
        };
        let state = given(&commands, at());
        // The token acts for ada: asking anyone else, registered or not, is refused.
        for other in ["bob", "nobody"] {
            request.approver = UserId::from(other);
            assert_eq!(
                decide(&state, &Command::RequestApproval(request.clone()), at()).err(),
                Some(Refusal::WrongApprover("apr_1".into(), UserId::from("ada")))
            );
        }
    }

    /// `command` (an agent's registration) with `agent_type` and `owner`.
    fn typed(
        command: Command,
        agent_type: writ_schemas::AgentType,
        owner: Option<&str>,
    ) -> Command {
        match command {
            Command::RegisterAgent(mut agent) => {
                agent.agent_type = agent_type;
                agent.owner = owner.map(UserId::from);
                Command::RegisterAgent(agent)
            }
            other => unreachable!("a registration, not {other:?}"),
        }
    }

    /// `command` (a token) of `agent_type`.
    fn of_type(command: Command, agent_type: writ_schemas::AgentType) -> Command {
        let mut token = issued(command);
        token.agent_type = agent_type;
        Command::IssueToken(token)
    }

    #[test]
    fn a_supervised_agent_asking_for_an_autonomous_token_is_refused_and_so_is_a_laxer_child() {
        use writ_schemas::AgentType::{Autonomous, Ephemeral, Supervised};
        let mut commands = vec![
            register("ada"),
            typed(agent("a1", &["files:read"]), Supervised, None),
            agent("a2", &["files:read"]),
        ];
        let state = given(&commands, at());
        for laxer in [Autonomous, Ephemeral] {
            assert_eq!(
                decide(
                    &state,
                    &of_type(chained("t1", &["a1"], None, None), laxer),
                    at()
                )
                .err(),
                Some(Refusal::LaxerThanAgent(ClientId::from("a1"), Supervised))
            );
        }
        commands.push(of_type(chained("t1", &["a1"], None, None), Supervised));
        let state = given(&commands, at());
        // a2 is autonomous, but a token exchanged from a supervised one is supervised.
        let child =
            |agent_type| of_type(chained("t2", &["a2", "a1"], None, Some("t1")), agent_type);
        for laxer in [Autonomous, Ephemeral] {
            assert!(matches!(
                decide(&state, &child(laxer), at()).err(),
                Some(Refusal::ExceedsParent(parent, why))
                    if parent == Jti::from("t1") && why.contains("supervised like the parent")
            ));
        }
        assert!(decide(&state, &child(Supervised), at()).is_ok());
        // An autonomous agent may hold a stricter token.
        let ephemeral = of_type(chained("t3", &["a2"], None, None), Ephemeral);
        assert!(decide(&state, &ephemeral, at()).is_ok());
    }

    #[test]
    fn supervision_follows_the_registration_and_the_approver_is_the_person_else_the_owner() {
        use writ_schemas::AgentType::{Autonomous, Supervised};
        let commands = vec![
            register("ada"),
            register("bob"),
            typed(agent("a1", &["files:read"]), Supervised, Some("bob")),
            agent("a2", &["files:read"]),
        ];
        let mut state = given(&commands, at());
        // An autonomous token of a supervised agent, as a ledger written before tokens
        // were held to their agent's type may hold one: its calls still wait.
        let mut own = issued(chained("t1", &["a1"], None, None));
        own.user_id = None;
        own.actors = vec![];
        own.agent_type = Autonomous;
        let for_ada = issued(chained("t2", &["a1"], None, None));
        let unsupervised = issued(chained("t3", &["a2"], None, None));
        for token in [&own, &for_ada, &unsupervised] {
            let head = Head {
                seq: state.head().seq + 1,
                hash: Hash([7; 32]),
                ts: Some(at()),
            };
            state.apply(head, &Event::from(token.clone()));
        }
        let token = |jti: &str| {
            state
                .token(&Jti::from(jti))
                .unwrap_or_else(|| unreachable!("{jti} was applied"))
        };
        assert!(approvals::supervised(&state, token("t1")));
        assert!(approvals::supervised(&state, token("t2")));
        assert!(!approvals::supervised(&state, token("t3")));
        assert_eq!(
            approvals::approver(&state, token("t1")),
            Some(UserId::from("bob"))
        );
        assert_eq!(
            approvals::approver(&state, token("t2")),
            Some(UserId::from("ada"))
        );
        assert_eq!(
            approvals::approver(&state, token("t3")),
            Some(UserId::from("ada"))
        );
        // The sequencer holds the request to the same rule: the owner approves the
        // agent's own call, and nobody else may be asked.
        let asked = |jti: &str, approver: &str| {
            Command::RequestApproval(writ_schemas::ApprovalRequested {
                approval_id: "apr_1".into(),
                jti: Jti::from(jti),
                client_id: ClientId::from("a1"),
                user_id: token(jti).user_id.clone(),
                approver: UserId::from(approver),
                server_id: ServerId::from("srv"),
                tool_name: "delete_records".into(),
                arguments_digest: Digest::of(b"{}"),
                arguments_sealed: Sealed {
                    nonce: "AAAAAAAAAAAAAAAA".into(),
                    ciphertext: "AAAAAAAAAAAAAAAAAAAAAA".into(),
                },
                policy_ids: vec![],
                expires_at: at().plus_seconds(300),
            })
        };
        assert_eq!(
            decide(&state, &asked("t1", "ada"), at()).err(),
            Some(Refusal::WrongApprover("apr_1".into(), UserId::from("bob")))
        );
        assert!(decide(&state, &asked("t1", "bob"), at()).is_ok());
        assert_eq!(
            decide(&state, &asked("t2", "bob"), at()).err(),
            Some(Refusal::WrongApprover("apr_1".into(), UserId::from("ada")))
        );
    }

    #[test]
    fn revoking_another_client_s_token_is_refused_and_the_token_stays_live() {
        let mut commands = people();
        commands.push(chained("t1", &["a1"], None, None));
        commands.push(chained("t2", &["a2", "a1"], None, Some("t1")));
        let state = given(&commands, at());
        let revoke = |jti: &str, client_id: &str| Command::RevokeToken {
            jti: Jti::from(jti),
            by: Actor::Agent {
                client_id: ClientId::from(client_id),
            },
        };
        assert_eq!(
            decide(&state, &revoke("t1", "a3"), at()).err(),
            Some(Refusal::NotTokenHolder(ClientId::from("a3")))
        );
        assert_eq!(
            decide(&state, &revoke("t1", "a2"), at()).err(),
            Some(Refusal::NotTokenHolder(ClientId::from("a2"))),
            "a sub-agent may not revoke the token it was delegated from"
        );
        // Its holder, an agent in its chain, or an admin may.
        for (jti, by) in [("t1", "a1"), ("t2", "a2"), ("t2", "a1")] {
            assert!(
                decide(&state, &revoke(jti, by), at()).is_ok(),
                "{jti} by {by}"
            );
        }
        let by_admin = Command::RevokeToken {
            jti: Jti::from("t1"),
            by: admin(),
        };
        assert!(decide(&state, &by_admin, at()).is_ok());
        // An unknown token is no error (RFC 7009 §2.2): nothing to revoke.
        assert!(decide(&state, &revoke("nope", "a3"), at()).is_ok());
    }

    #[test]
    fn a_secret_expiry_must_be_in_the_future() {
        let mut commands = people();
        let state = given(&commands, at());
        let rotation = |expires_at: Timestamp| {
            Command::RotateAgentSecret(AgentSecretRotated {
                client_id: ClientId::from("a1"),
                secret_hash: Digest::of(b"new"),
                previous_valid_until: at(),
                secret_expires_at: Some(expires_at),
                by: admin(),
            })
        };
        assert_eq!(
            decide(&state, &rotation(at()), at()).err(),
            Some(Refusal::NotInFuture(at()))
        );
        assert!(decide(&state, &rotation(at().plus_seconds(1)), at()).is_ok());
        let Some(Command::RegisterAgent(mut registered)) = commands.pop() else {
            unreachable!("people() ends with an agent")
        };
        registered.client_id = ClientId::from("a9");
        registered.secret_expires_at = Some(at());
        assert_eq!(
            decide(&state, &Command::RegisterAgent(registered), at()).err(),
            Some(Refusal::NotInFuture(at()))
        );
    }

    fn people() -> Vec<Command> {
        vec![
            register("ada"),
            register("bob"),
            agent("a1", &["files:read", "files:write"]),
            agent("a2", &["files:read", "files:write"]),
            agent("a3", &["files:read"]),
        ]
    }

    #[test]
    fn an_api_key_is_issued_to_an_active_person_once() {
        let issue = |key: &str, user: &str| Command::IssueApiKey {
            key_id: ApiKeyId::from(key),
            user_id: UserId::from(user),
            key_hash: Digest::of(key.as_bytes()),
            by: admin(),
        };
        let state = given(&people(), at());
        let events = decide(&state, &issue("k1", "ada"), at())
            .map(|(e, _)| e)
            .unwrap_or_default();
        assert!(
            matches!(events.as_slice(), [Event::ApiKeyIssued(e)] if e.user_id.as_str() == "ada")
        );
        assert_eq!(
            decide(&state, &issue("k1", "nobody"), at()).err(),
            Some(Refusal::UnknownUser(UserId::from("nobody")))
        );
        let mut commands = people();
        commands.push(issue("k1", "ada"));
        commands.push(Command::DeactivateUser {
            user_id: UserId::from("bob"),
            by: admin(),
        });
        let state = given(&commands, at());
        assert_eq!(
            decide(&state, &issue("k1", "ada"), at()).err(),
            Some(Refusal::ApiKeyExists(ApiKeyId::from("k1")))
        );
        assert_eq!(
            decide(&state, &issue("k2", "bob"), at()).err(),
            Some(Refusal::UserDeactivated(UserId::from("bob")))
        );
    }

    #[test]
    fn a_person_holds_at_most_api_keys_per_user_max_unrevoked_keys() {
        let issue = |n: usize| Command::IssueApiKey {
            key_id: ApiKeyId::from(format!("k{n}").as_str()),
            user_id: UserId::from("ada"),
            key_hash: Digest::of(format!("k{n}").as_bytes()),
            by: admin(),
        };
        let mut commands = people();
        commands.extend((0..API_KEYS_PER_USER_MAX).map(issue));
        let state = given(&commands, at());
        let next = issue(API_KEYS_PER_USER_MAX);
        assert_eq!(
            decide(&state, &next, at()).err(),
            Some(Refusal::TooManyApiKeys(
                UserId::from("ada"),
                API_KEYS_PER_USER_MAX
            ))
        );
        commands.push(Command::RevokeApiKey {
            key_id: ApiKeyId::from("k0"),
            by: admin(),
        });
        let state = given(&commands, at());
        assert!(
            decide(&state, &next, at()).is_ok(),
            "a revoked key frees its place"
        );
    }

    #[test]
    fn a_person_has_at_most_delegations_per_user_max_in_force() {
        let grant_n = |n: usize| Command::GrantDelegation(grant(&format!("d{n}"), "ada", None));
        let mut commands = people();
        commands.extend((0..DELEGATIONS_PER_USER_MAX).map(grant_n));
        let state = given(&commands, at());
        let next = grant_n(DELEGATIONS_PER_USER_MAX);
        assert_eq!(
            decide(&state, &next, at()).err(),
            Some(Refusal::TooManyDelegations(
                UserId::from("ada"),
                DELEGATIONS_PER_USER_MAX
            ))
        );
        let bob = Command::GrantDelegation(grant("b0", "bob", None));
        assert!(decide(&state, &bob, at()).is_ok(), "the cap is per person");
        commands.push(Command::RevokeDelegation {
            delegation_id: DelegationId::from("d0"),
            by: admin(),
        });
        let state = given(&commands, at());
        assert!(
            decide(&state, &next, at()).is_ok(),
            "a revoked one frees its place"
        );
    }

    #[test]
    fn an_api_key_is_revoked_by_its_person_or_an_admin_and_only_once() {
        let mut commands = people();
        commands.push(Command::IssueApiKey {
            key_id: ApiKeyId::from("k1"),
            user_id: UserId::from("ada"),
            key_hash: Digest::of(b"k1"),
            by: admin(),
        });
        let state = given(&commands, at());
        let revoke = |by: Actor| Command::RevokeApiKey {
            key_id: ApiKeyId::from("k1"),
            by,
        };
        let k1 = ApiKeyId::from("k1");
        assert_eq!(
            decide(&state, &revoke(person("bob")), at()).err(),
            Some(Refusal::NotKeyHolder(k1.clone()))
        );
        for by in [person("ada"), admin()] {
            let events = decide(&state, &revoke(by), at())
                .map(|(e, _)| e)
                .unwrap_or_default();
            assert!(matches!(events.as_slice(), [Event::ApiKeyRevoked(_)]));
        }
        let unknown = Command::RevokeApiKey {
            key_id: ApiKeyId::from("k9"),
            by: admin(),
        };
        assert_eq!(
            decide(&state, &unknown, at()).err(),
            Some(Refusal::UnknownApiKey(ApiKeyId::from("k9")))
        );
        commands.push(revoke(person("ada")));
        let state = given(&commands, at());
        assert_eq!(
            decide(&state, &revoke(admin()), at()).err(),
            Some(Refusal::ApiKeyRevoked(k1))
        );
    }

    #[test]
    fn a_delegation_is_granted_by_a_person_within_the_agent_s_scopes() {
        let state = given(&people(), at());
        let decided = |grant: DelegationGranted| {
            decide(&state, &Command::GrantDelegation(grant), at()).map(|(events, _)| events)
        };
        let ok = decided(grant("d1", "ada", Some(&["files:read"])));
        assert!(matches!(ok.as_deref(), Ok([Event::DelegationGranted(_)])));
        assert!(
            decided(grant("d1", "ada", None)).is_ok(),
            "absent: every scope"
        );
        assert_eq!(
            decided(grant("d1", "ada", Some(&["files:read", "mail:send"]))).err(),
            Some(Refusal::ScopesNotHeld(
                ClientId::from("a1"),
                vec!["mail:send".into()]
            ))
        );
        assert_eq!(
            decided(grant("d1", "ada", Some(&[]))).err(),
            Some(Refusal::NoScopes)
        );
        let mut by_admin = grant("d1", "ada", None);
        by_admin.by = admin();
        assert_eq!(decided(by_admin).err(), Some(Refusal::NotAPerson));
        let mut past = grant("d1", "ada", None);
        past.expires_at = Some(at());
        assert_eq!(decided(past).err(), Some(Refusal::NotInFuture(at())));
        let mut elsewhere = grant("d1", "ada", None);
        elsewhere.client_id = ClientId::from("a9");
        assert_eq!(
            decided(elsewhere).err(),
            Some(Refusal::UnknownAgent("a9".into()))
        );

        let mut commands = people();
        commands.push(Command::GrantDelegation(grant("d1", "ada", None)));
        commands.push(Command::DisableAgent {
            client_id: ClientId::from("a1"),
            by: admin(),
        });
        let state = given(&commands, at());
        let again = Command::GrantDelegation(grant("d1", "ada", None));
        assert_eq!(
            decide(&state, &again, at()).err(),
            Some(Refusal::AgentDisabled("a1".into()))
        );
    }

    #[test]
    fn revoking_a_delegation_revokes_every_token_derived_from_it_naming_the_cause() {
        let mut commands = people();
        commands.push(Command::GrantDelegation(grant("d1", "ada", None)));
        commands.push(Command::GrantDelegation(grant("d2", "ada", None)));
        commands.push(obo_token("t1", Some("d1"), None));
        commands.push(chained("t1-child", &["a2", "a1"], Some("d1"), Some("t1")));
        commands.push(chained(
            "t1-grandchild",
            &["a3", "a2", "a1"],
            Some("d1"),
            Some("t1-child"),
        ));
        commands.push(obo_token("t2", Some("d2"), None));
        let state = given(&commands, at());
        let revoke = |by: Actor| Command::RevokeDelegation {
            delegation_id: DelegationId::from("d1"),
            by,
        };
        let d1 = DelegationId::from("d1");
        assert_eq!(
            decide(&state, &revoke(person("bob")), at()).err(),
            Some(Refusal::NotDelegator(d1.clone()))
        );
        let (events, answer) =
            decide(&state, &revoke(person("ada")), at()).unwrap_or_else(|r| unreachable!("{r}"));
        assert_eq!(answer, Answer::Revoked { tokens: 3 });
        let revoked: Vec<(String, RevocationCause)> = events
            .iter()
            .filter_map(|event| match event {
                Event::TokenRevoked(e) => Some((e.jti.to_string(), e.cause.clone())),
                _ => None,
            })
            .collect();
        assert!(matches!(&events[0], Event::DelegationRevoked(e) if e.delegation_id == d1));
        assert_eq!(
            revoked,
            vec![
                (
                    "t1".into(),
                    RevocationCause::DelegationRevoked {
                        delegation_id: d1.clone()
                    }
                ),
                (
                    "t1-child".into(),
                    RevocationCause::ParentRevoked {
                        parent_jti: Jti::from("t1")
                    }
                ),
                (
                    "t1-grandchild".into(),
                    RevocationCause::ParentRevoked {
                        parent_jti: Jti::from("t1-child")
                    }
                ),
            ],
            "t2, under another delegation, stays"
        );

        commands.push(revoke(admin()));
        let state = given(&commands, at());
        assert_eq!(
            decide(&state, &revoke(person("ada")), at()).err(),
            Some(Refusal::DelegationAlreadyRevoked(d1))
        );
        let unknown = Command::RevokeDelegation {
            delegation_id: DelegationId::from("d9"),
            by: admin(),
        };
        assert_eq!(
            decide(&state, &unknown, at()).err(),
            Some(Refusal::UnknownDelegation(DelegationId::from("d9")))
        );
    }

    #[test]
    fn an_on_behalf_of_token_is_issued_only_within_a_delegation_in_force() {
        let mut commands = people();
        commands.push(Command::GrantDelegation(grant(
            "d1",
            "ada",
            Some(&["files:read"]),
        )));
        let mut lapsing = grant("d2", "ada", None);
        lapsing.expires_at = Some(at().plus_seconds(60));
        commands.push(Command::GrantDelegation(lapsing));
        commands.push(Command::GrantDelegation(grant("d3", "bob", None)));
        let state = given(&commands, at());
        let refused = |command: &Command| decide(&state, command, at()).err();
        let (d1, d2) = (DelegationId::from("d1"), DelegationId::from("d2"));
        assert_eq!(refused(&obo_token("t1", Some("d1"), None)), None);
        assert_eq!(
            refused(&obo_token("t1", Some("d9"), None)),
            Some(Refusal::DelegationInactive(DelegationId::from("d9")))
        );
        assert_eq!(
            refused(&obo_token("t1", Some("d3"), None)),
            Some(Refusal::DelegationInactive(DelegationId::from("d3"))),
            "bob's delegation does not let the agent act for ada"
        );
        let Command::IssueToken(mut wide) = obo_token("t1", Some("d1"), None) else {
            unreachable!("obo_token issues a token")
        };
        wide.scopes.push("files:write".into());
        assert_eq!(
            refused(&Command::IssueToken(wide)),
            Some(Refusal::ScopeNotDelegated(d1.clone(), "files:write".into()))
        );
        assert!(matches!(
            refused(&obo_token("t1", Some("d2"), None)),
            Some(Refusal::OutlivesDelegation(id, _)) if id == d2
        ));

        // A revocation sequenced first wins over an issuance read before it.
        commands.push(Command::RevokeDelegation {
            delegation_id: d1.clone(),
            by: person("ada"),
        });
        let state = given(&commands, at());
        assert_eq!(
            decide(&state, &obo_token("t1", Some("d1"), None), at()).err(),
            Some(Refusal::DelegationInactive(d1))
        );
    }

    /// ada delegates to a1 (d1); a1 holds t1 for her; a2 holds t2, exchanged from t1.
    fn chain_of_two() -> Vec<Command> {
        let mut commands = people();
        commands.push(Command::GrantDelegation(grant("d1", "ada", None)));
        let Command::IssueToken(mut t1) = obo_token("t1", Some("d1"), None) else {
            unreachable!("a token")
        };
        t1.scopes = vec!["files:read".into(), "files:write".into()];
        t1.audience = vec!["https://files.example".into()];
        t1.max_operations = Some(3);
        commands.push(Command::IssueToken(t1));
        let mut t2 = issued(chained("t2", &["a2", "a1"], Some("d1"), Some("t1")));
        t2.audience = vec!["https://files.example".into()];
        t2.max_operations = Some(2);
        commands.push(Command::IssueToken(t2));
        commands
    }

    /// t3: a3 acting for ada after a2 and a1, exchanged from t2, within it.
    fn third() -> TokenIssued {
        let mut t3 = issued(chained("t3", &["a3", "a2", "a1"], Some("d1"), Some("t2")));
        t3.audience = vec!["https://files.example".into()];
        t3.max_operations = Some(1);
        t3
    }

    #[test]
    fn a_chained_token_is_recorded_only_within_its_parent_as_it_stands_then() {
        let commands = chain_of_two();
        let state = given(&commands, at());
        let refused = |token: TokenIssued| decide(&state, &Command::IssueToken(token), at()).err();
        assert_eq!(refused(third()), None);
        let t2 = Jti::from("t2");
        let exceeds = |refusal: Option<Refusal>| matches!(refusal, Some(Refusal::ExceedsParent(ref parent, _)) if *parent == t2);
        let mut wider = third();
        wider.scopes.push("files:write".into());
        assert!(exceeds(refused(wider)), "scopes only narrow");
        let mut later = third();
        later.expires_at = at().plus_seconds(901);
        assert!(exceeds(refused(later)), "expiry only narrows");
        let mut more = third();
        more.max_operations = Some(3);
        assert!(exceeds(refused(more)), "operations only narrow");
        let mut unbounded = third();
        unbounded.max_operations = None;
        assert!(exceeds(refused(unbounded)), "a quota is inherited");
        let mut elsewhere = third();
        elsewhere.audience = vec!["https://mail.example".into()];
        assert!(exceeds(refused(elsewhere)), "audience only narrows");
        let mut skipped = third();
        skipped.actors = vec![ClientId::from("a3"), ClientId::from("a1")];
        assert!(exceeds(refused(skipped)), "the chain extends the parent's");
        let mut other_person = third();
        other_person.user_id = Some(UserId::from("bob"));
        assert!(exceeds(refused(other_person)));
        let mut not_held = third();
        not_held.client_id = ClientId::from("a2");
        assert_eq!(
            refused(not_held),
            Some(Refusal::ChainNotHeld(ClientId::from("a2")))
        );

        // Operations recorded on the parent after the HTTP layer read it still count.
        let mut used = commands.clone();
        for n in 0..2 {
            used.push(Command::RecordOperation {
                digest: Digest::of(b"t2"),
                operation: format!("op-{n}"),
                resource: None,
                idempotency_key: None,
                approval: None,
            });
        }
        let state = given(&used, at());
        assert!(matches!(
            decide(&state, &Command::IssueToken(third()), at()).err(),
            Some(Refusal::ExceedsParent(_, why)) if why.contains("used up")
        ));
    }

    #[test]
    fn what_changed_since_the_request_was_read_refuses_a_chained_token() {
        let base = chain_of_two();
        let after = |change: Command| {
            let mut commands = base.clone();
            commands.push(change);
            let state = given(&commands, at());
            decide(&state, &Command::IssueToken(third()), at()).err()
        };
        let parent_revoked = after(Command::RevokeToken {
            jti: Jti::from("t1"),
            by: admin(),
        });
        assert_eq!(
            parent_revoked,
            Some(Refusal::ParentInactive(Jti::from("t2")))
        );
        let delegation_revoked = after(Command::RevokeDelegation {
            delegation_id: DelegationId::from("d1"),
            by: person("ada"),
        });
        assert_eq!(
            delegation_revoked,
            Some(Refusal::ParentInactive(Jti::from("t2")))
        );
        let deactivated = after(Command::DeactivateUser {
            user_id: UserId::from("ada"),
            by: admin(),
        });
        assert_eq!(
            deactivated,
            Some(Refusal::UserInactive(UserId::from("ada")))
        );
        let disabled = after(Command::DisableAgent {
            client_id: ClientId::from("a1"),
            by: admin(),
        });
        assert_eq!(disabled, Some(Refusal::ParentInactive(Jti::from("t2"))));
        let tightened = after(Command::SetAgentPolicy(AgentPolicySet {
            client_id: ClientId::from("a1"),
            max_ttl_seconds: None,
            allowed_scopes: None,
            allowed_audiences: None,
            max_delegation_depth: Some(2),
            max_operations: None,
            token_requests_per_minute: None,
            by: admin(),
        }));
        assert_eq!(
            tightened,
            Some(Refusal::TooDeep {
                depth: 3,
                client_id: ClientId::from("a1"),
                ceiling: 2
            }),
            "the innermost agent's ceiling binds the whole chain"
        );
    }

    #[test]
    fn a_token_never_outlives_the_agent_holding_it() {
        let mut commands = people();
        commands.push(Command::GrantDelegation(grant("d1", "ada", None)));
        let mut expiring = agent("a9", &["files:read"]);
        if let Command::RegisterAgent(registered) = &mut expiring {
            registered.expires_at = Some(at().plus_seconds(600));
        }
        commands.push(expiring);
        let state = given(&commands, at());
        let held_by_a9 = |seconds: i64| {
            let mut token = issued(chained("t9", &["a9"], None, None));
            token.user_id = None;
            token.actors = vec![];
            token.expires_at = at().plus_seconds(seconds);
            decide(&state, &Command::IssueToken(token), at()).err()
        };
        assert_eq!(held_by_a9(600), None, "up to the agent's expiry");
        assert_eq!(
            held_by_a9(601),
            Some(Refusal::OutlivesAgent(
                ClientId::from("a9"),
                at().plus_seconds(600)
            ))
        );

        // Set after a token was read for the agent: the sequencer still says no.
        commands.push(Command::SetAgentIdentity(AgentIdentitySet {
            client_id: ClientId::from("a1"),
            owner: None,
            expires_at: Some(at().plus_seconds(60)),
            by: admin(),
        }));
        let state = given(&commands, at());
        assert_eq!(
            decide(&state, &obo_token("t1", Some("d1"), None), at()).err(),
            Some(Refusal::OutlivesAgent(
                ClientId::from("a1"),
                at().plus_seconds(60)
            ))
        );
    }

    #[test]
    fn erasing_a_person_revokes_everything_acting_for_them_then_records_the_erasure_once() {
        let mut commands = chain_of_two();
        commands.push(Command::IssueToken(third()));
        let state = given(&commands, at());
        let ada = UserId::from("ada");
        let erase = Command::EraseUser {
            user_id: ada.clone(),
            by: admin(),
        };
        let (events, answer) = decide(&state, &erase, at()).unwrap();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind().name()).collect();
        assert_eq!(
            kinds,
            [
                "UserDeactivated",
                "TokenRevoked",
                "TokenRevoked",
                "TokenRevoked",
                "UserErased"
            ]
        );
        assert_eq!(answer, Answer::Revoked { tokens: 3 });
        commands.push(erase.clone());
        let state = given(&commands, at());
        assert_eq!(
            decide(&state, &erase, at()).err(),
            Some(Refusal::UserErased(ada.clone()))
        );
        let back = Command::ReactivateUser {
            user_id: ada.clone(),
            by: admin(),
        };
        assert_eq!(
            decide(&state, &back, at()).err(),
            Some(Refusal::UserErased(ada))
        );
        // An erased person's email is free; anyone else's still is not.
        let again = Command::test_registration(UserId::from("ada2"), "ADA@example.com");
        assert!(decide(&state, &again, at()).is_ok());
        let taken = Command::test_registration(UserId::from("bob2"), "Bob@Example.com");
        assert_eq!(
            decide(&state, &taken, at()).err(),
            Some(Refusal::EmailTaken)
        );
        // A look-alike of a live person (their skeleton, another email) is refused, and
        // named by the person it looks like; the erased person's skeleton is free.
        let mut look_alike = Command::test_registration(UserId::from("bob3"), "b0b@example.com");
        if let (
            Command::RegisterUser {
                email_skeleton_hash,
                ..
            },
            Command::RegisterUser {
                email_skeleton_hash: bob,
                ..
            },
        ) = (
            &mut look_alike,
            Command::test_registration(UserId::from("x"), "bob@example.com"),
        ) {
            *email_skeleton_hash = bob;
        }
        assert_eq!(
            decide(&state, &look_alike, at()).err(),
            Some(Refusal::EmailLooksTaken(UserId::from("bob")))
        );
        let nobody = Command::EraseUser {
            user_id: UserId::from("nobody"),
            by: admin(),
        };
        assert_eq!(
            decide(&state, &nobody, at()).err(),
            Some(Refusal::UnknownUser(UserId::from("nobody")))
        );
    }

    #[test]
    fn a_chain_is_no_deeper_than_the_default_ceiling_when_no_policy_sets_one() {
        let mut commands = people();
        let names: Vec<String> = (0..=DELEGATION_DEPTH_DEFAULT)
            .map(|n| format!("c{n}"))
            .collect();
        for name in &names {
            commands.push(agent(name, &["files:read"]));
        }
        let state = given(&commands, at());
        let chain = |depth: usize| -> Vec<ClientId> {
            names[..depth]
                .iter()
                .map(|n| ClientId::from(n.as_str()))
                .collect()
        };
        let deepest = DELEGATION_DEPTH_DEFAULT as usize;
        assert_eq!(within_depth(&state, &chain(deepest)), Ok(()));
        assert_eq!(
            within_depth(&state, &chain(deepest + 1)),
            Err(Refusal::TooDeep {
                depth: deepest + 1,
                client_id: ClientId::from("c0"),
                ceiling: DELEGATION_DEPTH_DEFAULT
            })
        );
    }

    #[test]
    fn revoking_or_disabling_anything_above_a_chained_token_revokes_it_in_the_same_decision() {
        let mut commands = chain_of_two();
        commands.push(Command::IssueToken(third()));
        let state = given(&commands, at());
        let revoked = |command: Command| -> Vec<(String, RevocationCause)> {
            decide(&state, &command, at())
                .map(|(events, _)| events)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|event| match event {
                    Event::TokenRevoked(e) => Some((e.jti.to_string(), e.cause)),
                    _ => None,
                })
                .collect()
        };
        let parent = |jti: &str| RevocationCause::ParentRevoked {
            parent_jti: Jti::from(jti),
        };
        let by = admin();
        assert_eq!(
            revoked(Command::RevokeToken {
                jti: Jti::from("t1"),
                by: by.clone()
            }),
            vec![
                ("t1".into(), RevocationCause::Requested { by: by.clone() }),
                ("t2".into(), parent("t1")),
                ("t3".into(), parent("t2")),
            ]
        );
        let a2 = ClientId::from("a2");
        assert_eq!(
            revoked(Command::DisableAgent {
                client_id: a2.clone(),
                by: by.clone()
            }),
            vec![
                (
                    "t2".into(),
                    RevocationCause::AgentDisabled { client_id: a2 }
                ),
                ("t3".into(), parent("t2")),
            ],
            "a1's own token for ada stays"
        );
        let ada = UserId::from("ada");
        assert_eq!(
            revoked(Command::DeactivateUser {
                user_id: ada.clone(),
                by
            }),
            vec![
                (
                    "t1".into(),
                    RevocationCause::UserDeactivated { user_id: ada }
                ),
                ("t2".into(), parent("t1")),
                ("t3".into(), parent("t2")),
            ]
        );
    }
}

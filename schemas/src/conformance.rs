//! Tests that pin the vocabulary to its published artefacts: one JSON Schema file per
//! event kind and one for the export record (`schemas/events/`, `schemas/record.schema.json`),
//! and the test vectors (`schemas/vectors/`). Run with `WRIT_BLESS=1` to rewrite them after
//! a deliberate change to the vocabulary; a normal run fails if they drift.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn ts(text: &str) -> Timestamp {
    Timestamp::parse(text).unwrap_or_else(|err| unreachable!("{err}"))
}

fn wrapped() -> Wrapped {
    Wrapped {
        kek_id: "kek-2026".into(),
        nonce: "AAAAAAAAAAAAAAAA".into(),
        ciphertext: "AAAAAAAAAAAAAAAAAAAAAA".into(),
    }
}

/// A value wrapped again under a newer key (a rotation).
fn rewrapped() -> Wrapped {
    Wrapped {
        kek_id: "kek-2027".into(),
        nonce: "AAAAAAAAAAAAAAAB".into(),
        ciphertext: "AAAAAAAAAAAAAAAAAAAAAQ".into(),
    }
}

fn admin() -> Actor {
    Actor::Admin {
        token_id: "adm_1".into(),
    }
}

/// One example of every kind (the match is exhaustive, so a new kind must add one).
pub(crate) fn sample(kind: EventKind) -> Event {
    let agent = ClientId::from("agt_research");
    let user = UserId::from("5f0c6a4e-8d1b-4c1e-9a53-3f7e2b9d0c11");
    let jti = Jti::from("jti_7Qm2");
    let digest = Digest::of(b"example");
    match kind {
        EventKind::AgentRegistered => Event::from(AgentRegistered {
            client_id: agent,
            name: "Research assistant".into(),
            owner: Some(user),
            scopes: vec!["files:read".into(), "mail:send".into()],
            grant_types: vec!["client_credentials".into()],
            redirect_uris: vec![],
            token_endpoint_auth_method: "client_secret_basic".into(),
            secret_hash: Some(digest),
            secret_expires_at: None,
            require_consent: true,
            agent_type: AgentType::Autonomous,
            expires_at: Some(ts("2027-01-01T00:00:00.000000Z")),
            by: admin(),
            jwks: None,
        }),
        EventKind::AgentIdentitySet => Event::from(AgentIdentitySet {
            client_id: agent,
            owner: Some(user),
            expires_at: None,
            by: admin(),
        }),
        EventKind::AgentSecretRotated => Event::from(AgentSecretRotated {
            client_id: agent,
            secret_hash: digest,
            previous_valid_until: ts("2026-11-24T00:00:00.000000Z"),
            secret_expires_at: None,
            by: admin(),
        }),
        EventKind::AgentDisabled => Event::from(AgentDisabled {
            client_id: agent,
            by: admin(),
        }),
        EventKind::AgentEnabled => Event::from(AgentEnabled {
            client_id: agent,
            by: admin(),
        }),
        EventKind::AgentReviewed => Event::from(AgentReviewed {
            client_id: agent,
            note: Some("scopes checked against the runbook".into()),
            by: Actor::User { user_id: user },
        }),
        EventKind::AgentPolicySet => Event::from(AgentPolicySet {
            client_id: agent,
            max_ttl_seconds: Some(600),
            allowed_scopes: Some(vec!["files:read".into()]),
            allowed_audiences: None,
            max_delegation_depth: Some(2),
            max_operations: Some(100),
            token_requests_per_minute: Some(120),
            by: admin(),
        }),
        EventKind::UserPasswordSet => Event::from(UserPasswordSet {
            user_id: user,
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$2pG8XnJ7kUeW9tBjrN3oVb0m6wQv5yHfYd1sLcTzA4E".into(),
            by: admin(),
        }),
        EventKind::AuthorizationCodeIssued => Event::from(AuthorizationCodeIssued {
            code_id: "code_1a2b3c4d".into(),
            digest,
            client_id: agent,
            user_id: user,
            delegation_id: DelegationId::from("7c9e6679-7425-40de-944b-e07fc1f90ae7"),
            redirect_uri: "https://client.example.com/callback".into(),
            code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
            scopes: vec!["files:read".into()],
            audience: vec!["https://files.example.com".into()],
            expires_at: ts("2026-12-01T10:01:00.000000Z"),
        }),
        EventKind::AuthorizationCodeRedeemed => Event::from(AuthorizationCodeRedeemed {
            code_id: "code_1a2b3c4d".into(),
            jti,
        }),
        EventKind::RefreshTokenRevoked => Event::from(RefreshTokenRevoked {
            refresh_id: RefreshId::from("rt_1"),
            family_id: FamilyId::from("fam_1"),
            by: Actor::Agent { client_id: agent },
        }),
        EventKind::SessionEnded => Event::from(SessionEnded {
            user_id: user,
            session_id: "s_3q2-7wEvYI0dxS1pVx5n9g".into(),
            expires_at: ts("2026-12-01T18:00:00.000000Z"),
        }),
        EventKind::SessionsEnded => Event::from(SessionsEnded {
            user_id: user.clone(),
            generation: 2,
            reason: SessionsEndedReason::SignOutEverywhere,
            by: Actor::User { user_id: user },
        }),
        EventKind::SignInFailuresDetected => Event::from(SignInFailuresDetected {
            user_id: user,
            failures: 5,
            first_failure_at: ts("2026-12-01T10:00:00.000000Z"),
        }),
        EventKind::AuthorizationCodeReplayed => Event::from(AuthorizationCodeReplayed {
            code_id: "code_1a2b3c4d".into(),
            client_id: agent,
        }),
        EventKind::ApprovalRequested => Event::from(ApprovalRequested {
            approval_id: "apr_5e6f7a8b9c0d1e2f".into(),
            jti,
            client_id: agent,
            user_id: Some(user.clone()),
            approver: user,
            server_id: ServerId::from("srv_files"),
            tool_name: "delete_file".into(),
            arguments_digest: digest,
            arguments_sealed: Sealed {
                nonce: SEALED_NAME.0.into(),
                ciphertext: SEALED_NAME.1.into(),
            },
            policy_ids: vec!["agent:deletes".into(), "user:allow-all".into()],
            expires_at: ts("2026-12-01T10:15:00.000000Z"),
        }),
        EventKind::ApprovalDecided => Event::from(ApprovalDecided {
            approval_id: "apr_5e6f7a8b9c0d1e2f".into(),
            decision: ApprovalDecision::Approved,
            by: Actor::User { user_id: user },
        }),
        EventKind::ApprovalUsed => Event::from(ApprovalUsed {
            approval_id: "apr_5e6f7a8b9c0d1e2f".into(),
            jti,
        }),
        EventKind::PolicySetAssigned => Event::from(PolicySetAssigned {
            subject: PolicySubject::Agent { client_id: agent },
            policies: "@id(\"read\") permit(principal, action, resource) when { resource.name == \"read_file\" };".into(),
            by: admin(),
        }),
        EventKind::UserRegistered => Event::from(UserRegistered {
            user_id: user,
            email: Some("ada@example.com".into()),
            name: Some("Ada".into()),
            email_sealed: None,
            email_hash: None,
            name_sealed: None,
            email_skeleton_hash: None,
            by: admin(),
        }),
        EventKind::UserDeactivated => Event::from(UserDeactivated {
            user_id: user,
            by: admin(),
        }),
        EventKind::UserReactivated => Event::from(UserReactivated {
            user_id: user,
            by: admin(),
        }),
        EventKind::ApiKeyIssued => Event::from(ApiKeyIssued {
            key_id: ApiKeyId::from("0d4f7c52-61f1-4a51-8f2c-6a1b0f3e9d22"),
            user_id: user,
            key_hash: digest,
            by: admin(),
        }),
        EventKind::ApiKeyRevoked => Event::from(ApiKeyRevoked {
            key_id: ApiKeyId::from("0d4f7c52-61f1-4a51-8f2c-6a1b0f3e9d22"),
            by: Actor::User { user_id: user },
        }),
        EventKind::DelegationGranted => Event::from(DelegationGranted {
            delegation_id: DelegationId::from("b3c1e0a2-7a2d-4f0e-8c55-0e1d2c3b4a59"),
            user_id: user.clone(),
            client_id: agent,
            scopes: Some(vec!["files:read".into()]),
            expires_at: Some(ts("2026-12-31T23:59:59.000000Z")),
            by: Actor::User { user_id: user },
        }),
        EventKind::DelegationRevoked => Event::from(DelegationRevoked {
            delegation_id: DelegationId::from("b3c1e0a2-7a2d-4f0e-8c55-0e1d2c3b4a59"),
            by: Actor::User { user_id: user },
        }),
        EventKind::SessionGrantCreated => Event::from(SessionGrantCreated {
            grant_id: GrantId::from("c9a4d3e1-2b6f-4d8a-9e7c-1f2a3b4c5d6e"),
            client_id: agent,
            server_id: ServerId::from("srv_slack"),
            user_id: user.clone(),
            shared: false,
            by: Actor::User { user_id: user },
        }),
        EventKind::SessionGrantToggled => Event::from(SessionGrantToggled {
            grant_id: GrantId::from("c9a4d3e1-2b6f-4d8a-9e7c-1f2a3b4c5d6e"),
            shared: true,
            by: Actor::User { user_id: user },
        }),
        EventKind::SessionGrantRevoked => Event::from(SessionGrantRevoked {
            grant_id: GrantId::from("c9a4d3e1-2b6f-4d8a-9e7c-1f2a3b4c5d6e"),
            by: Actor::User { user_id: user },
        }),
        EventKind::TokenIssued => Event::from(TokenIssued {
            jti,
            digest,
            kid: KeyId::from("k1"),
            grant_type: "urn:ietf:params:oauth:grant-type:token-exchange".into(),
            client_id: ClientId::from("agt_summarizer"),
            subject: user.to_string(),
            user_id: Some(user),
            actors: vec![ClientId::from("agt_summarizer"), agent],
            delegation_id: Some(DelegationId::from("b3c1e0a2-7a2d-4f0e-8c55-0e1d2c3b4a59")),
            parent_jti: Some(Jti::from("jti_parent")),
            family_id: None,
            audience: vec!["https://files.example.com".into()],
            scopes: vec!["files:read".into()],
            issued_at: ts("2026-11-23T09:00:00.000000Z"),
            expires_at: ts("2026-11-23T09:15:00.000000Z"),
            agent_type: AgentType::Ephemeral,
            task_id: Some("task-42".into()),
            max_operations: Some(10),
            expires_on_completion: true,
            intent_description: Some("summarise the Q3 report".into()),
            intent_sealed: None,
            client_assertion: None,
        }),
        EventKind::TokenRevoked => Event::from(TokenRevoked {
            jti,
            cause: RevocationCause::ParentRevoked {
                parent_jti: Jti::from("jti_parent"),
            },
        }),
        EventKind::TokenExhausted => Event::from(TokenExhausted { jti }),
        EventKind::OperationRecorded => Event::from(OperationRecorded {
            jti,
            operation: "files.read".into(),
            resource: Some("q3-report.pdf".into()),
            idempotency_key: Some("op-1".into()),
        }),
        EventKind::RefreshTokenIssued => Event::from(RefreshTokenIssued {
            refresh_id: RefreshId::from("rt_1"),
            digest,
            family_id: FamilyId::from("fam_1"),
            client_id: agent,
            user_id: Some(user),
            scopes: vec!["files:read".into()],
            expires_at: ts("2026-12-23T09:00:00.000000Z"),
            access_jti: jti,
        }),
        EventKind::RefreshTokenRotated => Event::from(RefreshTokenRotated {
            refresh_id: RefreshId::from("rt_1"),
            replaced_by: RefreshId::from("rt_2"),
        }),
        EventKind::RefreshTokenReuseDetected => Event::from(RefreshTokenReuseDetected {
            refresh_id: RefreshId::from("rt_1"),
            family_id: FamilyId::from("fam_1"),
            client_id: agent,
        }),
        // The shape of records from before credentials had names: they still decode.
        EventKind::AdminTokenIssued => Event::from(AdminTokenIssued {
            token_id: "adm_2".into(),
            token_hash: digest,
            by: admin(),
            name: None,
            role: None,
            expires_at: None,
        }),
        EventKind::AdminTokenRevoked => Event::from(AdminTokenRevoked {
            token_id: "adm_2".into(),
            by: admin(),
        }),
        EventKind::CheckpointKeyPublished => Event::from(CheckpointKeyPublished {
            name: "auth.example.com".into(),
            public_key: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo".into(),
        }),
        EventKind::ToolCallCompleted => Event::from(ToolCallCompleted {
            call_id: "call_1a2b3c4d5e6f7a8b".into(),
            jti,
            server_id: ServerId::from("srv_files"),
            tool_name: "whoami".into(),
            outcome: ToolCallOutcome::Succeeded,
            detail: None,
            credential: Some(ToolCallCredential {
                grant_id: Some(GrantId::from("3d2c1b0a-9f8e-4d7c-8b6a-5f4e3d2c1b0a")),
                user_id: user,
            }),
            policy_ids: vec!["agent:allow-tools".into(), "user:allow-whoami".into()],
        }),
        EventKind::UserErased => Event::from(UserErased {
            user_id: user,
            by: admin(),
        }),
        EventKind::ConnectionEstablished => Event::from(ConnectionEstablished {
            user_id: user.clone(),
            server_id: ServerId::from("srv_slack"),
            access_token: wrapped(),
            refresh_token: Some(wrapped()),
            expires_at: Some(ts("2026-12-01T10:00:00.000000Z")),
            scopes: vec!["channels:read".into()],
        }),
        EventKind::ConnectionRefreshed => Event::from(ConnectionRefreshed {
            user_id: user.clone(),
            server_id: ServerId::from("srv_slack"),
            generation: 1,
            access_token: wrapped(),
            refresh_token: Some(wrapped()),
            expires_at: Some(ts("2026-12-01T11:00:00.000000Z")),
        }),
        EventKind::ConnectionRefreshFailed => Event::from(ConnectionRefreshFailed {
            user_id: user.clone(),
            server_id: ServerId::from("srv_slack"),
            generation: 2,
            reason: "invalid_grant: refresh token revoked".into(),
            broken: true,
        }),
        EventKind::ConnectionDeleted => Event::from(ConnectionDeleted {
            user_id: user.clone(),
            server_id: ServerId::from("srv_slack"),
            by: Actor::User {
                user_id: user.clone(),
            },
        }),
        EventKind::UpstreamRevocationCompleted => Event::from(UpstreamRevocationCompleted {
            user_id: user.clone(),
            server_id: ServerId::from("srv_slack"),
            generation: 2,
            token: UpstreamTokenKind::RefreshToken,
            outcome: RevocationOutcome::Failed {
                status: Some(503),
                reason: "the provider answered 503 Service Unavailable".into(),
            },
            attempt: 1,
        }),
        EventKind::ServerRegistered => Event::from(ServerRegistered {
            server_id: ServerId::from("srv_slack"),
            name: "Slack".into(),
            url: "https://mcp.slack.example/mcp".into(),
            auth: ServerAuth::Oauth(UpstreamOAuth {
                authorization_url: "https://slack.example/oauth/authorize".into(),
                token_url: "https://slack.example/oauth/token".into(),
                revocation_url: None,
                client_id: "writ-app".into(),
                client_secret: Some(wrapped()),
                scopes: vec!["channels:read".into()],
            }),
            by: admin(),
        }),
        EventKind::ServerSecretRewrapped => Event::from(ServerSecretRewrapped {
            server_id: ServerId::from("srv_slack"),
            client_secret: rewrapped(),
        }),
        EventKind::ConnectionRewrapped => Event::from(ConnectionRewrapped {
            user_id: user.clone(),
            server_id: ServerId::from("srv_slack"),
            generation: 2,
            access_token: rewrapped(),
            refresh_token: Some(rewrapped()),
        }),
        // Written as the first version of the event was, so its bytes (and the vectors'
        // hashes) pin that Ed25519 records are unchanged.
        EventKind::SigningKeyRotated => Event::from(SigningKeyRotated {
            kid: KeyId::from("k2"),
            alg: SigningAlgorithm::EdDsa,
            public_key: Some("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo".into()),
            jwk: None,
            previous_kid: Some(KeyId::from("k1")),
            by: None,
        }),
    }
}

/// Further shapes of a kind than its one sample shows, checked like the samples and
/// appended to the vectors after them: a `SigningKeyRotated` for each key type, sealed
/// personal data, a `private_key_jwt` agent, a token paid for by a client assertion, a
/// named auditor credential with an expiry, and a secret rotation with no grace and an
/// expiry.
pub(crate) fn extra_samples() -> Vec<Event> {
    let ec = PublicJwk::Ec {
        crv: EcCurve::P256,
        x: "4VF1VicK_dssmp64OoQb6jZDMy216-2Og9UkCZQNp_E".into(),
        y: "9kSOBtKselyrJPszSts1au_V-C0gbUX2FMmTPERorpk".into(),
    };
    let rsa = PublicJwk::Rsa {
        n: concat!(
            "zDl9U8Hr7d71suddJEO4Q1xuAZasNar8mXm43vhZdkY_SX3WaGCMGUzdWuvqGuy2qG0Lsx0brKeFdP27",
            "aKov2ppXtQeySQqqIdwcGxAQb2MnPC2dUr8V4g7q8-WDsEYffkuOSsdIs3Ja7YjTHF7Ve4tHtJzP8424",
            "-LXZ1fuVxS6RNig5Rp4cSChWVmwnXzHxc8JVi3702WTjsg7yluKeFpQ5DGMD63mA8K7kI2v69Cw4GzC1",
            "80MJcvWbWtd67lf0APVuiWUEOgfLSn6gKBVNmIzo-SCQIRkGzsn9eLLYiHXI3rOG1wYX6DVcOWpLuxYe",
            "9KLouIMqKpgv-JbFmfbArw"
        )
        .into(),
        e: "AQAB".into(),
    };
    vec![
        Event::from(SigningKeyRotated {
            kid: KeyId::from("k3"),
            alg: SigningAlgorithm::Es256,
            public_key: None,
            jwk: Some(ec),
            previous_kid: Some(KeyId::from("k2")),
            by: Some(admin()),
        }),
        Event::from(SigningKeyRotated {
            kid: KeyId::from("k4"),
            alg: SigningAlgorithm::Rs256,
            public_key: None,
            jwk: Some(rsa),
            previous_kid: Some(KeyId::from("k3")),
            by: Some(Actor::System),
        }),
        Event::from(UserRegistered {
            user_id: UserId::from(SEALED_USER),
            email: None,
            name: None,
            email_sealed: Some(Sealed {
                nonce: SEALED_EMAIL.0.into(),
                ciphertext: SEALED_EMAIL.1.into(),
            }),
            // A stand-in: the real hash is keyed with a deployment's own secret key.
            email_hash: Some(Digest::of(b"grace@example.com")),
            name_sealed: Some(Sealed {
                nonce: SEALED_NAME.0.into(),
                ciphertext: SEALED_NAME.1.into(),
            }),
            email_skeleton_hash: None,
            by: admin(),
        }),
        Event::from(TokenIssued {
            jti: Jti::from("jti_sealed"),
            digest: Digest::of(b"sealed"),
            kid: KeyId::from("k4"),
            grant_type: "urn:ietf:params:oauth:grant-type:token-exchange".into(),
            client_id: ClientId::from("agt_summarizer"),
            subject: SEALED_USER.into(),
            user_id: Some(UserId::from(SEALED_USER)),
            actors: vec![ClientId::from("agt_summarizer")],
            delegation_id: Some(DelegationId::from("0d9e3f5a-1c2b-4e6f-8a7d-9b0c1d2e3f40")),
            parent_jti: None,
            family_id: None,
            audience: vec![],
            scopes: vec!["files:read".into()],
            issued_at: ts("2026-11-23T09:01:00.000000Z"),
            expires_at: ts("2026-11-23T09:16:00.000000Z"),
            agent_type: AgentType::Autonomous,
            task_id: None,
            max_operations: None,
            expires_on_completion: false,
            intent_description: None,
            intent_sealed: Some(Box::new(Sealed {
                nonce: SEALED_INTENT.0.into(),
                ciphertext: SEALED_INTENT.1.into(),
            })),
            client_assertion: None,
        }),
        // A `private_key_jwt` agent: public keys, no secret.
        Event::from(AgentRegistered {
            client_id: ClientId::from("agt_keyed"),
            name: "Nightly reconciler".into(),
            owner: None,
            scopes: vec!["ledger:read".into()],
            grant_types: vec!["client_credentials".into()],
            redirect_uris: vec![],
            token_endpoint_auth_method: "private_key_jwt".into(),
            secret_hash: None,
            secret_expires_at: None,
            require_consent: false,
            agent_type: AgentType::Autonomous,
            expires_at: None,
            by: admin(),
            jwks: Some(ClientJwks {
                keys: vec![ClientJwk {
                    kty: "OKP".into(),
                    kid: Some("reconciler-1".into()),
                    alg: Some("EdDSA".into()),
                    use_: Some("sig".into()),
                    crv: Some("Ed25519".into()),
                    x: Some("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo".into()),
                    y: None,
                    n: None,
                    e: None,
                }],
            }),
        }),
        // Its token, with the client assertion it spent.
        Event::from(TokenIssued {
            jti: Jti::from("jti_keyed"),
            digest: Digest::of(b"keyed"),
            kid: KeyId::from("k4"),
            grant_type: "client_credentials".into(),
            client_id: ClientId::from("agt_keyed"),
            subject: "agt_keyed".into(),
            user_id: None,
            actors: vec![],
            delegation_id: None,
            parent_jti: None,
            family_id: None,
            audience: vec![],
            scopes: vec!["ledger:read".into()],
            issued_at: ts("2026-11-23T09:02:00.000000Z"),
            expires_at: ts("2026-11-23T09:17:00.000000Z"),
            agent_type: AgentType::Autonomous,
            task_id: None,
            max_operations: None,
            expires_on_completion: false,
            intent_description: None,
            intent_sealed: None,
            client_assertion: Some(AssertionUsed {
                jti: "4f1c6a2e-assertion-1".into(),
                expires_at: ts("2026-11-23T09:04:00.000000Z"),
            }),
        }),
        // A named, read-only credential that expires.
        Event::from(AdminTokenIssued {
            token_id: "adm_3".into(),
            token_hash: Digest::of(b"auditor"),
            by: admin(),
            name: Some("quarterly audit".into()),
            role: Some(AdminRole::Auditor),
            expires_at: Some(ts("2026-12-23T09:00:00.000000Z")),
        }),
        // A rotation that cuts the previous secret off at once (its grace ends at the
        // rotation) and gives the new secret an expiry.
        Event::from(AgentSecretRotated {
            client_id: ClientId::from("agt_summarizer"),
            secret_hash: Digest::of(b"rotated"),
            previous_valid_until: ts("2026-11-23T09:03:00.000000Z"),
            secret_expires_at: Some(ts("2027-02-01T00:00:00.000000Z")),
            by: admin(),
        }),
    ]
}

/// The person of the sealed samples. Their values are real: sealed (LEDGER.md §12) under
/// the key of 32 bytes 0x01..0x20 with fixed nonces, by the writ crate's `people` tests,
/// which pin the same bytes.
const SEALED_USER: &str = "9a7c4f1e-2b3d-4e5f-8a6b-7c8d9e0f1a2b";
/// `grace@example.com`, field `email`: (nonce, ciphertext).
const SEALED_EMAIL: (&str, &str) = (
    "AAAAAAAAAAAAAAAB",
    "y7qL38BAVHYWpbAF9_oYxbjfDCnqWLNAwPBYxJ4r0sth",
);
/// `Grace`, field `name`.
const SEALED_NAME: (&str, &str) = ("AAAAAAAAAAAAAAAC", "L1l3Ugr5jcguZ1NbW_vR272hthN5");
/// `file the quarterly expense report`, field `intent_description`.
const SEALED_INTENT: (&str, &str) = (
    "AAAAAAAAAAAAAAAD",
    "CqrxvAT3A6WE0I2eh7d4hoQ5HrNCI_lb6K1H7bzPsjv6QNbh_aGznR6J4oc4_o6NnA",
);

/// Every sample: one of each kind, then the extra shapes.
fn all_samples() -> Vec<Event> {
    EventKind::ALL
        .iter()
        .map(|&kind| sample(kind))
        .chain(extra_samples())
        .collect()
}

fn kind_schema(kind: EventKind) -> Value {
    let mut generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let mut payload = kind.payload_schema(&mut generator).to_value();
    let defs = payload.as_object_mut().and_then(|object| {
        object.remove("$schema");
        object.remove("title");
        object.remove("$defs")
    });
    let mut schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": kind.name(),
        "description": format!("A `{}` event as stored in the ledger (canonical JSON).", kind.name()),
        "type": "object",
        "required": ["data", "type", "v"],
        "additionalProperties": false,
        "properties": {
            "data": payload,
            "type": { "const": kind.name() },
            "v": { "type": "integer", "minimum": 1, "maximum": kind.version() }
        }
    });
    if let (Some(defs), Some(object)) = (defs, schema.as_object_mut()) {
        object.insert("$defs".into(), defs);
    }
    schema
}

fn record_schema() -> Value {
    let hex = json!({ "type": "string", "pattern": "^[0-9a-f]{64}$" });
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Record",
        "description": "One line of a ledger export. `event` matches the schema file of its `type` in events/.",
        "type": "object",
        "required": ["event", "hash", "prev_hash", "seq", "ts"],
        "additionalProperties": false,
        "properties": {
            "event": {
                "type": "object",
                "required": ["data", "type", "v"],
                "properties": {
                    "type": { "enum": EventKind::ALL.iter().map(|k| k.name()).collect::<Vec<_>>() }
                }
            },
            "hash": hex,
            "prev_hash": hex,
            "seq": { "type": "integer", "minimum": 1, "maximum": crate::INTEGER_MAGNITUDE_MAX },
            "ts": {
                "type": "string",
                "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{6}Z$"
            }
        }
    })
}

/// Compares `text` with the committed file, or rewrites it under `WRIT_BLESS=1`.
fn pin(path: &Path, text: &str) {
    if std::env::var_os("WRIT_BLESS").is_some() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap_or_else(|err| unreachable!("{err}"));
        }
        std::fs::write(path, text).unwrap_or_else(|err| unreachable!("{err}"));
        return;
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == text,
        "{} is out of date: run the tests once with WRIT_BLESS=1",
        path.display()
    );
}

/// Pretty JSON with every object's members in sorted order, whether or not a crate in the
/// build turned on serde_json's `preserve_order` (cedar-policy does): the pinned files must
/// read the same in every build.
fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(&sorted(value)).unwrap_or_default() + "\n"
}

fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(members) => {
            let mut names: Vec<&String> = members.keys().collect();
            names.sort();
            Value::Object(
                names
                    .into_iter()
                    .map(|name| (name.clone(), sorted(&members[name])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

#[test]
fn every_event_kind_has_a_schema_file_that_accepts_it() {
    for &kind in EventKind::ALL {
        let schema = kind_schema(kind);
        pin(
            &root()
                .join("events")
                .join(format!("{}.schema.json", kind.name())),
            &pretty(&schema),
        );
    }
    for event in all_samples() {
        let kind = event.kind();
        let validator = jsonschema::validator_for(&kind_schema(kind))
            .unwrap_or_else(|err| unreachable!("{err}"));
        let bytes = event.encode().unwrap_or_else(|err| unreachable!("{err}"));
        let instance: Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", kind.name());
        assert_eq!(
            Event::decode(&bytes),
            Ok(event),
            "{} round trip",
            kind.name()
        );
        assert_eq!(crate::is_canonical(&bytes), Ok(true));
    }
}

#[test]
fn the_direct_writer_and_the_value_tree_agree_on_every_sample() {
    for event in all_samples() {
        let direct = event.encode().unwrap_or_else(|err| unreachable!("{err}"));
        let via_value = event
            .encode_via_value()
            .unwrap_or_else(|err| unreachable!("{err}"));
        assert_eq!(
            String::from_utf8_lossy(&direct),
            String::from_utf8_lossy(&via_value),
            "{}",
            event.kind().name()
        );
    }
}

/// Records of the first version of `SigningKeyRotated`, byte for byte as writ wrote them
/// (a first key, and a rotation): they must decode, and encode back to the same bytes, or
/// every existing ledger would stop verifying.
#[test]
fn ed25519_key_records_written_before_other_algorithms_keep_their_bytes() {
    for stored in [
        r#"{"data":{"alg":"EdDSA","kid":"k_Zr2b9QmX","public_key":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},"type":"SigningKeyRotated","v":1}"#,
        r#"{"data":{"alg":"EdDSA","kid":"k2","previous_kid":"k1","public_key":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},"type":"SigningKeyRotated","v":1}"#,
    ] {
        let event = Event::decode(stored.as_bytes()).unwrap_or_else(|err| unreachable!("{err}"));
        let Event::SigningKeyRotated(rotation) = &event else {
            unreachable!("{event:?}")
        };
        assert_eq!(
            (rotation.alg, rotation.jwk.as_ref(), rotation.by.as_ref()),
            (SigningAlgorithm::EdDsa, None, None)
        );
        assert_eq!(event.encode().ok().as_deref(), Some(stored.as_bytes()));
    }
}

#[test]
fn signing_key_members_must_fit_the_algorithm_in_the_decoder_and_the_schema() {
    let schema = kind_schema(EventKind::SigningKeyRotated);
    let validator = jsonschema::validator_for(&schema).unwrap_or_else(|err| unreachable!("{err}"));
    let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    let ec = json!({"kty": "EC", "crv": "P-256", "x": x, "y": x});
    let rsa = json!({"kty": "RSA", "n": x, "e": "AQAB"});
    let event = |data: Value| json!({"data": data, "type": "SigningKeyRotated", "v": 1});
    for good in [
        json!({"kid": "k", "alg": "EdDSA", "public_key": x}),
        json!({"kid": "k", "alg": "ES256", "jwk": ec}),
        json!({"kid": "k", "alg": "RS256", "jwk": rsa}),
    ] {
        let good = event(good);
        assert!(validator.is_valid(&good), "schema refused {good}");
        let bytes = crate::to_canonical_vec(&good).unwrap_or_default();
        assert!(Event::decode(&bytes).is_ok(), "decoder refused {good}");
    }
    for bad in [
        json!({"kid": "k", "alg": "ES256", "public_key": x}),
        json!({"kid": "k", "alg": "ES256", "jwk": rsa}),
        json!({"kid": "k", "alg": "ES256", "jwk": ec, "public_key": x}),
        json!({"kid": "k", "alg": "ES256", "jwk": null}),
        json!({"kid": "k", "alg": "RS256", "jwk": ec}),
        json!({"kid": "k", "alg": "EdDSA", "jwk": ec}),
        json!({"kid": "k", "alg": "EdDSA"}),
        json!({"kid": "k", "alg": "HS256", "public_key": x}),
        json!({"kid": "k", "alg": "ES256", "jwk": {"kty": "EC", "crv": "P-384", "x": x, "y": x}}),
        json!({"kid": "k", "alg": "ES256", "jwk": {"kty": "EC", "crv": "P-256", "x": x, "y": x, "d": x}}),
        json!({"kid": "k", "alg": "RS256", "jwk": {"kty": "RSA", "n": x, "e": "AQAB", "d": x}}),
        json!({"kid": "k", "alg": "RS256", "jwk": {"kty": "RSA", "n": x}}),
    ] {
        let bad = event(bad);
        assert!(!validator.is_valid(&bad), "schema accepted {bad}");
        let bytes = crate::to_canonical_vec(&bad).unwrap_or_default();
        assert!(Event::decode(&bytes).is_err(), "decoder accepted {bad}");
    }
    let bytes =
        crate::to_canonical_vec(&event(json!({"kid": "k", "alg": "ES256", "public_key": x})))
            .unwrap_or_default();
    assert_eq!(
        Event::decode(&bytes).map_err(|err| err.to_string()),
        Err("SigningKeyRotated payload does not match its schema: an ES256 signing key carries `jwk` with kty EC and no `public_key`".into())
    );
}

#[test]
fn schema_files_refuse_what_the_decoder_refuses() {
    let schema = kind_schema(EventKind::TokenExhausted);
    let validator = jsonschema::validator_for(&schema).unwrap_or_else(|err| unreachable!("{err}"));
    for bad in [
        json!({"data": {"jti": "a", "extra": 1}, "type": "TokenExhausted", "v": 1}),
        json!({"data": {}, "type": "TokenExhausted", "v": 1}),
        json!({"data": {"jti": "a"}, "type": "TokenRevoked", "v": 1}),
        json!({"data": {"jti": "a"}, "type": "TokenExhausted", "v": 2}),
    ] {
        assert!(!validator.is_valid(&bad), "schema accepted {bad}");
        let bytes = crate::to_canonical_vec(&bad).unwrap_or_default();
        assert!(Event::decode(&bytes).is_err(), "decoder accepted {bad}");
    }
}

/// The vectors: every sample kind as one record, chained from seq 1, at fixed times.
fn vector_records() -> Vec<Record> {
    let mut prev = Hash::ZERO;
    let start = ts("2026-11-23T09:00:00.000000Z");
    all_samples()
        .iter()
        .enumerate()
        .map(|(index, event)| {
            let seq = index as u64 + 1;
            let event = event.encode().unwrap_or_else(|err| unreachable!("{err}"));
            let record = Record::seal(seq, start.plus_seconds(index as i64), prev, event);
            prev = record.hash;
            record
        })
        .collect()
}

#[test]
fn test_vectors_match_and_verify() {
    let records = vector_records();
    let mut export = Vec::new();
    for record in &records {
        record.write_export_line(&mut export);
    }
    let export = String::from_utf8(export).unwrap_or_default();
    pin(&root().join("vectors").join("ledger.jsonl"), &export);
    let first = &records[0];
    let ts_text = first.ts.to_string();
    let mut material = Vec::new();
    material.extend_from_slice(&first.seq.to_be_bytes());
    material.extend_from_slice(&first.prev_hash.0);
    material.extend_from_slice(&(ts_text.len() as u32).to_be_bytes());
    material.extend_from_slice(ts_text.as_bytes());
    material.extend_from_slice(&first.event);
    let worked = json!({
        "description": "The hash of record 1 of ledger.jsonl, step by step (see LEDGER.md).",
        "context": crate::RECORD_HASH_CONTEXT,
        "seq": first.seq,
        "prev_hash": first.prev_hash.to_hex(),
        "ts": ts_text,
        "event": String::from_utf8_lossy(&first.event),
        "key_material_hex": hex::encode(&material),
        "hash": first.hash.to_hex(),
        "last_hash": records.last().map(|r| r.hash.to_hex()),
        "records": records.len(),
    });
    pin(
        &root().join("vectors").join("record-1.json"),
        &pretty(&worked),
    );

    let committed = std::fs::read(root().join("vectors").join("ledger.jsonl")).unwrap_or_default();
    let items: Vec<Item<'_>> = committed
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| parse_export_line(line).map_err(|e| e.to_string()))
        .collect();
    let mut chain = Chain::new();
    assert_eq!(verify_batch(&mut chain, &items, 2), Ok(()));
    assert_eq!(chain.seq, all_samples().len() as u64);
    for item in &items {
        let schema = record_schema();
        let validator =
            jsonschema::validator_for(&schema).unwrap_or_else(|err| unreachable!("{err}"));
        let line: Value = match item {
            Ok(record) => {
                let mut out = Vec::new();
                record.write_export_line(&mut out);
                serde_json::from_slice(&out).unwrap_or_default()
            }
            Err(err) => unreachable!("{err}"),
        };
        assert!(validator.is_valid(&line), "record schema refused {line}");
    }
    pin(
        &root().join("record.schema.json"),
        &pretty(&record_schema()),
    );
}

#[test]
fn verification_names_the_first_bad_record() {
    let records = vector_records();
    let lines: Vec<Vec<u8>> = records
        .iter()
        .map(|record| {
            let mut out = Vec::new();
            record.write_export_line(&mut out);
            out.pop();
            out
        })
        .collect();
    let verify = |lines: &[Vec<u8>]| {
        let items: Vec<Item<'_>> = lines
            .iter()
            .map(|line| parse_export_line(line).map_err(|e| e.to_string()))
            .collect();
        verify_batch(&mut Chain::new(), &items, 2).map_err(|bad| bad.seq)
    };
    assert_eq!(verify(&lines), Ok(()));

    let mut swapped = lines.clone();
    swapped.swap(3, 4);
    assert_eq!(verify(&swapped), Err(4));

    let mut deleted = lines.clone();
    deleted.remove(6);
    assert_eq!(verify(&deleted), Err(7));

    let mut altered = lines.clone();
    let position = altered[9].iter().position(|&b| b == b'a').unwrap_or(0);
    altered[9][position] = b'b';
    assert_eq!(verify(&altered), Err(10));

    let mut garbled = lines.clone();
    garbled[2] = b"{not json".to_vec();
    assert_eq!(verify(&garbled), Err(3));
}

#[test]
fn the_fast_decoder_accepts_exactly_what_the_strict_one_does() {
    let good = sample(EventKind::TokenExhausted)
        .encode()
        .unwrap_or_default();
    let text = String::from_utf8(good.clone()).unwrap_or_default();
    assert_eq!(
        Event::decode_canonical(&good),
        Some(sample(EventKind::TokenExhausted))
    );
    for bad in [
        text.replace("\"v\":1", "\"v\":01"),
        text.replace("\"v\":1", "\"v\":+1"),
        text.replace("\"v\":1", "\"v\":2"),
        text.replace("}", ",\"x\":1}"),
        text.replace("\"type\":\"TokenExhausted\"", "\"type\":\"Nope\""),
        text.replace("{\"data\":{", "{\"data\":{\"extra\":1,"),
        text.replace("\"jti\"", "\"jtx\""),
    ] {
        let strict = Event::decode_strict(bad.as_bytes()).ok();
        assert_eq!(
            Event::decode_canonical(bad.as_bytes()),
            strict.clone(),
            "fast and strict disagree on {bad}"
        );
        assert_eq!(Event::decode(bad.as_bytes()).ok(), strict, "{bad}");
    }
    for event in all_samples() {
        let bytes = event.encode().unwrap_or_default();
        assert_eq!(
            Event::decode_canonical(&bytes),
            Some(event.clone()),
            "{} takes the fast path",
            event.kind().name()
        );
    }
}

/// The Merkle vectors: the tree over `ledger.jsonl`, one inclusion and one consistency
/// proof, each checked by the verifiers before it is pinned.
#[test]
fn merkle_vectors_match_and_verify() {
    let hashes: Vec<Hash> = vector_records().iter().map(|r| r.hash).collect();
    let size = hashes.len() as u64;
    let subtree = |start: u64, end: u64| crate::root_of(&hashes[start as usize..end as usize]);
    let tree_root = crate::root_of(&hashes);
    let (seq, old_size) = (5u64, 13u64);
    let inclusion =
        crate::inclusion_proof(seq - 1, size, subtree).unwrap_or_else(|err| unreachable!("{err}"));
    let old_root = crate::root_of(&hashes[..old_size as usize]);
    let consistency = crate::consistency_proof(old_size, size, subtree)
        .unwrap_or_else(|err| unreachable!("{err}"));
    assert_eq!(
        crate::verify_inclusion(
            seq - 1,
            size,
            &hashes[seq as usize - 1],
            &inclusion,
            &tree_root
        ),
        Ok(())
    );
    assert_eq!(
        crate::verify_consistency(old_size, size, &old_root, &tree_root, &consistency),
        Ok(())
    );
    let hex_all = |proof: &[Hash]| proof.iter().map(Hash::to_hex).collect::<Vec<_>>();
    let worked = json!({
        "description": "The Merkle tree over the record hashes of ledger.jsonl (see LEDGER.md section 10). Hashes in hex; leaf index = seq - 1.",
        "tree_size": size,
        "root": tree_root.to_hex(),
        "leaf_1": crate::leaf_hash(&hashes[0]).to_hex(),
        "inclusion": {
            "seq": seq,
            "leaf_index": seq - 1,
            "tree_size": size,
            "record_hash": hashes[seq as usize - 1].to_hex(),
            "proof": hex_all(&inclusion),
        },
        "consistency": {
            "from": old_size,
            "to": size,
            "from_root": old_root.to_hex(),
            "to_root": tree_root.to_hex(),
            "proof": hex_all(&consistency),
        },
    });
    pin(
        &root().join("vectors").join("merkle.json"),
        &pretty(&worked),
    );
}

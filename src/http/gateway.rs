//! `POST /api/v1/proxy/{server_id}/tools`: the tool-call gateway. The agent's writ token
//! is found by digest, one operation is recorded under its quota (the same command as
//! `POST /api/v1/operations`), the call is forwarded to the MCP server over streamable
//! HTTP, and how it ended is appended (`ToolCallCompleted`) before the tool's result is
//! answered.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};
use writ_projections::{Approval, State, TokenStatus};
use writ_schemas::{
    ApprovalRequested, ClientId, Digest, ServerAuth, ServerId, Timestamp, ToolCallCompleted,
    ToolCallCredential, ToolCallOutcome, UserId,
};
use zeroize::Zeroizing;

use super::AppState;
use super::discovery::{AudienceFit, audience_fit, server_resource};
use super::error::ApiError;
use crate::connections::CredentialError;
use crate::decide::{Answer, ApprovalUse, Command, Refusal, approvals};
use crate::ledger::SubmitError;
use crate::mcp::{McpClient, McpError};
use crate::people::Field;
use crate::policy::ToolCallRequest;

/// Longest tool name.
pub const TOOL_NAME_BYTES_MAX: usize = 128;

/// An MCP server the gateway forwards to, as registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Its streamable HTTP endpoint.
    pub url: String,
    /// How calls to it are authenticated.
    pub auth: ServerAuth,
}

/// Longest arguments (as JSON) of a call that needs approval: they are sealed into the
/// ledger for the approver to read.
pub const APPROVAL_ARGUMENTS_BYTES_MAX: usize = 16 * 1024;

/// Seconds an approval stays open (asked and not yet used) by default.
pub const APPROVAL_TTL_SECONDS_DEFAULT: u64 = 900;

/// What the gateway forwards with: the MCP client, its sessions shared by every call.
#[derive(Debug)]
pub struct Gateway {
    /// The client.
    pub client: McpClient,
    /// Seconds an approval of a critical call stays open, from when it is asked.
    pub approval_ttl_seconds: u64,
}

fn upstream_of(state: &State, id: &ServerId) -> Option<Upstream> {
    state.server(id).map(|server| Upstream {
        url: server.url.clone(),
        auth: server.auth.clone(),
    })
}

/// The upstream credential a call by the agent for `user` (none: the agent's own token)
/// is forwarded with: whose session the grants lend (`decide::session_grants::resolve`),
/// then that person's access token at the provider, refreshed if it expired.
async fn credential_for(
    state: &AppState,
    client_id: &ClientId,
    server_id: &ServerId,
    user: Option<&UserId>,
    now: Timestamp,
) -> Result<Credential, ApiError> {
    let grant = state.ledger.read(|s| {
        crate::decide::session_grants::resolve(s, client_id, server_id, user)
            .map(|grant| (grant.grant_id.clone(), grant.user_id.clone()))
    });
    let (grant_id, grantor) = grant.map_err(ApiError::from)?;
    let bearer = state
        .connections
        .access_token(&state.ledger, &grantor, server_id, now)
        .await
        .map_err(|err| match err {
            CredentialError::NotFound | CredentialError::Expired => {
                ApiError::Unauthorized(err.to_string())
            }
            CredentialError::Unavailable(why) => ApiError::Unavailable(why),
        })?;
    Ok(Credential {
        bearer,
        used: ToolCallCredential {
            grant_id: Some(grant_id),
            user_id: grantor,
        },
    })
}

/// The upstream credential a call is forwarded with, and whose it is (for the ledger).
pub struct Credential {
    /// The bearer token sent to the MCP server.
    pub bearer: Zeroizing<String>,
    /// Whose connection and which grant lent it.
    pub used: ToolCallCredential,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ToolCall {
    tool_name: String,
    #[serde(default)]
    arguments: Option<Value>,
    /// The approval a critical call is retried under.
    #[serde(default)]
    approval_id: Option<String>,
}

/// The caller as its token says, and what policy decided of the call.
struct Caller {
    jti: writ_schemas::Jti,
    client_id: ClientId,
    user_id: Option<UserId>,
    /// Who approves its critical calls (`decide::approvals::approver`).
    approver: Option<UserId>,
    supervised: bool,
    decision: crate::policy::PolicyDecision,
}

/// The arguments as JSON with every object's members sorted: one text for one meaning,
/// which the approval's digest is taken of and its approver reads.
fn sorted_json(value: &Value) -> String {
    fn write(value: &Value, out: &mut String) {
        match value {
            Value::Object(members) => {
                let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(b.0));
                out.push('{');
                for (index, (name, member)) in sorted.into_iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(name.clone()).to_string());
                    out.push(':');
                    write(member, out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

/// Forwards one tool call. Its 401s point at the gateway's protected resource metadata
/// (RFC 9728 §5.1); other endpoints' 401s are left as they are.
pub(super) async fn call(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Json<ToolCall>,
) -> Result<HttpResponse, ApiError> {
    let issuer = state.issuer.clone();
    forward(state, request, path, body)
        .await
        .map_err(|err| match err {
            ApiError::Unauthorized(detail) => ApiError::ResourceUnauthorized {
                detail,
                resource_metadata: super::discovery::protected_resource_metadata_url(&issuer),
            },
            other => other,
        })
}

async fn forward(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Json<ToolCall>,
) -> Result<HttpResponse, ApiError> {
    let token = super::auth::bearer_token(&request).ok_or_else(|| {
        ApiError::Unauthorized(
            "send the agent's writ token as `Authorization: Bearer <token>`".into(),
        )
    })?;
    let server_id = ServerId::from(path.into_inner().as_str());
    let ToolCall {
        tool_name,
        arguments,
        approval_id,
    } = body.into_inner();
    if tool_name.is_empty()
        || tool_name.len() > TOOL_NAME_BYTES_MAX
        || tool_name
            .chars()
            .any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(ApiError::invalid(
            "tool_name",
            format!("1 to {TOOL_NAME_BYTES_MAX} bytes of text without spaces"),
        ));
    }
    let arguments = match arguments {
        None | Some(Value::Null) => json!({}),
        Some(object @ Value::Object(_)) => object,
        Some(_) => return Err(ApiError::invalid("arguments", "must be a JSON object")),
    };
    let digest = Digest::of(token.as_bytes());
    let now = state.clock.now();
    let mut fit = AudienceFit::Admitted;
    let (upstream, caller) = state.ledger.read(|s| {
        (
            upstream_of(s, &server_id),
            s.token_by_digest(&digest)
                .filter(|t| matches!(t.status, TokenStatus::Live) && now < t.expires_at)
                // A token for another resource is not for this server (RFC 8707 §2, the
                // MCP authorization spec's audience rule): writ's own audience, the
                // gateway's, or this server's is; another server's is not.
                .filter(|t| {
                    fit = audience_fit(&t.audience, &state.issuer, server_id.as_str());
                    fit == AudienceFit::Admitted
                })
                .map(|t| {
                    let request = ToolCallRequest {
                        client_id: t.client_id.clone(),
                        user_id: t.user_id.clone(),
                        server_id: server_id.clone(),
                        tool_name: tool_name.clone(),
                        agent_type: t.agent_type,
                        scopes: t.scopes.clone(),
                        delegation_depth: u32::try_from(t.actors.len()).unwrap_or(u32::MAX),
                        now,
                    };
                    // The agent's registration as well as the token's type: a token
                    // never makes its agent less supervised.
                    let supervised = approvals::supervised(s, t);
                    let decision = crate::policy::decide_tool_call(s, &request);
                    // Looked up only for a call that will wait for one.
                    let approver = (supervised && decision.critical)
                        .then(|| approvals::approver(s, t))
                        .flatten();
                    Caller {
                        jti: t.jti.clone(),
                        client_id: t.client_id.clone(),
                        user_id: t.user_id.clone(),
                        approver,
                        supervised,
                        decision,
                    }
                }),
        )
    });
    let upstream = upstream
        .ok_or_else(|| ApiError::NotFound(format!("no MCP server `{server_id}` is registered")))?;
    let Caller {
        jti,
        client_id,
        user_id,
        approver,
        supervised,
        decision,
    } = caller.ok_or_else(|| {
        let resource = server_resource(&state.issuer, server_id.as_str());
        ApiError::Unauthorized(match fit {
            AudienceFit::OtherServer => format!(
                "the token was issued for another MCP server behind this gateway; ask for one with resource={resource}"
            ),
            AudienceFit::OtherResource => format!(
                "the token was issued for another resource; ask for one with resource={resource}"
            ),
            AudienceFit::Admitted => "the token is unknown, revoked or expired".into(),
        })
    })?;

    // Policy decides before anything is counted; a denial is recorded with the policies
    // that decided it.
    let policy_ids = decision.policy_ids;
    if !decision.allowed {
        state
            .ledger
            .submit(Command::RecordToolCall(ToolCallCompleted {
                call_id: crate::secrets::new_id("call_"),
                jti,
                server_id: server_id.clone(),
                tool_name: tool_name.clone(),
                outcome: ToolCallOutcome::PolicyDenied,
                detail: Some(decision.reason.clone()),
                credential: None,
                policy_ids,
            }))
            .await?;
        return Err(ApiError::Forbidden(format!(
            "Policy denied: {}",
            decision.reason
        )));
    }

    // A supervised agent's critical call waits for its approver; the retry that names the
    // approval spends it together with the operation it counts.
    let mut approval = None;
    if supervised && decision.critical {
        let arguments_text = sorted_json(&arguments);
        let arguments_digest = Digest::of(arguments_text.as_bytes());
        let Some(approval_id) = approval_id else {
            let asked = AskApproval {
                jti,
                client_id,
                user_id,
                approver,
                server_id,
                tool_name,
                arguments_text,
                arguments_digest,
                policy_ids,
            };
            return ask_approval(&state, asked, now).await;
        };
        approval = Some(ApprovalUse {
            approval_id,
            server_id: server_id.clone(),
            tool_name: tool_name.clone(),
            arguments_digest,
        });
    }
    let credential = match upstream.auth {
        ServerAuth::None => None,
        ServerAuth::Oauth(_) => {
            Some(credential_for(&state, &client_id, &server_id, user_id.as_ref(), now).await?)
        }
    };

    let counted = state
        .ledger
        .submit(Command::RecordOperation {
            digest,
            operation: "tools/call".into(),
            resource: Some(format!("{server_id}/{tool_name}")),
            idempotency_key: None,
            approval: approval.clone(),
        })
        .await;
    let counted = match (counted, approval) {
        (Err(SubmitError::Refused(Refusal::ApprovalPending(_))), Some(pending)) => {
            return state
                .ledger
                .read(|s| s.approval(&pending.approval_id).map(approval_required))
                .ok_or_else(|| {
                    ApiError::NotFound(format!("approval {} is gone", pending.approval_id))
                });
        }
        (counted, _) => counted.map_err(super::operations::refusal)?,
    };
    let operations_remaining = match counted.answer {
        Answer::Operation {
            operations_remaining,
            ..
        } => operations_remaining,
        other => {
            return Err(ApiError::Unavailable(format!(
                "unexpected answer {other:?}"
            )));
        }
    };

    let forwarded = state
        .gateway
        .client
        .call_tool(
            &upstream.url,
            credential.as_ref().map(|c| &c.bearer),
            &tool_name,
            arguments,
        )
        .await;
    let call_id = crate::secrets::new_id("call_");
    let (outcome, detail) = match &forwarded {
        Ok(done) if done.is_error => (ToolCallOutcome::ToolError, None),
        Ok(_) => (ToolCallOutcome::Succeeded, None),
        Err(error) if error.is_timeout() => {
            (ToolCallOutcome::UpstreamTimedOut, Some(error.to_string()))
        }
        Err(error) => (ToolCallOutcome::UpstreamFailed, Some(error.to_string())),
    };
    state
        .ledger
        .submit(Command::RecordToolCall(ToolCallCompleted {
            call_id: call_id.clone(),
            jti,
            server_id: server_id.clone(),
            tool_name: tool_name.clone(),
            outcome,
            detail,
            credential: credential.map(|c| c.used),
            policy_ids,
        }))
        .await?;
    match forwarded {
        Ok(done) => Ok(HttpResponse::Ok().json(json!({
            "call_id": call_id,
            "server_id": server_id,
            "tool_name": tool_name,
            "result": done.result,
            "is_error": done.is_error,
            "operations_remaining": operations_remaining,
        }))),
        Err(error) => Err(upstream_error(&server_id, &error)),
    }
}

/// A critical call to ask its approver about.
struct AskApproval {
    jti: writ_schemas::Jti,
    client_id: ClientId,
    user_id: Option<UserId>,
    approver: Option<UserId>,
    server_id: ServerId,
    tool_name: String,
    arguments_text: String,
    arguments_digest: Digest,
    policy_ids: Vec<String>,
}

/// Records the request for approval and answers 202 with its id.
async fn ask_approval(
    state: &AppState,
    asked: AskApproval,
    now: Timestamp,
) -> Result<HttpResponse, ApiError> {
    let Some(approver) = asked.approver else {
        return Err(Refusal::NoApprover(asked.client_id.to_string()).into());
    };
    if asked.arguments_text.len() > APPROVAL_ARGUMENTS_BYTES_MAX {
        return Err(ApiError::invalid(
            "arguments",
            format!(
                "a call that needs approval takes at most {APPROVAL_ARGUMENTS_BYTES_MAX} bytes of arguments (as JSON), which its approver reads"
            ),
        ));
    }
    let ttl = i64::try_from(state.gateway.approval_ttl_seconds).unwrap_or(i64::MAX);
    let expires_at = now.plus_seconds(ttl);
    let approval_id = crate::secrets::new_id("apr_");
    let request = ApprovalRequested {
        approval_id: approval_id.clone(),
        jti: asked.jti,
        client_id: asked.client_id,
        user_id: asked.user_id,
        arguments_sealed: state
            .people
            .seal(&approver, Field::Arguments, &asked.arguments_text)
            .map_err(|err| ApiError::Unavailable(err.to_string()))?,
        approver,
        server_id: asked.server_id,
        tool_name: asked.tool_name,
        arguments_digest: asked.arguments_digest,
        policy_ids: asked.policy_ids,
        expires_at,
    };
    state
        .ledger
        .submit(Command::RequestApproval(request))
        .await?;
    state
        .ledger
        .read(|s| s.approval(&approval_id).map(approval_required))
        .ok_or_else(|| {
            ApiError::Unavailable("the approval is not visible yet; retry the call".into())
        })
}

/// 202 `approval_required`: the call waits for its approver.
fn approval_required(approval: &Approval) -> HttpResponse {
    let request = &approval.request;
    HttpResponse::Accepted().json(json!({
        "error": "approval_required",
        "detail": format!(
            "this call needs the approval of user {}; retry it with \"approval_id\": \"{}\" once they approve (POST /api/v1/approvals/{}/approve)",
            request.approver, request.approval_id, request.approval_id
        ),
        "approval_id": request.approval_id,
        "status": approval.status.name(),
        "expires_at": request.expires_at,
    }))
}

fn upstream_error(server_id: &ServerId, error: &McpError) -> ApiError {
    let sentence = format!("the call was counted but MCP server `{server_id}` failed: {error}");
    if error.is_timeout() {
        ApiError::GatewayTimeout(sentence)
    } else {
        ApiError::BadGateway(sentence)
    }
}

//! `POST /api/v1/proxy/{server_id}/tools`: the tool-call gateway. The agent's writ token
//! is found by digest, one operation is recorded under its quota (the same command as
//! `POST /api/v1/operations`), the call is forwarded to the MCP server over streamable
//! HTTP, and how it ended is appended (`ToolCallCompleted`) before the tool's result is
//! answered.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};
use writ_projections::{State, TokenStatus};
use writ_schemas::{
    ClientId, Digest, ServerAuth, ServerId, Timestamp, ToolCallCompleted, ToolCallCredential,
    ToolCallOutcome, UserId,
};
use zeroize::Zeroizing;

use super::AppState;
use super::error::ApiError;
use crate::connections::CredentialError;
use crate::decide::{Answer, Command};
use crate::mcp::{McpClient, McpError};
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

/// What the gateway forwards with: the MCP client, its sessions shared by every call.
#[derive(Debug)]
pub struct Gateway {
    /// The client.
    pub client: McpClient,
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
}

/// Forwards one tool call.
pub(super) async fn call(
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
    let (upstream, caller) = state.ledger.read(|s| {
        (
            upstream_of(s, &server_id),
            s.token_by_digest(&digest)
                .filter(|t| matches!(t.status, TokenStatus::Live) && now < t.expires_at)
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
                    let decision = crate::policy::decide_tool_call(s, &request);
                    (
                        t.jti.clone(),
                        t.client_id.clone(),
                        t.user_id.clone(),
                        decision,
                    )
                }),
        )
    });
    let upstream = upstream
        .ok_or_else(|| ApiError::NotFound(format!("no MCP server `{server_id}` is registered")))?;
    let (jti, client_id, user_id, decision) = caller
        .ok_or_else(|| ApiError::Unauthorized("the token is unknown, revoked or expired".into()))?;

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
        })
        .await
        .map_err(super::operations::refusal)?;
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

fn upstream_error(server_id: &ServerId, error: &McpError) -> ApiError {
    let sentence = format!("the call was counted but MCP server `{server_id}` failed: {error}");
    if error.is_timeout() {
        ApiError::GatewayTimeout(sentence)
    } else {
        ApiError::BadGateway(sentence)
    }
}

//! Revoking the upstream tokens of connections that ended (RFC 7009), in the background.
//!
//! - When: after the end is recorded and answered. Deleting a connection (or erasing its
//!   person) appends the end and wakes this task; the answer waits on the append alone,
//!   never on a provider, however slow or down it is.
//! - What: the refresh token first (the long-lived one; many providers end the whole grant
//!   with it), then the access token, each POSTed to the server's `revocation_url` as
//!   `token` and `token_type_hint`, authenticated as writ's client at the provider is for
//!   the token endpoint, within the connect and total timeouts of every provider request.
//! - Recorded: one `UpstreamRevocationCompleted` per token and attempt, with its outcome
//!   (never the token). A failed attempt is tried again `retry_seconds_min` after the
//!   first failure, doubling each time (one wait at most `REVOCATION_RETRY_SECONDS_MAX`),
//!   for `UPSTREAM_REVOCATION_ATTEMPTS_MAX` attempts in all.
//! - Restarts lose nothing: what is still to revoke, and how many attempts it had, is a
//!   fold of the ledger (`State::upstream_revocations`); this task keeps no state but a
//!   wake-up, and its first pass at start takes up what was left.
//! - Several nodes may each try a token: the ledger takes one outcome per attempt (the
//!   other is refused and dropped), and revoking a token twice is harmless (RFC 7009 §2.2).

use std::sync::{Arc, Weak};
use std::time::Duration;

use writ_projections::{PendingRevocation, PendingToken};
use writ_schemas::{
    RevocationOutcome, ServerAuth, Timestamp, UpstreamOAuth, UpstreamRevocationCompleted,
    UpstreamTokenKind,
};

use super::{Connections, ErrorAnswer, read_limited, token_context, without_url};
use crate::decide::Command;
use crate::ledger::{Ledger, SubmitError};

/// Default: seconds before the first retry of a failed revocation (then doubling).
pub const REVOCATION_RETRY_SECONDS_MIN_DEFAULT: u64 = 30;
/// The longest one wait between two attempts may grow to.
pub const REVOCATION_RETRY_SECONDS_MAX: u64 = 86_400;
/// Most ended connections one pass works on (the rest wait for the next pass).
pub const REVOCATIONS_PER_PASS_MAX: usize = 100;
/// Longest the task sleeps between passes when nothing wakes it.
const LOOK_EVERY_SECONDS_MAX: u64 = 60;

/// When a token whose last attempt failed is due again; `None`: never tried, due now.
pub fn retry_due_at(token: &PendingToken, retry_seconds_min: u64) -> Option<Timestamp> {
    let last = token.last_attempt_at?;
    let doublings = token.attempts.saturating_sub(1).min(32);
    let wait = retry_seconds_min
        .saturating_mul(1u64 << doublings)
        .min(REVOCATION_RETRY_SECONDS_MAX);
    Some(last.plus_seconds(i64::try_from(wait).unwrap_or(i64::MAX)))
}

fn due(token: &PendingToken, now: Timestamp, retry_seconds_min: u64) -> bool {
    retry_due_at(token, retry_seconds_min).is_none_or(|at| at <= now)
}

/// The token's name in a reason, and its RFC 7009 `token_type_hint`.
fn names(kind: UpstreamTokenKind) -> (&'static str, &'static str) {
    match kind {
        UpstreamTokenKind::AccessToken => ("access token", "access_token"),
        UpstreamTokenKind::RefreshToken => ("refresh token", "refresh_token"),
    }
}

impl Connections {
    /// Wakes the revocation task: a connection just ended.
    pub fn revoke_soon(&self) {
        self.revocations.notify_one();
    }

    /// Revokes ended connections' upstream tokens as they come due; runs until the
    /// ledger is gone.
    pub async fn revoke_in_background(
        self: Arc<Self>,
        ledger: Weak<Ledger>,
        clock: crate::clock::Clock,
        retry_seconds_min: u64,
    ) {
        let look_every = Duration::from_secs(retry_seconds_min.clamp(1, LOOK_EVERY_SECONDS_MAX));
        loop {
            let Some(strong) = ledger.upgrade() else {
                return;
            };
            self.revoke_due(&strong, clock.now(), retry_seconds_min)
                .await;
            drop(strong);
            tokio::select! {
                () = self.revocations.notified() => {}
                () = tokio::time::sleep(look_every) => {}
            }
        }
    }

    /// One pass: every token due now, each attempt recorded.
    async fn revoke_due(&self, ledger: &Ledger, now: Timestamp, retry_seconds_min: u64) {
        let kinds = [
            UpstreamTokenKind::RefreshToken,
            UpstreamTokenKind::AccessToken,
        ];
        let work: Vec<(PendingRevocation, Option<UpstreamOAuth>)> = ledger.read(|s| {
            s.upstream_revocations()
                .filter(|p| {
                    kinds.iter().any(|&kind| {
                        p.token(kind)
                            .is_some_and(|t| due(t, now, retry_seconds_min))
                    })
                })
                .take(REVOCATIONS_PER_PASS_MAX)
                .map(|p| {
                    let oauth = match s.server(&p.server_id).map(|server| &server.auth) {
                        Some(ServerAuth::Oauth(oauth)) => Some(oauth.clone()),
                        _ => None,
                    };
                    (p.clone(), oauth)
                })
                .collect()
        });
        for (pending, oauth) in work {
            for kind in kinds {
                let Some(token) = pending.token(kind) else {
                    continue;
                };
                if !due(token, now, retry_seconds_min) {
                    continue;
                }
                let outcome = self.revoke(&pending, kind, token, oauth.as_ref()).await;
                let record = UpstreamRevocationCompleted {
                    user_id: pending.user_id.clone(),
                    server_id: pending.server_id.clone(),
                    generation: pending.generation,
                    token: kind,
                    outcome,
                    attempt: token.attempts + 1,
                };
                match ledger
                    .submit(Command::RecordUpstreamRevocation(record))
                    .await
                {
                    // Refused: another node recorded this attempt first.
                    Ok(_) | Err(SubmitError::Refused(_)) => {}
                    Err(err) => {
                        tracing::warn!(error = %err, "an upstream revocation could not be recorded; the next pass tries again");
                        return;
                    }
                }
            }
        }
    }

    /// One RFC 7009 request for one token, and what came of it.
    async fn revoke(
        &self,
        pending: &PendingRevocation,
        kind: UpstreamTokenKind,
        token: &PendingToken,
        oauth: Option<&UpstreamOAuth>,
    ) -> RevocationOutcome {
        let (which, hint) = names(kind);
        let failed =
            |status: Option<u16>, reason: String| RevocationOutcome::Failed { status, reason };
        let server_id = &pending.server_id;
        let Some(oauth) = oauth else {
            return RevocationOutcome::NotRevocable {
                reason: format!("server {server_id} takes no OAuth connection any more"),
            };
        };
        let Some(url) = &oauth.revocation_url else {
            return RevocationOutcome::NotRevocable {
                reason: format!("server {server_id} names no revocation_url"),
            };
        };
        let plain = match self.keks.unwrap_text(
            &token.token,
            &token_context(&pending.user_id, server_id, which),
        ) {
            Ok(plain) => plain,
            Err(err) => return failed(None, format!("the {which} does not open: {err}")),
        };
        let form = [("token", plain.as_str()), ("token_type_hint", hint)];
        let request = match self.client_request(oauth, server_id, url, &form) {
            Ok(request) => request,
            Err(failure) => return failed(None, failure.reason),
        };
        let response = match request.send().await {
            Ok(response) => response,
            Err(err) => {
                return failed(
                    None,
                    format!("the provider did not answer: {}", without_url(&err)),
                );
            }
        };
        let status = response.status();
        if status.is_success() {
            return RevocationOutcome::Revoked;
        }
        let answer = read_limited(response)
            .await
            .ok()
            .and_then(|bytes| serde_json::from_slice::<ErrorAnswer>(&bytes).ok());
        match answer {
            Some(error) if error.error == "unsupported_token_type" => {
                RevocationOutcome::NotRevocable {
                    reason: format!(
                        "the provider does not revoke {which}s (unsupported_token_type)"
                    ),
                }
            }
            Some(error) => failed(
                Some(status.as_u16()),
                format!(
                    "{}: {}",
                    error.error.chars().take(64).collect::<String>(),
                    error
                        .error_description
                        .unwrap_or_default()
                        .chars()
                        .take(200)
                        .collect::<String>()
                ),
            ),
            None => failed(
                Some(status.as_u16()),
                format!("the provider answered {status}"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use writ_schemas::Wrapped;

    use super::*;

    fn failed(attempts: u32, at: &str) -> PendingToken {
        PendingToken {
            token: Wrapped {
                kek_id: "k".into(),
                nonce: "n".into(),
                ciphertext: "c".into(),
            },
            attempts,
            last_attempt_at: Timestamp::parse(at).ok(),
        }
    }

    #[test]
    fn upstream_revocation_retries_back_off_doubling_up_to_their_cap() {
        let at = "2026-12-01T10:00:00.000000Z";
        let due_after = |attempts| {
            let token = failed(attempts, at);
            let base = Timestamp::parse(at).unwrap_or_else(|_| unreachable!());
            retry_due_at(&token, 30).map(|due| due.unix_seconds() - base.unix_seconds())
        };
        assert_eq!(due_after(1), Some(30));
        assert_eq!(due_after(2), Some(60));
        assert_eq!(due_after(7), Some(30 * 64));
        assert_eq!(due_after(40), Some(REVOCATION_RETRY_SECONDS_MAX as i64));
        let never_tried = PendingToken {
            last_attempt_at: None,
            ..failed(0, at)
        };
        assert_eq!(retry_due_at(&never_tried, 30), None);
        let now =
            Timestamp::parse("2026-12-01T10:00:29.000000Z").unwrap_or_else(|_| unreachable!());
        assert!(!due(&failed(1, at), now, 30));
        assert!(due(&failed(1, at), now.plus_seconds(1), 30));
    }
}

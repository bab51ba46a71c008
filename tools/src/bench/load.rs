//! The closed loop: per connection, one task that sends the scenario's request, reads the
//! answer, counts it, and sends the next, until the plan's end. A request is measured when
//! it is sent after the warm-up; one in flight at the end is still counted, so what the
//! run reports is what the server did (its ledger holds exactly the measured operations
//! when there is no warm-up).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::args::Scenario;
use crate::conn::{self, Answer, Conn, Template};
use crate::report::Tally;
use crate::target::{Issued, Target, quote, read_token};

/// Pause after a failed connection or token request, so that a server that is down is
/// not hammered by a loop of instant failures.
pub const RETRY_PAUSE_MS: u64 = 100;
/// A token is fetched again this long before the expiry its server stated (or at half its
/// lifetime, if that is later).
pub const TOKEN_REFRESH_SECONDS_BEFORE_EXPIRY: u64 = 30;

/// When a scenario starts measuring and stops sending.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// End of the warm-up: requests sent from here on are measured.
    pub measure_from: Instant,
    /// No request is sent from here on.
    pub stop_at: Instant,
    /// Longest wait for one answer or connection.
    pub request_timeout: Duration,
}

impl Plan {
    /// A plan starting now.
    pub fn starting_now(warmup: Duration, duration: Duration, request_timeout: Duration) -> Plan {
        let measure_from = Instant::now() + warmup;
        Plan {
            measure_from,
            stop_at: measure_from + duration,
            request_timeout,
        }
    }
}

/// What every connection of a scenario shares.
#[derive(Debug)]
pub struct Work {
    /// The scenario.
    pub scenario: Scenario,
    /// The target.
    pub target: Arc<Target>,
    /// The token obtained before the run, if the scenario uses one.
    pub first_token: Option<Issued>,
    /// Timing.
    pub plan: Plan,
}

/// A token a connection holds, and when to replace it.
struct Held {
    token: Issued,
    refresh_at: Option<Instant>,
}

impl Held {
    fn new(token: Issued, obtained: Instant) -> Held {
        let refresh_at = token
            .expires_in_seconds
            .filter(|seconds| *seconds > 0)
            .map(|seconds| {
                let early = seconds.saturating_sub(TOKEN_REFRESH_SECONDS_BEFORE_EXPIRY);
                obtained + Duration::from_secs(early.max(seconds / 2))
            });
        Held { token, refresh_at }
    }
}

/// How an answer counts.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// An answer as the scenario expects (any status: non-2xx are counted as such).
    Answer,
    /// A 2xx that says the measurement went wrong (introspection of an inactive token).
    Wrong(&'static str),
    /// The token's operations are used up: fetch another; not a request of the scenario.
    QuotaExhausted,
}

#[derive(serde::Deserialize)]
struct Introspection {
    active: bool,
}

#[derive(serde::Deserialize)]
struct OAuthError {
    error: String,
}

/// How `answer` counts in `scenario`.
pub fn verdict(scenario: Scenario, answer: &Answer) -> Verdict {
    match (scenario, answer.status.as_u16()) {
        (Scenario::Introspect, 200..=299) => {
            match serde_json::from_slice::<Introspection>(&answer.body) {
                Ok(Introspection { active: true }) => Verdict::Answer,
                Ok(_) => Verdict::Wrong("inactive"),
                Err(_) => Verdict::Wrong("unreadable"),
            }
        }
        (Scenario::Operations | Scenario::Gateway, 403) => {
            match serde_json::from_slice::<OAuthError>(&answer.body) {
                Ok(refusal) if refusal.error == "quota_exhausted" => Verdict::QuotaExhausted,
                _ => Verdict::Answer,
            }
        }
        _ => Verdict::Answer,
    }
}

/// One connection's closed loop; its tally when the plan ends.
pub async fn connection(work: Arc<Work>) -> Result<Tally, String> {
    let held = work
        .first_token
        .clone()
        .map(|t| Held::new(t, Instant::now()));
    let request = work
        .target
        .request(work.scenario, held.as_ref().map(|h| &h.token))?;
    let mut run = Loop {
        tally: Tally::new()?,
        work,
        held,
        request,
        conn: None,
        opened: 0,
    };
    while Instant::now() < run.work.plan.stop_at {
        run.step().await?;
    }
    Ok(run.tally)
}

/// One connection's state between requests.
struct Loop {
    work: Arc<Work>,
    tally: Tally,
    held: Option<Held>,
    request: Template,
    conn: Option<Conn>,
    opened: u64,
}

impl Loop {
    fn measured_now(&self) -> bool {
        Instant::now() >= self.work.plan.measure_from
    }

    /// One request, or what must come before it: a connection, a fresh token.
    async fn step(&mut self) -> Result<(), String> {
        let timeout = self.work.plan.request_timeout;
        if self.conn.is_none() {
            match Conn::open(self.request.addr(), timeout).await {
                Ok(fresh) => {
                    self.tally.reconnects += u64::from(self.opened > 0);
                    self.opened += 1;
                    self.conn = Some(fresh);
                }
                Err(failure) => {
                    let measured = self.measured_now();
                    self.tally.failed(measured, failure.kind, &failure.detail);
                    pause().await;
                }
            }
            return Ok(());
        }
        let due = self.held.as_ref().and_then(|h| h.refresh_at);
        if due.is_some_and(|at| Instant::now() >= at) {
            return self.refresh().await;
        }
        let Some(live) = self.conn.as_mut() else {
            return Ok(());
        };
        let sent = Instant::now();
        let outcome = live.send(&self.request, timeout).await;
        let latency = sent.elapsed();
        let measured = sent >= self.work.plan.measure_from;
        let answer = match outcome {
            Ok(answer) => answer,
            Err(failure) => {
                self.tally.failed(measured, failure.kind, &failure.detail);
                self.conn = None;
                return Ok(());
            }
        };
        let status = answer.status.as_u16();
        match verdict(self.work.scenario, &answer) {
            Verdict::Answer => self.tally.answered(measured, latency, status, &answer.body),
            Verdict::Wrong(kind) => {
                self.tally.answered(measured, latency, status, &answer.body);
                self.tally.failed(measured, kind, &quote(&answer.body));
            }
            Verdict::QuotaExhausted => {
                if let Some(held) = self.held.as_mut() {
                    held.refresh_at = Some(Instant::now());
                }
            }
        }
        Ok(())
    }

    /// Fetches a new token, on this connection when the token endpoint is where it goes
    /// (always so on writ), else on a connection of its own.
    async fn refresh(&mut self) -> Result<(), String> {
        let measured = self.measured_now();
        let timeout = self.work.plan.request_timeout;
        let token_request = self.work.target.token_request();
        let outcome = match self.conn.as_mut() {
            Some(live) if live.addr == token_request.addr() => {
                let outcome = live.send(&token_request, timeout).await;
                if outcome.is_err() {
                    self.conn = None;
                }
                outcome
            }
            _ => conn::once(&token_request, timeout).await,
        };
        let token = outcome
            .map_err(|failure| failure.detail)
            .and_then(|answer| read_token(&answer));
        match token {
            Ok(token) => {
                self.tally.refreshes += 1;
                self.request = self.work.target.request(self.work.scenario, Some(&token))?;
                self.held = Some(Held::new(token, Instant::now()));
            }
            Err(why) => {
                self.tally.failed(measured, "refresh", &why);
                pause().await;
            }
        }
        Ok(())
    }
}

async fn pause() {
    tokio::time::sleep(Duration::from_millis(RETRY_PAUSE_MS)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &'static str) -> Answer {
        Answer {
            status: hyper::StatusCode::from_u16(status).unwrap(),
            body: body.into(),
        }
    }

    #[test]
    fn answers_count_by_what_the_scenario_measures() {
        use Scenario::*;
        assert_eq!(verdict(Issue, &answer(200, "{}")), Verdict::Answer);
        assert_eq!(verdict(Issue, &answer(400, "{}")), Verdict::Answer);
        assert_eq!(
            verdict(Introspect, &answer(200, r#"{"active":true,"scope":"s"}"#)),
            Verdict::Answer
        );
        assert_eq!(
            verdict(Introspect, &answer(200, r#"{"active":false}"#)),
            Verdict::Wrong("inactive")
        );
        assert_eq!(
            verdict(Introspect, &answer(200, "<html>")),
            Verdict::Wrong("unreadable")
        );
        assert_eq!(
            verdict(
                Operations,
                &answer(403, r#"{"error":"quota_exhausted","detail":"x"}"#)
            ),
            Verdict::QuotaExhausted
        );
        assert_eq!(
            verdict(Operations, &answer(403, r#"{"error":"forbidden"}"#)),
            Verdict::Answer
        );
    }

    #[test]
    fn tokens_are_refreshed_before_they_expire() {
        let now = Instant::now();
        let token = |expires_in_seconds| Issued {
            access_token: "t".into(),
            expires_in_seconds,
        };
        assert_eq!(
            Held::new(token(Some(900)), now).refresh_at,
            Some(now + Duration::from_secs(870))
        );
        assert_eq!(
            Held::new(token(Some(40)), now).refresh_at,
            Some(now + Duration::from_secs(20))
        );
        assert_eq!(Held::new(token(None), now).refresh_at, None);
        assert_eq!(Held::new(token(Some(0)), now).refresh_at, None);
    }
}

//! The auditor's questions (admin): the compliance trail, filtered and paged
//! (`GET /api/v1/audit`) or streamed whole (`/audit/export`), and time travel: which
//! delegations were in force (`/audit/delegations`), which tokens could act for a person
//! (`/audit/tokens`), what an agent could do (`/audit/agents/{client_id}`), at any past
//! record (`as_of_seq`) or instant (`as_of`).
//!
//! Every answer names the record it is anchored to (`as_of`: seq, hash, the record's time,
//! and the instant statuses were taken at). A question about the past is answered from
//! read models rebuilt apart from the live ones (`Ledger::state_as_of`: the newest
//! snapshot at or before that record plus the records after it), never by changing the
//! live state; a question about the head reads the live state. The trail itself is told
//! against the live read models (see `crate::trail`).

use std::sync::Arc;
use std::time::Duration;

use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use writ_projections::{Delegation, State, Token};
use writ_schemas::{ClientId, EventKind, Hash, Timestamp, UserId};

use super::AppState;
use super::auth::Admin;
use super::error::ApiError;
use crate::ledger::Ledger;
use crate::people::People;
use crate::trail::{self, Row, TrailFilter, TrailFormat};

/// Questions about the past answered at once, at most: each may rebuild a copy of the
/// read models. Others wait up to `HISTORY_WAIT_SECONDS_MAX`, then get 503.
pub const HISTORY_QUERIES_AT_ONCE_MAX: usize = 2;
/// How long a question about the past waits for its turn.
const HISTORY_WAIT_SECONDS_MAX: u64 = 30;
/// Exports streaming at once, at most (each holds a blocking thread); more get 503.
pub const EXPORTS_AT_ONCE_MAX: usize = 4;
/// Items in a time-travel list, by default and at most (`limit`).
const LIST_ITEMS_DEFAULT: usize = 1000;
const LIST_ITEMS_MAX: usize = 10_000;
/// Entries in a page of the trail, by default and at most (`limit`).
const PAGE_ENTRIES_DEFAULT: usize = 100;
const PAGE_ENTRIES_MAX: usize = 1000;
/// Records one page of the trail looks at, at most, matching or not; a page that stops
/// here has fewer entries than asked and a `next_cursor` to go on from.
pub const PAGE_RECORDS_SCANNED_MAX: u64 = 100_000;
/// An export's bytes gathered before they are sent as one chunk.
const EXPORT_CHUNK_BYTES: usize = 256 * 1024;
/// Chunks an export runs ahead of its client, at most (then it waits: backpressure).
const EXPORT_CHUNKS_QUEUED_MAX: usize = 4;

/// The limits on the auditor's heavier questions, shared by every worker.
#[derive(Debug)]
pub struct AuditGates {
    history: Semaphore,
    exports: Arc<Semaphore>,
}

impl Default for AuditGates {
    fn default() -> Self {
        AuditGates {
            history: Semaphore::new(HISTORY_QUERIES_AT_ONCE_MAX),
            exports: Arc::new(Semaphore::new(EXPORTS_AT_ONCE_MAX)),
        }
    }
}

/// A query string: each parameter at most once, none but the endpoint's.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(request: &HttpRequest, allowed: &[&str]) -> Result<Params, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(request.query_string())
            .map_err(|err| {
                ApiError::invalid("query", format!("not a valid query string: {err}"))
            })?;
        for (index, (name, _)) in pairs.iter().enumerate() {
            if !allowed.contains(&name.as_str()) {
                return Err(ApiError::invalid(
                    name,
                    format!(
                        "unknown parameter; this endpoint takes {}",
                        allowed.join(", ")
                    ),
                ));
            }
            if pairs[..index].iter().any(|(seen, _)| seen == name) {
                return Err(ApiError::invalid(name, "given twice; give it once"));
            }
        }
        Ok(Params(pairs))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    fn number(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.get(name)
            .map(|text| {
                text.parse::<u64>()
                    .map_err(|_| ApiError::invalid(name, format!("{text:?} is not a whole number")))
            })
            .transpose()
    }

    fn limit(&self, default: usize, max: usize) -> Result<usize, ApiError> {
        match self.number("limit")? {
            None => Ok(default),
            Some(limit) if (1..=max as u64).contains(&limit) => Ok(limit as usize),
            Some(limit) => Err(ApiError::invalid(
                "limit",
                format!("{limit} is out of range; ask for 1 to {max}"),
            )),
        }
    }

    fn time(&self, name: &str) -> Result<Option<Timestamp>, ApiError> {
        self.get(name)
            .map(|text| parse_instant(name, text))
            .transpose()
    }

    /// `as_of_seq` or `as_of`, at most one of them.
    fn as_of(&self) -> Result<AsOf, ApiError> {
        match (self.number("as_of_seq")?, self.time("as_of")?) {
            (Some(_), Some(_)) => Err(ApiError::invalid(
                "as_of",
                "give as_of_seq (a record) or as_of (an instant), not both",
            )),
            (Some(0), None) => Err(ApiError::invalid(
                "as_of_seq",
                "records are numbered from 1, so 0 names none",
            )),
            (Some(seq), None) => Ok(AsOf::Seq(seq)),
            (None, Some(at)) => Ok(AsOf::Time(at)),
            (None, None) => Ok(AsOf::Head),
        }
    }

    fn filter(&self) -> Result<TrailFilter, ApiError> {
        let action = self.get("action").map(str::to_owned);
        if let Some(action) = &action
            && !EventKind::ALL.iter().any(|kind| kind.name() == action)
        {
            let kinds: Vec<&str> = EventKind::ALL.iter().map(|kind| kind.name()).collect();
            return Err(ApiError::invalid(
                "action",
                format!(
                    "`{action}` is not an event kind; use one of {}",
                    kinds.join(", ")
                ),
            ));
        }
        let (from, to) = (self.time("from")?, self.time("to")?);
        if let (Some(from), Some(to)) = (from, to)
            && from > to
        {
            return Err(ApiError::invalid(
                "from",
                format!("{from} is after to ({to}); give from at or before to"),
            ));
        }
        Ok(TrailFilter {
            user: self.get("user").map(UserId::from),
            agent: self.get("agent").map(ClientId::from),
            action,
            outcome: self.get("outcome").map(str::to_owned),
            from,
            to,
        })
    }
}

fn parse_instant(field: &str, text: &str) -> Result<Timestamp, ApiError> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|at| Timestamp::from_datetime(at.with_timezone(&chrono::Utc)))
        .map_err(|_| {
            ApiError::invalid(
                field,
                format!("`{text}` is not an RFC 3339 time such as 2026-11-23T10:00:00Z"),
            )
        })
}

/// Which moment a question is about.
#[derive(Debug, Clone, Copy)]
enum AsOf {
    /// Now: the head the read models have applied, statuses taken now.
    Head,
    /// Right after this record, statuses taken at its time.
    Seq(u64),
    /// This instant: the last record at or before it, statuses taken at the instant.
    Time(Timestamp),
}

/// The record an answer is anchored to, and the instant its statuses are taken at.
#[derive(Debug, Clone, Copy)]
struct Moment {
    seq: u64,
    hash: Hash,
    ts: Option<Timestamp>,
    at: Timestamp,
}

impl Moment {
    fn json(&self) -> Value {
        json!({"seq": self.seq, "hash": self.hash, "ts": self.ts, "at": self.at})
    }
}

/// Finds the moment `asked` names, within the records the read models have applied.
/// Blocking: an `as_of` instant is found by a binary search over the records' times.
fn resolve(ledger: &Ledger, asked: AsOf, now: Timestamp) -> Result<Moment, ApiError> {
    let head = ledger.read(State::head);
    let record = |seq: u64| -> Result<(Hash, Timestamp), ApiError> {
        let read = ledger.storage().read(seq, 1).map_err(storage_failed)?;
        read.first()
            .filter(|record| record.seq == seq)
            .map(|record| (record.hash, record.ts))
            .ok_or_else(|| ApiError::Unavailable(format!("record {seq} could not be read")))
    };
    match asked {
        AsOf::Head => Ok(Moment {
            seq: head.seq,
            hash: head.hash,
            ts: head.ts,
            at: now,
        }),
        AsOf::Seq(seq) if seq > head.seq => Err(ApiError::invalid(
            "as_of_seq",
            format!(
                "record {seq} is past the ledger's head, record {}; ask for 1 to {}",
                head.seq, head.seq
            ),
        )),
        AsOf::Seq(seq) => {
            let (hash, ts) = record(seq)?;
            Ok(Moment {
                seq,
                hash,
                ts: Some(ts),
                at: ts,
            })
        }
        AsOf::Time(at) if at > now => Err(ApiError::invalid(
            "as_of",
            format!("{at} is in the future (it is now {now}); the ledger tells only the past"),
        )),
        AsOf::Time(at) => {
            let seq = trail::last_seq_at_or_before(&**ledger.storage(), head.seq, at)
                .map_err(storage_failed)?;
            let Some(seq) = seq else {
                let began = match head.seq {
                    0 => "it has no records yet".to_owned(),
                    _ => format!("its first record is at {}", record(1)?.1),
                };
                return Err(ApiError::invalid(
                    "as_of",
                    format!("{at} is before the ledger began ({began}); ask for a later time"),
                ));
            };
            let (hash, ts) = record(seq)?;
            Ok(Moment {
                seq,
                hash,
                ts: Some(ts),
                at,
            })
        }
    }
}

fn storage_failed(err: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("the ledger could not be read: {err}"))
}

/// Answers `question` with the read models as they stood at `moment`: the live ones when
/// they are still at that record, else a copy rebuilt for it. Blocking.
fn at_moment<T>(
    ledger: &Ledger,
    moment: &Moment,
    question: impl FnOnce(&State, Timestamp) -> T,
) -> Result<T, ApiError> {
    let mut question = Some(question);
    let live = ledger.read(|state| {
        (state.head().seq == moment.seq)
            .then(|| question.take().map(|ask| ask(state, moment.at)))
            .flatten()
    });
    if let Some(answer) = live {
        return Ok(answer);
    }
    let rebuilt = ledger.state_as_of(moment.seq).map_err(storage_failed)?;
    tracing::debug!(
        seq = moment.seq,
        snapshot = rebuilt.snapshot_seq,
        replayed = rebuilt.replayed,
        "read models rebuilt for a question about the past"
    );
    let ask = question.ok_or_else(|| ApiError::Unavailable("the question was lost".into()))?;
    Ok(ask(&rebuilt.state, moment.at))
}

/// Runs a time-travel question off the async workers, one of at most
/// `HISTORY_QUERIES_AT_ONCE_MAX` at once.
async fn ask_history<T: Send + 'static>(
    state: &web::Data<AppState>,
    asked: AsOf,
    question: impl FnOnce(&State, Timestamp) -> Result<T, ApiError> + Send + 'static,
) -> Result<(Moment, T), ApiError> {
    let wait = Duration::from_secs(HISTORY_WAIT_SECONDS_MAX);
    let _permit = match tokio::time::timeout(wait, state.audit_gates.history.acquire()).await {
        Ok(Ok(permit)) => permit,
        _ => {
            return Err(ApiError::Overloaded(format!(
                "{HISTORY_QUERIES_AT_ONCE_MAX} questions about the past are being answered; retry shortly"
            )));
        }
    };
    let ledger = Arc::clone(&state.ledger);
    let now = state.clock.now();
    web::block(move || {
        let moment = resolve(&ledger, asked, now)?;
        let answer = at_moment(&ledger, &moment, question)??;
        Ok((moment, answer))
    })
    .await
    .map_err(|err| ApiError::Unavailable(format!("the question could not be run: {err}")))?
}

fn delegation_json(d: &Delegation) -> Value {
    json!({
        "id": d.delegation_id,
        "user_id": d.user_id,
        "client_id": d.client_id,
        "scopes": d.scopes,
        "granted_at": d.granted_at,
        "expires_at": d.expires_at,
    })
}

fn token_json(t: &Token) -> Value {
    let chain: Vec<&ClientId> = if t.actors.is_empty() {
        vec![&t.client_id]
    } else {
        t.actors.iter().rev().collect()
    };
    json!({
        "jti": t.jti,
        "client_id": t.client_id,
        "user_id": t.user_id,
        "agents": chain,
        "delegation_id": t.delegation_id,
        "scopes": t.scopes,
        "audience": t.audience,
        "issued_at": t.issued_at,
        "expires_at": t.expires_at,
        "max_operations": t.max_operations,
        "operations_remaining": t.operations_remaining(),
        "task_id": t.task_id,
    })
}

/// Up to `limit` items as JSON, and whether there were more.
fn capped<'a, T: 'a>(
    items: impl Iterator<Item = &'a T>,
    limit: usize,
    view: fn(&T) -> Value,
) -> (Vec<Value>, bool) {
    let mut items = items.peekable();
    let listed: Vec<Value> = items.by_ref().take(limit).map(view).collect();
    (listed, items.peek().is_some())
}

/// `GET /api/v1/audit/delegations`: the delegations in force at a moment.
pub(super) async fn delegations(
    state: web::Data<AppState>,
    _: Admin,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let params = Params::parse(&request, &["as_of_seq", "as_of", "user", "agent", "limit"])?;
    let (asked, limit) = (
        params.as_of()?,
        params.limit(LIST_ITEMS_DEFAULT, LIST_ITEMS_MAX)?,
    );
    let user = params.get("user").map(UserId::from);
    let agent = params.get("agent").map(ClientId::from);
    let (moment, (listed, truncated)) = ask_history(&state, asked, move |s, at| {
        let in_force = s.delegations_in_force(at, user.as_ref(), agent.as_ref());
        Ok(capped(in_force, limit, delegation_json))
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({
        "as_of": moment.json(),
        "delegations": listed,
        "truncated": truncated,
    })))
}

/// `GET /api/v1/audit/tokens?user=`: the tokens that could act for a person at a moment.
pub(super) async fn tokens(
    state: web::Data<AppState>,
    _: Admin,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let params = Params::parse(&request, &["as_of_seq", "as_of", "user", "limit"])?;
    let (asked, limit) = (
        params.as_of()?,
        params.limit(LIST_ITEMS_DEFAULT, LIST_ITEMS_MAX)?,
    );
    let user = params
        .get("user")
        .map(UserId::from)
        .ok_or_else(|| ApiError::invalid("user", "required: the person's id"))?;
    let (moment, (listed, truncated)) = ask_history(&state, asked, {
        let user = user.clone();
        move |s, at| {
            if s.user(&user).is_none() {
                return Err(ApiError::NotFound(format!(
                    "no user {user} was registered as of record {}",
                    s.head().seq
                )));
            }
            Ok(capped(s.tokens_acting_for(&user, at), limit, token_json))
        }
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({
        "as_of": moment.json(),
        "user": user,
        "tokens": listed,
        "truncated": truncated,
    })))
}

/// `GET /api/v1/audit/agents/{client_id}`: what an agent could do at a moment: its
/// standing, the delegations in force to it and the tokens it could act with.
pub(super) async fn agent(
    state: web::Data<AppState>,
    _: Admin,
    id: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let params = Params::parse(&request, &["as_of_seq", "as_of", "limit"])?;
    let (asked, limit) = (
        params.as_of()?,
        params.limit(LIST_ITEMS_DEFAULT, LIST_ITEMS_MAX)?,
    );
    let client_id = ClientId(id.into_inner());
    let (moment, answer) = ask_history(&state, asked, move |s, at| {
        let Some(agent) = s.agent(&client_id) else {
            return Err(ApiError::NotFound(format!(
                "no agent {client_id} was registered as of record {}",
                s.head().seq
            )));
        };
        let in_force = s.delegations_in_force(at, None, Some(&client_id));
        let (delegations, more_delegations) = capped(in_force, limit, delegation_json);
        let usable = s.tokens_usable_by_agent(&client_id, at);
        let (tokens, more_tokens) = capped(usable, limit, token_json);
        Ok(json!({
            "agent": {
                "client_id": agent.client_id,
                "name": agent.name,
                "status": s.agent_status(agent, at).as_str(),
                "enabled": agent.enabled,
                "owner": agent.owner,
                "expires_at": agent.expires_at,
                "scopes": agent.scopes,
                "grant_types": agent.grant_types,
                "ceilings": {
                    "max_ttl_seconds": agent.ceilings.max_ttl_seconds,
                    "allowed_scopes": agent.ceilings.allowed_scopes,
                    "allowed_audiences": agent.ceilings.allowed_audiences,
                    "max_delegation_depth": agent.ceilings.max_delegation_depth,
                    "max_operations": agent.ceilings.max_operations,
                },
            },
            "delegations": delegations,
            "tokens": tokens,
            "truncated": more_delegations || more_tokens,
        }))
    })
    .await?;
    let mut body = answer;
    body["as_of"] = moment.json();
    Ok(HttpResponse::Ok().json(body))
}

const TRAIL_PARAMS: [&str; 8] = [
    "user",
    "agent",
    "action",
    "outcome",
    "from",
    "to",
    "as_of_seq",
    "as_of",
];

/// Where a trail query starts: after `cursor`, else at the first record at or after
/// `from`, else at record 1. Blocking.
fn first_seq(
    ledger: &Ledger,
    moment: &Moment,
    cursor: Option<u64>,
    filter: &TrailFilter,
) -> Result<u64, ApiError> {
    if let Some(cursor) = cursor {
        if cursor > moment.seq {
            return Err(ApiError::invalid(
                "cursor",
                format!(
                    "{cursor} is past the end of this trail, record {}; pass the next_cursor a page gave, with the same as_of_seq",
                    moment.seq
                ),
            ));
        }
        return Ok(cursor + 1);
    }
    let Some(from) = filter.from else {
        return Ok(1);
    };
    let just_before = Timestamp::from_unix_micros(from.unix_micros().saturating_sub(1));
    let before = match just_before {
        Some(at) => trail::last_seq_at_or_before(&**ledger.storage(), moment.seq, at)
            .map_err(storage_failed)?,
        None => None,
    };
    Ok(before.map_or(1, |seq| seq + 1))
}

/// One page of the trail: the matching rows and where the next page starts.
fn page(
    ledger: &Ledger,
    people: &People,
    moment: &Moment,
    cursor: Option<u64>,
    filter: &TrailFilter,
    limit: usize,
) -> Result<(Vec<Row>, Option<u64>), ApiError> {
    let start = first_seq(ledger, moment, cursor, filter)?;
    let (mut rows, mut last_seen, mut ended) = (Vec::new(), start.saturating_sub(1), false);
    trail::tell(ledger, Some(people), start, moment.seq, |entries| {
        for entry in entries {
            if filter.to.is_some_and(|to| entry.ts > to) {
                ended = true;
                return false;
            }
            last_seen = entry.seq;
            if filter.matches(entry) {
                rows.push(Row::of(entry));
            }
            if rows.len() == limit || last_seen + 1 - start >= PAGE_RECORDS_SCANNED_MAX {
                return false;
            }
        }
        true
    })
    .map_err(storage_failed)?;
    let more = !ended && last_seen < moment.seq;
    Ok((rows, more.then_some(last_seen)))
}

/// `GET /api/v1/audit`: a page of the compliance trail.
pub(super) async fn list(
    state: web::Data<AppState>,
    _: Admin,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let mut allowed = TRAIL_PARAMS.to_vec();
    allowed.extend(["cursor", "limit"]);
    let params = Params::parse(&request, &allowed)?;
    let (asked, filter) = (params.as_of()?, params.filter()?);
    let (cursor, limit) = (
        params.number("cursor")?,
        params.limit(PAGE_ENTRIES_DEFAULT, PAGE_ENTRIES_MAX)?,
    );
    let (ledger, now) = (Arc::clone(&state.ledger), state.clock.now());
    let people = Arc::clone(&state.people);
    let (moment, (rows, next_cursor)) = web::block(move || {
        let moment = resolve(&ledger, asked, now)?;
        let page = page(&ledger, &people, &moment, cursor, &filter, limit)?;
        Ok::<_, ApiError>((moment, page))
    })
    .await
    .map_err(|err| ApiError::Unavailable(format!("the query could not be run: {err}")))??;
    Ok(HttpResponse::Ok().json(json!({
        "as_of": moment.json(),
        "entries": rows,
        "next_cursor": next_cursor,
    })))
}

/// `GET /api/v1/audit/export?format=jsonl|csv`: the trail up to a moment, streamed as it
/// is told (never gathered whole): a chunk at a time, at most a few chunks ahead of the
/// client. The anchor is in the headers before the first row.
pub(super) async fn export(
    state: web::Data<AppState>,
    _: Admin,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let mut allowed = TRAIL_PARAMS.to_vec();
    allowed.push("format");
    let params = Params::parse(&request, &allowed)?;
    let (asked, filter) = (params.as_of()?, params.filter()?);
    let format = match params.get("format") {
        None => TrailFormat::Jsonl,
        Some(text) => TrailFormat::parse(text).map_err(|why| ApiError::invalid("format", why))?,
    };
    let permit = Arc::clone(&state.audit_gates.exports)
        .try_acquire_owned()
        .map_err(|_| {
            ApiError::Overloaded(format!(
                "{EXPORTS_AT_ONCE_MAX} exports are already streaming; retry when one is done"
            ))
        })?;
    let (ledger, now) = (Arc::clone(&state.ledger), state.clock.now());
    let (moment, start) = web::block({
        let (ledger, filter) = (Arc::clone(&ledger), filter.clone());
        move || {
            let moment = resolve(&ledger, asked, now)?;
            let start = first_seq(&ledger, &moment, None, &filter)?;
            Ok::<_, ApiError>((moment, start))
        }
    })
    .await
    .map_err(|err| ApiError::Unavailable(format!("the export could not start: {err}")))??;
    let (chunks, received) = tokio::sync::mpsc::channel(EXPORT_CHUNKS_QUEUED_MAX);
    let people = Arc::clone(&state.people);
    actix_web::rt::task::spawn_blocking(move || {
        let _permit = permit;
        stream_rows(&ledger, &people, &moment, start, &filter, format, &chunks);
    });
    let extension = match format {
        TrailFormat::Jsonl => "jsonl",
        TrailFormat::Csv => "csv",
    };
    Ok(HttpResponse::Ok()
        .content_type(format.media_type())
        .insert_header(("x-writ-as-of-seq", moment.seq.to_string()))
        .insert_header(("x-writ-as-of-hash", moment.hash.to_hex()))
        .insert_header((
            "content-disposition",
            format!(
                "attachment; filename=\"writ-audit-{}.{extension}\"",
                moment.seq
            ),
        ))
        .streaming(Chunks(received)))
}

type Chunk = Result<Bytes, std::io::Error>;

/// Tells the trail into `chunks` until it ends or the client goes away. A failure
/// mid-way ends the stream with an error, which cuts the response short: a reader sees
/// fewer rows than `x-writ-as-of-seq` promises, never wrong ones.
fn stream_rows(
    ledger: &Ledger,
    people: &People,
    moment: &Moment,
    start: u64,
    filter: &TrailFilter,
    format: TrailFormat,
    chunks: &tokio::sync::mpsc::Sender<Chunk>,
) {
    let mut buffer = format.start();
    let mut gone = false;
    let told = trail::tell(ledger, Some(people), start, moment.seq, |entries| {
        let mut ended = false;
        let wanted = entries.iter().take_while(|entry| {
            ended = filter.to.is_some_and(|to| entry.ts > to);
            !ended
        });
        format.write_rows(wanted.filter(|entry| filter.matches(entry)), &mut buffer);
        if buffer.len() >= EXPORT_CHUNK_BYTES {
            let full = std::mem::replace(&mut buffer, Vec::with_capacity(EXPORT_CHUNK_BYTES * 2));
            gone = chunks.blocking_send(Ok(Bytes::from(full))).is_err();
        }
        !gone && !ended
    });
    if gone {
        return;
    }
    let last = match told {
        Ok(()) => Ok(Bytes::from(buffer)),
        Err(err) => {
            tracing::error!(%err, "an audit export stopped part way");
            Err(std::io::Error::other(err.to_string()))
        }
    };
    let _ = chunks.blocking_send(last);
}

/// The receiving end of an export, as the response body's stream.
struct Chunks(tokio::sync::mpsc::Receiver<Chunk>);

impl futures_core::Stream for Chunks {
    type Item = Chunk;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Chunk>> {
        self.0.poll_recv(cx)
    }
}

//! The compliance trail as writ tells it to auditors: which entries a query asks for
//! ([`TrailFilter`]), the entries of a range of records told against the live read
//! models ([`tell`]), the record a moment falls on ([`last_seq_at_or_before`]), and the
//! rows of an export, as JSON lines or spreadsheet-safe CSV ([`TrailFormat`]).
//!
//! Every row reads "user X, via agent chain Z, did Y, at T, outcome" and carries the
//! seq and hash of its record. The columns are taken from an [`AuditEntry`] in one
//! place, [`Row::of`]; personal data (a token's stated intent) comes only from the
//! entry's `intent`, which `writ_projections::personal_of` fills.
//!
//! Architecture Invariant: the server tells the trail against its live read models, not a
//! replay: an entry reads only facts fixed when their subject was created (see
//! `writ_projections`' audit module), so the live state gives the entry the state before
//! the record would. It never tells a record the read models have not applied yet.

use std::borrow::Cow;

use serde::Serialize;
use writ_projections::{AuditEntry, Head, State, audit_entry};
use writ_schemas::{ClientId, Event, Record, Sealed, Timestamp, UserId};

use crate::ledger::storage::{Storage, StorageError};
use crate::ledger::{Ledger, LedgerError};
use crate::people::{Field, People};

/// What a query of the trail asks for; every field given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrailFilter {
    /// Entries about this person.
    pub user: Option<UserId>,
    /// Entries with this agent in their chain, or done by it.
    pub agent: Option<ClientId>,
    /// Entries of this event kind (`TokenIssued`, `OperationRecorded`, ...).
    pub action: Option<String>,
    /// Entries whose outcome starts with this (`succeeded`, `revoked`, `issued`, ...).
    pub outcome: Option<String>,
    /// Entries at or after this instant.
    pub from: Option<Timestamp>,
    /// Entries at or before this instant.
    pub to: Option<Timestamp>,
}

impl TrailFilter {
    /// Whether `entry` is one the query asks for.
    pub fn matches(&self, entry: &AuditEntry) -> bool {
        self.user
            .as_ref()
            .is_none_or(|u| entry.user.as_ref() == Some(u))
            && self.agent.as_ref().is_none_or(|agent| {
                entry.agents.contains(agent)
                    || entry.actor.strip_prefix("agent:") == Some(agent.as_str())
            })
            && self.action.as_ref().is_none_or(|a| entry.action == *a)
            && self
                .outcome
                .as_ref()
                .is_none_or(|o| entry.outcome.starts_with(o.as_str()))
            && self.from.is_none_or(|from| entry.ts >= from)
            && self.to.is_none_or(|to| entry.ts <= to)
    }
}

/// Why the trail could not be told.
#[derive(Debug, thiserror::Error)]
pub enum TrailError {
    /// Storage could not be read.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A record did not decode.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// Tells the entries of records `from_seq..=to_seq` against `ledger`'s live read models,
/// a block at a time, until `visit` returns false. `to_seq` is cut to the record the read
/// models have applied. The read lock is held while a block's entries are computed, never
/// while `visit` runs (which may wait on a slow client).
pub fn tell(
    ledger: &Ledger,
    people: Option<&People>,
    from_seq: u64,
    to_seq: u64,
    mut visit: impl FnMut(&[AuditEntry]) -> bool,
) -> Result<(), TrailError> {
    let to_seq = to_seq.min(ledger.read(|state| state.head().seq));
    let mut failed = None;
    ledger
        .storage()
        .visit_records(from_seq, to_seq, &mut |records: &[Record]| {
            let events = match crate::ledger::decode_events(records) {
                Ok(events) => events,
                Err(err) => {
                    failed = Some(err);
                    return false;
                }
            };
            // Entries are made under the read lock, their intents opened after it: opening
            // may read a person's key from its store.
            let made: Vec<(AuditEntry, Option<Intent>)> = ledger.read(|state| {
                records
                    .iter()
                    .zip(&events)
                    .map(|(record, event)| {
                        let intent = people.and_then(|_| Intent::of(state, event));
                        (audit_entry(state, head_of(record), event), intent)
                    })
                    .collect()
            });
            let entries: Vec<AuditEntry> = made
                .into_iter()
                .map(|(mut entry, intent)| {
                    if let (Some(intent), Some(people)) = (intent, people) {
                        entry.intent = intent.render(people);
                    }
                    entry
                })
                .collect();
            visit(&entries)
        })?;
    match failed {
        Some(err) => Err(err.into()),
        None => Ok(()),
    }
}

/// The trail's entry for `event` against `state`, its personal datum (a token's stated
/// intent, sealed under the person's key) shown as `people` can show it: opened while the
/// person's key exists, `"[erased]"` once they were erased. Without `people` (their keys
/// could not be found), a sealed intent is left out.
pub fn entry(state: &State, head: Head, event: &Event, people: Option<&People>) -> AuditEntry {
    let mut entry = audit_entry(state, head, event);
    if let (Some(intent), Some(people)) = (Intent::of(state, event), people) {
        entry.intent = intent.render(people);
    }
    entry
}

/// A token's stated intent as a record carries it, with whether its person was erased by
/// the state the entry is made against: copied under the read lock, shown after it.
struct Intent {
    user_id: UserId,
    erased: bool,
    clear: Option<String>,
    sealed: Option<Sealed>,
}

impl Intent {
    fn of(state: &State, event: &Event) -> Option<Intent> {
        let Event::TokenIssued(issued) = event else {
            return None;
        };
        let user_id = issued.user_id.clone()?;
        Some(Intent {
            erased: state.user(&user_id).is_some_and(|user| user.erased),
            user_id,
            clear: issued.intent_description.as_deref().map(str::to_owned),
            sealed: issued.intent_sealed.as_deref().cloned(),
        })
    }

    fn render(self, people: &People) -> Option<String> {
        people.render_as(
            self.erased,
            &self.user_id,
            Field::IntentDescription,
            self.clear.as_deref(),
            self.sealed.as_ref(),
        )
    }
}

fn head_of(record: &Record) -> Head {
    Head {
        seq: record.seq,
        hash: record.hash,
        ts: Some(record.ts),
    }
}

/// The last record at or before `at` among records 1 to `head_seq` (none: the ledger
/// began after `at`). Record times never go back, so this is a binary search: about
/// log2(`head_seq`) reads of one record.
pub fn last_seq_at_or_before(
    storage: &dyn Storage,
    head_seq: u64,
    at: Timestamp,
) -> Result<Option<u64>, StorageError> {
    let (mut low, mut high) = (0u64, head_seq);
    // Invariant: records 1..=low are at or before `at`; records after `high` are not.
    while low < high {
        let mid = low + (high - low).div_ceil(2);
        let ts = storage
            .read(mid, 1)?
            .first()
            .map(|record| record.ts)
            .ok_or_else(|| StorageError::Corrupt(format!("record {mid} is missing")))?;
        if ts <= at {
            low = mid;
        } else {
            high = mid - 1;
        }
    }
    Ok((low > 0).then_some(low))
}

/// An export's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TrailFormat {
    /// One JSON object a line.
    Jsonl,
    /// Comma-separated values with a header line, spreadsheet-safe.
    Csv,
}

/// The CSV header, in column order.
pub const CSV_COLUMNS: [&str; 11] = [
    "seq", "hash", "ts", "user", "agents", "actor", "action", "target", "outcome", "intent",
    "sentence",
];

impl TrailFormat {
    /// Reads `jsonl` or `csv`.
    pub fn parse(text: &str) -> Result<TrailFormat, String> {
        match text {
            "jsonl" => Ok(TrailFormat::Jsonl),
            "csv" => Ok(TrailFormat::Csv),
            other => Err(format!("`{other}` is not a format; use jsonl or csv")),
        }
    }

    /// The media type of a response in this format.
    pub fn media_type(self) -> &'static str {
        match self {
            TrailFormat::Jsonl => "application/x-ndjson",
            TrailFormat::Csv => "text/csv; charset=utf-8",
        }
    }

    /// What an export starts with: the header line for CSV, nothing for JSON lines.
    pub fn start(self) -> Vec<u8> {
        match self {
            TrailFormat::Jsonl => Vec::new(),
            TrailFormat::Csv => {
                let mut out = Vec::new();
                write_csv(&mut out, |csv| csv.write_record(CSV_COLUMNS));
                out
            }
        }
    }

    /// Appends one row per entry to `out`.
    pub fn write_rows<'a>(
        self,
        entries: impl IntoIterator<Item = &'a AuditEntry>,
        out: &mut Vec<u8>,
    ) {
        match self {
            TrailFormat::Jsonl => {
                for entry in entries {
                    // A row of strings and integers always serializes.
                    if serde_json::to_writer(&mut *out, &Row::of(entry)).is_ok() {
                        out.push(b'\n');
                    }
                }
            }
            TrailFormat::Csv => write_csv(out, |csv| {
                for entry in entries {
                    let cells = Row::of(entry).cells();
                    csv.write_record(cells.iter().map(|cell| match spreadsheet_safe(cell) {
                        Cow::Borrowed(text) => Cow::Borrowed(text.as_bytes()),
                        Cow::Owned(text) => Cow::Owned(text.into_bytes()),
                    }))?;
                }
                Ok(())
            }),
        }
    }
}

/// Runs `write` with a CSV writer appending to `out` (quoting by the csv crate).
fn write_csv(
    out: &mut Vec<u8>,
    write: impl FnOnce(&mut csv::Writer<&mut Vec<u8>>) -> Result<(), csv::Error>,
) {
    let mut csv = csv::WriterBuilder::new()
        .has_headers(false)
        .terminator(csv::Terminator::CRLF)
        .from_writer(out);
    // Writing into memory cannot fail; a row that could not be written would be one with
    // a different number of fields, and every row has CSV_COLUMNS's.
    let written = write(&mut csv).and_then(|()| csv.flush().map_err(csv::Error::from));
    debug_assert!(written.is_ok(), "CSV into memory: {written:?}");
}

/// A cell a spreadsheet will not run: one starting with `=`, `+`, `-`, `@`, a tab or a
/// carriage return (which spreadsheets read as a formula) gets a leading `'`, as OWASP's
/// CSV injection guidance says. Quoting is the csv crate's.
pub fn spreadsheet_safe(cell: &str) -> Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => Cow::Owned(format!("'{cell}")),
        _ => Cow::Borrowed(cell),
    }
}

/// One row of the trail, as exports and `GET /api/v1/audit` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// The record's seq.
    pub seq: u64,
    /// The record's hash (hex).
    pub hash: String,
    /// When it was appended.
    pub ts: String,
    /// The person it was done for or by (a pseudonymous id), if any.
    pub user: Option<String>,
    /// The agents it went through, in the order the delegation flows: the agent the
    /// person delegated to first, the one that acted last.
    pub agents: Vec<String>,
    /// Who did it: `admin:<id>`, `user:<id>`, `agent:<client id>` or `system`.
    pub actor: String,
    /// The event kind.
    pub action: String,
    /// What it acted on.
    pub target: String,
    /// How it ended.
    pub outcome: String,
    /// Personal data the event carried (a token's stated intent), if any.
    pub intent: Option<String>,
    /// The row as a sentence.
    pub sentence: String,
}

impl Row {
    /// The row of `entry`: the one place an export's columns are taken from an entry.
    pub fn of(entry: &AuditEntry) -> Row {
        Row {
            seq: entry.seq,
            hash: entry.hash.to_hex(),
            ts: entry.ts.to_string(),
            user: entry.user.as_ref().map(ToString::to_string),
            agents: entry.agents.iter().rev().map(ToString::to_string).collect(),
            actor: entry.actor.clone(),
            action: entry.action.clone(),
            target: entry.target.clone(),
            outcome: entry.outcome.clone(),
            intent: entry.intent.clone(),
            sentence: entry.sentence(),
        }
    }

    /// The CSV cells, in `CSV_COLUMNS` order (agents space-separated).
    fn cells(&self) -> [String; 11] {
        [
            self.seq.to_string(),
            self.hash.clone(),
            self.ts.clone(),
            self.user.clone().unwrap_or_default(),
            self.agents.join(" "),
            self.actor.clone(),
            self.action.clone(),
            self.target.clone(),
            self.outcome.clone(),
            self.intent.clone().unwrap_or_default(),
            self.sentence.clone(),
        ]
    }
}

#[cfg(test)]
mod tests;

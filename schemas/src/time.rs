//! Timestamps as the ledger writes them: RFC 3339 UTC with exactly six fractional digits.
//!
//! One instant has exactly one spelling (`2026-11-23T09:02:53.123456Z`), so the bytes that
//! are hashed are reproducible and timestamps of equal width sort as text in time order.

use std::fmt;

use chrono::{DateTime, Datelike, TimeDelta, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";
/// The length of every ledger timestamp's text.
pub const TIMESTAMP_LEN: usize = 27;

/// An instant in UTC with microsecond precision.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

/// Text that is not a ledger timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an RFC 3339 UTC timestamp of the form 2026-01-31T12:00:00.000000Z")]
pub struct TimestampParseError(pub String);

impl Timestamp {
    /// Truncates an instant to whole microseconds.
    pub fn from_datetime(instant: DateTime<Utc>) -> Timestamp {
        let micros_nanos = instant.nanosecond() / 1_000 * 1_000;
        Timestamp(instant.with_nanosecond(micros_nanos).unwrap_or(instant))
    }

    /// The instant `micros` microseconds after the Unix epoch.
    pub fn from_unix_micros(micros: i64) -> Option<Timestamp> {
        DateTime::from_timestamp_micros(micros).map(Timestamp)
    }

    /// Microseconds since the Unix epoch.
    pub fn unix_micros(&self) -> i64 {
        self.0.timestamp_micros()
    }

    /// Whole seconds since the Unix epoch (as JWT `iat` / `exp` use them).
    pub fn unix_seconds(&self) -> i64 {
        self.0.timestamp()
    }

    /// The underlying chrono value.
    pub fn as_datetime(&self) -> DateTime<Utc> {
        self.0
    }

    /// This instant moved by `seconds` (saturating at the representable range).
    pub fn plus_seconds(&self, seconds: i64) -> Timestamp {
        TimeDelta::try_seconds(seconds)
            .and_then(|delta| self.0.checked_add_signed(delta))
            .map(Timestamp)
            .unwrap_or(*self)
    }

    /// Parses exactly the canonical spelling; anything else is refused.
    ///
    /// Hand-rolled over the fixed layout rather than a format string: `writ verify` checks
    /// every record's timestamp and this keeps that check in the tens of nanoseconds.
    pub fn parse(text: &str) -> Result<Timestamp, TimestampParseError> {
        parse_fixed(text.as_bytes())
            .ok_or_else(|| TimestampParseError(text.chars().take(64).collect()))
    }
}

fn parse_fixed(bytes: &[u8]) -> Option<Timestamp> {
    // 2026-11-23T09:02:53.123456Z
    // 0123456789012345678901234567
    if bytes.len() != TIMESTAMP_LEN {
        return None;
    }
    let punctuation = [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (26, b'Z'),
    ];
    if punctuation
        .iter()
        .any(|&(at, expected)| bytes[at] != expected)
    {
        return None;
    }
    let number = |from: usize, to: usize| -> Option<u32> {
        bytes[from..to].iter().try_fold(0u32, |acc, &b| {
            b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
        })
    };
    let year = i32::try_from(number(0, 4)?).ok()?;
    let date = chrono::NaiveDate::from_ymd_opt(year, number(5, 7)?, number(8, 10)?)?;
    let time = chrono::NaiveTime::from_hms_micro_opt(
        number(11, 13)?,
        number(14, 16)?,
        number(17, 19)?,
        number(20, 26)?,
    )?;
    Some(Timestamp(date.and_time(time).and_utc()))
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Every record and most events carry timestamps: writing the fixed layout by
        // hand costs a fraction of chrono's format-string interpreter. Years outside
        // 0..=9999 (never written by writ, which refuses them on parse) fall back.
        match self.fixed() {
            Some(bytes) => f.write_str(std::str::from_utf8(&bytes).map_err(|_| fmt::Error)?),
            None => write!(f, "{}", self.0.format(FORMAT)),
        }
    }
}

impl Timestamp {
    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, when the year has four digits.
    fn fixed(&self) -> Option<[u8; TIMESTAMP_LEN]> {
        let (date, time) = (self.0.date_naive(), self.0.time());
        let year = u32::try_from(date.year()).ok().filter(|y| *y <= 9999)?;
        let mut out = *b"0000-00-00T00:00:00.000000Z";
        let mut put = |at: usize, digits: usize, mut value: u32| {
            for i in (at..at + digits).rev() {
                out[i] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(0, 4, year);
        put(5, 2, date.month());
        put(8, 2, date.day());
        put(11, 2, time.hour());
        put(14, 2, time.minute());
        put(17, 2, time.second());
        // Leap seconds arrive as nanoseconds >= 10^9; chrono's format prints them as :60.
        let micros = time.nanosecond() / 1_000;
        if micros >= 1_000_000 {
            return None;
        }
        put(20, 6, micros);
        Some(out)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_i64(self.unix_micros())
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if !deserializer.is_human_readable() {
            let micros = i64::deserialize(deserializer)?;
            return Timestamp::from_unix_micros(micros)
                .ok_or_else(|| serde::de::Error::custom("timestamp out of range"));
        }
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Timestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{6}Z$",
            "description": "RFC 3339 UTC with exactly six fractional digits"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spelling_per_instant() {
        let ts = Timestamp::parse("2026-11-23T09:02:53.123456Z");
        assert!(ts.is_ok());
        for bad in [
            "2026-11-23T09:02:53Z",
            "2026-11-23T09:02:53.123Z",
            "2026-11-23T09:02:53.123456+00:00",
            "2026-11-23t09:02:53.123456Z",
            "2026-13-23T09:02:53.123456Z",
            "2026-02-30T09:02:53.123456Z",
            "2026-11-23T24:02:53.123456Z",
            "2026-11-23T09:02:60.123456Z",
            "2026-11-23T09:02:5x.123456Z",
            "",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn the_hand_written_layout_is_chronos_to_the_digit() {
        // Instants spread from 1970 to 9999, with every field's carries exercised.
        let mut seconds: i64 = 0;
        let mut micros: u32 = 0;
        for _ in 0..200_000 {
            seconds = (seconds + 1_572_864_007) % 253_402_300_799;
            micros = (micros + 999_983) % 1_000_000;
            let instant = DateTime::from_timestamp(seconds, micros * 1_000).unwrap_or_default();
            let ts = Timestamp::from_datetime(instant);
            assert_eq!(ts.to_string(), ts.0.format(FORMAT).to_string());
        }
        let last = DateTime::from_timestamp(253_402_300_799, 999_999_000).unwrap_or_default();
        let ts = Timestamp::from_datetime(last);
        assert_eq!(ts.to_string(), "9999-12-31T23:59:59.999999Z");
    }

    #[test]
    fn truncates_to_microseconds_and_round_trips() {
        let instant = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap_or_default();
        let ts = Timestamp::from_datetime(instant);
        assert_eq!(ts.to_string(), "2023-11-14T22:13:20.123456Z");
        assert_eq!(Timestamp::parse(&ts.to_string()), Ok(ts));
        assert_eq!(Timestamp::from_unix_micros(ts.unix_micros()), Some(ts));
    }
}

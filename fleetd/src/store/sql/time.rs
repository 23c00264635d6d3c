//! Timestamps as stored: RFC 3339 text in UTC with millisecond precision.
//!
//! Text sorts chronologically, reads well in the `sqlite3` shell and in
//! `psql`, and maps directly onto the API's RFC 3339 strings. The one
//! exception is `rollout_devices`, a row per device of every rollout:
//! there times are integers, milliseconds since the Unix epoch, which
//! keep the rows and their index entries small ([`to_millis`]).

use chrono::{DateTime, SecondsFormat, Utc};

use super::db;

pub(super) fn to_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(super) fn now_text() -> String {
    to_text(Utc::now())
}

pub(super) fn parse(s: &str) -> db::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| db::Error::FromSqlConversionFailure(0, db::types::Type::Text, e.into()))
}

/// A time as `rollout_devices` stores it: milliseconds since the Unix
/// epoch, UTC (the precision of the text form).
pub(super) fn to_millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(super) fn from_millis(ms: i64) -> db::Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| {
        db::Error::FromSqlConversionFailure(
            0,
            db::types::Type::Integer,
            format!("time {ms} ms out of range").into(),
        )
    })
}

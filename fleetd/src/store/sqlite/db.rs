//! The SQLite side of the SQL shared with the PostgreSQL store: the
//! modules under `store/sql/` are compiled once per backend and reach the
//! database through `super::db`. Here that is rusqlite itself, plus the
//! error tests and the few SQL fragments whose spelling differs between
//! the two engines (the PostgreSQL side is `store/postgres/db.rs`).

use rusqlite::ErrorCode;
pub(super) use rusqlite::{
    params, types, Connection, Error, OptionalExtension, Result, Row, ToSql, Transaction,
    TransactionBehavior,
};

/// A UNIQUE constraint refused the statement.
pub(super) fn is_unique_violation(err: &Error) -> bool {
    matches!(err, Error::SqliteFailure(e, Some(msg))
        if e.code == ErrorCode::ConstraintViolation && msg.contains("UNIQUE"))
}

/// A FOREIGN KEY constraint refused the statement.
pub(super) fn is_foreign_key_violation(err: &Error) -> bool {
    matches!(err, Error::SqliteFailure(e, Some(msg))
        if e.code == ErrorCode::ConstraintViolation && msg.contains("FOREIGN KEY"))
}

/// An aggregate of `expr` (which may end in `ORDER BY …`) as JSON array
/// text; `[]` over no rows.
pub(super) fn json_array_agg(expr: &str) -> String {
    format!("json_group_array({expr})")
}

/// A table reference's clause making the planner use `index` (SQLite's
/// planner has no statistics to tell a small partial index from the
/// primary key); nothing on PostgreSQL, whose planner has them.
pub(super) fn indexed_by(index: &str) -> String {
    format!("INDEXED BY {index}")
}

/// The elements of the JSON array of strings bound to `param`, as a table
/// with one text column `value`.
pub(super) fn json_text_elements(param: &str) -> String {
    format!("json_each({param})")
}

/// The text value at the key bound to `param` (made by
/// [`json_field_param`]) of the JSON object in `column`.
pub(super) fn json_text_field(column: &str, param: &str) -> String {
    format!("json_extract({column}, {param})")
}

/// The parameter [`json_text_field`] takes for the object key `key`: a
/// JSON path. `None` for keys a path cannot quote.
pub(super) fn json_field_param(key: &str) -> Option<String> {
    (!key.contains(['"', '\\'])).then(|| format!("$.\"{key}\""))
}

//! A small synchronous database layer over a pooled `tokio-postgres`
//! connection, shaped like the subset of `rusqlite` the SQLite store uses
//! (`prepare_cached`, `query_row`, `query_map`, `execute`, `optional`,
//! `params!`). It lets the PostgreSQL store keep the structure, the checks
//! and the error mapping of the SQLite store query for query, so the two
//! behave identically; only the SQL dialect differs.
//!
//! Every call runs on Tokio's blocking pool (see [`super::PgStore::call`]).
//! Each pooled connection ([`PgConn`]) owns a single-threaded Tokio
//! runtime on which its `tokio-postgres` connection task lives; a call
//! drives that runtime with `block_on`, so a query and the socket I/O
//! behind it run on the calling thread, with no hop to another thread per
//! round trip.
//!
//! Values cross the boundary dynamically typed, like SQLite's: a parameter
//! is converted to whatever type PostgreSQL inferred for its placeholder,
//! a column is read according to its PostgreSQL type. Placeholders are
//! written `?1`, `?2`, … and rewritten to `$1`, `$2`, … before preparing;
//! `INSERT OR IGNORE INTO …` becomes `INSERT INTO … ON CONFLICT DO
//! NOTHING`.

use std::error::Error as StdError;
use std::fmt;
use std::marker::PhantomData;

use bytes::BytesMut;
use std::cell::RefCell;
use std::collections::HashMap;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{IsNull, ToSql as PgToSql, Type as PgType};

/// Advisory lock taken by every write transaction (see
/// [`Connection::transaction_with_behavior`]).
pub(super) const WRITE_LOCK_KEY: i64 = 0x666c_6565_7464_0001;

/// A failure of the database layer.
#[derive(Debug)]
pub enum Error {
    /// The server or the connection failed, or a statement was refused.
    Pg(tokio_postgres::Error),
    /// `query_row` found no row.
    QueryReturnedNoRows,
    /// A column value could not be converted to the requested type.
    FromSqlConversionFailure(usize, types::Type, Box<dyn StdError + Send + Sync>),
    /// A connection could not be set up (its runtime or thread).
    Io(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Pg(e) => match e.as_db_error() {
                Some(db) => write!(f, "{}: {}", db.code().code(), db.message()),
                None => write!(f, "{e}"),
            },
            Error::QueryReturnedNoRows => f.write_str("query returned no rows"),
            Error::Io(e) => write!(f, "setting up a PostgreSQL connection: {e}"),
            Error::FromSqlConversionFailure(i, t, e) => {
                write!(f, "conversion of column {i} ({t:?}) failed: {e}")
            }
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Error::Pg(e) => Some(e),
            Error::FromSqlConversionFailure(_, _, e) => Some(e.as_ref()),
            Error::QueryReturnedNoRows | Error::Io(_) => None,
        }
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        Error::Pg(e)
    }
}

impl Error {
    /// The SQLSTATE of a statement the server refused.
    pub fn code(&self) -> Option<&SqlState> {
        match self {
            Error::Pg(e) => e.code(),
            _ => None,
        }
    }

    pub fn is_unique_violation(&self) -> bool {
        self.code() == Some(&SqlState::UNIQUE_VIOLATION)
    }

    pub fn is_foreign_key_violation(&self) -> bool {
        self.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A UNIQUE constraint refused the statement (the name the SQL shared with
/// the SQLite store uses).
pub fn is_unique_violation(err: &Error) -> bool {
    err.is_unique_violation()
}

/// A FOREIGN KEY constraint refused the statement.
pub fn is_foreign_key_violation(err: &Error) -> bool {
    err.is_foreign_key_violation()
}

/// An aggregate of `expr` (which may end in `ORDER BY …`) as JSON array
/// text; `[]` over no rows.
pub fn json_array_agg(expr: &str) -> String {
    format!("COALESCE(json_agg({expr})::text, '[]')")
}

/// A table reference's clause making the planner use `index`: nothing
/// here, PostgreSQL's planner chooses from its statistics (SQLite needs
/// `INDEXED BY`).
pub fn indexed_by(_index: &str) -> String {
    String::new()
}

/// The elements of the JSON array of strings bound to `param`, as a table
/// with one text column `value`.
pub fn json_text_elements(param: &str) -> String {
    format!("json_array_elements_text({param}::json)")
}

/// The text value at the key bound to `param` (made by
/// [`json_field_param`]) of the JSON object in `column`.
pub fn json_text_field(column: &str, param: &str) -> String {
    format!("({column}::json ->> {param})")
}

/// The parameter [`json_text_field`] takes for the object key `key`.
pub fn json_field_param(key: &str) -> Option<String> {
    Some(key.to_owned())
}

pub mod types {
    /// The storage class of a value, for conversion errors.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Type {
        Null,
        Integer,
        Real,
        Text,
        Blob,
    }
}

/// A dynamically typed value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    fn storage(&self) -> types::Type {
        match self {
            Value::Null => types::Type::Null,
            Value::Integer(_) => types::Type::Integer,
            Value::Real(_) => types::Type::Real,
            Value::Text(_) => types::Type::Text,
            Value::Blob(_) => types::Type::Blob,
        }
    }
}

fn is_text(ty: &PgType) -> bool {
    matches!(
        *ty,
        PgType::TEXT | PgType::VARCHAR | PgType::BPCHAR | PgType::NAME | PgType::UNKNOWN
    )
}

impl PgToSql for Value {
    fn to_sql(
        &self,
        ty: &PgType,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Integer(i) => match *ty {
                PgType::INT8 => i.to_sql(ty, out),
                PgType::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                PgType::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                PgType::BOOL => (*i != 0).to_sql(ty, out),
                PgType::FLOAT8 => (*i as f64).to_sql(ty, out),
                ref t if is_text(t) => i.to_string().to_sql(&PgType::TEXT, out),
                _ => Err(format!("cannot bind an integer to a parameter of type {ty}").into()),
            },
            Value::Real(f) => match *ty {
                PgType::FLOAT8 => f.to_sql(ty, out),
                PgType::FLOAT4 => (*f as f32).to_sql(ty, out),
                ref t if is_text(t) => f.to_string().to_sql(&PgType::TEXT, out),
                _ => Err(format!("cannot bind a real to a parameter of type {ty}").into()),
            },
            Value::Text(s) => match *ty {
                ref t if is_text(t) => s.as_str().to_sql(&PgType::TEXT, out),
                PgType::JSON => {
                    out.extend_from_slice(s.as_bytes());
                    Ok(IsNull::No)
                }
                PgType::JSONB => {
                    out.extend_from_slice(&[1]);
                    out.extend_from_slice(s.as_bytes());
                    Ok(IsNull::No)
                }
                _ => Err(format!("cannot bind text to a parameter of type {ty}").into()),
            },
            Value::Blob(b) => match *ty {
                PgType::BYTEA => b.as_slice().to_sql(ty, out),
                _ => Err(format!("cannot bind a blob to a parameter of type {ty}").into()),
            },
        }
    }

    fn accepts(_: &PgType) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// Something that can be bound to a placeholder.
pub trait ToSql {
    fn to_value(&self) -> Value;
}

impl<T: ToSql + ?Sized> ToSql for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

impl<T: ToSql> ToSql for Option<T> {
    fn to_value(&self) -> Value {
        match self {
            Some(v) => v.to_value(),
            None => Value::Null,
        }
    }
}

impl ToSql for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_owned())
    }
}

impl ToSql for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}

impl ToSql for [u8] {
    fn to_value(&self) -> Value {
        Value::Blob(self.to_vec())
    }
}

impl ToSql for Vec<u8> {
    fn to_value(&self) -> Value {
        Value::Blob(self.clone())
    }
}

impl ToSql for bool {
    fn to_value(&self) -> Value {
        Value::Integer(i64::from(*self))
    }
}

impl ToSql for f64 {
    fn to_value(&self) -> Value {
        Value::Real(*self)
    }
}

impl ToSql for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}

macro_rules! int_to_sql {
    ($($t:ty),*) => {$(
        impl ToSql for $t {
            fn to_value(&self) -> Value {
                // Values beyond i64 cannot be stored in SQLite either; they
                // saturate rather than wrap.
                Value::Integer(i64::try_from(*self).unwrap_or(i64::MAX))
            }
        }
    )*};
}
int_to_sql!(i8, i16, i32, i64, u8, u16, u32, u64, usize);

/// The parameters of one statement.
pub trait Params {
    fn values(&self) -> Vec<Value>;
}

impl Params for &[&dyn ToSql] {
    fn values(&self) -> Vec<Value> {
        self.iter().map(|p| p.to_value()).collect()
    }
}

impl Params for [&dyn ToSql; 0] {
    fn values(&self) -> Vec<Value> {
        Vec::new()
    }
}

macro_rules! array_params {
    ($($n:literal),*) => {$(
        impl<T: ToSql> Params for [T; $n] {
            fn values(&self) -> Vec<Value> {
                self.iter().map(|p| p.to_value()).collect()
            }
        }
    )*};
}
array_params!(1, 2, 3, 4, 5, 6, 7, 8);

/// `params![a, b, …]`, as in rusqlite.
macro_rules! params {
    () => {
        &[] as &[&dyn $crate::store::postgres::db::ToSql]
    };
    ($($p:expr),+ $(,)?) => {
        &[$(&$p as &dyn $crate::store::postgres::db::ToSql),+]
            as &[&dyn $crate::store::postgres::db::ToSql]
    };
}
pub(crate) use params;

/// Something a column can be read as.
pub trait FromSql: Sized {
    fn from_value(v: Value) -> std::result::Result<Self, String>;
}

impl<T: FromSql> FromSql for Option<T> {
    fn from_value(v: Value) -> std::result::Result<Self, String> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

impl FromSql for String {
    fn from_value(v: Value) -> std::result::Result<Self, String> {
        match v {
            Value::Text(s) => Ok(s),
            other => Err(format!("expected text, found {other:?}")),
        }
    }
}

impl FromSql for Vec<u8> {
    fn from_value(v: Value) -> std::result::Result<Self, String> {
        match v {
            Value::Blob(b) => Ok(b),
            other => Err(format!("expected a blob, found {other:?}")),
        }
    }
}

impl FromSql for bool {
    fn from_value(v: Value) -> std::result::Result<Self, String> {
        match v {
            Value::Integer(i) => Ok(i != 0),
            other => Err(format!("expected a boolean, found {other:?}")),
        }
    }
}

impl FromSql for f64 {
    fn from_value(v: Value) -> std::result::Result<Self, String> {
        match v {
            Value::Real(f) => Ok(f),
            Value::Integer(i) => Ok(i as f64),
            other => Err(format!("expected a number, found {other:?}")),
        }
    }
}

impl FromSql for Value {
    fn from_value(v: Value) -> std::result::Result<Self, String> {
        Ok(v)
    }
}

macro_rules! int_from_sql {
    ($($t:ty),*) => {$(
        impl FromSql for $t {
            fn from_value(v: Value) -> std::result::Result<Self, String> {
                match v {
                    Value::Integer(i) => <$t>::try_from(i)
                        .map_err(|_| format!("{i} is out of range for {}", stringify!($t))),
                    other => Err(format!("expected an integer, found {other:?}")),
                }
            }
        }
    )*};
}
int_from_sql!(i8, i16, i32, i64, u8, u16, u32, u64, usize);

/// Column index (only positions are used).
pub trait RowIndex {
    fn index(&self) -> usize;
}

impl RowIndex for usize {
    fn index(&self) -> usize {
        *self
    }
}

/// One result row.
pub struct Row<'a> {
    inner: tokio_postgres::Row,
    _rows: PhantomData<&'a ()>,
}

impl Row<'_> {
    fn new(inner: tokio_postgres::Row) -> Self {
        Row {
            inner,
            _rows: PhantomData,
        }
    }

    /// The value of column `idx`, converted to `T`.
    pub fn get<I: RowIndex, T: FromSql>(&self, idx: I) -> Result<T> {
        let idx = idx.index();
        let value = self.value(idx)?;
        let storage = value.storage();
        T::from_value(value).map_err(|e| Error::FromSqlConversionFailure(idx, storage, e.into()))
    }

    fn value(&self, idx: usize) -> Result<Value> {
        let r = &self.inner;
        let ty = r
            .columns()
            .get(idx)
            .map(|c| c.type_().clone())
            .ok_or_else(|| {
                Error::FromSqlConversionFailure(
                    idx,
                    types::Type::Null,
                    format!("no column {idx}").into(),
                )
            })?;
        let v = match ty {
            PgType::BOOL => r
                .try_get::<_, Option<bool>>(idx)?
                .map(|b| Value::Integer(i64::from(b))),
            PgType::INT2 => r
                .try_get::<_, Option<i16>>(idx)?
                .map(|i| Value::Integer(i64::from(i))),
            PgType::INT4 => r
                .try_get::<_, Option<i32>>(idx)?
                .map(|i| Value::Integer(i64::from(i))),
            PgType::INT8 => r.try_get::<_, Option<i64>>(idx)?.map(Value::Integer),
            PgType::FLOAT4 => r
                .try_get::<_, Option<f32>>(idx)?
                .map(|f| Value::Real(f64::from(f))),
            PgType::FLOAT8 => r.try_get::<_, Option<f64>>(idx)?.map(Value::Real),
            PgType::BYTEA => r.try_get::<_, Option<Vec<u8>>>(idx)?.map(Value::Blob),
            ref t if is_text(t) => r.try_get::<_, Option<String>>(idx)?.map(Value::Text),
            other => {
                return Err(Error::FromSqlConversionFailure(
                    idx,
                    types::Type::Null,
                    format!("unsupported column type {other} (cast it in the query)").into(),
                ))
            }
        };
        Ok(v.unwrap_or(Value::Null))
    }
}

/// `query_row` returning no row as `None`.
pub trait OptionalExtension<T> {
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(Error::QueryReturnedNoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Rewrites the SQLite-flavoured SQL of this store into PostgreSQL's:
/// `?N` placeholders become `$N`, `INSERT OR IGNORE` an `ON CONFLICT DO
/// NOTHING`.
pub(super) fn translate(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 24);
    let mut chars = sql.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if c == '\'' {
            in_string = !in_string;
        }
        if c == '?' && !in_string && chars.peek().is_some_and(|n| n.is_ascii_digit()) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    // A placeholder whose first use is `?N IS NULL` has no type PostgreSQL
    // can infer; in this store such optional parameters are always text.
    let out = cast_null_tests(&out);
    let trimmed = out.trim_start();
    if let Some(rest) = trimmed.strip_prefix("INSERT OR IGNORE INTO") {
        let rest = rest.trim_end().trim_end_matches(';');
        return format!("INSERT INTO{rest} ON CONFLICT DO NOTHING");
    }
    out
}

/// `$N IS NULL` → `$N::text IS NULL`.
fn cast_null_tests(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let digits = after.chars().take_while(char::is_ascii_digit).count();
        out.push('$');
        out.push_str(&after[..digits]);
        let tail = &after[digits..];
        if digits > 0 && (tail.starts_with(" IS NULL") || tail.starts_with(" IS NOT NULL")) {
            out.push_str("::text");
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// How a transaction starts. It takes the store's write lock (see
/// [`WRITE_LOCK_KEY`]), so writes are serialised across every replica
/// sharing the database exactly as SQLite serialises its writers.
#[derive(Debug, Clone, Copy)]
pub enum TransactionBehavior {
    Immediate,
}

/// A PostgreSQL connection with the runtime that drives it and its
/// prepared statements.
pub struct PgConn {
    client: tokio_postgres::Client,
    /// Single-threaded; runs the connection task whenever a call blocks on
    /// it. `None` only while dropping.
    rt: Option<tokio::runtime::Runtime>,
    statements: RefCell<HashMap<String, tokio_postgres::Statement>>,
}

impl Drop for PgConn {
    fn drop(&mut self) {
        // May run inside an asynchronous context (the pool discarding a
        // broken connection), where a runtime cannot be dropped blocking.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Creates and checks [`PgConn`]s for the pool.
pub struct PgManager {
    config: tokio_postgres::Config,
}

impl PgManager {
    pub fn new(config: tokio_postgres::Config) -> Self {
        PgManager { config }
    }
}

impl deadpool::managed::Manager for PgManager {
    type Type = PgConn;
    type Error = Error;

    async fn create(&self) -> Result<PgConn> {
        let config = self.config.clone();
        tokio::task::spawn_blocking(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::Io(e.to_string()))?;
            let (client, connection) = rt.block_on(config.connect(tokio_postgres::NoTls))?;
            rt.spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "PostgreSQL connection ended");
                }
            });
            // Statements are prepared once per connection and live as long
            // as it does, while tables grow from empty to millions of rows:
            // a generic plan chosen early (say, scanning every certificate
            // of a CA instead of using the (ca_id, serial) key) would stay.
            // Plan every execution with its parameters and current
            // statistics instead; these statements are cheap to plan.
            rt.block_on(client.batch_execute("SET plan_cache_mode = force_custom_plan"))?;
            Ok(PgConn {
                client,
                rt: Some(rt),
                statements: RefCell::new(HashMap::new()),
            })
        })
        .await
        .map_err(|e| Error::Io(e.to_string()))?
    }

    async fn recycle(
        &self,
        conn: &mut PgConn,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<Error> {
        if conn.client.is_closed() {
            return Err(deadpool::managed::RecycleError::message(
                "the PostgreSQL connection is closed",
            ));
        }
        Ok(())
    }
}

/// One pooled connection, used from a blocking thread.
pub struct Connection {
    conn: deadpool::managed::Object<PgManager>,
}

impl Connection {
    pub(super) fn new(conn: deadpool::managed::Object<PgManager>) -> Self {
        Connection { conn }
    }

    fn client(&self) -> &tokio_postgres::Client {
        &self.conn.client
    }

    fn prepare_raw(&self, sql: &str) -> Result<tokio_postgres::Statement> {
        if let Some(stmt) = self.conn.statements.borrow().get(sql) {
            return Ok(stmt.clone());
        }
        let stmt = self.block(self.client().prepare(sql))?;
        self.conn
            .statements
            .borrow_mut()
            .insert(sql.to_owned(), stmt.clone());
        Ok(stmt)
    }

    fn block<F: std::future::Future>(&self, f: F) -> F::Output {
        self.conn
            .rt
            .as_ref()
            .expect("a pooled connection has its runtime")
            .block_on(f)
    }

    pub fn prepare_cached(&self, sql: &str) -> Result<Statement<'_>> {
        let sql = translate(sql);
        let stmt = self.prepare_raw(&sql)?;
        Ok(Statement { conn: self, stmt })
    }

    pub fn query_row<T, P: Params>(
        &self,
        sql: &str,
        params: P,
        f: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        self.prepare_cached(sql)?.query_row(params, f)
    }

    pub fn execute<P: Params>(&self, sql: &str, params: P) -> Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        Ok(self.block(self.client().batch_execute(sql))?)
    }

    /// Starts a transaction holding the store's write lock until it ends.
    pub fn transaction_with_behavior(
        &mut self,
        _behavior: TransactionBehavior,
    ) -> Result<Transaction<'_>> {
        self.execute_batch("BEGIN")?;
        let tx = Transaction {
            conn: self,
            done: false,
        };
        tx.query_row("SELECT pg_advisory_xact_lock(?1)", [WRITE_LOCK_KEY], |_| {
            Ok(())
        })?;
        Ok(tx)
    }
}

/// An open transaction; rolled back when dropped uncommitted.
pub struct Transaction<'c> {
    conn: &'c mut Connection,
    done: bool,
}

impl Transaction<'_> {
    pub fn commit(mut self) -> Result<()> {
        self.done = true;
        self.conn.execute_batch("COMMIT")
    }
}

impl std::ops::Deref for Transaction<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = self.conn.execute_batch("ROLLBACK") {
                tracing::warn!(error = %e, "rolling back a PostgreSQL transaction failed");
            }
        }
    }
}

/// A prepared statement.
pub struct Statement<'c> {
    conn: &'c Connection,
    stmt: tokio_postgres::Statement,
}

impl Statement<'_> {
    fn run<P: Params>(&self, params: P) -> Result<Vec<tokio_postgres::Row>> {
        let values = params.values();
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = values
            .iter()
            .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        Ok(self
            .conn
            .block(self.conn.client().query(&self.stmt, &refs))?)
    }

    pub fn execute<P: Params>(&mut self, params: P) -> Result<usize> {
        let values = params.values();
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = values
            .iter()
            .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        let n = self
            .conn
            .block(self.conn.client().execute(&self.stmt, &refs))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    pub fn query_row<T, P: Params>(
        &mut self,
        params: P,
        f: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        let row = self
            .run(params)?
            .into_iter()
            .next()
            .ok_or(Error::QueryReturnedNoRows)?;
        f(&Row::new(row))
    }

    pub fn query_map<T, P: Params, F>(&mut self, params: P, f: F) -> Result<MappedRows<F>>
    where
        F: FnMut(&Row<'_>) -> Result<T>,
    {
        Ok(MappedRows {
            rows: self.run(params)?.into_iter(),
            f,
        })
    }

    pub fn query<P: Params>(&mut self, params: P) -> Result<Rows> {
        Ok(Rows {
            rows: self.run(params)?.into_iter().map(Row::new).collect(),
            next: 0,
        })
    }
}

/// Rows mapped by a function, in order.
pub struct MappedRows<F> {
    rows: std::vec::IntoIter<tokio_postgres::Row>,
    f: F,
}

impl<T, F: FnMut(&Row<'_>) -> Result<T>> Iterator for MappedRows<F> {
    type Item = Result<T>;
    fn next(&mut self) -> Option<Result<T>> {
        let row = self.rows.next()?;
        Some((self.f)(&Row::new(row)))
    }
}

/// Rows read one by one.
pub struct Rows {
    rows: Vec<Row<'static>>,
    next: usize,
}

impl Rows {
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<&Row<'static>>> {
        let i = self.next;
        self.next += 1;
        Ok(self.rows.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::translate;

    #[test]
    fn placeholders_and_insert_or_ignore_are_rewritten() {
        assert_eq!(
            translate("SELECT ?1, '?2' WHERE a = ?12"),
            "SELECT $1, '?2' WHERE a = $12"
        );
        assert_eq!(
            translate("WHERE ?1 IS NULL OR id > ?1"),
            "WHERE $1::text IS NULL OR id > $1"
        );
        assert_eq!(
            translate("INSERT OR IGNORE INTO t (a) VALUES (?1)"),
            "INSERT INTO t (a) VALUES ($1) ON CONFLICT DO NOTHING"
        );
    }
}

//! Statement arguments that either driver can bind.
//!
//! The batched inserts of the group commit run through sqlx (PostgreSQL) or, on SQLite, through
//! the writer's own rusqlite connection (`direct.rs`). Their rows are described once, as `Arg`s,
//! and bound by whichever driver runs the statement.

use rusqlite::types::{ToSql, ToSqlOutput, Value, ValueRef};
use sqlx::{Database, Encode, Type};

/// One bound value; `None` binds NULL.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    Int(Option<i64>),
    Text(Option<&'a str>),
    Blob(Option<&'a [u8]>),
    Bool(bool),
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(s: &'a str) -> Self {
        Arg::Text(Some(s))
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(s: &'a String) -> Self {
        Arg::Text(Some(s))
    }
}

impl<'a> From<&'a Option<String>> for Arg<'a> {
    fn from(s: &'a Option<String>) -> Self {
        Arg::Text(s.as_deref())
    }
}

impl<'a> From<&'a [u8]> for Arg<'a> {
    fn from(b: &'a [u8]) -> Self {
        Arg::Blob(Some(b))
    }
}

impl<'a> From<&'a Option<Vec<u8>>> for Arg<'a> {
    fn from(b: &'a Option<Vec<u8>>) -> Self {
        Arg::Blob(b.as_deref())
    }
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(Some(v))
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        Arg::Int(v)
    }
}

impl From<bool> for Arg<'_> {
    fn from(v: bool) -> Self {
        Arg::Bool(v)
    }
}

/// Binds `arg` as the next argument of an sqlx query.
pub fn bind<'q, DB: Database>(
    q: sqlx::query::Query<'q, DB, <DB as Database>::Arguments>,
    arg: Arg<'q>,
) -> sqlx::query::Query<'q, DB, <DB as Database>::Arguments>
where
    Option<i64>: Encode<'q, DB> + Type<DB>,
    Option<&'q str>: Encode<'q, DB> + Type<DB>,
    Option<&'q [u8]>: Encode<'q, DB> + Type<DB>,
    bool: Encode<'q, DB> + Type<DB>,
{
    match arg {
        Arg::Int(v) => q.bind(v),
        Arg::Text(v) => q.bind(v),
        Arg::Blob(v) => q.bind(v),
        Arg::Bool(v) => q.bind(v),
    }
}

impl ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            Arg::Int(Some(v)) => ToSqlOutput::Owned(Value::Integer(v)),
            Arg::Text(Some(s)) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Arg::Blob(Some(b)) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            Arg::Bool(v) => ToSqlOutput::Owned(Value::Integer(i64::from(v))),
            Arg::Int(None) | Arg::Text(None) | Arg::Blob(None) => ToSqlOutput::Owned(Value::Null),
        })
    }
}

/// One column of many rows, bound as one PostgreSQL array (see `multirow::Rows::columns`).
#[derive(Debug)]
pub enum Column<'a> {
    Int(Vec<Option<i64>>),
    Text(Vec<Option<&'a str>>),
    Blob(Vec<Option<&'a [u8]>>),
    Bool(Vec<bool>),
}

impl<'a> Column<'a> {
    /// An empty column of `arg`'s type, with room for `rows` values.
    pub fn like(arg: &Arg<'_>, rows: usize) -> Self {
        match arg {
            Arg::Int(_) => Column::Int(Vec::with_capacity(rows)),
            Arg::Text(_) => Column::Text(Vec::with_capacity(rows)),
            Arg::Blob(_) => Column::Blob(Vec::with_capacity(rows)),
            Arg::Bool(_) => Column::Bool(Vec::with_capacity(rows)),
        }
    }

    /// Appends `arg`, which must be of the column's type (a table's row function gives each
    /// column one type).
    pub fn push(&mut self, arg: Arg<'a>) {
        match (self, arg) {
            (Column::Int(c), Arg::Int(v)) => c.push(v),
            (Column::Text(c), Arg::Text(v)) => c.push(v),
            (Column::Blob(c), Arg::Blob(v)) => c.push(v),
            (Column::Bool(c), Arg::Bool(v)) => c.push(v),
            (column, arg) => unreachable!("{arg:?} in a column of another type: {column:?}"),
        }
    }

    pub fn pg_array_type(&self) -> &'static str {
        match self {
            Column::Int(_) => "int8[]",
            Column::Text(_) => "text[]",
            Column::Blob(_) => "bytea[]",
            Column::Bool(_) => "bool[]",
        }
    }

    /// Binds the column as the next argument of a PostgreSQL query.
    pub fn bind(
        self,
        q: sqlx::query::Query<'a, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'a, sqlx::Postgres, sqlx::postgres::PgArguments> {
        match self {
            Column::Int(v) => q.bind(v),
            Column::Text(v) => q.bind(v),
            Column::Blob(v) => q.bind(v),
            Column::Bool(v) => q.bind(v),
        }
    }
}

/// Binds `args` to a statement written with `$n` placeholders (the form both dialects share):
/// `$n` takes `args[n - 1]`, wherever and however often it appears.
///
/// SQLite numbers `$name` parameters in order of first appearance, so in a statement where `$1`,
/// `$2`, … first appear in that order, parameter `i` is `$i` and binding goes by position —
/// `in_order` says so (see [`numbered_in_order`]). The name-by-name way costs a scan of the
/// statement's parameter list per parameter, which for a 64-row insert is most of the insert.
pub fn bind_numbered(
    statement: &mut rusqlite::CachedStatement<'_>,
    args: &[Arg<'_>],
    in_order: bool,
) -> rusqlite::Result<()> {
    if in_order {
        if statement.parameter_count() != args.len() {
            return Err(rusqlite::Error::InvalidParameterCount(args.len(), statement.parameter_count()));
        }
        for (i, arg) in args.iter().enumerate() {
            statement.raw_bind_parameter(i + 1, arg)?;
        }
        return Ok(());
    }
    for i in 1..=statement.parameter_count() {
        let n = parameter_number(statement, i)
            .filter(|n| (1..=args.len()).contains(n))
            .ok_or(rusqlite::Error::InvalidParameterCount(i, args.len()))?;
        statement.raw_bind_parameter(i, args[n - 1])?;
    }
    Ok(())
}

/// Whether parameter `i` of `statement` is `$i` for every `i`.
pub fn numbered_in_order(statement: &rusqlite::Statement<'_>) -> bool {
    (1..=statement.parameter_count()).all(|i| parameter_number(statement, i) == Some(i))
}

fn parameter_number(statement: &rusqlite::Statement<'_>, i: usize) -> Option<usize> {
    statement.parameter_name(i)?.strip_prefix('$')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(conn: &rusqlite::Connection, sql: &str, args: &[Arg<'_>], in_order: bool) -> Vec<String> {
        let mut st = conn.prepare_cached(sql).unwrap();
        bind_numbered(&mut st, args, in_order).unwrap();
        let mut rows = st.raw_query();
        let row = rows.next().unwrap().unwrap();
        (0..row.as_ref().column_count()).map(|i| row.get::<_, Option<String>>(i).unwrap().unwrap_or_default()).collect()
    }

    #[test]
    fn numbered_parameters_bind_by_number() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let args = [Arg::from("a"), Arg::from("b"), Arg::Text(None)];
        // In order, reused: position binding is allowed and gives what name binding gives.
        let sql = "SELECT $1, $2, $1 || $2, $3";
        assert!(numbered_in_order(&conn.prepare(sql).unwrap()));
        assert_eq!(values(&conn, sql, &args, true), ["a", "b", "ab", ""]);
        assert_eq!(values(&conn, sql, &args, false), ["a", "b", "ab", ""]);
        // Out of order: SQLite numbers `$2` as parameter 1, so only name binding is right.
        let sql = "SELECT $2, $1";
        assert!(!numbered_in_order(&conn.prepare(sql).unwrap()));
        assert_eq!(values(&conn, sql, &args, false), ["b", "a"]);
    }

    #[test]
    fn a_missing_argument_is_an_error_not_a_null() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let mut st = conn.prepare_cached("SELECT $1, $2").unwrap();
        assert!(bind_numbered(&mut st, &[Arg::from(1)], true).is_err());
        assert!(bind_numbered(&mut st, &[Arg::from(1)], false).is_err());
    }
}

//! Multi-row statements: one `INSERT … VALUES (…), (…)` (or `UPDATE … FROM (VALUES …)`) for many
//! rows, so a group commit costs a few statements, not one per row.
//!
//! On SQLite, statements come in a few fixed row counts, so the drivers' statement caches (keyed
//! by SQL text) hold a handful of prepared statements per table instead of one per batch size. The
//! largest stays far below the bind-parameter limits (SQLite 32 766, PostgreSQL 65 535).
//!
//! On PostgreSQL, where each statement is a round trip to the server, any number of rows to
//! insert or update is one statement: each column is bound as one array and the rows are
//! `UNNEST(…)` of them ([`Rows::columns`]).

use std::sync::OnceLock;

use super::args::{Arg, Column};

/// Rows per statement, largest first; a batch is split greedily into these.
const SIZES: [usize; 4] = [64, 16, 4, 1];

/// The multi-row statements of one table: its rows' values between `before` and `after`.
pub struct MultiRow {
    before: &'static str,
    cols: usize,
    after: &'static str,
    statements: OnceLock<Vec<String>>,
    /// The `UNNEST` form (PostgreSQL), typed from the first rows bound.
    unnest: OnceLock<String>,
}

impl MultiRow {
    /// `INSERT INTO {head} VALUES (…), (…)`; `head` is `table (col, …)`.
    pub const fn new(head: &'static str, cols: usize) -> Self {
        Self { before: head, cols, after: "", statements: OnceLock::new(), unnest: OnceLock::new() }
    }

    /// `{before} (VALUES (…), (…)) AS v {after}`: an `UPDATE … FROM` that refers to the values as
    /// `v.column1`, `v.column2`, … (the names both SQLite and PostgreSQL give them).
    pub const fn update(before: &'static str, cols: usize, after: &'static str) -> Self {
        Self { before, cols, after, statements: OnceLock::new(), unnest: OnceLock::new() }
    }

    /// The statements that insert `rows` rows, in order, each with how many rows it takes.
    pub fn plan(&'static self, mut rows: usize) -> Vec<(&'static str, usize)> {
        let statements = self.statements.get_or_init(|| SIZES.iter().map(|&n| self.sql(n)).collect());
        let mut out = Vec::new();
        for (size, sql) in SIZES.iter().zip(statements) {
            while rows >= *size {
                out.push((sql.as_str(), *size));
                rows -= size;
            }
        }
        out
    }

    /// The statement that takes every row from one array per column: `INSERT INTO {head} SELECT *
    /// FROM UNNEST($1::text[], …)`, or `{before} UNNEST(…) AS v(column1, …) {after}`. The arrays'
    /// types are those of `columns`, the same for every batch of a table.
    fn unnest(&self, columns: &[Column<'_>]) -> &str {
        self.unnest.get_or_init(|| {
            let arrays = unnest_arrays(columns, &mut 1);
            if self.after.is_empty() {
                format!("INSERT INTO {} SELECT * FROM {arrays}", self.before)
            } else {
                format!("{} {arrays} AS v({}) {}", self.before, column_names(columns.len()), self.after)
            }
        })
    }

    /// `table (col, …)` of an insert.
    pub fn head(&self) -> &'static str {
        self.before
    }

    fn sql(&self, rows: usize) -> String {
        let mut sql = if self.after.is_empty() {
            format!("INSERT INTO {} VALUES ", self.before)
        } else {
            format!("{} (VALUES ", self.before)
        };
        for r in 0..rows {
            sql.push_str(if r == 0 { "(" } else { ", (" });
            for c in 0..self.cols {
                if c > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("${}", r * self.cols + c + 1));
            }
            sql.push(')');
        }
        if !self.after.is_empty() {
            sql.push_str(") AS v ");
            sql.push_str(self.after);
        }
        sql
    }
}

/// `UNNEST($n::type[], …)` of `columns`, their parameters numbered from `next` on, which is left
/// past them (PostgreSQL; several tables' rows can then go in one statement).
pub fn unnest_arrays(columns: &[Column<'_>], next: &mut usize) -> String {
    let arrays: Vec<String> = columns
        .iter()
        .map(|c| {
            *next += 1;
            format!("${}::{}", *next - 1, c.pg_array_type())
        })
        .collect();
    format!("UNNEST({})", arrays.join(", "))
}

/// `column1, …, column{n}`: the names SQLite and PostgreSQL give the columns of `VALUES`, and
/// Loft gives those of `UNNEST`.
pub fn column_names(n: usize) -> String {
    (1..=n).map(|i| format!("column{i}")).collect::<Vec<_>>().join(", ")
}

/// Rows for one multi-row table, flattened row after row.
pub struct Rows<'a> {
    table: &'static MultiRow,
    args: Vec<Arg<'a>>,
}

impl<'a> Rows<'a> {
    pub fn new<const N: usize>(table: &'static MultiRow, rows: &[[Arg<'a>; N]]) -> Self {
        debug_assert_eq!(N, table.cols);
        Self { table, args: rows.iter().flatten().copied().collect() }
    }

    /// The fixed-size statements that take the rows, each with its arguments (SQLite).
    pub fn chunks(&self) -> impl Iterator<Item = (&'static str, &[Arg<'a>])> {
        let cols = self.table.cols;
        let mut rest = self.args.as_slice();
        self.table.plan(self.args.len() / cols).into_iter().map(move |(sql, n)| {
            let (chunk, tail) = rest.split_at(n * cols);
            rest = tail;
            (sql, chunk)
        })
    }

    /// Whether PostgreSQL must plan the statement of [`Rows::columns`] each time it runs, for
    /// the rows at hand (an unnamed statement), rather than keep one plan per connection.
    ///
    /// An `UPDATE … FROM` joins the rows to their table. Kept, its plan is the one made for the
    /// connection's first batches — while `deliveries` was nearly empty, in a new database — which
    /// hashes the rows and scans the whole table: finishing a batch of 4–16 deliveries then took
    /// 2.4–4.3 ms of the server's CPU once the table had grown (`pg_stat_statements`, `perf`).
    /// Updating row by row instead (one round trip each, 0.036 ms of server time) made a batch of
    /// 160 attempts 160 statements. Planned for its rows, the join looks each one up by its key.
    pub fn planned_each_time(&self) -> bool {
        !self.table.after.is_empty()
    }

    /// One statement for all the rows, with one array per column (PostgreSQL); `None` when
    /// there are no rows.
    pub fn columns(&self) -> Option<(&'static str, Vec<Column<'a>>)> {
        let cols = self.table.cols;
        let first = self.args.get(..cols)?;
        let mut columns: Vec<Column<'a>> = first.iter().map(|a| Column::like(a, self.args.len() / cols)).collect();
        for row in self.args.chunks_exact(cols) {
            for (column, arg) in columns.iter_mut().zip(row) {
                column.push(*arg);
            }
        }
        Some((self.table.unnest(&columns), columns))
    }
}

/// One statement of a batch's writes: a single one, or the rows of a multi-row table, which
/// each driver runs in its own form.
pub enum Statement<'a> {
    One(&'static str, Vec<Arg<'a>>),
    Rows(Rows<'a>),
}

#[cfg(test)]
mod tests {
    use super::*;

    static T: MultiRow = MultiRow::new("t (a, b)", 2);

    #[test]
    fn splits_into_fixed_sizes() {
        let sizes = |n| T.plan(n).into_iter().map(|(_, k)| k).collect::<Vec<_>>();
        assert_eq!(sizes(0), Vec::<usize>::new());
        assert_eq!(sizes(3), vec![1, 1, 1]);
        assert_eq!(sizes(87), vec![64, 16, 4, 1, 1, 1]);
        assert_eq!(T.plan(2)[0].0, "INSERT INTO t (a, b) VALUES ($1, $2)");
        assert_eq!(T.plan(4)[0].0, "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4), ($5, $6), ($7, $8)");
    }

    #[test]
    fn updates_from_values() {
        static U: MultiRow = MultiRow::update("UPDATE t SET b = v.column2 FROM", 2, "WHERE t.a = v.column1");
        assert_eq!(U.plan(2)[0].0, "UPDATE t SET b = v.column2 FROM (VALUES ($1, $2)) AS v WHERE t.a = v.column1");
        assert_eq!(
            U.plan(4)[0].0,
            "UPDATE t SET b = v.column2 FROM (VALUES ($1, $2), ($3, $4), ($5, $6), ($7, $8)) AS v WHERE t.a = v.column1"
        );
    }
}

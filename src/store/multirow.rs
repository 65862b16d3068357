//! Multi-row statements: one `INSERT … VALUES (…), (…)` (or `UPDATE … FROM (VALUES …)`) for many
//! rows, so a group commit costs a few statements, not one per row.
//!
//! Statements come in a few fixed row counts, so the drivers' statement caches (keyed by SQL
//! text) hold a handful of prepared statements per table instead of one per batch size. The
//! largest stays far below the bind-parameter limits (SQLite 32 766, PostgreSQL 65 535).

use std::sync::OnceLock;

/// Rows per statement, largest first; a batch is split greedily into these.
const SIZES: [usize; 4] = [64, 16, 4, 1];

/// The multi-row statements of one table: its rows' values between `before` and `after`.
pub struct MultiRow {
    before: &'static str,
    cols: usize,
    after: &'static str,
    statements: OnceLock<Vec<String>>,
}

impl MultiRow {
    /// `INSERT INTO {head} VALUES (…), (…)`; `head` is `table (col, …)`.
    pub const fn new(head: &'static str, cols: usize) -> Self {
        Self { before: head, cols, after: "", statements: OnceLock::new() }
    }

    /// `{before} (VALUES (…), (…)) AS v {after}`: an `UPDATE … FROM` that refers to the values as
    /// `v.column1`, `v.column2`, … (the names both SQLite and PostgreSQL give them).
    pub const fn update(before: &'static str, cols: usize, after: &'static str) -> Self {
        Self { before, cols, after, statements: OnceLock::new() }
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

    /// `rows` split into the chunks of [`MultiRow::plan`], each with its statement.
    pub fn chunks<'r, R>(&'static self, rows: &'r [R]) -> impl Iterator<Item = (&'static str, &'r [R])> {
        let mut rest = rows;
        self.plan(rows.len()).into_iter().map(move |(sql, n)| {
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            (sql, chunk)
        })
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

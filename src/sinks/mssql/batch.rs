//! A transaction as T-SQL text: the statements of a batch, each on lines of its own, with
//! their parameters renumbered across the whole text, so that the transaction goes to the
//! server as one `sp_executesql` call, one round trip, instead of one per statement.
//!
//! ```text
//! SET NOCOUNT ON; SET XACT_ABORT ON; BEGIN TRAN;     line 1
//! <statement 1, its placeholders now @P1..@P3>        lines 2..
//! ;
//! <statement 2, @P4..>
//! ;
//! MERGE [dbo].[checkpoints] ... ;
//! ;
//! COMMIT TRAN;
//! ```
//!
//! `XACT_ABORT` makes any run-time error roll the transaction back and end the batch. A
//! server error carries the line it happened on, counted from the start of the text; the
//! [`Chunk::step_at_line`] table maps it back to the statement, hence to the batch item.
//!
//! An RPC takes at most 2,100 parameters (two of them are `sp_executesql`'s own). A transaction
//! with more is split between statements into several texts ([`Plan::Split`]): the writer then
//! sends `BEGIN TRAN` as a batch of its own, each text, then `COMMIT TRAN` (SQL Server refuses
//! an `sp_executesql` that ends with another transaction count than it started with, so the
//! transaction cannot open in one call and close in another).

use std::borrow::Cow;

use tiberius::ColumnData;

use super::params::{Piece, parse_placeholders, render};

/// Parameters of one `sp_executesql` call besides its own `@stmt` and `@params`.
pub const MAX_PARAMS: usize = 2_098;

pub const SINGLE_HEADER: &str = "SET NOCOUNT ON; SET XACT_ABORT ON; BEGIN TRAN;";
pub const SINGLE_FOOTER: &str = "COMMIT TRAN;";
pub const SPLIT_HEADER: &str = "SET NOCOUNT ON; SET XACT_ABORT ON;";
/// Sent as plain SQL batches around the texts of a split transaction.
pub const BEGIN_BATCH: &str = "SET XACT_ABORT ON; BEGIN TRAN;";
pub const COMMIT_BATCH: &str = "COMMIT TRAN;";
/// After a failure: a compile error aborts the batch without ending the transaction.
pub const ROLLBACK_BATCH: &str = "IF @@TRANCOUNT > 0 ROLLBACK TRAN;";

/// Where a statement comes from, for error messages and `failed_at`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Origin {
    /// Operation `number` (1-based) of the item at index `item` of the batch.
    Op { item: usize, number: usize },
    /// The parked-event row of the item at index `item`.
    Park { item: usize },
    /// The gateway's own statement (checkpoints, projection version): what it does.
    Gateway(&'static str),
}

/// One statement of the transaction.
#[derive(Debug)]
pub struct Step<'b> {
    sql: Cow<'b, str>,
    /// Raw SQL is sent as it is: no placeholders.
    raw: bool,
    params: Vec<ColumnData<'b>>,
    pub origin: Origin,
}

impl<'b> Step<'b> {
    /// A statement with placeholders for `params`; the message says why it cannot be sent.
    pub fn statement(sql: impl Into<Cow<'b, str>>, params: Vec<ColumnData<'b>>, origin: Origin) -> Result<Self, String> {
        let sql = sql.into();
        if params.len() > MAX_PARAMS {
            return Err(format!(
                "{} parameters; SQL Server takes at most {MAX_PARAMS} in one statement call",
                params.len()
            ));
        }
        parse_placeholders(&sql, params.len())?;
        Ok(Self { sql, raw: false, params, origin })
    }

    pub fn raw(sql: &'b str, origin: Origin) -> Self {
        Self { sql: Cow::Borrowed(sql), raw: true, params: Vec::new(), origin }
    }

    fn render(&self, offset: usize, out: &mut String) {
        if self.raw {
            out.push_str(&self.sql);
        } else {
            let pieces: Vec<Piece<'_>> =
                parse_placeholders(&self.sql, self.params.len()).expect("checked when the step was made");
            render(&pieces, offset, out);
        }
    }
}

/// One `sp_executesql` call: its text, its parameters, and which lines hold which statement.
#[derive(Debug)]
pub struct Chunk<'b> {
    pub text: String,
    pub params: Vec<ColumnData<'b>>,
    /// (first line, last line, origin), 1-based lines of `text`.
    lines: Vec<(u32, u32, Origin)>,
}

impl Chunk<'_> {
    /// The statement on `line` of the text, if the line holds one.
    pub fn step_at_line(&self, line: u32) -> Option<Origin> {
        self.lines.iter().find(|(first, last, _)| (*first..=*last).contains(&line)).map(|(_, _, o)| *o)
    }
}

/// How a transaction is sent.
#[derive(Debug)]
pub enum Plan<'b> {
    /// One call holding `BEGIN TRAN`, every statement and `COMMIT TRAN`: one round trip.
    Single(Chunk<'b>),
    /// `BEGIN_BATCH`, these calls, `COMMIT_BATCH`: two round trips more than calls.
    Split(Vec<Chunk<'b>>),
}

impl<'b> Plan<'b> {
    pub fn new(steps: Vec<Step<'b>>) -> Self {
        Self::with_limit(steps, MAX_PARAMS)
    }

    /// Round trips the plan takes when it succeeds.
    pub fn round_trips(&self) -> usize {
        match self {
            Plan::Single(_) => 1,
            Plan::Split(chunks) => chunks.len() + 2,
        }
    }

    pub fn with_limit(steps: Vec<Step<'b>>, max_params: usize) -> Self {
        let total: usize = steps.iter().map(|s| s.params.len()).sum();
        if total <= max_params {
            return Plan::Single(assemble(steps, SINGLE_HEADER, Some(SINGLE_FOOTER)));
        }
        let mut chunks = Vec::new();
        let mut current: Vec<Step<'b>> = Vec::new();
        let mut count = 0;
        for step in steps {
            if count + step.params.len() > max_params && !current.is_empty() {
                chunks.push(assemble(std::mem::take(&mut current), SPLIT_HEADER, None));
                count = 0;
            }
            count += step.params.len();
            current.push(step);
        }
        if !current.is_empty() {
            chunks.push(assemble(current, SPLIT_HEADER, None));
        }
        Plan::Split(chunks)
    }
}

fn assemble<'b>(steps: Vec<Step<'b>>, header: &str, footer: Option<&str>) -> Chunk<'b> {
    let mut text = String::with_capacity(header.len() + steps.iter().map(|s| s.sql.len() + 8).sum::<usize>() + 16);
    text.push_str(header);
    text.push('\n');
    let mut params = Vec::with_capacity(steps.iter().map(|s| s.params.len()).sum());
    let mut lines = Vec::with_capacity(steps.len());
    let mut line = 2u32;
    for step in steps {
        let start = text.len();
        step.render(params.len(), &mut text);
        let newlines = text[start..].matches('\n').count() as u32;
        text.push_str("\n;\n");
        lines.push((line, line + newlines + 1, step.origin));
        line += newlines + 2;
        params.extend(step.params);
    }
    if let Some(footer) = footer {
        text.push_str(footer);
    }
    Chunk { text, params, lines }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(item: usize) -> Origin {
        Origin::Op { item, number: 1 }
    }

    #[test]
    fn one_text_with_parameters_numbered_across_statements() {
        let steps = vec![
            Step::statement("INSERT INTO a (x, y) VALUES ($1, $2)", vec![ColumnData::I64(Some(1)), ColumnData::Bit(Some(true))], op(0)).unwrap(),
            Step::raw("DELETE FROM b;\nDELETE FROM c", op(1)),
            Step::statement("UPDATE a SET y = @P1\nWHERE x = @P1", vec![ColumnData::I64(Some(2))], op(2)).unwrap(),
            Step::statement("MERGE t USING (VALUES (@P3, @P4)) s ON t.c = @P1 AND t.n = @P2;", (0..4).map(|i| ColumnData::I32(Some(i))).collect(), Origin::Gateway("writing the checkpoints")).unwrap(),
        ];
        let Plan::Single(chunk) = Plan::new(steps) else { panic!("one call expected") };
        assert_eq!(
            chunk.text,
            "SET NOCOUNT ON; SET XACT_ABORT ON; BEGIN TRAN;\n\
             INSERT INTO a (x, y) VALUES (@P1, @P2)\n;\n\
             DELETE FROM b;\nDELETE FROM c\n;\n\
             UPDATE a SET y = @P3\nWHERE x = @P3\n;\n\
             MERGE t USING (VALUES (@P6, @P7)) s ON t.c = @P4 AND t.n = @P5;\n;\n\
             COMMIT TRAN;"
        );
        assert_eq!(chunk.params.len(), 7);
        assert_eq!(chunk.step_at_line(1), None);
        assert_eq!(chunk.step_at_line(2), Some(op(0)));
        assert_eq!(chunk.step_at_line(3), Some(op(0)));
        assert_eq!(chunk.step_at_line(4), Some(op(1)));
        assert_eq!(chunk.step_at_line(6), Some(op(1)));
        assert_eq!(chunk.step_at_line(7), Some(op(2)));
        assert_eq!(chunk.step_at_line(8), Some(op(2)));
        assert_eq!(chunk.step_at_line(10), Some(Origin::Gateway("writing the checkpoints")));
        assert_eq!(chunk.step_at_line(12), None);
        assert!(Step::statement("UPDATE a SET y = @P1 WHERE x = ?", vec![ColumnData::I64(Some(2))], op(2)).unwrap_err().contains("mixes"));
    }

    #[test]
    fn more_parameters_than_an_rpc_takes_split_between_statements() {
        let step = |item| Step::statement("INSERT INTO a VALUES ($1, $2, $3)", (0..3).map(|i| ColumnData::I32(Some(i))).collect(), op(item)).unwrap();
        let plan = Plan::with_limit((0..5).map(step).collect(), 7);
        assert_eq!(plan.round_trips(), 5);
        let Plan::Split(chunks) = plan else { panic!("split expected") };
        assert_eq!(chunks.iter().map(|c| c.params.len()).collect::<Vec<_>>(), [6, 6, 3]);
        assert_eq!(chunks[1].text, "SET NOCOUNT ON; SET XACT_ABORT ON;\nINSERT INTO a VALUES (@P1, @P2, @P3)\n;\nINSERT INTO a VALUES (@P4, @P5, @P6)\n;\n");
        assert_eq!(chunks[1].step_at_line(4), Some(op(3)));
        assert!(Step::statement("SELECT 1", vec![ColumnData::I32(None); MAX_PARAMS + 1], op(0)).unwrap_err().contains("at most 2098"));
    }
}

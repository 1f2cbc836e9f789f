//! The sidecar's typed parameters as SQL Server parameters, and its placeholders as
//! `sp_executesql`'s `@Pn`.
//!
//! A batch is sent as one T-SQL text whose parameters are numbered across the whole batch, so
//! each statement's placeholders are renumbered: a statement may write `$1..$n` (the shared
//! SQL model's style, as for PostgreSQL and SQLite), `@P1..@Pn` (SQL Server's own style, as
//! tiberius and ADO.NET write them) or `?` (bound in order of appearance; not mixed with the
//! numbered forms). Placeholders inside string literals, quoted or bracketed identifiers and
//! comments are left alone, and so are `$` inside identifiers (`a$1`), `$action`, local
//! variables (`@total`) and system functions (`@@ROWCOUNT`). A money literal such as `$5`
//! reads as a placeholder: write `5` or `CAST(5 AS money)`.
//!
//! Types: `int64` → `bigint`, `double` → `float(53)`, `bool` → `bit`, `string` and `json` →
//! `nvarchar(4000)` (`nvarchar(max)` past 4000), `bytes` → `varbinary(8000)` (`varbinary(max)`
//! past 8000), `decimal` → `numeric(p,s)` with the digits it has (38 at most), `timestamp` →
//! `datetime2` (UTC, 100 ns), `uuid` → `uniqueidentifier`, null → an untyped NULL declared
//! `nvarchar(4000)`, which converts to every column type but binary ones (write
//! `CAST(@P1 AS varbinary(max))` for a NULL into a `varbinary` column). The server converts
//! a parameter to its column's type as T-SQL does (`bigint` into an `int` column, with an
//! arithmetic overflow error when it does not fit).

use std::borrow::Cow;

use chrono::Datelike;
use tiberius::{ColumnData, IntoSql, numeric::Numeric};

use crate::sinks::sql::SqlValue;

/// One piece of a statement's text: verbatim text, or a placeholder for its `n`th (0-based)
/// parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece<'a> {
    Text(&'a str),
    Param(usize),
}

/// Splits `sql` into text and placeholders for `count` parameters.
pub fn parse_placeholders<'a>(sql: &'a str, count: usize) -> Result<Vec<Piece<'a>>, String> {
    let bytes = sql.as_bytes();
    let mut pieces = Vec::new();
    let (mut i, mut text_start) = (0, 0);
    let (mut numbered, mut in_order) = (false, 0usize);
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'@' | b'#' | b'$') || b >= 0x80;
    let push = |pieces: &mut Vec<Piece<'a>>, start: usize, end: usize, number: usize, text_start: &mut usize| {
        if *text_start < start {
            pieces.push(Piece::Text(&sql[*text_start..start]));
        }
        pieces.push(Piece::Param(number));
        *text_start = end;
    };
    let check = |number: usize, written: &str| {
        if number == 0 || number > count {
            Err(format!("placeholder `{written}` but the sidecar sent {count} parameter(s)"))
        } else {
            Ok(number - 1)
        }
    };
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'\'' | b'"' | b'[' => {
                let close = if b == b'[' { b']' } else { b };
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == close {
                        if bytes.get(i + 1) == Some(&close) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < bytes.len() {
                    if bytes[i..].starts_with(b"/*") {
                        depth += 1;
                        i += 2;
                    } else if bytes[i..].starts_with(b"*/") {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'@' if matches!(bytes.get(i + 1), Some(b'P' | b'p'))
                && bytes.get(i + 2).is_some_and(u8::is_ascii_digit) =>
            {
                let digits_end = (i + 2..bytes.len()).find(|&j| !bytes[j].is_ascii_digit()).unwrap_or(bytes.len());
                if bytes.get(digits_end).is_some_and(|&c| is_ident(c)) {
                    i = digits_end; // a variable such as @P1x: continue as an identifier
                    while i < bytes.len() && is_ident(bytes[i]) {
                        i += 1;
                    }
                    continue;
                }
                let written = &sql[i..digits_end];
                let number = check(written[2..].parse().unwrap_or(0), written)?;
                numbered = true;
                push(&mut pieces, i, digits_end, number, &mut text_start);
                i = digits_end;
            }
            b'$' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let digits_end = (i + 1..bytes.len()).find(|&j| !bytes[j].is_ascii_digit()).unwrap_or(bytes.len());
                let written = &sql[i..digits_end];
                let number = check(written[1..].parse().unwrap_or(0), written)?;
                numbered = true;
                push(&mut pieces, i, digits_end, number, &mut text_start);
                i = digits_end;
            }
            b'?' => {
                in_order += 1;
                let number = check(in_order, "?")?;
                push(&mut pieces, i, i + 1, number, &mut text_start);
                i += 1;
            }
            _ if is_ident(b) => {
                while i < bytes.len() && is_ident(bytes[i]) {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    if numbered && in_order > 0 {
        return Err("the statement mixes `?` with numbered placeholders ($1 or @P1); use one style".into());
    }
    let mut used = vec![false; count];
    for piece in &pieces {
        if let Piece::Param(n) = piece {
            used[*n] = true;
        }
    }
    if let Some(unused) = used.iter().position(|u| !u) {
        return Err(format!(
            "the sidecar sent {count} parameter(s) but the statement does not use ${0} (or @P{0}); every parameter needs its placeholder",
            unused + 1
        ));
    }
    if text_start < sql.len() {
        pieces.push(Piece::Text(&sql[text_start..]));
    }
    Ok(pieces)
}

/// Writes `pieces` with each placeholder as `@P<offset + n + 1>`.
pub fn render(pieces: &[Piece<'_>], offset: usize, out: &mut String) {
    for piece in pieces {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Param(n) => {
                out.push_str("@P");
                out.push_str(&(offset + n + 1).to_string());
            }
        }
    }
}

/// A typed parameter as the SQL Server value sent for it; the message says why it cannot be.
pub fn column(value: &SqlValue) -> Result<ColumnData<'_>, String> {
    Ok(match value {
        SqlValue::Null => ColumnData::String(None),
        SqlValue::Bool(b) => ColumnData::Bit(Some(*b)),
        SqlValue::Int(i) => ColumnData::I64(Some(*i)),
        SqlValue::Double(d) => {
            if !d.is_finite() {
                return Err("SQL Server's float has no NaN or infinity".into());
            }
            ColumnData::F64(Some(*d))
        }
        SqlValue::Text(s) | SqlValue::Json(s) => ColumnData::String(Some(Cow::Borrowed(s))),
        SqlValue::Bytes(b) => ColumnData::Binary(Some(Cow::Borrowed(b))),
        SqlValue::Decimal(d) => ColumnData::Numeric(Some(numeric(d)?)),
        SqlValue::Timestamp(t) => {
            if !(1..=9999).contains(&t.year()) {
                return Err("out of datetime2's range (years 0001 to 9999)".into());
            }
            t.into_sql()
        }
        SqlValue::Uuid(u) => ColumnData::Guid(Some(tiberius::Uuid::parse_str(u).map_err(|e| e.to_string())?)),
    })
}

/// An exact decimal in text form as SQL Server's `numeric` (38 digits at most).
pub fn numeric(text: &str) -> Result<Numeric, String> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    if int.is_empty() && frac.is_empty() || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit()) {
        return Err(format!("{text:?} is not a decimal number"));
    }
    let digits = format!("{}{frac}", int.trim_start_matches('0'));
    let significant = digits.trim_start_matches('0');
    if significant.len() > 38 || frac.len() > 38 {
        return Err(format!("{text:?} has more than the 38 digits of SQL Server's numeric"));
    }
    let magnitude: i128 = if significant.is_empty() { 0 } else { significant.parse().map_err(|e| format!("{e}"))? };
    Ok(Numeric::new_with_scale(if negative { -magnitude } else { magnitude }, frac.len() as u8))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn renumbered(sql: &str, count: usize, offset: usize) -> Result<String, String> {
        let pieces = parse_placeholders(sql, count)?;
        let mut out = String::new();
        render(&pieces, offset, &mut out);
        Ok(out)
    }

    #[test]
    fn renumbers_every_placeholder_style_from_the_offset() {
        assert_eq!(renumbered("UPDATE t SET a = $1, b = $2 WHERE id = $1", 2, 4).unwrap(), "UPDATE t SET a = @P5, b = @P6 WHERE id = @P5");
        assert_eq!(renumbered("INSERT INTO t VALUES (@P1, @p2)", 2, 10).unwrap(), "INSERT INTO t VALUES (@P11, @P12)");
        assert_eq!(renumbered("INSERT INTO t VALUES (?, ?)", 2, 1).unwrap(), "INSERT INTO t VALUES (@P2, @P3)");
        let every = (1..=10).rev().map(|n| format!("${n}")).collect::<Vec<_>>().join(", ");
        assert_eq!(renumbered(&format!("SELECT {every}"), 10, 0).unwrap(), "SELECT @P10, @P9, @P8, @P7, @P6, @P5, @P4, @P3, @P2, @P1");
    }

    #[test]
    fn leaves_literals_identifiers_comments_and_variables_alone() {
        let sql = "UPDATE [a$1] SET \"b?\" = N'$1 ?', c = 'it''s $2' -- $1 ?\n, d = @total + @@ROWCOUNT + @P1x /* $1 /* ? */ $2 */ + $1 OUTPUT $action";
        assert_eq!(
            renumbered(sql, 1, 2).unwrap(),
            "UPDATE [a$1] SET \"b?\" = N'$1 ?', c = 'it''s $2' -- $1 ?\n, d = @total + @@ROWCOUNT + @P1x /* $1 /* ? */ $2 */ + @P3 OUTPUT $action"
        );
        assert_eq!(renumbered("SELECT col$1 FROM t", 0, 0).unwrap(), "SELECT col$1 FROM t");
    }

    #[test]
    fn refuses_placeholders_without_a_parameter_or_mixed_styles() {
        assert_eq!(renumbered("SELECT $3", 2, 0).unwrap_err(), "placeholder `$3` but the sidecar sent 2 parameter(s)");
        assert_eq!(renumbered("SELECT @P0", 2, 0).unwrap_err(), "placeholder `@P0` but the sidecar sent 2 parameter(s)");
        assert_eq!(renumbered("SELECT ?, ?", 1, 0).unwrap_err(), "placeholder `?` but the sidecar sent 1 parameter(s)");
        assert!(renumbered("SELECT ?, $1", 2, 0).unwrap_err().contains("mixes `?`"));
    }

    #[test]
    fn refuses_parameters_without_a_placeholder() {
        let surplus = "the sidecar sent 2 parameter(s) but the statement does not use $2 (or @P2); every parameter needs its placeholder";
        assert_eq!(renumbered("SELECT $1", 2, 0).unwrap_err(), surplus);
        assert_eq!(renumbered("SELECT @P1, '$2' -- $2", 2, 0).unwrap_err(), surplus);
        assert_eq!(renumbered("SELECT ?", 2, 0).unwrap_err(), surplus);
        assert!(renumbered("SELECT $1, $3", 3, 0).unwrap_err().contains("does not use $2"));
        assert!(renumbered("SELECT 1", 1, 0).unwrap_err().contains("does not use $1"));
        assert_eq!(renumbered("SELECT $2, $1, $2", 2, 0).unwrap(), "SELECT @P2, @P1, @P2");
    }

    #[test]
    fn values_take_their_sql_server_types() {
        let t: chrono::DateTime<chrono::Utc> = "2026-11-23T10:15:00.5Z".parse().unwrap();
        let id = "67e55044-10b1-426f-9247-bb680e5fe0c8";
        assert_eq!(column(&SqlValue::Int(5_000_000_000)).unwrap(), ColumnData::I64(Some(5_000_000_000)));
        assert_eq!(column(&SqlValue::Bool(true)).unwrap(), ColumnData::Bit(Some(true)));
        assert_eq!(column(&SqlValue::Double(0.25)).unwrap(), ColumnData::F64(Some(0.25)));
        assert_eq!(column(&SqlValue::Null).unwrap(), ColumnData::String(None));
        assert_eq!(column(&SqlValue::Json("{}".into())).unwrap(), ColumnData::String(Some("{}".into())));
        assert_eq!(column(&SqlValue::Bytes(vec![0, 255])).unwrap(), ColumnData::Binary(Some(vec![0, 255].into())));
        assert_eq!(column(&SqlValue::Uuid(id.into())).unwrap(), ColumnData::Guid(Some(id.parse().unwrap())));
        assert!(matches!(column(&SqlValue::Timestamp(t)).unwrap(), ColumnData::DateTime2(Some(_))));
        assert!(column(&SqlValue::Double(f64::NAN)).unwrap_err().contains("NaN"));
        let year_zero = chrono::DateTime::from_timestamp(-62_200_000_000, 0).unwrap();
        assert!(column(&SqlValue::Timestamp(year_zero)).unwrap_err().contains("0001 to 9999"));
    }

    #[test]
    fn decimals_keep_every_digit_up_to_38() {
        let n = numeric("12345678901234567890.125").unwrap();
        assert_eq!((n.value(), n.scale(), n.precision()), (12345678901234567890125, 3, 23));
        let n = numeric("-0.50").unwrap();
        assert_eq!((n.value(), n.scale()), (-50, 2));
        assert_eq!(numeric("7").unwrap().value(), 7);
        assert!(numeric(&"9".repeat(39)).unwrap_err().contains("38 digits"));
        assert!(numeric("1e5").unwrap_err().contains("not a decimal"));
        assert!(numeric(".").unwrap_err().contains("not a decimal"));
    }
}

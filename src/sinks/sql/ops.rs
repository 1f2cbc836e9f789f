//! Decodes the sidecar's SQL operations into [`SqlOp`]: Eventuous's raw `Execute{sql}` and our
//! `Statement{sql, params}` with typed positional parameters (`$1..$n`).

use std::fmt;

use chrono::{DateTime, Utc};
use prost::Message;
use prost_types::Any;

use crate::{
    proto::{self, names, sql_value::Kind},
    sinks::DecodeError,
};

/// A SQL operation, validated.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlOp {
    /// Raw SQL text, possibly several statements.
    Raw(String),
    /// One statement with typed parameters bound to `$1..$n`.
    Statement { sql: String, params: Vec<SqlValue> },
}

/// A typed parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Bool(bool),
    Int(i64),
    Double(f64),
    Text(String),
    Bytes(Vec<u8>),
    /// Exact decimal in text form.
    Decimal(String),
    Timestamp(DateTime<Utc>),
    /// A UUID in canonical text form.
    Uuid(String),
    /// JSON text.
    Json(String),
}

impl fmt::Display for SqlValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SqlValue::Null => write!(f, "null"),
            SqlValue::Bool(b) => write!(f, "bool {b}"),
            SqlValue::Int(i) => write!(f, "int64 {i}"),
            // Debug writes 1e300 as `1e300`, where Display writes 301 digits.
            SqlValue::Double(d) => write!(f, "double {d:?}"),
            SqlValue::Text(s) => write!(f, "string {:?}", truncate(s, 80)),
            SqlValue::Bytes(b) => write!(f, "bytes ({} bytes)", b.len()),
            SqlValue::Decimal(d) => write!(f, "decimal {}", truncate(d, 80)),
            SqlValue::Timestamp(t) => write!(f, "timestamp {}", t.to_rfc3339()),
            SqlValue::Uuid(u) => write!(f, "uuid {}", truncate(u, 80)),
            SqlValue::Json(j) => write!(f, "json {}", truncate(j, 80)),
        }
    }
}

impl fmt::Display for SqlOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SqlOp::Raw(sql) => write!(f, "raw SQL `{}`", truncate(sql, 300)),
            SqlOp::Statement { sql, params } => {
                write!(f, "statement `{}` with [", truncate(sql, 300))?;
                for (i, p) in params.iter().take(SHOWN_PARAMS).enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "${}: {p}", i + 1)?;
                }
                if params.len() > SHOWN_PARAMS {
                    write!(f, ", ... {} more", params.len() - SHOWN_PARAMS)?;
                }
                write!(f, "]")
            }
        }
    }
}

/// Parameters an operation's description lists (it goes into one error line).
const SHOWN_PARAMS: usize = 20;

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(max).collect::<String>())
    }
}

const EXPECTED: &str = "`projection.Statement`, `projection.Execute` and `projection.Ignore`";

/// Decodes one operation for a SQL sink named `sink`; `Ok(None)` for Ignore.
pub fn decode_sql_op(any: &Any, allow_raw_sql: bool, sink: &'static str) -> Result<Option<SqlOp>, DecodeError> {
    let name = proto::message_name(any);
    let malformed = |reason: String| DecodeError::Malformed { name: name.to_string(), reason };
    match name {
        names::IGNORE => Ok(None),
        names::EXECUTE => {
            if !allow_raw_sql {
                return Err(DecodeError::RawSqlDisabled);
            }
            let op = proto::Execute::decode(any.value.as_slice()).map_err(|e| malformed(e.to_string()))?;
            if op.sql.trim().is_empty() {
                return Err(malformed("`sql` is empty".into()));
            }
            Ok(Some(SqlOp::Raw(op.sql)))
        }
        names::STATEMENT => {
            let op = proto::Statement::decode(any.value.as_slice()).map_err(|e| malformed(e.to_string()))?;
            if op.sql.trim().is_empty() {
                return Err(malformed("`sql` is empty".into()));
            }
            let params = op
                .params
                .into_iter()
                .enumerate()
                .map(|(i, p)| value(p).map_err(|reason| malformed(format!("parameter ${}: {reason}", i + 1))))
                .collect::<Result<_, _>>()?;
            Ok(Some(SqlOp::Statement { sql: op.sql, params }))
        }
        other => Err(DecodeError::Unsupported { name: other.to_string(), sink, expected: EXPECTED }),
    }
}

fn value(v: proto::SqlValue) -> Result<SqlValue, String> {
    Ok(match v.kind {
        None | Some(Kind::NullValue(_)) => SqlValue::Null,
        Some(Kind::BoolValue(b)) => SqlValue::Bool(b),
        Some(Kind::Int64Value(i)) => SqlValue::Int(i),
        Some(Kind::DoubleValue(d)) => SqlValue::Double(d),
        Some(Kind::StringValue(s)) => SqlValue::Text(s),
        Some(Kind::BytesValue(b)) => SqlValue::Bytes(b),
        Some(Kind::DecimalValue(d)) => {
            // One sign at most, one point at most, and a digit (`-`, `.` and `--5` are not
            // numbers, and would only be refused later by the database).
            let plain = d.strip_prefix(['-', '+']).unwrap_or(&d);
            let valid = plain.chars().any(|c| c.is_ascii_digit())
                && plain.chars().all(|c| c.is_ascii_digit() || c == '.')
                && plain.chars().filter(|c| *c == '.').count() <= 1;
            if !valid {
                return Err(format!("decimalValue {d:?} is not a decimal number"));
            }
            SqlValue::Decimal(d)
        }
        Some(Kind::TimestampValue(t)) => DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
            .map(SqlValue::Timestamp)
            .ok_or_else(|| format!("timestampValue {}s {}ns is out of range", t.seconds, t.nanos))?,
        Some(Kind::UuidValue(u)) => uuid::Uuid::parse_str(&u)
            .map(|id| SqlValue::Uuid(id.hyphenated().to_string()))
            .map_err(|e| format!("uuidValue {u:?} is not a UUID: {e}"))?,
        Some(Kind::JsonValue(j)) => {
            serde_json::from_str::<serde_json::Value>(&j).map_err(|e| format!("jsonValue is not JSON: {e}"))?;
            SqlValue::Json(j)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::pack;

    fn statement(params: Vec<Kind>) -> Any {
        pack(
            names::STATEMENT,
            &proto::Statement {
                sql: "UPDATE t SET a = $1".into(),
                params: params.into_iter().map(|k| proto::SqlValue { kind: Some(k) }).collect(),
            },
        )
    }

    #[test]
    fn decodes_typed_statements() {
        let op = decode_sql_op(
            &statement(vec![Kind::Int64Value(7), Kind::StringValue("x".into()), Kind::NullValue(0)]),
            true,
            "sqlite",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            op,
            SqlOp::Statement {
                sql: "UPDATE t SET a = $1".into(),
                params: vec![SqlValue::Int(7), SqlValue::Text("x".into()), SqlValue::Null]
            }
        );
    }

    #[test]
    fn rejects_bad_values_with_the_parameter_number() {
        let err = decode_sql_op(&statement(vec![Kind::Int64Value(1), Kind::UuidValue("nope".into())]), true, "sqlite")
            .unwrap_err();
        assert!(err.to_string().contains("parameter $2: uuidValue \"nope\" is not a UUID"), "{err}");
    }

    #[test]
    fn a_description_stays_one_short_line_whatever_the_parameters() {
        let params = (0..1000).map(|i| Kind::DecimalValue(format!("{i}{}", "0".repeat(10_000)))).chain([Kind::DoubleValue(1e300)]);
        let op = decode_sql_op(&statement(params.collect()), true, "sqlite").unwrap().unwrap();
        let text = op.to_string();
        assert!(text.len() < 2_500, "{} bytes", text.len());
        assert!(text.ends_with(", ... 981 more]"), "{text}");
        let SqlOp::Statement { params, .. } = &op else { panic!() };
        assert_eq!(params[1000].to_string(), "double 1e300");
    }

    #[test]
    fn decimals_have_one_sign_and_one_point_at_most_and_a_digit() {
        for good in ["1", "-1.5", "+.5", "5.", "007"] {
            assert!(decode_sql_op(&statement(vec![Kind::DecimalValue(good.into())]), true, "sqlite").is_ok(), "{good}");
        }
        for bad in ["", "-", ".", "-.", "--5", "+-5", "1.2.3", "1e5", " 1"] {
            let err = decode_sql_op(&statement(vec![Kind::DecimalValue(bad.into())]), true, "sqlite").unwrap_err();
            assert!(err.to_string().contains("is not a decimal number"), "{bad}: {err}");
        }
    }

    #[test]
    fn raw_sql_can_be_disabled_and_unknown_operations_are_named() {
        let raw = pack(names::EXECUTE, &proto::Execute { sql: "DELETE FROM t".into() });
        assert_eq!(decode_sql_op(&raw, true, "sqlite").unwrap(), Some(SqlOp::Raw("DELETE FROM t".into())));
        assert_eq!(decode_sql_op(&raw, false, "sqlite").unwrap_err(), DecodeError::RawSqlDisabled);
        let mongo = Any { type_url: "/projection.InsertOne".into(), value: vec![] };
        let err = decode_sql_op(&mongo, true, "sqlite").unwrap_err();
        assert!(err.to_string().starts_with("unknown operation `projection.InsertOne` for the sqlite sink"), "{err}");
        let ignore = pack(names::IGNORE, &proto::Ignore {});
        assert_eq!(decode_sql_op(&ignore, true, "sqlite").unwrap(), None);
    }
}

//! Binding the sidecar's typed parameters to what PostgreSQL expects.
//!
//! A sidecar knows its values (an `int64`, a string, a timestamp) but not the columns they end
//! up in; the server does: preparing a statement tells us the type it inferred for every `$n`.
//! [`bind`] converts a [`SqlValue`] by that type into a [`Bound`] value, the way a person would
//! expect (an `int64` into an `int4` column if it fits, a string into a `uuid`, `jsonb` or
//! `timestamptz` column by parsing it), and refuses what does not fit with a message that names
//! the parameter, the value and the type.
//!
//! The conversion is done before anything of a batch is sent: the writer pipelines the whole
//! transaction, so a parameter that failed to encode on the client in the middle of it would
//! leave a hole in a transaction that still commits. [`Bound`] itself never fails to encode.
//!
//! Strings bound to types the gateway does not convert itself (`interval`, `inet`, arrays,
//! `bytea`, ranges, enums...) and exact decimals bound to `numeric` are sent in PostgreSQL's
//! text format, so the server's own input function parses them (no precision limit for
//! `numeric`, every input syntax PostgreSQL accepts).

use std::{borrow::Cow, error::Error as StdError};

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use postgres_types::{Format, IsNull, Kind, ToSql, Type, to_sql_checked};
use rust_decimal::Decimal;

use crate::sinks::sql::SqlValue;

/// A parameter that cannot be bound to the type the server expects.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("cannot bind parameter ${number} ({value}) to a column of type {type_name}: {reason}")]
pub struct BindError {
    /// 1-based parameter number (`$n`).
    pub number: usize,
    /// The value as the sidecar sent it, e.g. `int64 5000000000`.
    pub value: String,
    pub type_name: String,
    pub reason: String,
}

/// A parameter converted to the server's type, ready to encode.
#[derive(Debug, Clone, PartialEq)]
pub enum Bound<'a> {
    Null,
    Bool(bool),
    I16(i16),
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
    Numeric(Decimal),
    /// Text for a text-like column (binary format: the UTF-8 bytes).
    Text(Cow<'a, str>),
    Bytes(&'a [u8]),
    Uuid(uuid::Uuid),
    /// JSON text, already known to be valid.
    Json { text: &'a str, jsonb: bool },
    Timestamptz(DateTime<Utc>),
    Timestamp(NaiveDateTime),
    Date(NaiveDate),
    /// Sent in text format for the server to parse with the type's input function.
    Literal(Cow<'a, str>),
}

/// Converts every parameter of a statement the server prepared with parameter types `types`;
/// the message says why they do not fit (count or a value).
pub fn bind_all<'a>(params: &'a [SqlValue], types: &[Type]) -> Result<Vec<Bound<'a>>, String> {
    // The server counts a statement's parameters up to its highest `$n` (a gap is an error it
    // reports itself), so a count that differs is a placeholder without a parameter, or a
    // parameter without a placeholder: both refused, as on the other SQL targets.
    if types.len() > params.len() {
        return Err(format!("the statement uses ${} but the sidecar sent {} parameter(s)", types.len(), params.len()));
    }
    if types.len() < params.len() {
        return Err(format!(
            "the sidecar sent {} parameter(s) but the statement does not use ${}; every parameter needs its placeholder",
            params.len(),
            types.len() + 1
        ));
    }
    params.iter().zip(types).enumerate().map(|(i, (value, ty))| bind(value, ty, i + 1)).collect::<Result<_, _>>().map_err(|e| e.to_string())
}

/// Converts `value` (parameter `$number`) for a parameter of type `ty`.
pub fn bind<'a>(value: &'a SqlValue, ty: &Type, number: usize) -> Result<Bound<'a>, BindError> {
    let base = base_type(ty);
    let fail = |reason: &str| BindError {
        number,
        value: value.to_string(),
        type_name: ty.name().to_string(),
        reason: reason.to_string(),
    };
    const OUT_OF_RANGE: &str = "out of range";
    const UNSUPPORTED: &str = "no conversion between them; send another value kind or cast in SQL";
    let bound = match value {
        SqlValue::Null => Bound::Null,
        SqlValue::Bool(b) => match *base {
            Type::BOOL => Bound::Bool(*b),
            _ if is_text(base) => Bound::Text(Cow::Borrowed(if *b { "true" } else { "false" })),
            _ => return Err(fail(UNSUPPORTED)),
        },
        SqlValue::Int(i) => match *base {
            Type::INT2 => Bound::I16(i16::try_from(*i).map_err(|_| fail(OUT_OF_RANGE))?),
            Type::INT4 => Bound::I32(i32::try_from(*i).map_err(|_| fail(OUT_OF_RANGE))?),
            Type::INT8 => Bound::I64(*i),
            Type::FLOAT4 => Bound::F32(*i as f32),
            Type::FLOAT8 => Bound::F64(*i as f64),
            Type::NUMERIC => Bound::Numeric(Decimal::from(*i)),
            _ if is_text(base) => Bound::Text(Cow::Owned(i.to_string())),
            _ => return Err(fail(UNSUPPORTED)),
        },
        SqlValue::Double(d) => match *base {
            Type::FLOAT8 => Bound::F64(*d),
            Type::FLOAT4 => {
                if d.is_finite() && d.abs() > f64::from(f32::MAX) {
                    return Err(fail(OUT_OF_RANGE));
                }
                Bound::F32(*d as f32)
            }
            Type::NUMERIC => Bound::Literal(Cow::Owned(numeric_text(*d))),
            Type::INT2 | Type::INT4 | Type::INT8 => {
                if d.fract() != 0.0 || !d.is_finite() {
                    return Err(fail("not a whole number"));
                }
                // Exact for every whole double in i64's range; the bounds are exclusive at the top.
                if *d < -9_223_372_036_854_775_808.0 || *d >= 9_223_372_036_854_775_808.0 {
                    return Err(fail(OUT_OF_RANGE));
                }
                integer(*d as i64, base).ok_or_else(|| fail(OUT_OF_RANGE))?
            }
            _ if is_text(base) => Bound::Text(Cow::Owned(d.to_string())),
            _ => return Err(fail(UNSUPPORTED)),
        },
        SqlValue::Text(s) => bind_text(s, base).map_err(|reason| fail(&reason))?,
        SqlValue::Bytes(b) => match *base {
            Type::BYTEA => Bound::Bytes(b),
            _ => return Err(fail(UNSUPPORTED)),
        },
        SqlValue::Decimal(s) => match *base {
            Type::NUMERIC => Bound::Literal(Cow::Borrowed(s)),
            Type::FLOAT8 => Bound::F64(s.parse().map_err(|_| fail("not a number"))?),
            Type::FLOAT4 => Bound::F32(s.parse().map_err(|_| fail("not a number"))?),
            _ if is_text(base) => Bound::Text(Cow::Borrowed(s)),
            _ => return Err(fail(UNSUPPORTED)),
        },
        SqlValue::Timestamp(t) => match *base {
            Type::TIMESTAMPTZ => Bound::Timestamptz(*t),
            Type::TIMESTAMP => Bound::Timestamp(t.naive_utc()),
            Type::DATE => Bound::Date(t.date_naive()),
            _ if is_text(base) => {
                Bound::Text(Cow::Owned(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)))
            }
            _ => return Err(fail(UNSUPPORTED)),
        },
        SqlValue::Uuid(u) => match *base {
            Type::UUID => Bound::Uuid(uuid::Uuid::parse_str(u).map_err(|e| fail(&e.to_string()))?),
            _ if is_text(base) => Bound::Text(Cow::Borrowed(u)),
            _ => return Err(fail(UNSUPPORTED)),
        },
        SqlValue::Json(j) => match *base {
            Type::JSON => Bound::Json { text: j, jsonb: false },
            Type::JSONB => Bound::Json { text: j, jsonb: true },
            _ if is_text(base) => Bound::Text(Cow::Borrowed(j)),
            _ => return Err(fail(UNSUPPORTED)),
        },
    };
    Ok(bound)
}

/// A string for a parameter of (base) type `ty`.
fn bind_text<'a>(s: &'a str, ty: &Type) -> Result<Bound<'a>, String> {
    let trimmed = s.trim();
    Ok(match *ty {
        _ if is_text(ty) || matches!(ty.kind(), Kind::Enum(_)) => Bound::Text(Cow::Borrowed(s)),
        Type::UUID => Bound::Uuid(uuid::Uuid::parse_str(trimmed).map_err(|e| format!("not a UUID: {e}"))?),
        Type::JSON | Type::JSONB => {
            serde_json::from_str::<serde::de::IgnoredAny>(s).map_err(|e| format!("not JSON: {e}"))?;
            Bound::Json { text: s, jsonb: *ty == Type::JSONB }
        }
        Type::INT2 | Type::INT4 | Type::INT8 => {
            let i: i64 = trimmed.parse().map_err(|_| "not an integer".to_string())?;
            integer(i, ty).ok_or("out of range")?
        }
        Type::FLOAT4 => Bound::F32(trimmed.parse().map_err(|_| "not a number".to_string())?),
        Type::FLOAT8 => Bound::F64(trimmed.parse().map_err(|_| "not a number".to_string())?),
        Type::BOOL => Bound::Bool(parse_bool(trimmed).ok_or("not a boolean (true/false, t/f, yes/no, on/off, 1/0)")?),
        Type::NUMERIC => {
            if !looks_numeric(trimmed) {
                return Err("not a decimal number".into());
            }
            Bound::Literal(Cow::Borrowed(trimmed))
        }
        // RFC 3339 is read here; any other form PostgreSQL accepts is left to the server.
        Type::TIMESTAMPTZ => match DateTime::parse_from_rfc3339(trimmed) {
            Ok(t) => Bound::Timestamptz(t.with_timezone(&Utc)),
            Err(_) => Bound::Literal(Cow::Borrowed(s)),
        },
        Type::TIMESTAMP => match DateTime::parse_from_rfc3339(trimmed) {
            Ok(t) => Bound::Timestamp(t.naive_utc()),
            Err(_) => Bound::Literal(Cow::Borrowed(s)),
        },
        Type::DATE => match NaiveDate::parse_from_str(trimmed, "%Y-%m-%d") {
            Ok(d) => Bound::Date(d),
            Err(_) => Bound::Literal(Cow::Borrowed(s)),
        },
        _ => Bound::Literal(Cow::Borrowed(s)),
    })
}

/// The type a domain is based on (the type itself otherwise).
fn base_type(ty: &Type) -> &Type {
    match ty.kind() {
        Kind::Domain(inner) => base_type(inner),
        _ => ty,
    }
}

fn is_text(ty: &Type) -> bool {
    matches!(*ty, Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN)
        || ty.name() == "citext"
}

fn integer(i: i64, ty: &Type) -> Option<Bound<'static>> {
    Some(match *ty {
        Type::INT2 => Bound::I16(i16::try_from(i).ok()?),
        Type::INT4 => Bound::I32(i32::try_from(i).ok()?),
        _ => Bound::I64(i),
    })
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "on" | "1" => Some(true),
        "false" | "f" | "no" | "n" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// Decimal notation PostgreSQL's `numeric` accepts: sign, digits, one point, exponent, or
/// NaN/Infinity.
fn looks_numeric(s: &str) -> bool {
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    if ["nan", "infinity", "inf"].contains(&unsigned.to_ascii_lowercase().as_str()) {
        return true;
    }
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (unsigned, None),
    };
    let digits = mantissa.chars().filter(char::is_ascii_digit).count();
    let valid_mantissa = digits > 0
        && mantissa.chars().all(|c| c.is_ascii_digit() || c == '.')
        && mantissa.matches('.').count() <= 1;
    let valid_exponent = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && e.chars().all(|c| c.is_ascii_digit())
    });
    valid_mantissa && valid_exponent
}

/// A double in a form `numeric` reads back exactly (shortest round-trip digits).
fn numeric_text(d: f64) -> String {
    if d.is_nan() {
        "NaN".into()
    } else if d.is_infinite() {
        if d > 0.0 { "Infinity".into() } else { "-Infinity".into() }
    } else {
        d.to_string()
    }
}

impl ToSql for Bound<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self {
            Bound::Null => Ok(IsNull::Yes),
            Bound::Bool(v) => v.to_sql(ty, out),
            Bound::I16(v) => v.to_sql(ty, out),
            Bound::I32(v) => v.to_sql(ty, out),
            Bound::I64(v) => v.to_sql(ty, out),
            Bound::F32(v) => v.to_sql(ty, out),
            Bound::F64(v) => v.to_sql(ty, out),
            Bound::Numeric(v) => v.to_sql(ty, out),
            Bound::Text(v) | Bound::Literal(v) => {
                out.put_slice(v.as_bytes());
                Ok(IsNull::No)
            }
            Bound::Bytes(v) => {
                out.put_slice(v);
                Ok(IsNull::No)
            }
            Bound::Uuid(v) => v.to_sql(ty, out),
            Bound::Json { text, jsonb } => {
                if *jsonb {
                    // jsonb's binary format: a version byte, then the JSON text.
                    out.put_u8(1);
                }
                out.put_slice(text.as_bytes());
                Ok(IsNull::No)
            }
            Bound::Timestamptz(v) => v.to_sql(ty, out),
            Bound::Timestamp(v) => v.to_sql(ty, out),
            Bound::Date(v) => v.to_sql(ty, out),
        }
    }

    /// Every type: [`bind`] already chose a representation that fits the parameter's type.
    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        match self {
            Bound::Literal(_) => Format::Text,
            _ => Format::Binary,
        }
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(value: SqlValue, ty: Type) -> Bound<'static> {
        let value = Box::leak(Box::new(value));
        bind(value, &ty, 1).unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(value: SqlValue, ty: Type, number: usize) -> String {
        bind(&value, &ty, number).unwrap_err().to_string()
    }

    fn encoded(bound: &Bound<'_>, ty: &Type) -> Vec<u8> {
        let mut out = BytesMut::new();
        bound.to_sql_checked(ty, &mut out).unwrap();
        out.to_vec()
    }

    #[test]
    fn integers_fit_the_column_width_or_say_why_not() {
        assert_eq!(ok(SqlValue::Int(7), Type::INT2), Bound::I16(7));
        assert_eq!(ok(SqlValue::Int(7), Type::INT4), Bound::I32(7));
        assert_eq!(ok(SqlValue::Int(5_000_000_000), Type::INT8), Bound::I64(5_000_000_000));
        assert_eq!(ok(SqlValue::Int(2), Type::FLOAT8), Bound::F64(2.0));
        assert_eq!(ok(SqlValue::Int(2), Type::NUMERIC), Bound::Numeric(Decimal::from(2)));
        assert_eq!(ok(SqlValue::Int(42), Type::TEXT), Bound::Text("42".into()));
        assert_eq!(
            err(SqlValue::Int(5_000_000_000), Type::INT4, 3),
            "cannot bind parameter $3 (int64 5000000000) to a column of type int4: out of range"
        );
        assert!(err(SqlValue::Int(40_000), Type::INT2, 1).ends_with("int2: out of range"));
        assert!(err(SqlValue::Int(1), Type::UUID, 1).contains("to a column of type uuid: no conversion"));
    }

    #[test]
    fn doubles_become_integers_only_when_whole() {
        assert_eq!(ok(SqlValue::Double(1.5), Type::FLOAT8), Bound::F64(1.5));
        assert_eq!(ok(SqlValue::Double(1.5), Type::FLOAT4), Bound::F32(1.5));
        assert_eq!(ok(SqlValue::Double(3.0), Type::INT4), Bound::I32(3));
        assert_eq!(ok(SqlValue::Double(0.1), Type::NUMERIC), Bound::Literal("0.1".into()));
        assert!(err(SqlValue::Double(3.5), Type::INT8, 1).ends_with("not a whole number"));
        assert!(err(SqlValue::Double(1e10), Type::INT4, 1).ends_with("out of range"));
        assert!(err(SqlValue::Double(1e300), Type::FLOAT4, 1).ends_with("out of range"));
    }

    #[test]
    fn strings_are_parsed_for_typed_columns() {
        let id = "67e55044-10b1-426f-9247-bb680e5fe0c8";
        assert_eq!(ok(SqlValue::Text(id.into()), Type::UUID), Bound::Uuid(id.parse().unwrap()));
        assert_eq!(
            ok(SqlValue::Text(r#"{"a":1}"#.into()), Type::JSONB),
            Bound::Json { text: r#"{"a":1}"#, jsonb: true }
        );
        assert_eq!(
            ok(SqlValue::Text("2024-05-06T07:08:09.5+02:00".into()), Type::TIMESTAMPTZ),
            Bound::Timestamptz("2024-05-06T05:08:09.5Z".parse().unwrap())
        );
        assert_eq!(
            ok(SqlValue::Text("2024-05-06T07:08:09Z".into()), Type::TIMESTAMP),
            Bound::Timestamp("2024-05-06T07:08:09".parse().unwrap())
        );
        assert_eq!(ok(SqlValue::Text("2024-05-06".into()), Type::DATE), Bound::Date("2024-05-06".parse().unwrap()));
        assert_eq!(ok(SqlValue::Text("12".into()), Type::INT2), Bound::I16(12));
        assert_eq!(ok(SqlValue::Text("2.5".into()), Type::FLOAT8), Bound::F64(2.5));
        assert_eq!(ok(SqlValue::Text("yes".into()), Type::BOOL), Bound::Bool(true));
        assert_eq!(ok(SqlValue::Text("1.25e3".into()), Type::NUMERIC), Bound::Literal("1.25e3".into()));
        assert_eq!(ok(SqlValue::Text("x".into()), Type::VARCHAR), Bound::Text("x".into()));
        // Forms the gateway does not parse itself go to the server's input function.
        assert_eq!(ok(SqlValue::Text("1 day".into()), Type::INTERVAL), Bound::Literal("1 day".into()));
        assert_eq!(
            ok(SqlValue::Text("2024-05-06 07:08".into()), Type::TIMESTAMPTZ),
            Bound::Literal("2024-05-06 07:08".into())
        );
        assert!(err(SqlValue::Text("nope".into()), Type::UUID, 2).starts_with(
            "cannot bind parameter $2 (string \"nope\") to a column of type uuid: not a UUID"
        ));
        assert!(err(SqlValue::Text("{".into()), Type::JSON, 1).contains("json: not JSON"));
        assert!(err(SqlValue::Text("70000".into()), Type::INT2, 1).ends_with("out of range"));
        assert!(err(SqlValue::Text("1,5".into()), Type::NUMERIC, 1).ends_with("not a decimal number"));
        assert!(err(SqlValue::Text("maybe".into()), Type::BOOL, 1).contains("not a boolean"));
    }

    #[test]
    fn other_kinds_map_to_their_natural_types() {
        let t: DateTime<Utc> = "2024-05-06T07:08:09Z".parse().unwrap();
        assert_eq!(ok(SqlValue::Timestamp(t), Type::TIMESTAMPTZ), Bound::Timestamptz(t));
        assert_eq!(ok(SqlValue::Timestamp(t), Type::TIMESTAMP), Bound::Timestamp(t.naive_utc()));
        assert_eq!(ok(SqlValue::Timestamp(t), Type::DATE), Bound::Date(t.date_naive()));
        assert_eq!(ok(SqlValue::Timestamp(t), Type::TEXT), Bound::Text("2024-05-06T07:08:09Z".into()));
        assert_eq!(ok(SqlValue::Bool(true), Type::BOOL), Bound::Bool(true));
        assert_eq!(ok(SqlValue::Bytes(vec![1, 2]), Type::BYTEA), Bound::Bytes(&[1, 2]));
        assert_eq!(ok(SqlValue::Decimal("12.50".into()), Type::NUMERIC), Bound::Literal("12.50".into()));
        assert_eq!(ok(SqlValue::Decimal("12.5".into()), Type::FLOAT8), Bound::F64(12.5));
        assert_eq!(ok(SqlValue::Json("[1]".into()), Type::JSON), Bound::Json { text: "[1]", jsonb: false });
        let id = "67e55044-10b1-426f-9247-bb680e5fe0c8";
        assert_eq!(ok(SqlValue::Uuid(id.into()), Type::UUID), Bound::Uuid(id.parse().unwrap()));
        assert_eq!(ok(SqlValue::Uuid(id.into()), Type::TEXT), Bound::Text(id.into()));
        for ty in [Type::INT4, Type::UUID, Type::JSONB, Type::BYTEA, Type::INET] {
            assert_eq!(ok(SqlValue::Null, ty), Bound::Null);
        }
        assert!(err(SqlValue::Bytes(vec![1]), Type::TEXT, 1).contains("type text: no conversion"));
        assert!(err(SqlValue::Bool(true), Type::INT4, 1).contains("type int4: no conversion"));
    }

    #[test]
    fn encodes_in_the_wire_format_of_the_type() {
        assert_eq!(encoded(&Bound::I32(1), &Type::INT4), [0, 0, 0, 1]);
        assert_eq!(encoded(&Bound::Json { text: "{}", jsonb: true }, &Type::JSONB), [1, b'{', b'}']);
        assert_eq!(encoded(&Bound::Json { text: "{}", jsonb: false }, &Type::JSON), [b'{', b'}']);
        assert_eq!(encoded(&Bound::Literal("1 day".into()), &Type::INTERVAL), b"1 day");
        assert!(matches!(Bound::Literal("1".into()).encode_format(&Type::NUMERIC), Format::Text));
        assert!(matches!(Bound::I32(1).encode_format(&Type::INT4), Format::Binary));
        let mut out = BytesMut::new();
        assert!(matches!(Bound::Null.to_sql_checked(&Type::UUID, &mut out).unwrap(), IsNull::Yes));
    }

    #[test]
    fn the_parameters_and_the_placeholders_must_agree() {
        let params = [SqlValue::Int(1), SqlValue::Int(2)];
        assert_eq!(bind_all(&params, &[Type::INT8, Type::INT8]).unwrap().len(), 2);
        assert_eq!(bind_all(&params[..1], &[Type::INT8, Type::INT8]).unwrap_err(), "the statement uses $2 but the sidecar sent 1 parameter(s)");
        assert_eq!(
            bind_all(&params, &[Type::INT8]).unwrap_err(),
            "the sidecar sent 2 parameter(s) but the statement does not use $2; every parameter needs its placeholder"
        );
    }

    #[test]
    fn numeric_syntax() {
        for good in ["1", "-1.5", "+.5", "5.", "1e10", "1.2E-3", "NaN", "-Infinity"] {
            assert!(looks_numeric(good), "{good}");
        }
        for bad in ["", ".", "1.2.3", "1e", "e5", "12a", "1,5"] {
            assert!(!looks_numeric(bad), "{bad}");
        }
    }
}

//! The sidecar's `google.protobuf.Struct`s as BSON documents, faithfully.
//!
//! A Struct knows one kind of number, the double. MongoDB cares about the difference (an
//! `Int64` counter stays an `Int64` under `$inc`, a double counter becomes a double), so the
//! sidecar says which fields are integral: an operation's `integerFields` lists dotted paths.
//! The rules:
//! - a number is stored as a BSON double, unless its path is listed in `integerFields`; then it
//!   must be a whole number within ±2^53 (what a double holds exactly) and is stored as Int64,
//!   and any other number there is an error (the hint says integral, the value is not);
//! - a value's path is the keys from the root of its document, filter, update, replacement or
//!   pipeline stage, joined with `.`, with every `$`-prefixed key left out (so `count` names
//!   `count` in a document and in `{"$inc": {"count": 1}}`); an array's elements take the
//!   array's path;
//! - a Struct of exactly one key `$date` whose value is an RFC 3339 string
//!   (`{"$date": "2026-11-23T10:15:00Z"}`) is a BSON date (UTC, millisecond precision);
//!   `$date` with anything else is an error;
//! - null, bools, strings, lists and nested Structs map to their BSON counterparts;
//! - a key holding a NUL character is an error: BSON writes keys as C strings, so the driver
//!   could not send the document (and would say so without the path).

use std::collections::HashSet;

use chrono::DateTime;
use mongodb::bson::{Bson, Document};
use prost_types::{Struct, Value, value::Kind};

/// Largest magnitude a double holds every whole number up to.
const EXACT_DOUBLE_INTEGERS: f64 = 9_007_199_254_740_992.0;

/// The dotted paths whose whole numbers become Int64.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IntegerFields(HashSet<String>);

impl IntegerFields {
    pub fn new(paths: impl IntoIterator<Item = String>) -> Self {
        Self(paths.into_iter().filter(|p| !p.is_empty()).collect())
    }

    fn contains(&self, path: &str) -> bool {
        !self.0.is_empty() && self.0.contains(path)
    }
}

/// Converts a Struct into a BSON document; the error names the path of the value.
pub fn to_document(s: &Struct, integers: &IntegerFields) -> Result<Document, String> {
    document(s, "", integers)
}

fn document(s: &Struct, path: &str, integers: &IntegerFields) -> Result<Document, String> {
    let mut doc = Document::new();
    for (key, value) in &s.fields {
        if key.contains('\0') {
            let within = if path.is_empty() { String::new() } else { format!(" in `{path}`") };
            return Err(format!("the key {key:?}{within} holds a NUL character, which a BSON key cannot"));
        }
        let child = if key.starts_with('$') {
            path.to_string()
        } else if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        doc.insert(key.clone(), bson(value, &child, integers)?);
    }
    Ok(doc)
}

fn bson(value: &Value, path: &str, integers: &IntegerFields) -> Result<Bson, String> {
    Ok(match &value.kind {
        None | Some(Kind::NullValue(_)) => Bson::Null,
        Some(Kind::BoolValue(b)) => Bson::Boolean(*b),
        Some(Kind::StringValue(s)) => Bson::String(s.clone()),
        Some(Kind::NumberValue(n)) => {
            if integers.contains(path) {
                if n.fract() != 0.0 || !n.is_finite() || n.abs() > EXACT_DOUBLE_INTEGERS {
                    return Err(format!("`{path}` is listed in integerFields but {n} is not a whole number within ±2^53"));
                }
                Bson::Int64(*n as i64)
            } else {
                Bson::Double(*n)
            }
        }
        Some(Kind::ListValue(list)) => Bson::Array(
            list.values.iter().map(|v| bson(v, path, integers)).collect::<Result<_, _>>()?,
        ),
        Some(Kind::StructValue(s)) => match s.fields.get("$date") {
            Some(date) => Bson::DateTime(date_value(s, date, path)?),
            None => Bson::Document(document(s, path, integers)?),
        },
    })
}

fn date_value(s: &Struct, date: &Value, path: &str) -> Result<mongodb::bson::DateTime, String> {
    let at = if path.is_empty() { "a value".to_string() } else { format!("`{path}`") };
    if s.fields.len() != 1 {
        return Err(format!("{at}: a `$date` object must have no other key"));
    }
    let Some(Kind::StringValue(text)) = &date.kind else {
        return Err(format!("{at}: `$date` must be an RFC 3339 string, e.g. \"2026-11-23T10:15:00Z\""));
    };
    let parsed = DateTime::parse_from_rfc3339(text)
        .map_err(|e| format!("{at}: `$date` {text:?} is not an RFC 3339 timestamp: {e}"))?;
    Ok(mongodb::bson::DateTime::from_millis(parsed.timestamp_millis()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::json_to_struct;
    use mongodb::bson::doc;

    fn convert(json: &str, integers: &[&str]) -> Result<Document, String> {
        let s = json_to_struct(json.as_bytes()).unwrap();
        to_document(&s, &IntegerFields::new(integers.iter().map(|p| p.to_string())))
    }

    #[test]
    fn numbers_are_doubles_unless_hinted_integral() {
        let d = convert(r#"{"a": 1, "b": 2, "n": {"c": 3}, "l": [4, 5]}"#, &["b", "n.c", "l"]).unwrap();
        assert_eq!(d, doc! { "a": 1.0, "b": 2_i64, "l": [4_i64, 5_i64], "n": { "c": 3_i64 } });
    }

    #[test]
    fn operator_keys_are_left_out_of_paths() {
        let d = convert(r#"{"$inc": {"count": 1, "cents": 2.5}, "$set": {"t.x": 7}}"#, &["count", "t.x"]).unwrap();
        assert_eq!(d, doc! { "$inc": { "cents": 2.5, "count": 1_i64 }, "$set": { "t.x": 7_i64 } });
    }

    #[test]
    fn hinted_fields_must_hold_whole_numbers() {
        let err = convert(r#"{"n": 1.5}"#, &["n"]).unwrap_err();
        assert!(err.contains("`n` is listed in integerFields but 1.5 is not a whole number"), "{err}");
        let err = convert(r#"{"n": 1e17}"#, &["n"]).unwrap_err();
        assert!(err.contains("within ±2^53"), "{err}");
    }

    #[test]
    fn keys_with_a_nul_character_are_refused_with_their_path() {
        let err = convert("{\"a\": {\"b\": {\"x\\u0000y\": 1}}}", &[]).unwrap_err();
        assert_eq!(err, "the key \"x\\0y\" in `a.b` holds a NUL character, which a BSON key cannot");
        let err = convert("{\"\\u0000\": null}", &[]).unwrap_err();
        assert_eq!(err, "the key \"\\0\" holds a NUL character, which a BSON key cannot");
        // In a value, a NUL is just a character.
        assert_eq!(convert("{\"s\": \"x\\u0000y\"}", &[]).unwrap(), doc! { "s": "x\0y" });
    }

    #[test]
    fn dates_use_the_explicit_convention() {
        let d = convert(r#"{"at": {"$date": "2026-11-23T10:15:00.123+01:00"}}"#, &[]).unwrap();
        assert_eq!(d.get_datetime("at").unwrap().timestamp_millis(), 1_795_425_300_123);
        let err = convert(r#"{"at": {"$date": "yesterday"}}"#, &[]).unwrap_err();
        assert!(err.contains("`at`: `$date` \"yesterday\" is not an RFC 3339 timestamp"), "{err}");
        let err = convert(r#"{"at": {"$date": 5}}"#, &[]).unwrap_err();
        assert!(err.contains("must be an RFC 3339 string"), "{err}");
        let err = convert(r#"{"at": {"$date": "2026-11-23T10:15:00Z", "x": 1}}"#, &[]).unwrap_err();
        assert!(err.contains("no other key"), "{err}");
    }
}

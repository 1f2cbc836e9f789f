//! Writes the sidecar's `google.protobuf.Struct` documents as the JSON the engine indexes, once,
//! when an operation is decoded. A Struct has one kind of number, the double; a whole number
//! (within ±2^53) is written as a JSON integer, so the engine's dynamic mapping makes it a
//! `long` rather than a 32-bit `float` that would round large values, as protobuf's own JSON
//! mapping prints it. NaN and infinities have no JSON form and are refused.

use prost_types::{Struct, Value, value::Kind};
use serde::{Serialize, Serializer, ser::Error as _, ser::SerializeMap, ser::SerializeSeq};

/// Largest magnitude below which every whole double is exact.
const EXACT: f64 = 9_007_199_254_740_992.0;

/// A Struct as JSON.
pub struct JsonStruct<'a>(pub &'a Struct);

struct JsonValue<'a>(&'a Value);

impl Serialize for JsonStruct<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.fields.len()))?;
        for (key, value) in &self.0.fields {
            map.serialize_entry(key, &JsonValue(value))?;
        }
        map.end()
    }
}

impl Serialize for JsonValue<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0.kind {
            None | Some(Kind::NullValue(_)) => serializer.serialize_unit(),
            Some(Kind::BoolValue(b)) => serializer.serialize_bool(*b),
            Some(Kind::NumberValue(n)) if !n.is_finite() => {
                Err(S::Error::custom(format!("the number {n} has no JSON form")))
            }
            Some(Kind::NumberValue(n)) if n.fract() == 0.0 && n.abs() < EXACT => serializer.serialize_i64(*n as i64),
            Some(Kind::NumberValue(n)) => serializer.serialize_f64(*n),
            Some(Kind::StringValue(s)) => serializer.serialize_str(s),
            Some(Kind::ListValue(list)) => {
                let mut seq = serializer.serialize_seq(Some(list.values.len()))?;
                for v in &list.values {
                    seq.serialize_element(&JsonValue(v))?;
                }
                seq.end()
            }
            Some(Kind::StructValue(s)) => JsonStruct(s).serialize(serializer),
        }
    }
}

/// The Struct's JSON text.
pub fn to_json(s: &Struct) -> Result<Vec<u8>, String> {
    serde_json::to_vec(&JsonStruct(s)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::json_to_struct;

    #[test]
    fn whole_numbers_are_integers_and_the_rest_is_kept() {
        let s = json_to_struct(br#"{"n": 24000, "r": 0.5, "big": 1e300, "neg": -3, "list": [1, "x", null, true], "o": {"c": 2}}"#).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&to_json(&s).unwrap()).unwrap();
        assert_eq!(json, serde_json::json!({"n": 24000, "r": 0.5, "big": 1e300, "neg": -3, "list": [1, "x", null, true], "o": {"c": 2}}));
        assert_eq!(String::from_utf8(to_json(&s).unwrap()).unwrap().matches("24000").count(), 1);
        assert!(!String::from_utf8(to_json(&s).unwrap()).unwrap().contains("24000.0"));
    }

    #[test]
    fn refuses_nan() {
        let mut s = Struct::default();
        s.fields.insert("x".into(), Value { kind: Some(Kind::NumberValue(f64::NAN)) });
        assert!(to_json(&s).unwrap_err().contains("has no JSON form"));
    }
}

//! Converts stored JSON into the protobuf shapes of the contract: the payload into a
//! `google.protobuf.Struct` (Eventuous's `eventPayload`) and the metadata into the flat
//! `map<string,string>` Eventuous sidecars expect.

use std::collections::{BTreeMap, HashMap};

use prost_types::{ListValue, Struct, Value, value::Kind};

/// Why a payload could not become a `Struct`. The JSON error is part of the message and not a
/// `source`, so a chain printed with `{:#}` says it once.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("payload is not valid JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("payload is JSON but not an object (a Struct needs an object at the top level)")]
    NotAnObject,
}

/// Parses a JSON object into a `Struct`. JSON numbers become doubles, as protobuf's JSON
/// mapping does.
pub fn json_to_struct(json: &[u8]) -> Result<Struct, PayloadError> {
    match serde_json::from_slice::<serde_json::Value>(json).map_err(PayloadError::NotJson)? {
        serde_json::Value::Object(map) => Ok(object_to_struct(map)),
        _ => Err(PayloadError::NotAnObject),
    }
}

fn object_to_struct(map: serde_json::Map<String, serde_json::Value>) -> Struct {
    Struct {
        fields: map.into_iter().map(|(k, v)| (k, json_to_value(v))).collect::<BTreeMap<_, _>>(),
    }
}

fn json_to_value(value: serde_json::Value) -> Value {
    use serde_json::Value as J;
    let kind = match value {
        J::Null => Kind::NullValue(0),
        J::Bool(b) => Kind::BoolValue(b),
        J::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        J::String(s) => Kind::StringValue(s),
        J::Array(items) => Kind::ListValue(ListValue {
            values: items.into_iter().map(json_to_value).collect(),
        }),
        J::Object(map) => Kind::StructValue(object_to_struct(map)),
    };
    Value { kind: Some(kind) }
}

/// Converts a `Struct` back to JSON (used by sinks whose operations carry documents).
pub fn struct_to_json(s: &Struct) -> serde_json::Value {
    serde_json::Value::Object(
        s.fields.iter().map(|(k, v)| (k.clone(), value_to_json(v))).collect(),
    )
}

/// Converts a protobuf `Value` to JSON; whole doubles stay whole numbers.
pub fn value_to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => J::Null,
        Some(Kind::BoolValue(b)) => J::Bool(*b),
        Some(Kind::NumberValue(n)) => {
            if n.fract() == 0.0 && n.abs() < 9.0e15 {
                J::from(*n as i64)
            } else {
                serde_json::Number::from_f64(*n).map_or(J::Null, J::Number)
            }
        }
        Some(Kind::StringValue(s)) => J::String(s.clone()),
        Some(Kind::ListValue(l)) => J::Array(l.values.iter().map(value_to_json).collect()),
        Some(Kind::StructValue(s)) => struct_to_json(s),
    }
}

/// Flattens a JSON metadata object into strings: string values as they are, anything else as
/// its JSON text. Metadata that is not a JSON object is passed under the key `metadata`.
pub fn metadata_to_map(json: &[u8]) -> HashMap<String, String> {
    match serde_json::from_slice::<serde_json::Value>(json) {
        Ok(serde_json::Value::Object(map)) => map
            .into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => (k, s),
                other => (k, other.to_string()),
            })
            .collect(),
        Ok(serde_json::Value::Null) => HashMap::new(),
        _ => HashMap::from([(
            "metadata".to_string(),
            String::from_utf8_lossy(json).into_owned(),
        )]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_nested_json() {
        let json = br#"{"a":1,"b":[true,null,"x"],"c":{"d":2.5}}"#;
        let s = json_to_struct(json).unwrap();
        assert_eq!(
            struct_to_json(&s),
            serde_json::json!({"a":1,"b":[true,null,"x"],"c":{"d":2.5}})
        );
    }

    #[test]
    fn rejects_non_objects_and_garbage() {
        assert!(matches!(json_to_struct(b"[1]"), Err(PayloadError::NotAnObject)));
        assert!(matches!(json_to_struct(b"{oops"), Err(PayloadError::NotJson(_))));
    }

    #[test]
    fn flattens_metadata() {
        let m = metadata_to_map(br#"{"user":"ann","n":3,"o":{"x":1}}"#);
        assert_eq!(m["user"], "ann");
        assert_eq!(m["n"], "3");
        assert_eq!(m["o"], r#"{"x":1}"#);
    }
}

//! Property tests of everything that reads input the gateway does not control: the sidecar's
//! operations (an `Any` with any type URL and any bytes) as each sink decodes them, the
//! Structs inside them as BSON, Elasticsearch JSON and SQL parameters, event payloads as JSON
//! and Structs, and configuration files. Each target draws a bounded number of inputs (a
//! fuzzer that runs under `cargo test`; cargo-fuzz would need a nightly toolchain) and checks
//! the same three things: no panic, errors are values, and the output is at most a small
//! multiple of the input (nothing allocates without bound).
//!
//! The count of each target is in `cases`; `PROPTEST_CASES` replaces every one of them for a
//! longer run, and `PROPTEST_RNG_SEED` replays one (README, Operations):
//!
//! ```text
//! PROPTEST_CASES=50000 cargo test --release --test it fuzz:: -- --nocapture
//! ```
//!
//! A failure prints the smallest input found; it becomes a named regression test at the end
//! of this file (nothing is written to disk). `--nocapture` shows each target's count and time.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use projector_gateway::{
    config,
    event::{ContentType, Event},
    payload::{json_to_struct, metadata_to_map, struct_to_json},
    pipeline::{ConnectorError, RunContext, WithSink, with_sink},
    proto::{self, names, sql_value::Kind as SqlKind},
    reducer::build_request,
    sinks::{
        Batch, BatchItem, Sink, SinkWriter,
        elastic::{Action, ElasticOp, decode_elastic_op, elastic_names, json::to_json},
        mongo::{MongoOp, Update, Write, bson::{IntegerFields, to_document}, decode_mongo_op},
        postgres::bind,
        sql::{SqlOp, SqlValue, decode_sql_op},
    },
};
use proptest::{
    collection::{btree_map, vec},
    prelude::*,
    test_runner::{Config, TestCaseError, TestRunner},
};
use prost::Message;
use prost_types::{Any, ListValue, Struct, Timestamp, Value, value::Kind};

/// Cases per target in the test command (the whole file runs in well under a minute in a
/// debug build on two cores); `PROPTEST_CASES` overrides every one.
mod cases {
    pub const DECODE: u32 = 1_000;
    pub const CONVERT: u32 = 1_000;
    pub const PAYLOAD: u32 = 1_000;
    pub const BIND: u32 = 2_000;
    pub const APPLY: u32 = 256;
    pub const CONFIG: u32 = 1_000;
}

fn runner(cases: u32) -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(cases);
    // No regression files: a case worth keeping becomes a named test below.
    TestRunner::new(Config { cases, failure_persistence: None, max_shrink_iters: 4_096, ..Config::default() })
}

/// Runs `test` over `strategy` and reports the count and the time (shown with --nocapture).
fn fuzz<S: Strategy>(target: &str, cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>) {
    let mut runner = runner(cases);
    let started = Instant::now();
    if let Err(e) = runner.run(&strategy, test) {
        panic!("fuzz target `{target}`: {e}");
    }
    eprintln!("fuzz target `{target}`: {} cases in {:.2?}", runner.config().cases, started.elapsed());
}

/// The bound every target checks: output at most `AMPLIFICATION` times the input, plus a
/// constant (JSON escapes a control character in 6 bytes, the worst legitimate growth seen).
const AMPLIFICATION: usize = 16;
const SLACK: usize = 1024;

fn bounded(what: &str, input: usize, output: usize) -> Result<(), TestCaseError> {
    prop_assert!(output <= AMPLIFICATION * input + SLACK, "{what}: {output} bytes out of {input} bytes in");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

/// Doubles, with the edges every converter has to decide about.
fn number() -> BoxedStrategy<f64> {
    prop_oneof![
        3 => any::<f64>(),
        2 => (-1_000_000i64..1_000_000).prop_map(|i| i as f64),
        2 => prop::sample::select(vec![
            0.0, -0.0, f64::NAN, -f64::NAN, f64::INFINITY, f64::NEG_INFINITY, f64::MAX, f64::MIN, f64::MIN_POSITIVE, 5e-324,
            0.1, 1e300, -1e-300, 9_007_199_254_740_991.0, 9_007_199_254_740_992.0, 9_007_199_254_740_994.0, -9_007_199_254_740_992.0,
            9.0e15, 9_223_372_036_854_775_807.0, -9_223_372_036_854_775_808.0, 1.8446744073709552e19, 2147483648.0, 32768.0,
        ]),
    ]
    .boxed()
}

/// Strings as a sidecar or a log may hold them: empty, control characters, NUL, combining
/// marks, bidi overrides, emoji, JSON and SQL metacharacters, dates, long runs.
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        6 => "\\PC{0,16}",
        2 => ".{0,12}",
        2 => "[\\x00-\\x1f\"\\\\'$.{}\\[\\]]{0,8}",
        1 => prop::sample::select(vec![
            "", "\u{0}", "a\u{0}b", "\u{feff}", "e\u{301}", "\u{202e}gnp.exe", "👩‍👩‍👧", "\u{10ffff}", "\u{fffd}", "NaN", "-Infinity",
            "2026-11-23T10:15:00Z", "2026-11-23T10:15:00.123456789+14:00", "0000-01-01T00:00:00Z", "+275760-09-13T00:00:00Z",
            "67e55044-10b1-426f-9247-bb680e5fe0c8", "{}", "[", "null", "$set", "$date", "system.x", "a$b",
        ])
        .prop_map(String::from),
        1 => (0usize..20_000, any::<char>()).prop_map(|(n, c)| c.to_string().repeat(n)),
    ]
    .boxed()
}

/// Struct keys: mostly short names, with dotted paths, operators and the odd ones.
fn key() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "[a-z_]{1,8}",
        2 => "\\$[a-z]{1,6}",
        1 => "[a-z]{1,4}(\\.[a-z]{1,4}){1,3}",
        1 => prop::sample::select(vec!["", "$date", "_id", "\u{0}", "a\u{0}b", ".", "$", "é", "\u{202e}"]).prop_map(String::from),
        1 => text(),
    ]
    .boxed()
}

fn leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        1 => Just(Value { kind: None }),
        1 => Just(Value { kind: Some(Kind::NullValue(0)) }),
        1 => any::<i32>().prop_map(|n| Value { kind: Some(Kind::NullValue(n)) }),
        2 => any::<bool>().prop_map(|b| Value { kind: Some(Kind::BoolValue(b)) }),
        4 => number().prop_map(|n| Value { kind: Some(Kind::NumberValue(n)) }),
        4 => text().prop_map(|s| Value { kind: Some(Kind::StringValue(s)) }),
        1 => text().prop_map(|s| date(Value { kind: Some(Kind::StringValue(s)) })),
    ]
    .boxed()
}

/// `{"$date": v}`, MongoDB's date convention.
fn date(v: Value) -> Value {
    Value { kind: Some(Kind::StructValue(Struct { fields: BTreeMap::from([("$date".to_string(), v)]) })) }
}

/// Any `Value`: leaves, lists and Structs nested a few levels, wide or deep.
fn value() -> BoxedStrategy<Value> {
    leaf()
        .prop_recursive(6, 96, 8, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..8).prop_map(|values| Value { kind: Some(Kind::ListValue(ListValue { values })) }),
                btree_map(key(), inner.clone(), 0..8).prop_map(|fields| Value { kind: Some(Kind::StructValue(Struct { fields })) }),
                inner.prop_map(date),
            ]
        })
        .boxed()
}

/// A Struct: random, or a chain `{"a": {"a": ...}}` of up to 130 levels (deeper than prost
/// decodes, 100).
fn structure() -> BoxedStrategy<Struct> {
    prop_oneof![
        8 => btree_map(key(), value(), 0..10).prop_map(|fields| Struct { fields }),
        1 => (1usize..130, key(), leaf()).prop_map(|(depth, k, v)| chain(depth, &k, v)),
        1 => (1usize..130).prop_map(list_chain),
    ]
    .boxed()
}

fn chain(depth: usize, key: &str, leaf: Value) -> Struct {
    let mut s = Struct { fields: BTreeMap::from([(key.to_string(), leaf)]) };
    for _ in 1..depth {
        s = Struct { fields: BTreeMap::from([(key.to_string(), Value { kind: Some(Kind::StructValue(s)) })]) };
    }
    s
}

fn list_chain(depth: usize) -> Struct {
    let mut v = Value { kind: Some(Kind::NumberValue(1.0)) };
    for _ in 0..depth {
        v = Value { kind: Some(Kind::ListValue(ListValue { values: vec![v] })) };
    }
    Struct { fields: BTreeMap::from([("l".to_string(), v)]) }
}

/// Every dotted path of a Struct (keys joined with `.`, `$` keys left out as `bson.rs` does),
/// plus a few that name nothing: what an operation's `integerFields` may list.
fn paths_of(s: &Struct) -> Vec<String> {
    fn walk(s: &Struct, prefix: &str, out: &mut Vec<String>) {
        for (k, v) in &s.fields {
            let path = if k.starts_with('$') { prefix.to_string() } else if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            out.push(path.clone());
            if let Some(Kind::StructValue(inner)) = &v.kind {
                walk(inner, &path, out);
            }
        }
    }
    let mut out = vec!["nothing".to_string(), String::new()];
    walk(s, "", &mut out);
    out
}

/// A Struct and an `integerFields` list drawn from its own paths.
fn struct_with_integer_fields() -> BoxedStrategy<(Struct, Vec<String>)> {
    structure()
        .prop_flat_map(|s| {
            let paths = paths_of(&s);
            (Just(s), prop::sample::subsequence(paths.clone(), 0..=paths.len()))
        })
        .boxed()
}

fn sql_value() -> BoxedStrategy<proto::SqlValue> {
    let kind = prop_oneof![
        any::<i32>().prop_map(SqlKind::NullValue),
        any::<bool>().prop_map(SqlKind::BoolValue),
        any::<i64>().prop_map(SqlKind::Int64Value),
        number().prop_map(SqlKind::DoubleValue),
        text().prop_map(SqlKind::StringValue),
        vec(any::<u8>(), 0..64).prop_map(SqlKind::BytesValue),
        prop_oneof![
            "[-+]?[0-9]{0,40}(\\.[0-9]{0,40})?",
            "[-+.0-9]{0,6}",
            text(),
        ]
        .prop_map(SqlKind::DecimalValue),
        (any::<i64>(), any::<i32>()).prop_map(|(seconds, nanos)| SqlKind::TimestampValue(Timestamp { seconds, nanos })),
        (-62_135_596_800i64..253_402_300_799, 0i32..1_000_000_000)
            .prop_map(|(seconds, nanos)| SqlKind::TimestampValue(Timestamp { seconds, nanos })),
        prop_oneof![any::<u128>().prop_map(|u| uuid::Uuid::from_u128(u).to_string()), text()].prop_map(SqlKind::UuidValue),
        prop_oneof![value().prop_map(|v| projector_gateway::payload::value_to_json(&v).to_string()), text()].prop_map(SqlKind::JsonValue),
    ];
    prop::option::weighted(0.95, kind).prop_map(|kind| proto::SqlValue { kind }).boxed()
}

fn any_of(name: &str, message: &impl Message) -> Any {
    proto::pack(name, message)
}

/// Byte-level mutations of an encoding: flipped bytes, truncation, inserted bytes, a chunk
/// repeated (a length prefix then lies about what follows).
fn mutated(bytes: BoxedStrategy<Vec<u8>>) -> BoxedStrategy<Vec<u8>> {
    (bytes, vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..4))
        .prop_map(|(mut bytes, edits)| {
            for (at, byte, kind) in edits {
                if bytes.is_empty() {
                    bytes.push(byte);
                    continue;
                }
                let i = at.index(bytes.len());
                match kind {
                    0 => bytes[i] ^= byte.max(1),
                    1 => bytes.truncate(i),
                    2 => bytes.insert(i, byte),
                    _ => {
                        let chunk = bytes[i..].iter().take(16).copied().collect::<Vec<_>>();
                        bytes.splice(i..i, chunk);
                    }
                }
            }
            bytes
        })
        .boxed()
}

/// Type URLs: the operation's name under every spelling, other sinks' names, and junk.
fn type_url(own: &'static [&'static str]) -> BoxedStrategy<String> {
    let all: Vec<&'static str> = vec![
        names::IGNORE, names::EXECUTE, names::STATEMENT, names::INSERT_ONE, names::INSERT_MANY, names::UPDATE_ONE, names::UPDATE_MANY,
        names::REPLACE_ONE, names::DELETE_ONE, names::DELETE_MANY, elastic_names::INDEX, elastic_names::UPDATE,
        elastic_names::UPDATE_SCRIPT, elastic_names::DELETE, "google.protobuf.Struct", "projection.Teleport",
    ];
    prop_oneof![
        4 => prop::sample::select(own.to_vec()).prop_map(|n| format!("type.googleapis.com/{n}")),
        1 => prop::sample::select(own.to_vec()).prop_map(|n| format!("/{n}")),
        1 => prop::sample::select(own.to_vec()).prop_map(String::from),
        1 => prop::sample::select(own.to_vec()).prop_map(|n| format!("{n}/")),
        2 => prop::sample::select(all).prop_map(|n| format!("type.googleapis.com/{n}")),
        1 => text(),
    ]
    .boxed()
}

/// `Any` operations for a sink: well-formed messages of its kinds (with arbitrary contents),
/// the same bytes mutated, random bytes under its type URLs, and any of these under other
/// type URLs.
fn operations(own: &'static [&'static str], messages: BoxedStrategy<Any>) -> BoxedStrategy<Any> {
    let urls = type_url(own);
    prop_oneof![
        4 => messages.clone(),
        3 => (messages.clone().prop_map(|a| a.type_url), mutated(messages.clone().prop_map(|a| a.value).boxed()))
            .prop_map(|(type_url, value)| Any { type_url, value }),
        2 => (urls.clone(), vec(any::<u8>(), 0..256)).prop_map(|(type_url, value)| Any { type_url, value }),
        1 => (urls, messages.prop_map(|a| a.value)).prop_map(|(type_url, value)| Any { type_url, value }),
    ]
    .boxed()
}

const SQL_NAMES: &[&str] = &[names::STATEMENT, names::EXECUTE, names::IGNORE];

fn sql_messages() -> BoxedStrategy<Any> {
    prop_oneof![
        4 => (text(), vec(sql_value(), 0..8)).prop_map(|(sql, params)| any_of(names::STATEMENT, &proto::Statement { sql, params })),
        1 => text().prop_map(|sql| any_of(names::EXECUTE, &proto::Execute { sql })),
        1 => Just(any_of(names::IGNORE, &proto::Ignore {})),
    ]
    .boxed()
}

const MONGO_NAMES: &[&str] = &[
    names::INSERT_ONE, names::INSERT_MANY, names::UPDATE_ONE, names::UPDATE_MANY, names::REPLACE_ONE, names::DELETE_ONE,
    names::DELETE_MANY, names::IGNORE,
];

fn mongo_messages() -> BoxedStrategy<Any> {
    let opt = || prop::option::weighted(0.9, structure());
    let collection = || prop_oneof![3 => Just(String::new()), 2 => "[a-z]{1,8}", 1 => text()];
    let ints = || vec(prop_oneof!["[a-z]{1,4}(\\.[a-z]{1,4}){0,2}", text()], 0..4);
    prop_oneof![
        (opt(), collection(), ints()).prop_map(|(document, collection, integer_fields)| any_of(
            names::INSERT_ONE,
            &proto::InsertOne { document, collection, integer_fields }
        )),
        (vec(structure(), 0..4), collection(), ints()).prop_map(|(documents, collection, integer_fields)| any_of(
            names::INSERT_MANY,
            &proto::InsertMany { documents, collection, integer_fields }
        )),
        (prop::sample::select(vec![names::UPDATE_ONE, names::UPDATE_MANY]), opt(), opt(), vec(structure(), 0..3), collection(), ints())
            .prop_map(|(name, filter, update, pipeline, collection, integer_fields)| any_of(
                name,
                &proto::UpdateOne { filter, update, collection, pipeline, integer_fields }
            )),
        (opt(), opt(), collection(), ints()).prop_map(|(filter, replacement, collection, integer_fields)| any_of(
            names::REPLACE_ONE,
            &proto::ReplaceOne { filter, replacement, collection, integer_fields }
        )),
        (prop::sample::select(vec![names::DELETE_ONE, names::DELETE_MANY]), opt(), collection(), ints())
            .prop_map(|(name, filter, collection, integer_fields)| any_of(name, &proto::DeleteOne { filter, collection, integer_fields })),
    ]
    .boxed()
}

const ELASTIC_NAMES: &[&str] = &[elastic_names::INDEX, elastic_names::UPDATE, elastic_names::UPDATE_SCRIPT, elastic_names::DELETE, names::IGNORE];

fn elastic_messages() -> BoxedStrategy<Any> {
    let opt = || prop::option::weighted(0.9, structure());
    let id = || prop_oneof![4 => "[a-z0-9-]{1,16}", 1 => text()];
    let index = || prop_oneof![3 => Just(String::new()), 2 => "[a-z][a-z0-9-]{0,8}", 1 => text()];
    prop_oneof![
        (id(), opt(), index(), any::<bool>()).prop_map(|(id, document, index, external_version)| any_of(
            elastic_names::INDEX,
            &proto::Index { id, document, index, external_version }
        )),
        (id(), opt(), index(), any::<bool>(), opt()).prop_map(|(id, document, index, doc_as_upsert, upsert)| any_of(
            elastic_names::UPDATE,
            &proto::Update { id, document, index, doc_as_upsert, upsert }
        )),
        (id(), prop::option::weighted(0.9, (text(), text(), opt())), index(), opt()).prop_map(|(id, script, index, upsert)| any_of(
            elastic_names::UPDATE_SCRIPT,
            &proto::UpdateScript {
                id,
                script: script.map(|(lang, source, params)| proto::Script { lang, source, params }),
                index,
                upsert,
            }
        )),
        (id(), index(), any::<bool>()).prop_map(|(id, index, external_version)| any_of(
            elastic_names::DELETE,
            &proto::Delete { id, index, external_version }
        )),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------------
// Sizes of what decoding produced
// ---------------------------------------------------------------------------------------------

fn sql_value_size(v: &SqlValue) -> usize {
    match v {
        SqlValue::Text(s) | SqlValue::Decimal(s) | SqlValue::Uuid(s) | SqlValue::Json(s) => s.len(),
        SqlValue::Bytes(b) => b.len(),
        _ => 8,
    }
}

fn sql_op_size(op: &SqlOp) -> usize {
    match op {
        SqlOp::Raw(sql) => sql.len(),
        SqlOp::Statement { sql, params } => sql.len() + params.iter().map(sql_value_size).sum::<usize>(),
    }
}

fn bson_size(d: &mongodb::bson::Document) -> Result<usize, TestCaseError> {
    let mut bytes = Vec::new();
    d.to_writer(&mut bytes).map_err(|e| TestCaseError::fail(format!("a decoded document does not serialize as BSON: {e}: {d:?}")))?;
    Ok(bytes.len())
}

fn mongo_op_size(op: &MongoOp) -> Result<usize, TestCaseError> {
    let collection = op.collection.as_ref().map_or(0, String::len);
    let documents = match &op.write {
        Write::Insert { documents } => documents.iter().map(bson_size).sum::<Result<usize, _>>()?,
        Write::Update { filter, update: Update::Operators(u), .. } => bson_size(filter)? + bson_size(u)?,
        Write::Update { filter, update: Update::Pipeline(stages), .. } => {
            bson_size(filter)? + stages.iter().map(bson_size).sum::<Result<usize, _>>()?
        }
        Write::Replace { filter, replacement } => bson_size(filter)? + bson_size(replacement)?,
        Write::Delete { filter, .. } => bson_size(filter)?,
    };
    Ok(collection + documents)
}

fn elastic_op_size(op: &ElasticOp) -> usize {
    let body = match &op.action {
        Action::Index { source, .. } | Action::Create { source } => source.len(),
        Action::Update { body, .. } => body.len(),
        Action::Delete { .. } => 0,
    };
    op.id.len() + op.index.as_ref().map_or(0, String::len) + body
}

// ---------------------------------------------------------------------------------------------
// Targets: the sidecar's operations, decoded by each sink
// ---------------------------------------------------------------------------------------------

#[test]
fn sql_operations_decode_or_are_refused_with_a_reason() {
    fuzz("sql operations", cases::DECODE, operations(SQL_NAMES, sql_messages()), |any| {
        for allow_raw_sql in [true, false] {
            match decode_sql_op(&any, allow_raw_sql, "sqlite") {
                Ok(Some(op)) => {
                    bounded("SqlOp", any.encoded_len(), sql_op_size(&op))?;
                    // What an error message shows of it is cut, whatever its size.
                    let shown = op.to_string().chars().count();
                    prop_assert!(shown <= 20_000, "{shown} characters of display");
                }
                Ok(None) => prop_assert!(proto::message_name(&any) == names::IGNORE),
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }
        Ok(())
    });
}

#[test]
fn mongo_operations_decode_or_are_refused_with_a_reason() {
    fuzz("mongo operations", cases::DECODE, operations(MONGO_NAMES, mongo_messages()), |any| {
        match decode_mongo_op(&any) {
            Ok(Some(op)) => {
                bounded("MongoOp", any.encoded_len(), mongo_op_size(&op)?)?;
                let shown = op.to_string().chars().count();
                prop_assert!(shown <= 600, "{shown} characters of display");
            }
            Ok(None) => prop_assert!(proto::message_name(&any) == names::IGNORE),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        Ok(())
    });
}

#[test]
fn elastic_operations_decode_or_are_refused_with_a_reason() {
    fuzz("elastic operations", cases::DECODE, operations(ELASTIC_NAMES, elastic_messages()), |any| {
        match decode_elastic_op(&any) {
            Ok(Some(op)) => {
                bounded("ElasticOp", any.encoded_len(), elastic_op_size(&op))?;
                // The bulk body is JSON.
                if let Action::Index { source: body, .. } | Action::Create { source: body } | Action::Update { body, .. } = &op.action {
                    prop_assert!(serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok(), "not JSON: {:?}", String::from_utf8_lossy(body));
                }
                let shown = op.to_string().chars().count();
                prop_assert!(shown <= 1_200, "{shown} characters of display");
            }
            Ok(None) => prop_assert!(proto::message_name(&any) == names::IGNORE),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Targets: Struct conversions
// ---------------------------------------------------------------------------------------------

#[test]
fn structs_become_bson_or_a_path_named_error() {
    fuzz("Struct -> BSON", cases::CONVERT, struct_with_integer_fields(), |(s, ints)| {
        match to_document(&s, &IntegerFields::new(ints)) {
            Ok(doc) => bounded("BSON", s.encoded_len(), bson_size(&doc)?)?,
            Err(e) => prop_assert!(!e.is_empty()),
        }
        Ok(())
    });
}

/// How many Structs and lists deep a Struct goes.
fn depth(s: &Struct) -> usize {
    fn value(v: &Value) -> usize {
        match &v.kind {
            Some(Kind::ListValue(l)) => 1 + l.values.iter().map(value).max().unwrap_or(0),
            Some(Kind::StructValue(s)) => depth(s),
            _ => 0,
        }
    }
    1 + s.fields.values().map(value).max().unwrap_or(0)
}

/// Whether a Struct holds a number JSON cannot write.
fn has_non_finite(s: &Struct) -> bool {
    fn value(v: &Value) -> bool {
        match &v.kind {
            Some(Kind::NumberValue(n)) => !n.is_finite(),
            Some(Kind::ListValue(l)) => l.values.iter().any(value),
            Some(Kind::StructValue(s)) => has_non_finite(s),
            _ => false,
        }
    }
    s.fields.values().any(value)
}

#[test]
fn structs_become_elasticsearch_json_unless_a_number_has_no_json_form() {
    fuzz("Struct -> Elasticsearch JSON", cases::CONVERT, structure(), |s| {
        match to_json(&s) {
            Ok(json) => {
                prop_assert!(!has_non_finite(&s));
                bounded("JSON", s.encoded_len(), json.len())?;
                // serde_json reads 128 levels; a Struct from the wire has at most 100 (prost).
                if depth(&s) < 100 {
                    let parsed: serde_json::Value = serde_json::from_slice(&json).map_err(|e| TestCaseError::fail(format!("not JSON: {e}")))?;
                    prop_assert!(parsed.is_object());
                }
            }
            Err(e) => {
                prop_assert!(has_non_finite(&s), "refused a Struct with finite numbers: {e}");
                prop_assert!(e.contains("has no JSON form"), "{e}");
            }
        }
        Ok(())
    });
}

/// JSON as an event payload may be: any JSON value, its text mutated, or random bytes.
fn json_value() -> BoxedStrategy<serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        number().prop_map(|n| serde_json::Number::from_f64(n).map_or(serde_json::Value::Null, serde_json::Value::Number)),
        text().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(6, 96, 8, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..8).prop_map(serde_json::Value::Array),
            btree_map(key(), inner, 0..8).prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

fn json_bytes() -> BoxedStrategy<Vec<u8>> {
    let object = btree_map(key(), json_value(), 0..8).prop_map(|m| serde_json::to_vec(&serde_json::Value::Object(m.into_iter().collect())).unwrap());
    prop_oneof![
        4 => object.clone(),
        1 => json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        3 => mutated(object.boxed()),
        1 => vec(any::<u8>(), 0..256),
        1 => (1usize..2_000).prop_map(|depth| format!("{{\"a\":{}1{}}}", "[".repeat(depth), "]".repeat(depth)).into_bytes()),
        1 => (1usize..2_000).prop_map(|depth| format!("{}{}", "{\"a\":".repeat(depth), "}".repeat(depth)).into_bytes()),
        1 => prop::sample::select(vec![&b"{\"a\":1e400}"[..], b"{\"a\":-0}", b"{\"a\":1E-400}", b"{\"\\ud800\":1}", b"{\"a\":\"\\udc00\"}",
            b"\xef\xbb\xbf{}", b"{\"a\":1,\"a\":2}", b"{} ", b" {}\n", b"{}{}", b"{\"a\":18446744073709551616}"]).prop_map(|b| b.to_vec()),
    ]
    .boxed()
}

/// Numbers compared as the doubles a Struct holds (a Struct has no integers).
fn as_doubles(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Number(n) => n.as_f64().and_then(serde_json::Number::from_f64).map_or(serde_json::Value::Null, serde_json::Value::Number),
        serde_json::Value::Array(items) => serde_json::Value::Array(items.iter().map(as_doubles).collect()),
        serde_json::Value::Object(m) => serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), as_doubles(v))).collect()),
        other => other.clone(),
    }
}

#[test]
fn json_payloads_become_structs_and_back() {
    fuzz("JSON <-> Struct", cases::PAYLOAD, json_bytes(), |bytes| {
        match json_to_struct(&bytes) {
            Ok(s) => {
                bounded("Struct", bytes.len(), s.encoded_len())?;
                let original: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
                let back = struct_to_json(&s);
                bounded("JSON", bytes.len(), back.to_string().len())?;
                prop_assert_eq!(as_doubles(&back), as_doubles(&original));
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        Ok(())
    });
}

fn event_with(data: Vec<u8>, metadata: Option<Vec<u8>>, content_type: ContentType) -> Event {
    Event {
        position: 1,
        stream: "s-1".into(),
        revision: 0,
        event_type: "Fuzzed".into(),
        event_id: "e-1".into(),
        data: data.into(),
        content_type,
        metadata: metadata.map(Into::into),
        created: chrono::Utc::now(),
    }
}

#[test]
fn any_stored_payload_becomes_a_request() {
    use projector_gateway::config::PayloadFormat;
    let strategy = (
        json_bytes(),
        prop::option::of(json_bytes()),
        prop::sample::select(vec![ContentType::Json, ContentType::Binary]),
        prop::sample::select(vec![PayloadFormat::Struct, PayloadFormat::Json, PayloadFormat::Both]),
    );
    fuzz("payload -> ProjectionRequest", cases::PAYLOAD, strategy, |(data, metadata, content_type, format)| {
        let input = data.len() + metadata.as_ref().map_or(0, Vec::len);
        let metadata_size = metadata.as_deref().map(|m| metadata_to_map(m).iter().map(|(k, v)| k.len() + v.len()).sum::<usize>());
        bounded("metadata", input, metadata_size.unwrap_or_default())?;
        let request = build_request(&event_with(data.clone(), metadata, content_type), 0, format);
        bounded("request", input, request.encoded_len())?;
        // The sidecar sees the payload one way or the other.
        prop_assert!(request.event_payload.is_some() || request.payload_json == data);
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Targets: SQL parameters, as each SQL target takes them
// ---------------------------------------------------------------------------------------------

/// The typed parameters decoding lets through (what the targets' converters are handed).
fn decoded_params() -> BoxedStrategy<Vec<SqlValue>> {
    vec(sql_value(), 1..6)
        .prop_filter_map("a parameter decoding refuses", |params| {
            match decode_sql_op(&any_of(names::STATEMENT, &proto::Statement { sql: "SELECT 1".into(), params }), false, "sqlite") {
                Ok(Some(SqlOp::Statement { params, .. })) => Some(params),
                _ => None,
            }
        })
        .boxed()
}

#[test]
fn postgres_binds_every_parameter_or_says_why_and_what_it_binds_encodes() {
    use bytes::BytesMut;
    use postgres_types::{ToSql, Type};
    let types = vec![
        Type::BOOL, Type::INT2, Type::INT4, Type::INT8, Type::FLOAT4, Type::FLOAT8, Type::NUMERIC, Type::TEXT, Type::VARCHAR, Type::BPCHAR,
        Type::NAME, Type::UNKNOWN, Type::UUID, Type::JSON, Type::JSONB, Type::TIMESTAMPTZ, Type::TIMESTAMP, Type::DATE, Type::BYTEA,
        Type::INTERVAL, Type::INET, Type::TEXT_ARRAY, Type::INT4_ARRAY, Type::TIME, Type::MONEY, Type::OID,
    ];
    fuzz("SQL parameters -> PostgreSQL", cases::BIND, (decoded_params(), vec(prop::sample::select(types), 6)), |(params, types)| {
        for (i, (value, ty)) in params.iter().zip(&types).enumerate() {
            match bind(value, ty, i + 1) {
                Ok(bound) => {
                    let mut out = BytesMut::new();
                    let encoded = bound.to_sql_checked(ty, &mut out);
                    prop_assert!(encoded.is_ok(), "{value} bound to {ty} but does not encode: {:?}", encoded.err());
                    bounded("encoded parameter", sql_value_size(value), out.len())?;
                }
                Err(e) => {
                    let message = e.to_string();
                    prop_assert!(message.starts_with(&format!("cannot bind parameter ${} (", i + 1)), "{message}");
                    prop_assert!(message.contains(ty.name()), "{message}");
                }
            }
        }
        Ok(())
    });
}

/// One batch a SQL target applies: a statement (`None`: the insert of `fuzz` below, its
/// first column the case's number, the others the parameters) and its parameters.
#[derive(Debug, Clone)]
struct SqlCase {
    sql: Option<String>,
    params: Vec<SqlValue>,
}

/// Statements made of placeholders in every style and what hides them (literals, quoted
/// names, comments), well formed or not: what the targets' placeholder handling reads.
fn placeholder_sql() -> BoxedStrategy<String> {
    let fragment = prop::sample::select(vec![
        "$1", "$2", "$0", "$6", "$99999999999999999999", "$", "$a", "?", "?1", "?0", "?32767", "@P1", "@p2", "@P0", "@P", ":x", "@x",
        "@@ROWCOUNT", "'$1'", "\"$1\"", "[$1]", "-- $1\n", "/* $1 */", "/*", "*/", "'", "\"", "N'", "[", ",", "1", " ", "(", ")",
    ]);
    vec(fragment, 0..10).prop_map(|parts| format!("SELECT {}", parts.concat())).boxed()
}

fn sql_cases() -> BoxedStrategy<SqlCase> {
    prop_oneof![
        3 => decoded_params().prop_map(|params| SqlCase { sql: None, params }),
        1 => (placeholder_sql(), decoded_params()).prop_map(|(sql, params)| SqlCase { sql: Some(sql), params }),
    ]
    .boxed()
}

/// Applies batches with the sink a connector config opens, one proptest case per batch (the
/// sink and its writer are opened once for the whole target); `check` judges each outcome.
struct ApplyFuzz<F> {
    target: &'static str,
    check: F,
}

/// What a case sees after its batch was applied: the case's number, the case, the outcome.
type Check = dyn Fn(i64, &SqlCase, Result<(), String>) -> Result<(), TestCaseError> + Send + Sync;

impl<F: Fn(i64, &SqlCase, Result<(), String>) -> Result<(), TestCaseError> + Send + Sync + 'static> WithSink for ApplyFuzz<F> {
    type Output = ();

    async fn with<S: Sink>(self, sink: S, _config: config::ConnectorConfig) -> Result<(), ConnectorError> {
        let writer = Mutex::new(sink.open_writer().await.unwrap_or_else(|e| panic!("open writer: {e}")));
        let next = AtomicU64::new(1);
        let check: &Check = &self.check;
        tokio::task::block_in_place(|| {
            fuzz(self.target, cases::APPLY, sql_cases(), |case| {
                let position = next.fetch_add(1, Ordering::SeqCst);
                let (sql, params) = match &case.sql {
                    Some(sql) => (sql.clone(), case.params.clone()),
                    None => {
                        let columns = (0..case.params.len()).map(|i| format!("v{i}")).collect::<Vec<_>>().join(", ");
                        let placeholders = (2..=case.params.len() + 1).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ");
                        let mut params = vec![SqlValue::Int(position as i64)];
                        params.extend(case.params.iter().cloned());
                        (format!("INSERT INTO fuzz (n, {columns}) VALUES ($1, {placeholders})"), params)
                    }
                };
                let any = any_of(names::STATEMENT, &proto::Statement { sql, params: params.iter().map(to_proto).collect() });
                let ops = sink.decode(&any).map_err(|e| TestCaseError::fail(e.to_string()))?.into_iter().collect();
                let batch = Batch::new(vec![BatchItem::Apply { event: crate::support::fixtures::tested_event(position), ops }], 1);
                let mut writer = writer.lock().unwrap();
                let outcome = tokio::runtime::Handle::current().block_on(writer.apply(Arc::new(batch))).map_err(|e| e.message);
                check(position as i64, &case, outcome)
            });
        });
        Ok(())
    }
}

/// A decoded parameter back in the contract's form (to send it through the sink's decoding).
fn to_proto(v: &SqlValue) -> proto::SqlValue {
    let kind = match v.clone() {
        SqlValue::Null => SqlKind::NullValue(0),
        SqlValue::Bool(b) => SqlKind::BoolValue(b),
        SqlValue::Int(i) => SqlKind::Int64Value(i),
        SqlValue::Double(d) => SqlKind::DoubleValue(d),
        SqlValue::Text(s) => SqlKind::StringValue(s),
        SqlValue::Bytes(b) => SqlKind::BytesValue(b),
        SqlValue::Decimal(d) => SqlKind::DecimalValue(d),
        SqlValue::Timestamp(t) => SqlKind::TimestampValue(Timestamp { seconds: t.timestamp(), nanos: t.timestamp_subsec_nanos() as i32 }),
        SqlValue::Uuid(u) => SqlKind::UuidValue(u),
        SqlValue::Json(j) => SqlKind::JsonValue(j),
    };
    proto::SqlValue { kind: Some(kind) }
}

fn connector_yaml(sink: &str) -> String {
    format!(
        "connectors:\n  - id: fuzz\n    source: {{ sqlite: {{ path: unused.db }} }}\n    sidecar: {{ address: \"http://127.0.0.1:1\" }}\n    sink:\n{sink}"
    )
}

/// The table the insert cases fill: the case's number and up to five parameters.
const FUZZ_TABLE: &str = "CREATE TABLE IF NOT EXISTS fuzz (n INTEGER PRIMARY KEY, v0, v1, v2, v3, v4)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_stores_every_parameter_as_sent() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target.db");
    let yaml = connector_yaml(&format!("      sqlite: {{ path: \"{}\", init_sql: \"{FUZZ_TABLE}\" }}\n", target.display()));
    let config = config::parse(&yaml).unwrap().connectors.remove(0);
    let read = Mutex::new(None::<rusqlite::Connection>);
    let check = move |n: i64, case: &SqlCase, outcome: Result<(), String>| -> Result<(), TestCaseError> {
        if case.sql.is_some() {
            // Placeholders: applied or refused with SQLite's reason or the gateway's, no panic.
            if let Err(e) = outcome {
                prop_assert!(!e.contains("panicked"), "{e}");
            }
            return Ok(());
        }
        outcome.map_err(|e| TestCaseError::fail(format!("SQLite refused {case:?}: {e}")))?;
        let mut read = read.lock().unwrap();
        let conn = read.get_or_insert_with(|| rusqlite::Connection::open(&target).unwrap());
        for (i, sent) in case.params.iter().enumerate() {
            let stored: rusqlite::types::Value = conn.query_row(&format!("SELECT v{i} FROM fuzz WHERE n = ?1"), [n], |r| r.get(0)).unwrap();
            use rusqlite::types::Value as S;
            let expected = match sent {
                SqlValue::Null => S::Null,
                SqlValue::Bool(b) => S::Integer(i64::from(*b)),
                SqlValue::Int(i) => S::Integer(*i),
                // SQLite stores NaN as NULL.
                SqlValue::Double(d) if d.is_nan() => S::Null,
                SqlValue::Double(d) => S::Real(*d),
                SqlValue::Text(s) | SqlValue::Decimal(s) | SqlValue::Uuid(s) | SqlValue::Json(s) => S::Text(s.clone()),
                SqlValue::Bytes(b) => S::Blob(b.clone()),
                SqlValue::Timestamp(t) => S::Text(t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
            };
            prop_assert_eq!(stored, expected);
        }
        Ok(())
    };
    with_sink(config, &RunContext::default(), ApplyFuzz { target: "SQL parameters -> SQLite", check }).await.unwrap();
}

#[cfg(feature = "mssql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_server_receives_every_parameter_as_sent_or_a_reason() {
    use crate::support::tds::{Request, TdsServer, Value as Tds};
    let server = Arc::new(TdsServer::start().await);
    let yaml = connector_yaml(&format!("      mssql: {{ connection_string: \"{}\" }}\n", server.connection_string("reads")));
    let config = config::parse(&yaml).unwrap().connectors.remove(0);
    let recorded = server.clone();
    let check = move |n: i64, case: &SqlCase, outcome: Result<(), String>| -> Result<(), TestCaseError> {
        let requests = recorded.requests();
        recorded.clear_requests();
        if let Err(e) = outcome {
            prop_assert!(!e.contains("panicked"), "{e}");
            if case.sql.is_none() {
                // The refusals the SQL Server target documents, each naming the parameter.
                let refusable = |p: &SqlValue| match p {
                    SqlValue::Double(d) => !d.is_finite(),
                    SqlValue::Timestamp(t) => !(1..=9999).contains(&chrono::Datelike::year(t)),
                    SqlValue::Decimal(_) => true,
                    _ => false,
                };
                prop_assert!(case.params.iter().any(refusable), "SQL Server target refused {case:?}: {e}");
                prop_assert!(e.contains("parameter $"), "{e}");
            }
            return Ok(());
        }
        if case.sql.is_some() {
            return Ok(());
        }
        let call = requests.iter().find_map(|r| match r {
            Request::Rpc { text, params: sent, .. } if text.contains("INSERT INTO fuzz") => Some(sent.clone()),
            _ => None,
        });
        let sent = call.ok_or_else(|| TestCaseError::fail(format!("no INSERT sent: {requests:#?}")))?;
        prop_assert_eq!(&sent[0].value, &Tds::Int(n));
        for (value, arrived) in case.params.iter().zip(&sent[1..]) {
            let expected = match value {
                SqlValue::Null => Some(Tds::Null),
                SqlValue::Bool(b) => Some(Tds::Bit(*b)),
                SqlValue::Int(i) => Some(Tds::Int(*i)),
                SqlValue::Double(d) => Some(Tds::Float(*d)),
                SqlValue::Text(s) | SqlValue::Json(s) => Some(Tds::Text(s.clone())),
                SqlValue::Bytes(b) => Some(Tds::Bytes(b.clone())),
                SqlValue::Uuid(u) => Some(Tds::Guid(u.clone())),
                SqlValue::Decimal(_) | SqlValue::Timestamp(_) => None,
            };
            if let Some(expected) = expected {
                prop_assert_eq!(&arrived.value, &expected);
            }
        }
        Ok(())
    };
    with_sink(config, &RunContext::default(), ApplyFuzz { target: "SQL parameters -> SQL Server (TDS double)", check }).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Targets: configuration files
// ---------------------------------------------------------------------------------------------

/// The keys of our configuration and of Eventuous Connector files, and values of the shapes
/// they take: what the documents below are built from.
const KEYS: &[&str] = &[
    "connectors", "id", "source", "filter", "sidecar", "partitioning", "batch", "sink", "poison", "lease", "eventuous_checkpoint",
    "sqlite", "postgres", "kurrentdb", "mssql", "mongo", "elastic", "console", "http", "path", "poll_interval_ms", "batch_size", "url",
    "schema", "gap_timeout_ms", "connection_string", "checkpoint_interval", "non_json", "resolve_links", "include_types",
    "exclude_types", "include_stream_prefixes", "exclude_stream_prefixes", "include_stream_regex", "exclude_stream_regex",
    "include_system", "address", "window", "max_message_bytes", "request_timeout_ms", "max_retries", "payload", "answers", "on_timeout", "tls",
    "ca_file", "cert_file", "key_file", "domain",
    "rebuild_on_new_version", "on_new_version", "blue_green", "keep_old_versions", "read_model_schema", "count", "key", "max_ops", "max_wait_ms", "ttl_ms", "renew_every_ms", "table", "collection", "index",
    "init_sql", "init_sql_file", "allow_raw_sql", "writers", "database", "checkpoints_collection", "parked_collection",
    "transactions", "api_key", "checkpoints_index", "parked_index", "refresh", "max_bulk_bytes", "producer", "data_stream",
    "template", "template_priority", "settings", "lifecycle_policy", "name", "policy", "phases", "headers", "timeout_ms", "mode",
    "max_batch_events", "checkpoints", "file", "stream", "connector", "connectorId", "connectorAssembly", "diagnostics", "target",
    "grpc", "uri", "credentials", "connectionString", "concurrencyLimit", "connectorMode", "dataStream", "cloudId", "apiKey",
    "indexName", "templateName", "numberOfShards", "numberOrReplicas", "lifecycle", "policyName", "tiers", "tier", "minAge",
    "rollover", "priority", "forceMerge", "readOnly", "delete", "maxAge", "maxDocs", "maxSize", "maxNumSegments",
];

const WORDS: &[&str] = &[
    "", "bookings", "events.db", "read.db", "http://127.0.0.1:50051", "https://reducer:443", "127.0.0.1:50051", "http://",
    "postgres://gw@127.0.0.1:5432/rm", "postgres://", "mongodb://127.0.0.1:27017/?directConnection=true", "mongodb+srv://x",
    "Server=tcp:127.0.0.1,1433;Database=rm;User Id=gw;Password=x", "Server=;Bogus", "esdb://127.0.0.1:2113?tls=false",
    "kurrentdb://admin:changeit@127.0.0.1:2113?tls=false", "http://127.0.0.1:9200", "ftp://x", "stop", "skip", "park", "all", "handled",
    "retry", "ignore", "struct", "json", "both", "stream", "category", "none", "auto", "on", "off", "wait_for", "true", "false",
    "structured", "binary", "batch", "object", "flattened", "fail", "(", "^booking-", "Bookings", "ev-{category}", "{category}{category}",
    "${PGW_FUZZ_UNSET}", "${", "${}", "${HOME}", "Eventuous.Connector.EsdbMongo", "Eventuous.Connector.EsdbElastic",
    "Eventuous.Connector.EsdbSqlServer", "Eventuous.Connector.EsdbCassandra", "project", "produce", "mirror", "insecure", "ssl",
    "hot", "warm", "cold", "frozen", "tepid", "1d", "system.x", "a$b", "a.b", "Content-Type", "x\u{0}y", "é", "\u{202e}",
];

fn yaml_scalar() -> BoxedStrategy<serde_yaml::Value> {
    use serde_yaml::Value as Y;
    prop_oneof![
        1 => Just(Y::Null),
        1 => any::<bool>().prop_map(Y::Bool),
        2 => prop::sample::select(vec![0i64, 1, -1, 2, 8, 100, 1024, 4096, 4097, i64::MAX, i64::MIN, 1_000_000]).prop_map(|n| Y::Number(n.into())),
        1 => any::<u64>().prop_map(|n| Y::Number(n.into())),
        1 => number().prop_map(|n| Y::Number(n.into())),
        4 => prop::sample::select(WORDS.to_vec()).prop_map(|w| Y::String(w.into())),
        1 => text().prop_map(Y::String),
    ]
    .boxed()
}

fn yaml_key() -> BoxedStrategy<serde_yaml::Value> {
    use serde_yaml::Value as Y;
    prop_oneof![
        12 => prop::sample::select(KEYS.to_vec()).prop_map(|k| Y::String(k.into())),
        1 => "[a-z_]{1,10}".prop_map(Y::String),
        1 => yaml_scalar(),
    ]
    .boxed()
}

/// A YAML document of our keys, nested as our sections are (or not).
fn yaml_value() -> BoxedStrategy<serde_yaml::Value> {
    use serde_yaml::Value as Y;
    yaml_scalar()
        .prop_recursive(6, 64, 6, |inner| {
            prop_oneof![
                2 => vec((yaml_key(), inner.clone()), 0..6).prop_map(|entries| Y::Mapping(entries.into_iter().collect())),
                1 => vec(inner, 0..4).prop_map(Y::Sequence),
            ]
        })
        .boxed()
}

/// Documents that load, one per sink and source, which the mutations below take apart.
const VALID: &[&str] = &[
    "connectors:\n  - id: a\n    source: { sqlite: { path: events.db, poll_interval_ms: 5 } }\n    filter: { include_types: [RoomBooked], include_stream_regex: \"^booking-\" }\n    sidecar: { address: \"http://127.0.0.1:50051\", window: 64, answers: handled }\n    partitioning: { count: 4, key: category }\n    batch: { max_ops: 100 }\n    poison: park\n    sink: { sqlite: { path: read.db, init_sql: \"CREATE TABLE t (x)\" } }\n",
    "connectors:\n  - id: b\n    source: { postgres: { url: \"postgres://gw@127.0.0.1:5432/es\", schema: eventuous } }\n    sidecar: { address: \"http://127.0.0.1:50051\" }\n    lease: { ttl_ms: 15000, renew_every_ms: 3000 }\n    eventuous_checkpoint: { id: old, table: checkpoints, schema: eventuous }\n    sink: { postgres: { url: \"postgres://gw@127.0.0.1:5432/rm\", schema: public, writers: 2 } }\n",
    "connectors:\n  - id: c\n    source: { kurrentdb: { connection_string: \"esdb://127.0.0.1:2113?tls=false\" } }\n    sidecar: { address: \"http://127.0.0.1:50051\" }\n    sink: { mongo: { url: \"mongodb://127.0.0.1:27017/\", database: rm, collection: docs, transactions: auto } }\n",
    "connectors:\n  - id: d\n    source: { sqlite: { path: events.db } }\n    sink: { elastic: { url: \"http://127.0.0.1:9200\", producer: { index: \"ev-{category}\", payload: flattened, lifecycle_policy: { name: p, policy: { phases: {} } } } } }\n",
    "connectors:\n  - id: e\n    source: { sqlite: { path: events.db } }\n    poison: park\n    sink: { http: { url: \"https://example.com/in\", mode: batch, headers: { X-Key: v }, checkpoints: { file: cp.json } } }\n",
    "connectors:\n  - id: f\n    source: { sqlite: { path: events.db } }\n    sidecar: { address: \"http://127.0.0.1:50051\" }\n    sink: { mssql: { connection_string: \"Server=tcp:127.0.0.1,1433;Database=rm;User Id=gw;Password=x\", schema: gw } }\n",
    "connectors:\n  - id: g\n    source: { kurrentdb: { connection_string: \"esdb://127.0.0.1:2113?tls=false\" } }\n    sink: { console: { checkpoints: { kurrentdb: {} } } }\n",
    "connector:\n  connectorId: m\n  connectorAssembly: Eventuous.Connector.EsdbMongo\nsource:\n  connectionString: \"esdb://localhost:2113?tls=false\"\n  concurrencyLimit: 1\ntarget:\n  connectionString: \"mongodb://localhost:27017\"\n  database: test\n  collection: bookings\ngrpc:\n  uri: \"http://localhost:9091\"\n  credentials: insecure\n",
    "connector:\n  connectorId: s\n  connectorAssembly: Eventuous.Connector.EsdbSqlServer\nsource:\n  connectionString: \"esdb://localhost:2113?tls=false\"\ntarget:\n  connectionString: \"Server=localhost;Database=test;User=sa;Password=p\"\nfilter:\n  uri: \"http://localhost:9091\"\n",
    "connector:\n  connectorId: el\n  connectorAssembly: Eventuous.Connector.EsdbElastic\nsource:\n  connectionString: \"esdb://localhost:2113?tls=false\"\ntarget:\n  connectionString: \"http://localhost:9200\"\n  connectorMode: produce\n  dataStream:\n    indexName: eventlog\n    template: { templateName: t, numberOfShards: 1, numberOrReplicas: 1 }\n    lifecycle:\n      policyName: p\n      tiers:\n        - { tier: hot, minAge: 1d, priority: 100, rollover: { maxAge: 1d, maxSize: 100mb } }\n        - { tier: warm, forceMerge: { maxNumSegments: 1 }, readOnly: true }\n        - { tier: delete, delete: true }\n",
];

#[derive(Debug, Clone)]
enum Edit {
    Remove,
    Replace(serde_yaml::Value),
    Insert(serde_yaml::Value, serde_yaml::Value),
}

/// Applies `edit` to the `at`-th node (in document order) of `doc`.
fn edit(doc: &mut serde_yaml::Value, at: usize, edit: &Edit) {
    fn walk(node: &mut serde_yaml::Value, at: &mut usize, edit: &Edit) -> bool {
        if *at == 0 {
            match edit {
                Edit::Replace(v) => *node = v.clone(),
                Edit::Insert(k, v) => match node {
                    serde_yaml::Value::Mapping(m) => {
                        m.insert(k.clone(), v.clone());
                    }
                    serde_yaml::Value::Sequence(s) => s.push(v.clone()),
                    other => *other = v.clone(),
                },
                Edit::Remove => *node = serde_yaml::Value::Null,
            }
            return true;
        }
        *at -= 1;
        match node {
            serde_yaml::Value::Mapping(m) => {
                let keys: Vec<_> = m.keys().cloned().collect();
                for k in keys {
                    if *at == 0 && matches!(edit, Edit::Remove) {
                        m.remove(&k);
                        return true;
                    }
                    if walk(m.get_mut(&k).unwrap(), at, edit) {
                        return true;
                    }
                }
                false
            }
            serde_yaml::Value::Sequence(items) => items.iter_mut().any(|item| walk(item, at, edit)),
            _ => false,
        }
    }
    let mut at = at;
    walk(doc, &mut at, edit);
}

fn config_text() -> BoxedStrategy<String> {
    let edits = vec(
        (
            0usize..64,
            prop_oneof![
                1 => Just(Edit::Remove),
                2 => yaml_value().prop_map(Edit::Replace),
                2 => (yaml_key(), yaml_value()).prop_map(|(k, v)| Edit::Insert(k, v)),
            ],
        ),
        1..5,
    );
    let mutated_valid = (prop::sample::select(VALID.to_vec()), edits).prop_map(|(text, edits)| {
        let mut doc: serde_yaml::Value = serde_yaml::from_str(text).unwrap();
        for (at, e) in &edits {
            edit(&mut doc, *at, e);
        }
        serde_yaml::to_string(&doc).unwrap()
    });
    let text_edits = (prop::sample::select(VALID.to_vec()), vec((any::<prop::sample::Index>(), any::<char>(), 0u8..3), 1..4)).prop_map(
        |(text, edits)| {
            let mut chars: Vec<char> = text.chars().collect();
            for (at, c, kind) in edits {
                let i = at.index(chars.len().max(1)).min(chars.len());
                match kind {
                    0 if i < chars.len() => chars[i] = c,
                    1 => chars.truncate(i),
                    _ => chars.insert(i, c),
                }
            }
            chars.into_iter().collect()
        },
    );
    prop_oneof![
        5 => mutated_valid,
        2 => text_edits,
        2 => yaml_value().prop_map(|v| serde_yaml::to_string(&v).unwrap()),
        1 => (yaml_value(), yaml_value(), yaml_value()).prop_map(|(connector, source, target)| {
            let mut m = serde_yaml::Mapping::new();
            m.insert("connector".into(), connector);
            m.insert("source".into(), source);
            m.insert("target".into(), target);
            serde_yaml::to_string(&m).unwrap()
        }),
    ]
    .boxed()
}

/// Problems about the document as a whole, which have no key to name.
fn is_document_problem(message: &str) -> bool {
    message.starts_with("not valid YAML") || message.starts_with("expected a mapping with a `connectors` list")
}

/// A key path names a key: it is not empty and does not end in `.` (keys may hold any
/// character, so little more can be said of it).
fn well_formed(path: &str) -> bool {
    !path.is_empty() && !path.ends_with('.')
}

/// A document with a key that is empty or ends in `.` (`'': x`, `'a.': x`): its path ends in
/// `.`, rightly.
fn has_an_empty_key(text: &str) -> bool {
    fn walk(v: &serde_yaml::Value) -> bool {
        match v {
            serde_yaml::Value::Mapping(m) => m.iter().any(|(k, v)| k.as_str().is_some_and(|k| k.is_empty() || k.ends_with('.')) || walk(v)),
            serde_yaml::Value::Sequence(items) => items.iter().any(walk),
            _ => false,
        }
    }
    serde_yaml::from_str::<serde_yaml::Value>(text).is_ok_and(|v| walk(&v))
}

#[test]
fn every_config_problem_names_its_key_path() {
    fuzz("config documents", cases::CONFIG, config_text(), |text| {
        match config::parse(&text) {
            Ok(config) => prop_assert!(!config.connectors.is_empty()),
            Err(problems) => {
                prop_assert!(!problems.is_empty());
                // Each problem reported once, each one line's worth of text at most, and no
                // more of them than the document has lines and keys.
                prop_assert!(problems.len() <= 4 * text.len().max(1), "{} problems", problems.len());
                let known_gap = has_an_empty_key(&text);
                for p in &problems {
                    prop_assert!(!p.message.is_empty(), "{p:?}");
                    let named = well_formed(&p.path) || p.path.is_empty() && is_document_problem(&p.message) || p.path.starts_with("line ");
                    prop_assert!(named || known_gap, "problem without a key path: {p:?}\n--- document:\n{text}");
                }
            }
        }
        Ok(())
    });
}

#[test]
fn problem_paths_name_keys_that_are_not_plain_strings() {
    // Eventuous files: `connector.`, and an empty path, where the key is `null` or `1`.
    for text in ["connector:\n  null: null\nsource: null\ntarget: null\n", "connector: null\nsource: null\ntarget:\n  1: x\n", "1: x\nconnector: {}\n"] {
        for p in config::parse(text).unwrap_err() {
            assert!(well_formed(&p.path), "{p:?} in:\n{text}");
        }
    }
    // Our files: the key read back from serde's message holds backticks of its own.
    for key in ["`", "a`b"] {
        let text = format!(
            "connectors:\n  - id: a\n    source: {{ sqlite: {{ path: e.db }} }}\n    sidecar: {{ address: \"http://127.0.0.1:1\" }}\n    filter: {{ \"{key}\": 1 }}\n    sink: {{ sqlite: {{ path: r.db }} }}\n"
        );
        let problems = config::parse(&text).unwrap_err();
        assert_eq!(problems[0].path, format!("connectors[0].filter.{key}"), "{problems:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Regressions: what the targets found, and the deep nesting they cannot reach (a Struct
// decoded from the wire stops at prost's 100 levels; these are built as bytes)
// ---------------------------------------------------------------------------------------------

/// Applies one statement with the sink a connector config opens.
struct ApplyOnce(Any);

impl WithSink for ApplyOnce {
    type Output = Result<(), String>;

    async fn with<S: Sink>(self, sink: S, _config: config::ConnectorConfig) -> Result<Self::Output, ConnectorError> {
        let ops = match sink.decode(&self.0) {
            Ok(op) => op.into_iter().collect(),
            Err(e) => return Ok(Err(e.to_string())),
        };
        let mut writer = sink.open_writer().await.unwrap_or_else(|e| panic!("open writer: {e}"));
        let batch = Batch::new(vec![BatchItem::Apply { event: crate::support::fixtures::tested_event(1), ops }], 1);
        Ok(writer.apply(Arc::new(batch)).await.map_err(|e| e.message))
    }
}

/// Found by `sqlite_stores_every_parameter_as_sent`: `$0` made the SQLite writer subtract 1
/// from 0 (a panic in debug builds, a wrong message in release ones).
#[tokio::test]
async fn sqlite_refuses_the_placeholder_dollar_zero() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = connector_yaml(&format!("      sqlite: {{ path: \"{}\" }}\n", dir.path().join("t.db").display()));
    let config = config::parse(&yaml).unwrap().connectors.remove(0);
    let statement = proto::Statement { sql: "SELECT $0".into(), params: vec![to_proto(&SqlValue::Int(1))] };
    let outcome = with_sink(config, &RunContext::default(), ApplyOnce(any_of(names::STATEMENT, &statement))).await.unwrap();
    let message = outcome.unwrap_err();
    assert!(message.contains("placeholder `$0` is not positional; write $1, $2, ..."), "{message}");
}

/// Found by `mongo_operations_decode_or_are_refused_with_a_reason`: a key holding a NUL
/// character was decoded into a document the driver cannot send (BSON keys are C strings);
/// it failed later, in the write command, without the key's path.
#[test]
fn a_mongodb_key_with_a_nul_character_is_refused_with_its_path() {
    let document = Struct {
        fields: BTreeMap::from([(
            "guest".to_string(),
            Value { kind: Some(Kind::StructValue(Struct { fields: BTreeMap::from([("na\0me".to_string(), leaf_text("x"))]) })) },
        )]),
    };
    let insert = any_of(names::INSERT_ONE, &proto::InsertOne { document: Some(document), ..Default::default() });
    let message = decode_mongo_op(&insert).unwrap_err().to_string();
    assert_eq!(
        message,
        "operation `projection.InsertOne` is malformed: document: the key \"na\\0me\" in `guest` holds a NUL character, which a BSON key cannot"
    );
}

fn leaf_text(s: &str) -> Value {
    Value { kind: Some(Kind::StringValue(s.into())) }
}

/// The bytes of `{"a": {"a": ... {} ...}}`, `depth` Structs deep, built back to front (a
/// Struct that deep cannot be encoded by prost: the recursion would overflow the stack).
fn deep_struct_bytes(depth: usize) -> Vec<u8> {
    fn prefix(reversed: &mut Vec<u8>, tag: u8, len: usize) {
        let mut head = vec![tag];
        prost::encoding::encode_varint(len as u64, &mut head);
        reversed.extend(head.iter().rev());
    }
    // Reversed: Struct { fields: { "a": Value { struct_value: <inner> } } }, innermost first.
    let mut reversed = Vec::new();
    for _ in 0..depth {
        let inner = reversed.len();
        prefix(&mut reversed, 0x2a, inner); // Value.struct_value (5)
        let value = reversed.len();
        prefix(&mut reversed, 0x12, value); // entry.value (2)
        reversed.extend(b"\x0a\x01a".iter().rev()); // entry.key (1) = "a"
        let entry = reversed.len();
        prefix(&mut reversed, 0x0a, entry); // Struct.fields (1)
    }
    reversed.reverse();
    reversed
}

#[test]
fn a_document_nested_10000_deep_is_refused_by_every_decoder() {
    let document = deep_struct_bytes(10_000);
    // A sanity check of the builder: 3 levels (and the innermost empty Struct) decode.
    let shallow = Struct::decode(deep_struct_bytes(3).as_slice()).unwrap();
    assert_eq!(depth(&shallow), 4);
    // InsertOne.document (1), Index.document (2): the same Struct bytes behind a field tag.
    let field = |tag: u8, extra: &[u8]| {
        let mut bytes = vec![tag];
        prost::encoding::encode_varint(document.len() as u64, &mut bytes);
        bytes.extend_from_slice(&document);
        bytes.extend_from_slice(extra);
        bytes
    };
    let insert = Any { type_url: format!("type.googleapis.com/{}", names::INSERT_ONE), value: field(0x0a, b"") };
    let message = decode_mongo_op(&insert).unwrap_err().to_string();
    assert!(message.starts_with("operation `projection.InsertOne` is malformed: failed to decode Protobuf message"), "{message}");
    assert!(message.contains("recursion limit reached"), "{message}");
    let index = Any { type_url: format!("type.googleapis.com/{}", elastic_names::INDEX), value: field(0x12, b"\x0a\x01x") };
    let message = decode_elastic_op(&index).unwrap_err().to_string();
    assert!(message.contains("projection.Index` is malformed") && message.contains("recursion limit reached"), "{message}");
    // A SQL target does not take documents: the type is refused before the bytes are read.
    let message = decode_sql_op(&insert, true, "sqlite").unwrap_err().to_string();
    assert!(message.starts_with("unknown operation `projection.InsertOne` for the sqlite sink"), "{message}");
}

#[test]
fn json_nested_10000_deep_is_refused_as_a_parameter_and_sent_raw_as_a_payload() {
    let deep = format!("{{\"a\":{}1{}}}", "[".repeat(10_000), "]".repeat(10_000));
    let statement = proto::Statement { sql: "UPDATE t SET j = $1".into(), params: vec![proto::SqlValue { kind: Some(SqlKind::JsonValue(deep.clone())) }] };
    let message = decode_sql_op(&any_of(names::STATEMENT, &statement), true, "sqlite").unwrap_err().to_string();
    assert!(message.contains("parameter $1: jsonValue is not JSON: recursion limit exceeded"), "{message}");
    // As an event's payload it cannot be a Struct: the sidecar gets the bytes.
    let request = build_request(&event_with(deep.clone().into_bytes(), None, ContentType::Json), 0, config::PayloadFormat::Struct);
    assert!(request.event_payload.is_none());
    assert_eq!(request.payload_json, deep.as_bytes());
}

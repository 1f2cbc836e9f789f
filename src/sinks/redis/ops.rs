//! Decodes the sidecar's Redis operations (`projection.RedisSet` ... `RedisListPush`) into
//! [`RedisOp`], once, at the edge: the sink's key prefix put in front of every key, every value
//! turned into the bytes Redis will store, and what Redis would refuse for sure (an empty key,
//! no fields, a TTL that is not positive, a NaN) refused with the field that is wrong.
//! Whether a key holds the right type is a question for the server's data; `check.rs` asks it
//! before the batch is sent.

use std::fmt;

use prost::Message;
use prost_types::Any;
use redis::Pipeline;

use crate::{
    payload::value_to_json,
    proto::{self, redis_value::Kind},
    sinks::DecodeError,
};

/// Full message names of the Redis operations.
pub mod names {
    pub const SET: &str = "projection.RedisSet";
    pub const DEL: &str = "projection.RedisDel";
    pub const HASH_SET: &str = "projection.RedisHashSet";
    pub const HASH_DEL: &str = "projection.RedisHashDel";
    pub const INCR_BY: &str = "projection.RedisIncrBy";
    pub const HASH_INCR_BY: &str = "projection.RedisHashIncrBy";
    pub const EXPIRE: &str = "projection.RedisExpire";
    pub const SET_ADD: &str = "projection.RedisSetAdd";
    pub const SET_REMOVE: &str = "projection.RedisSetRemove";
    pub const STREAM_ADD: &str = "projection.RedisStreamAdd";
    pub const LIST_PUSH: &str = "projection.RedisListPush";
}

const EXPECTED: &str = "`projection.RedisSet`, `RedisDel`, `RedisHashSet`, `RedisHashDel`, `RedisIncrBy`, `RedisHashIncrBy`, `RedisExpire`, `RedisSetAdd`, `RedisSetRemove`, `RedisStreamAdd`, `RedisListPush` and `projection.Ignore`";

/// A Redis operation, validated, its keys prefixed and its values as bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum RedisOp {
    Set { key: String, value: Vec<u8>, ttl_ms: Option<u64> },
    Del { keys: Vec<String> },
    HashSet { key: String, fields: Vec<(String, Vec<u8>)> },
    HashDel { key: String, fields: Vec<String> },
    IncrBy { key: String, by: i64 },
    HashIncrBy { key: String, field: String, by: i64 },
    Expire { key: String, ttl_ms: u64 },
    SetAdd { key: String, members: Vec<Vec<u8>> },
    SetRemove { key: String, members: Vec<Vec<u8>> },
    StreamAdd { key: String, fields: Vec<(String, Vec<u8>)>, max_len: Option<u64> },
    ListPush { key: String, values: Vec<Vec<u8>>, left: bool, max_len: Option<u64> },
}

/// The kind of value a key holds, as Redis's `TYPE` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    String,
    Hash,
    Set,
    List,
    Stream,
}

impl KeyType {
    pub fn name(self) -> &'static str {
        match self {
            KeyType::String => "string",
            KeyType::Hash => "hash",
            KeyType::Set => "set",
            KeyType::List => "list",
            KeyType::Stream => "stream",
        }
    }
}

impl RedisOp {
    /// The operation's name in the contract.
    pub fn name(&self) -> &'static str {
        match self {
            RedisOp::Set { .. } => "RedisSet",
            RedisOp::Del { .. } => "RedisDel",
            RedisOp::HashSet { .. } => "RedisHashSet",
            RedisOp::HashDel { .. } => "RedisHashDel",
            RedisOp::IncrBy { .. } => "RedisIncrBy",
            RedisOp::HashIncrBy { .. } => "RedisHashIncrBy",
            RedisOp::Expire { .. } => "RedisExpire",
            RedisOp::SetAdd { .. } => "RedisSetAdd",
            RedisOp::SetRemove { .. } => "RedisSetRemove",
            RedisOp::StreamAdd { .. } => "RedisStreamAdd",
            RedisOp::ListPush { .. } => "RedisListPush",
        }
    }

    /// Every key the operation touches (the prefixed, stored names).
    pub fn keys(&self) -> &[String] {
        match self {
            RedisOp::Del { keys } => keys,
            RedisOp::Set { key, .. }
            | RedisOp::HashSet { key, .. }
            | RedisOp::HashDel { key, .. }
            | RedisOp::IncrBy { key, .. }
            | RedisOp::HashIncrBy { key, .. }
            | RedisOp::Expire { key, .. }
            | RedisOp::SetAdd { key, .. }
            | RedisOp::SetRemove { key, .. }
            | RedisOp::StreamAdd { key, .. }
            | RedisOp::ListPush { key, .. } => std::slice::from_ref(key),
        }
    }

    /// The type the operation needs its key to hold (or not to exist), if it needs one: SET,
    /// DEL and PEXPIRE take a key of any type.
    pub fn needs(&self) -> Option<KeyType> {
        match self {
            RedisOp::Set { .. } | RedisOp::Del { .. } | RedisOp::Expire { .. } => None,
            RedisOp::IncrBy { .. } => Some(KeyType::String),
            RedisOp::HashSet { .. } | RedisOp::HashDel { .. } | RedisOp::HashIncrBy { .. } => Some(KeyType::Hash),
            RedisOp::SetAdd { .. } | RedisOp::SetRemove { .. } => Some(KeyType::Set),
            RedisOp::StreamAdd { .. } => Some(KeyType::Stream),
            RedisOp::ListPush { .. } => Some(KeyType::List),
        }
    }

    /// How many commands apply it (`RedisListPush` with `maxLen` is two: the push, then LTRIM).
    pub fn command_count(&self) -> usize {
        match self {
            RedisOp::ListPush { max_len: Some(_), .. } => 2,
            _ => 1,
        }
    }

    /// Appends the commands that apply it to `pipe`, in order, each argument copied once.
    pub fn push_commands(&self, pipe: &mut Pipeline) {
        match self {
            RedisOp::Set { key, value, ttl_ms } => {
                let set = pipe.cmd("SET").arg(key).arg(value.as_slice());
                if let Some(ms) = ttl_ms {
                    set.arg("PX").arg(*ms);
                }
            }
            RedisOp::Del { keys } => {
                pipe.cmd("DEL").arg(keys);
            }
            RedisOp::HashSet { key, fields } => {
                let hset = pipe.cmd("HSET").arg(key);
                for (name, value) in fields {
                    hset.arg(name).arg(value.as_slice());
                }
            }
            RedisOp::HashDel { key, fields } => {
                pipe.cmd("HDEL").arg(key).arg(fields);
            }
            RedisOp::IncrBy { key, by } => {
                pipe.cmd("INCRBY").arg(key).arg(*by);
            }
            RedisOp::HashIncrBy { key, field, by } => {
                pipe.cmd("HINCRBY").arg(key).arg(field).arg(*by);
            }
            RedisOp::Expire { key, ttl_ms } => {
                pipe.cmd("PEXPIRE").arg(key).arg(*ttl_ms);
            }
            RedisOp::SetAdd { key, members } | RedisOp::SetRemove { key, members } => {
                let name = if matches!(self, RedisOp::SetAdd { .. }) { "SADD" } else { "SREM" };
                let command = pipe.cmd(name).arg(key);
                for member in members {
                    command.arg(member.as_slice());
                }
            }
            RedisOp::StreamAdd { key, fields, max_len } => {
                let xadd = pipe.cmd("XADD").arg(key);
                if let Some(n) = max_len {
                    xadd.arg("MAXLEN").arg("~").arg(*n);
                }
                xadd.arg("*");
                for (name, value) in fields {
                    xadd.arg(name).arg(value.as_slice());
                }
            }
            RedisOp::ListPush { key, values, left, max_len } => {
                let push = pipe.cmd(if *left { "LPUSH" } else { "RPUSH" }).arg(key);
                for value in values {
                    push.arg(value.as_slice());
                }
                if let Some(n) = max_len {
                    // LPUSH puts the newest first: keep the head; RPUSH keeps the tail.
                    let (start, stop) = if *left { (0, *n as i64 - 1) } else { (-(*n as i64), -1) };
                    pipe.cmd("LTRIM").arg(key).arg(start).arg(stop);
                }
            }
        }
    }
}

impl fmt::Display for RedisOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        match self {
            RedisOp::Del { keys } => write!(f, " of {}", keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")),
            RedisOp::HashIncrBy { key, field, by } => write!(f, " `{key}` field `{field}` by {by}"),
            RedisOp::IncrBy { key, by } => write!(f, " `{key}` by {by}"),
            RedisOp::HashSet { key, fields } | RedisOp::StreamAdd { key, fields, .. } => {
                let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
                write!(f, " `{key}` fields {}", truncate(&names.join(", "), 200))
            }
            RedisOp::Set { key, value, .. } => write!(f, " `{key}` = {}", truncate(&String::from_utf8_lossy(value), 200)),
            RedisOp::Expire { key, ttl_ms } => write!(f, " `{key}` in {ttl_ms} ms"),
            RedisOp::HashDel { key, .. }
            | RedisOp::SetAdd { key, .. }
            | RedisOp::SetRemove { key, .. }
            | RedisOp::ListPush { key, .. } => write!(f, " `{key}`"),
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max { s.to_string() } else { format!("{}...", s.chars().take(max).collect::<String>()) }
}

/// What decoding needs to know of the sink: the prefix of every key, and the gateway's own
/// keys (an operation on one of them would corrupt the checkpoints).
pub struct KeySpace<'a> {
    pub prefix: &'a str,
    pub reserved: &'a [String],
}

/// Decodes one operation; `Ok(None)` for Ignore.
pub fn decode_redis_op(any: &Any, keys: &KeySpace<'_>) -> Result<Option<RedisOp>, DecodeError> {
    let name = proto::message_name(any);
    let malformed = |reason: String| DecodeError::Malformed { name: name.to_string(), reason };
    let bytes = any.value.as_slice();
    let decode_error = |e: prost::DecodeError| malformed(e.to_string());
    let key = |k: &str, field: &str| -> Result<String, DecodeError> { prefixed(k, field, keys).map_err(malformed) };
    let op = match name {
        proto::names::IGNORE => return Ok(None),
        names::SET => {
            let op = proto::RedisSet::decode(bytes).map_err(decode_error)?;
            let ttl_ms = match op.ttl_ms {
                0 => None,
                ms if ms > 0 => Some(ms as u64),
                ms => return Err(malformed(format!("`ttlMs` is {ms}; send a positive number of milliseconds, or 0 for none"))),
            };
            RedisOp::Set { key: key(&op.key, "key")?, value: value(op.value, "value").map_err(malformed)?, ttl_ms }
        }
        names::DEL => {
            let op = proto::RedisDel::decode(bytes).map_err(decode_error)?;
            if op.keys.is_empty() {
                return Err(malformed("`keys` is empty; name at least one key".into()));
            }
            let keys = op.keys.iter().enumerate().map(|(i, k)| key(k, &format!("keys[{i}]"))).collect::<Result<_, _>>()?;
            RedisOp::Del { keys }
        }
        names::HASH_SET => {
            let op = proto::RedisHashSet::decode(bytes).map_err(decode_error)?;
            RedisOp::HashSet { key: key(&op.key, "key")?, fields: fields(op.fields).map_err(malformed)? }
        }
        names::HASH_DEL => {
            let op = proto::RedisHashDel::decode(bytes).map_err(decode_error)?;
            if op.fields.is_empty() {
                return Err(malformed("`fields` is empty; name at least one field".into()));
            }
            if let Some(i) = op.fields.iter().position(String::is_empty) {
                return Err(malformed(format!("`fields[{i}]` is empty")));
            }
            RedisOp::HashDel { key: key(&op.key, "key")?, fields: op.fields }
        }
        names::INCR_BY => {
            let op = proto::RedisIncrBy::decode(bytes).map_err(decode_error)?;
            RedisOp::IncrBy { key: key(&op.key, "key")?, by: op.by }
        }
        names::HASH_INCR_BY => {
            let op = proto::RedisHashIncrBy::decode(bytes).map_err(decode_error)?;
            if op.field.is_empty() {
                return Err(malformed("`field` is empty; name the hash field to count in".into()));
            }
            RedisOp::HashIncrBy { key: key(&op.key, "key")?, field: op.field, by: op.by }
        }
        names::EXPIRE => {
            let op = proto::RedisExpire::decode(bytes).map_err(decode_error)?;
            if op.ttl_ms <= 0 {
                return Err(malformed(format!(
                    "`ttlMs` is {}; send a positive number of milliseconds (delete a key with RedisDel)",
                    op.ttl_ms
                )));
            }
            RedisOp::Expire { key: key(&op.key, "key")?, ttl_ms: op.ttl_ms as u64 }
        }
        names::SET_ADD | names::SET_REMOVE => {
            // Both messages have the same fields and numbers.
            let op = proto::RedisSetAdd::decode(bytes).map_err(decode_error)?;
            if op.members.is_empty() {
                return Err(malformed("`members` is empty; send at least one member".into()));
            }
            let members = values(op.members, "members").map_err(malformed)?;
            let key = key(&op.key, "key")?;
            if name == names::SET_ADD { RedisOp::SetAdd { key, members } } else { RedisOp::SetRemove { key, members } }
        }
        names::STREAM_ADD => {
            let op = proto::RedisStreamAdd::decode(bytes).map_err(decode_error)?;
            let max_len = max_len(op.max_len).map_err(malformed)?;
            RedisOp::StreamAdd { key: key(&op.key, "key")?, fields: fields(op.fields).map_err(malformed)?, max_len }
        }
        names::LIST_PUSH => {
            let op = proto::RedisListPush::decode(bytes).map_err(decode_error)?;
            if op.values.is_empty() {
                return Err(malformed("`values` is empty; send at least one value".into()));
            }
            let max_len = max_len(op.max_len).map_err(malformed)?;
            RedisOp::ListPush { key: key(&op.key, "key")?, values: values(op.values, "values").map_err(malformed)?, left: op.left, max_len }
        }
        other => return Err(DecodeError::Unsupported { name: other.to_string(), sink: "redis", expected: EXPECTED }),
    };
    Ok(Some(op))
}

/// The stored name of a key: not empty, and not one of the gateway's own.
fn prefixed(key: &str, field: &str, keys: &KeySpace<'_>) -> Result<String, String> {
    if key.is_empty() {
        return Err(format!("`{field}` is empty; name the key (the sink puts its `key_prefix` in front)"));
    }
    let stored = format!("{}{key}", keys.prefix);
    if keys.reserved.contains(&stored) {
        return Err(format!("`{field}` is `{key}`, which is where the gateway keeps this connector's own data (`{stored}`)"));
    }
    Ok(stored)
}

fn max_len(n: i64) -> Result<Option<u64>, String> {
    match n {
        0 => Ok(None),
        n if n > 0 => Ok(Some(n as u64)),
        n => Err(format!("`maxLen` is {n}; send a positive length, or 0 for no trimming")),
    }
}

fn fields(fields: Vec<proto::RedisField>) -> Result<Vec<(String, Vec<u8>)>, String> {
    if fields.is_empty() {
        return Err("`fields` is empty; send at least one field".into());
    }
    fields
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            if f.name.is_empty() {
                return Err(format!("`fields[{i}].name` is empty"));
            }
            let value = value(f.value, &format!("fields[{i}].value (`{}`)", f.name))?;
            Ok((f.name, value))
        })
        .collect()
}

fn values(values: Vec<proto::RedisValue>, field: &str) -> Result<Vec<Vec<u8>>, String> {
    values.into_iter().enumerate().map(|(i, v)| value(Some(v), &format!("{field}[{i}]"))).collect()
}

/// The bytes Redis stores for a value.
fn value(v: Option<proto::RedisValue>, field: &str) -> Result<Vec<u8>, String> {
    match v.and_then(|v| v.kind) {
        None => Err(format!("`{field}` is missing; send one of stringValue, int64Value, bytesValue, doubleValue, jsonValue")),
        Some(Kind::StringValue(s)) => Ok(s.into_bytes()),
        Some(Kind::Int64Value(i)) => Ok(i.to_string().into_bytes()),
        Some(Kind::BytesValue(b)) => Ok(b),
        Some(Kind::DoubleValue(d)) if d.is_finite() => Ok(d.to_string().into_bytes()),
        Some(Kind::DoubleValue(d)) => Err(format!("`{field}` is doubleValue {d}, which Redis cannot store as a number")),
        Some(Kind::JsonValue(j)) => Ok(value_to_json(&j).to_string().into_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use prost_types::{Struct, Value, value::Kind as JsonKind};

    use super::*;
    use crate::proto::pack;

    const RESERVED: &[String] = &[];

    fn decode(any: &Any) -> Result<Option<RedisOp>, DecodeError> {
        decode_redis_op(any, &KeySpace { prefix: "t:", reserved: RESERVED })
    }

    /// The commands of `op` as they go on the wire.
    fn commands(op: &RedisOp) -> Vec<u8> {
        let mut pipe = redis::pipe();
        op.push_commands(&mut pipe);
        pipe.get_packed_pipeline()
    }

    fn string(s: &str) -> Option<proto::RedisValue> {
        Some(proto::RedisValue { kind: Some(Kind::StringValue(s.into())) })
    }

    fn field(name: &str, kind: Kind) -> proto::RedisField {
        proto::RedisField { name: name.into(), value: Some(proto::RedisValue { kind: Some(kind) }) }
    }

    #[test]
    fn decodes_every_operation_with_its_keys_prefixed() {
        let set = pack(names::SET, &proto::RedisSet { key: "a".into(), value: string("x"), ttl_ms: 1500 });
        assert_eq!(decode(&set).unwrap().unwrap(), RedisOp::Set { key: "t:a".into(), value: b"x".to_vec(), ttl_ms: Some(1500) });
        let json = Value { kind: Some(JsonKind::StructValue(Struct {
            fields: [("n".to_string(), Value { kind: Some(JsonKind::NumberValue(3.0)) })].into(),
        })) };
        let hset = pack(names::HASH_SET, &proto::RedisHashSet {
            key: "h".into(),
            fields: vec![
                field("s", Kind::StringValue("v".into())),
                field("i", Kind::Int64Value(-42)),
                field("d", Kind::DoubleValue(0.1)),
                field("b", Kind::BytesValue(vec![0, 255])),
                field("j", Kind::JsonValue(json)),
            ],
        });
        let RedisOp::HashSet { key, fields } = decode(&hset).unwrap().unwrap() else { panic!("not a hash set") };
        assert_eq!(key, "t:h");
        let written: Vec<(&str, &[u8])> = fields.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
        assert_eq!(written, [("s", &b"v"[..]), ("i", b"-42"), ("d", b"0.1"), ("b", &[0, 255]), ("j", br#"{"n":3}"#)]);
        let push = pack(names::LIST_PUSH, &proto::RedisListPush { key: "l".into(), values: vec![proto::RedisValue { kind: Some(Kind::Int64Value(1)) }], left: true, max_len: 10 });
        let op = decode(&push).unwrap().unwrap();
        assert_eq!((commands(&op), op.command_count()), (redis::pipe().cmd("LPUSH").arg("t:l").arg("1").cmd("LTRIM").arg("t:l").arg(0).arg(9).get_packed_pipeline(), 2));
        let xadd = pack(names::STREAM_ADD, &proto::RedisStreamAdd { key: "s".into(), fields: vec![field("f", Kind::StringValue("v".into()))], max_len: 100 });
        let expected = redis::pipe().cmd("XADD").arg(&["t:s", "MAXLEN", "~", "100", "*", "f", "v"]).get_packed_pipeline();
        assert_eq!(commands(&decode(&xadd).unwrap().unwrap()), expected);
        let rpush = RedisOp::ListPush { key: "l".into(), values: vec![b"x".to_vec()], left: false, max_len: Some(3) };
        assert_eq!(commands(&rpush), redis::pipe().cmd("RPUSH").arg("l").arg("x").cmd("LTRIM").arg("l").arg(-3).arg(-1).get_packed_pipeline());
        let srem = pack(names::SET_REMOVE, &proto::RedisSetRemove { key: "m".into(), members: vec![string("x").unwrap()] });
        assert_eq!(decode(&srem).unwrap().unwrap(), RedisOp::SetRemove { key: "t:m".into(), members: vec![b"x".to_vec()] });
        let hincr = pack(names::HASH_INCR_BY, &proto::RedisHashIncrBy { key: "g".into(), field: "n".into(), by: -2 });
        assert_eq!(decode(&hincr).unwrap().unwrap().needs(), Some(KeyType::Hash));
        assert_eq!(decode(&pack(proto::names::IGNORE, &proto::Ignore {})).unwrap(), None);
    }

    #[test]
    fn refuses_what_redis_would_with_the_field() {
        let reason = |any: Any| decode(&any).unwrap_err().to_string();
        assert!(reason(pack(names::SET, &proto::RedisSet { key: String::new(), value: string("x"), ttl_ms: 0 })).contains("`key` is empty"));
        assert!(reason(pack(names::SET, &proto::RedisSet { key: "k".into(), value: None, ttl_ms: 0 })).contains("`value` is missing"));
        assert!(reason(pack(names::SET, &proto::RedisSet { key: "k".into(), value: string("x"), ttl_ms: -1 })).contains("`ttlMs` is -1"));
        assert!(reason(pack(names::DEL, &proto::RedisDel { keys: vec!["a".into(), String::new()] })).contains("`keys[1]` is empty"));
        assert!(reason(pack(names::HASH_SET, &proto::RedisHashSet { key: "h".into(), fields: vec![] })).contains("`fields` is empty"));
        let nan = pack(names::HASH_SET, &proto::RedisHashSet { key: "h".into(), fields: vec![field("x", Kind::DoubleValue(f64::NAN))] });
        assert!(reason(nan).contains("`fields[0].value (`x`)` is doubleValue NaN"));
        assert!(reason(pack(names::EXPIRE, &proto::RedisExpire { key: "k".into(), ttl_ms: 0 })).contains("`ttlMs` is 0"));
        assert!(reason(pack(names::HASH_INCR_BY, &proto::RedisHashIncrBy { key: "k".into(), field: String::new(), by: 1 })).contains("`field` is empty"));
        let sql = pack(proto::names::STATEMENT, &proto::Statement { sql: "x".into(), params: vec![] });
        assert!(reason(sql).starts_with("unknown operation `projection.Statement` for the redis sink"));
        let reserved = ["t:checkpoints:c".to_string()];
        let on_checkpoints = pack(names::DEL, &proto::RedisDel { keys: vec!["checkpoints:c".into()] });
        let error = decode_redis_op(&on_checkpoints, &KeySpace { prefix: "t:", reserved: &reserved }).unwrap_err().to_string();
        assert!(error.contains("which is where the gateway keeps this connector's own data (`t:checkpoints:c`)"), "{error}");
    }
}

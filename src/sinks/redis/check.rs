//! Foresees the commands of a batch that Redis would refuse while running its EXEC, so that no
//! batch is sent that would fail half-way.
//!
//! Redis has no rollback: a command that fails inside EXEC (WRONGTYPE, "value is not an
//! integer", an overflow) fails alone, and every other command of the transaction, the batch's
//! checkpoints included, is applied. A batch cannot then be retried or cut around the failing
//! event without doubling or losing something. So before MULTI the writer reads, under WATCH,
//! the type of every key the batch touches and the value of every counter it increments
//! (`apply.rs`), and a [`Play`] plays the batch's operations over what was read, in order: the
//! first one Redis would refuse names its item, and nothing of the batch is sent. WATCH makes
//! the reading hold until EXEC: a key another client changes in between aborts the EXEC.
//!
//! What the play cannot know is taken as fine (and then caught, should it fail, by the EXEC's
//! own replies): whether an HDEL or SREM emptied a hash or set (Redis then deletes the key)
//! before the same key is used as another type in the same batch, and a counter whose value
//! was not read because another operation of the batch wrote it with a value of unknown form.

use std::collections::HashMap;

use super::ops::{KeyType, RedisOp};

/// What a key held when the batch was planned, as `TYPE` names it, or as a counter's read
/// tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    Nothing,
    Type(KeyType),
    /// This type or no key at all (`GET` and `HGET` answer alike for both), when every
    /// operation of the batch on the key needs this type: the difference does not matter.
    Maybe(KeyType),
    /// Another type, by its name (`zset`, a module's), or as "a type other than string" when
    /// a counter's read answered WRONGTYPE.
    Other(String),
}

impl Held {
    /// From a `TYPE` reply.
    pub fn from_type(name: &str) -> Self {
        match name {
            "none" => Held::Nothing,
            "string" => Held::Type(KeyType::String),
            "hash" => Held::Type(KeyType::Hash),
            "set" => Held::Type(KeyType::Set),
            "list" => Held::Type(KeyType::List),
            "stream" => Held::Type(KeyType::Stream),
            other => Held::Other(other.to_string()),
        }
    }
}

/// What was read under WATCH: each key's type, and the current value of each counter (a
/// string key an INCRBY counts in, a hash field an HINCRBY counts in; `None`: none).
#[derive(Debug, Default)]
pub struct Observed<'k> {
    pub types: HashMap<&'k str, Held>,
    pub counters: HashMap<&'k str, Option<Vec<u8>>>,
    pub hash_counters: HashMap<(&'k str, &'k str), Option<Vec<u8>>>,
}

/// A command Redis would refuse, and why, in Redis's words first.
#[derive(Debug, PartialEq)]
pub struct Refusal(pub String);

/// A counter as the play knows it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Count {
    /// Absent: INCRBY starts from 0.
    Zero,
    Int(i64),
    NotInteger,
    /// Written by an operation of the batch in a form the play does not follow.
    Unknown,
}

impl Count {
    fn of(value: Option<&[u8]>) -> Self {
        match value {
            None => Count::Zero,
            Some(bytes) => redis_integer(bytes).map_or(Count::NotInteger, Count::Int),
        }
    }

    /// The count after adding `by`, or Redis's error; `what` names the key (or the hash field).
    fn add(self, by: i64, what: &str, in_hash: bool) -> Result<Count, Refusal> {
        match self {
            Count::Zero => Ok(Count::Int(by)),
            Count::Int(n) => n
                .checked_add(by)
                .map(Count::Int)
                .ok_or_else(|| Refusal(format!("ERR increment or decrement would overflow: {what} holds {n}"))),
            Count::NotInteger => Err(Refusal(format!(
                "{}: {what} holds a value {} cannot count on",
                if in_hash { "ERR hash value is not an integer" } else { "ERR value is not an integer or out of range" },
                if in_hash { "HINCRBY" } else { "INCRBY" }
            ))),
            Count::Unknown => Ok(Count::Unknown),
        }
    }
}

/// An integer as Redis reads one for INCRBY/HINCRBY (`string2ll`): an optional `-` and digits,
/// no leading zero (but `0`), no `+`, no spaces, `-0` refused, within 64 bits.
pub fn redis_integer(bytes: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let digits = text.strip_prefix('-').unwrap_or(text);
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && text != "-0";
    if canonical { text.parse().ok() } else { None }
}

/// The state of one key during the play.
#[derive(Debug, Clone)]
struct Key<'k> {
    held: Held,
    /// A hash or set that an HDEL/SREM may have emptied (and Redis deleted).
    maybe_gone: bool,
    count: Count,
    fields: HashMap<&'k str, Count>,
}

impl Key<'_> {
    fn holding(held: Held, count: Count) -> Self {
        Self { held, maybe_gone: false, count, fields: HashMap::new() }
    }
}

/// The operations of one batch played in order over what was read: [`Play::apply`] refuses
/// the first one Redis would refuse.
pub struct Play<'o, 'k> {
    observed: &'o Observed<'k>,
    keys: HashMap<&'k str, Key<'k>>,
}

impl<'o, 'k> Play<'o, 'k> {
    pub fn new(observed: &'o Observed<'k>) -> Self {
        Self { observed, keys: HashMap::new() }
    }

    fn key(&mut self, name: &'k str) -> &mut Key<'k> {
        let observed = self.observed;
        self.keys.entry(name).or_insert_with(|| {
            let held = observed.types.get(name).cloned().unwrap_or(Held::Nothing);
            let count = match (&held, observed.counters.get(name)) {
                (Held::Nothing, _) => Count::Zero,
                (_, Some(value)) => Count::of(value.as_deref()),
                (_, None) => Count::Unknown,
            };
            Key::holding(held, count)
        })
    }

    fn field(&mut self, key: &'k str, field: &'k str) -> Count {
        let observed = self.observed;
        let state = self.key(key);
        if let Some(count) = state.fields.get(field) {
            return *count;
        }
        if state.held == Held::Nothing {
            return Count::Zero;
        }
        match observed.hash_counters.get(&(key, field)) {
            Some(value) => Count::of(value.as_deref()),
            None => Count::Unknown,
        }
    }

    /// Checks that `key` can hold `needed`, and that it holds it from now on.
    fn needs(&mut self, key: &'k str, needed: KeyType, op: &RedisOp) -> Result<(), Refusal> {
        let state = self.key(key);
        let refused = |holds: &str| {
            Err(Refusal(format!(
                "WRONGTYPE Operation against a key holding the wrong kind of value: `{key}` holds a {holds}, and {} needs a {}",
                op.name(),
                needed.name()
            )))
        };
        match &state.held {
            Held::Type(t) if *t == needed => return Ok(()),
            // The counters read stay what they are.
            Held::Maybe(t) if *t == needed => {
                state.held = Held::Type(needed);
                return Ok(());
            }
            Held::Nothing => {}
            // Emptied (so deleted) or not: the EXEC's reply will tell.
            Held::Type(_) if state.maybe_gone => {}
            Held::Maybe(_) => {}
            Held::Type(t) => return refused(t.name()),
            Held::Other(name) => return refused(&name.clone()),
        }
        *state = Key::holding(Held::Type(needed), Count::Zero);
        Ok(())
    }

    /// Plays one operation.
    pub fn apply(&mut self, op: &'k RedisOp) -> Result<(), Refusal> {
        if let Some(needed) = op.needs() {
            self.needs(&op.keys()[0], needed, op)?;
        }
        match op {
            RedisOp::Set { key, value, .. } => {
                *self.key(key) = Key::holding(Held::Type(KeyType::String), Count::of(Some(value)));
            }
            RedisOp::Del { keys } => {
                for key in keys {
                    *self.key(key) = Key::holding(Held::Nothing, Count::Zero);
                }
            }
            RedisOp::IncrBy { key, by } => {
                let state = self.key(key);
                state.count = state.count.add(*by, &format!("`{key}`"), false)?;
            }
            RedisOp::HashIncrBy { key, field, by } => {
                let count = self.field(key, field).add(*by, &format!("field `{field}` of `{key}`"), true)?;
                self.key(key).fields.insert(field, count);
            }
            RedisOp::HashSet { key, fields } => {
                let state = self.key(key);
                for (name, value) in fields {
                    state.fields.insert(name, Count::of(Some(value)));
                }
            }
            RedisOp::HashDel { key, fields } => {
                let state = self.key(key);
                for name in fields {
                    state.fields.insert(name, Count::Zero);
                }
                state.maybe_gone = true;
            }
            RedisOp::SetRemove { key, .. } => self.key(key).maybe_gone = true,
            RedisOp::SetAdd { key, .. } | RedisOp::ListPush { key, .. } | RedisOp::StreamAdd { key, .. } => {
                self.key(key).maybe_gone = false;
            }
            RedisOp::Expire { .. } => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed<'k>(types: &[(&'k str, &str)], counters: &[(&'k str, Option<&str>)]) -> Observed<'k> {
        Observed {
            types: types.iter().map(|(k, t)| (*k, Held::from_type(t))).collect(),
            counters: counters.iter().map(|(k, v)| (*k, v.map(|v| v.as_bytes().to_vec()))).collect(),
            hash_counters: HashMap::new(),
        }
    }

    fn play<'k>(observed: &Observed<'k>, ops: &'k [RedisOp]) -> Result<(), (usize, String)> {
        let mut play = Play::new(observed);
        ops.iter().enumerate().try_for_each(|(i, op)| play.apply(op).map_err(|r| (i, r.0)))
    }

    fn set(key: &str, value: &str) -> RedisOp {
        RedisOp::Set { key: key.into(), value: value.as_bytes().to_vec(), ttl_ms: None }
    }

    fn incr(key: &str, by: i64) -> RedisOp {
        RedisOp::IncrBy { key: key.into(), by }
    }

    fn hset(key: &str) -> RedisOp {
        RedisOp::HashSet { key: key.into(), fields: vec![("f".into(), b"v".to_vec())] }
    }

    #[test]
    fn reads_integers_as_redis_does() {
        for (text, value) in [("0", Some(0)), ("-5", Some(-5)), ("9223372036854775807", Some(i64::MAX)), ("007", None), ("-0", None), ("+5", None), (" 5", None), ("", None), ("-", None), ("9223372036854775808", None)] {
            assert_eq!(redis_integer(text.as_bytes()), value, "{text:?}");
        }
    }

    #[test]
    fn finds_the_first_command_redis_would_refuse() {
        let seen = observed(&[("s", "string"), ("h", "hash"), ("z", "zset")], &[("s", Some("41"))]);
        assert_eq!(play(&seen, &[incr("s", 1), incr("new", 2), hset("h"), hset("new-hash")]), Ok(()));
        let (at, why) = play(&seen, &[incr("s", 1), hset("s")]).unwrap_err();
        assert_eq!(at, 1);
        assert!(why.starts_with("WRONGTYPE Operation against a key holding the wrong kind of value: `s` holds a string, and RedisHashSet needs a hash"), "{why}");
        let (_, why) = play(&seen, &[RedisOp::SetAdd { key: "z".into(), members: vec![b"m".to_vec()] }]).unwrap_err();
        assert!(why.contains("`z` holds a zset"), "{why}");
        // Types change within the batch as the operations say.
        assert_eq!(play(&seen, &[RedisOp::Del { keys: vec!["h".into()] }, incr("h", 1)]), Ok(()));
        assert_eq!(play(&seen, &[set("h", "x"), RedisOp::Expire { key: "h".into(), ttl_ms: 5 }]), Ok(()));
        assert_eq!(play(&seen, &[hset("x"), incr("x", 1)]).unwrap_err().0, 1);
        // Read through a counter: a string or nothing, its count kept; another type refused.
        let mut counted = observed(&[], &[("c", Some("5"))]);
        counted.types.insert("c", Held::Maybe(KeyType::String));
        counted.types.insert("w", Held::Other("type other than string".into()));
        assert_eq!(play(&counted, &[incr("c", i64::MAX - 5)]), Ok(()));
        assert!(play(&counted, &[incr("c", i64::MAX - 4)]).unwrap_err().1.contains("would overflow: `c` holds 5"));
        assert!(play(&counted, &[incr("w", 1)]).unwrap_err().1.contains("`w` holds a type other than string, and RedisIncrBy needs a string"));
    }

    #[test]
    fn follows_counters_through_the_batch() {
        let seen = observed(&[("n", "string"), ("t", "string")], &[("n", Some("9223372036854775806")), ("t", Some("abc"))]);
        assert_eq!(play(&seen, &[incr("n", 1)]), Ok(()));
        let (at, why) = play(&seen, &[incr("n", 1), incr("n", 1)]).unwrap_err();
        assert_eq!(at, 1);
        assert!(why.starts_with("ERR increment or decrement would overflow: `n` holds 9223372036854775807"), "{why}");
        assert!(play(&seen, &[incr("t", 1)]).unwrap_err().1.starts_with("ERR value is not an integer or out of range"));
        assert_eq!(play(&seen, &[set("t", "5"), incr("t", 1)]), Ok(()));
        assert_eq!(play(&seen, &[set("n", "x"), incr("n", 1)]).unwrap_err().0, 1);
        let mut fields = observed(&[("g", "hash")], &[]);
        fields.hash_counters.insert(("g", "c"), Some(b"x".to_vec()));
        let hincr = |by| RedisOp::HashIncrBy { key: "g".into(), field: "c".into(), by };
        assert!(play(&fields, &[hincr(1)]).unwrap_err().1.starts_with("ERR hash value is not an integer: field `c` of `g` holds a value HINCRBY cannot count on"));
        let reset = RedisOp::HashSet { key: "g".into(), fields: vec![("c".into(), b"1".to_vec())] };
        assert_eq!(play(&fields, &[reset, hincr(1)]), Ok(()));
    }
}

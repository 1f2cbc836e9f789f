//! Decodes the sidecar's MongoDB operations (`projection.InsertOne` ... `DeleteMany`, and
//! `ReplaceOne`) into [`MongoOp`], converting their Structs to BSON once, at the edge, and
//! rejecting what MongoDB would refuse for sure: a missing filter, an update document without
//! update operators, a replacement with them, an empty insert.

use std::fmt;

use mongodb::bson::{Bson, Document};
use prost::Message;
use prost_types::{Any, Struct};

use super::bson::{IntegerFields, to_document};
use crate::{
    proto::{self, names},
    sinks::DecodeError,
};

/// A MongoDB operation, validated and converted.
#[derive(Debug, Clone, PartialEq)]
pub struct MongoOp {
    /// The collection named by the operation; `None`: the connector's default collection.
    pub collection: Option<String>,
    pub write: Write,
}

/// What the operation does. Updates and replacements are upserts (as Eventuous's are).
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    Insert { documents: Vec<Document> },
    Update { filter: Document, update: Update, multi: bool },
    Replace { filter: Document, replacement: Document },
    Delete { filter: Document, multi: bool },
}

/// An update: operators (`{"$set": ...}`) or an aggregation pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    Operators(Document),
    Pipeline(Vec<Document>),
}

impl Update {
    pub fn to_bson(&self) -> Bson {
        match self {
            Update::Operators(d) => Bson::Document(d.clone()),
            Update::Pipeline(stages) => Bson::Array(stages.iter().cloned().map(Bson::Document).collect()),
        }
    }
}

impl Write {
    /// The operation's name in the contract.
    pub fn name(&self) -> &'static str {
        match self {
            Write::Insert { documents } if documents.len() == 1 => "InsertOne",
            Write::Insert { .. } => "InsertMany",
            Write::Update { multi: false, .. } => "UpdateOne",
            Write::Update { multi: true, .. } => "UpdateMany",
            Write::Replace { .. } => "ReplaceOne",
            Write::Delete { multi: false, .. } => "DeleteOne",
            Write::Delete { multi: true, .. } => "DeleteMany",
        }
    }
}

impl fmt::Display for MongoOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on = self.collection.as_deref().map(|c| format!(" on `{c}`")).unwrap_or_default();
        write!(f, "{}{on}", self.write.name())?;
        match &self.write {
            Write::Insert { documents } => write!(f, " of {} document(s), first {}", documents.len(), short(&documents[0])),
            Write::Update { filter, update, .. } => {
                write!(f, " filter {} update {}", short(filter), truncate(&update.to_bson().to_string(), 200))
            }
            Write::Replace { filter, replacement } => write!(f, " filter {} replacement {}", short(filter), short(replacement)),
            Write::Delete { filter, .. } => write!(f, " filter {}", short(filter)),
        }
    }
}

fn short(d: &Document) -> String {
    truncate(&d.to_string(), 200)
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max { s.to_string() } else { format!("{}...", s.chars().take(max).collect::<String>()) }
}

const EXPECTED: &str = "`projection.InsertOne`, `InsertMany`, `UpdateOne`, `UpdateMany`, `ReplaceOne`, `DeleteOne`, `DeleteMany` and `projection.Ignore`";

/// Decodes one operation; `Ok(None)` for Ignore.
pub fn decode_mongo_op(any: &Any) -> Result<Option<MongoOp>, DecodeError> {
    let name = proto::message_name(any);
    let malformed = |reason: String| DecodeError::Malformed { name: name.to_string(), reason };
    let bytes = any.value.as_slice();
    let (collection, write) = match name {
        names::IGNORE => return Ok(None),
        names::INSERT_ONE => {
            let op = proto::InsertOne::decode(bytes).map_err(|e| malformed(e.to_string()))?;
            let ints = IntegerFields::new(op.integer_fields);
            let document = required(op.document.as_ref(), "document", &ints).map_err(malformed)?;
            (op.collection, Write::Insert { documents: vec![document] })
        }
        names::INSERT_MANY => {
            let op = proto::InsertMany::decode(bytes).map_err(|e| malformed(e.to_string()))?;
            let ints = IntegerFields::new(op.integer_fields);
            if op.documents.is_empty() {
                return Err(malformed("`documents` is empty".into()));
            }
            let documents = op
                .documents
                .iter()
                .enumerate()
                .map(|(i, d)| to_document(d, &ints).map_err(|e| format!("documents[{i}]: {e}")))
                .collect::<Result<_, _>>()
                .map_err(malformed)?;
            (op.collection, Write::Insert { documents })
        }
        names::UPDATE_ONE | names::UPDATE_MANY => {
            // Both messages have the same fields and numbers.
            let op = proto::UpdateOne::decode(bytes).map_err(|e| malformed(e.to_string()))?;
            let ints = IntegerFields::new(op.integer_fields);
            let filter = required(op.filter.as_ref(), "filter", &ints).map_err(malformed)?;
            let update = update(op.update.as_ref(), &op.pipeline, &ints).map_err(malformed)?;
            (op.collection, Write::Update { filter, update, multi: name == names::UPDATE_MANY })
        }
        names::REPLACE_ONE => {
            let op = proto::ReplaceOne::decode(bytes).map_err(|e| malformed(e.to_string()))?;
            let ints = IntegerFields::new(op.integer_fields);
            let filter = required(op.filter.as_ref(), "filter", &ints).map_err(malformed)?;
            let replacement = required(op.replacement.as_ref(), "replacement", &ints).map_err(malformed)?;
            if let Some(key) = replacement.keys().find(|k| k.starts_with('$')) {
                return Err(malformed(format!(
                    "`replacement` is a whole document and cannot hold the update operator `{key}`; send UpdateOne for operators"
                )));
            }
            (op.collection, Write::Replace { filter, replacement })
        }
        names::DELETE_ONE | names::DELETE_MANY => {
            let op = proto::DeleteOne::decode(bytes).map_err(|e| malformed(e.to_string()))?;
            let ints = IntegerFields::new(op.integer_fields);
            let filter = required(op.filter.as_ref(), "filter", &ints).map_err(malformed)?;
            (op.collection, Write::Delete { filter, multi: name == names::DELETE_MANY })
        }
        other => return Err(DecodeError::Unsupported { name: other.to_string(), sink: "mongo", expected: EXPECTED }),
    };
    let collection = if collection.is_empty() {
        None
    } else if collection.contains(['$', '\0']) || collection.starts_with("system.") {
        return Err(malformed(format!("`collection` {collection:?} is not a valid collection name")));
    } else if collection.len() > 255 {
        // A namespace (`<database>.<collection>`) is at most 255 bytes.
        return Err(malformed(format!("`collection` is {} bytes long; MongoDB takes at most 255 with the database name", collection.len())));
    } else {
        Some(collection)
    };
    Ok(Some(MongoOp { collection, write }))
}

/// A Struct the operation cannot do without (an explicit `{}` is fine: it matches everything).
fn required(s: Option<&Struct>, field: &str, ints: &IntegerFields) -> Result<Document, String> {
    let s = s.ok_or_else(|| format!("`{field}` is missing (send {{}} to match every document)"))?;
    to_document(s, ints).map_err(|e| format!("{field}: {e}"))
}

fn update(update: Option<&Struct>, pipeline: &[Struct], ints: &IntegerFields) -> Result<Update, String> {
    if !pipeline.is_empty() {
        if update.is_some_and(|u| !u.fields.is_empty()) {
            return Err("both `update` and `pipeline` are set; send one".into());
        }
        let stages = pipeline
            .iter()
            .enumerate()
            .map(|(i, stage)| to_document(stage, ints).map_err(|e| format!("pipeline[{i}]: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Update::Pipeline(stages));
    }
    let update = required(update, "update", ints)?;
    if update.is_empty() {
        return Err("`update` is empty; it needs update operators such as `$set`".into());
    }
    if let Some(key) = update.keys().find(|k| !k.starts_with('$')) {
        return Err(format!(
            "invalid update document: `{key}` is not an update operator (an update holds only operators such as `$set` and `$inc`; send ReplaceOne to replace a whole document)"
        ));
    }
    Ok(Update::Operators(update))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{payload::json_to_struct, proto::pack};
    use mongodb::bson::doc;

    fn st(json: &str) -> Struct {
        json_to_struct(json.as_bytes()).unwrap()
    }

    #[test]
    fn decodes_every_operation() {
        let insert = pack(names::INSERT_ONE, &proto::InsertOne { document: Some(st(r#"{"_id": "a", "n": 1}"#)), collection: "c2".into(), integer_fields: vec!["n".into()] });
        assert_eq!(
            decode_mongo_op(&insert).unwrap().unwrap(),
            MongoOp { collection: Some("c2".into()), write: Write::Insert { documents: vec![doc! {"_id": "a", "n": 1_i64}] } }
        );
        let many = pack(names::UPDATE_MANY, &proto::UpdateMany { filter: Some(st("{}")), update: Some(st(r#"{"$set": {"x": true}}"#)), ..Default::default() });
        assert_eq!(
            decode_mongo_op(&many).unwrap().unwrap().write,
            Write::Update { filter: doc! {}, update: Update::Operators(doc! {"$set": {"x": true}}), multi: true }
        );
        let pipeline = pack(names::UPDATE_ONE, &proto::UpdateOne { filter: Some(st(r#"{"_id": 1}"#)), pipeline: vec![st(r#"{"$set": {"y": 2}}"#)], ..Default::default() });
        assert!(matches!(decode_mongo_op(&pipeline).unwrap().unwrap().write, Write::Update { update: Update::Pipeline(_), multi: false, .. }));
        let replace = pack(names::REPLACE_ONE, &proto::ReplaceOne { filter: Some(st(r#"{"_id": 1}"#)), replacement: Some(st(r#"{"y": 2}"#)), ..Default::default() });
        assert_eq!(decode_mongo_op(&replace).unwrap().unwrap().write.name(), "ReplaceOne");
        let delete = pack(names::DELETE_MANY, &proto::DeleteMany { filter: Some(st(r#"{"k": "x"}"#)), ..Default::default() });
        assert_eq!(decode_mongo_op(&delete).unwrap().unwrap().write, Write::Delete { filter: doc! {"k": "x"}, multi: true });
        assert_eq!(decode_mongo_op(&pack(names::IGNORE, &proto::Ignore {})).unwrap(), None);
    }

    #[test]
    fn rejects_what_mongodb_would_refuse_with_the_reason() {
        let reason = |any: Any| decode_mongo_op(&any).unwrap_err().to_string();
        let no_ops = pack(names::UPDATE_ONE, &proto::UpdateOne { filter: Some(st("{}")), update: Some(st(r#"{"x": 1}"#)), ..Default::default() });
        assert!(reason(no_ops).contains("invalid update document: `x` is not an update operator"));
        let no_filter = pack(names::DELETE_MANY, &proto::DeleteMany::default());
        assert!(reason(no_filter).contains("`filter` is missing"));
        let ops_in_replacement = pack(names::REPLACE_ONE, &proto::ReplaceOne { filter: Some(st("{}")), replacement: Some(st(r#"{"$set": {}}"#)), ..Default::default() });
        assert!(reason(ops_in_replacement).contains("cannot hold the update operator `$set`"));
        let empty = pack(names::INSERT_MANY, &proto::InsertMany::default());
        assert!(reason(empty).contains("`documents` is empty"));
        let bad_collection = pack(names::INSERT_ONE, &proto::InsertOne { document: Some(st("{}")), collection: "a$b".into(), ..Default::default() });
        assert!(reason(bad_collection).contains("is not a valid collection name"));
        let long_collection = pack(names::DELETE_ONE, &proto::DeleteOne { filter: Some(st("{}")), collection: "c".repeat(256), ..Default::default() });
        assert!(reason(long_collection).contains("`collection` is 256 bytes long; MongoDB takes at most 255"));
        let sql = pack(names::STATEMENT, &proto::Statement { sql: "x".into(), params: vec![] });
        assert!(reason(sql).starts_with("unknown operation `projection.Statement` for the mongo sink"));
    }
}

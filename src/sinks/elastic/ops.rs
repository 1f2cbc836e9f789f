//! Decodes the sidecar's Elasticsearch operations (`projection.Index`, `Update`, `UpdateScript`,
//! `Delete`) into [`ElasticOp`], once, at the edge: ids and index names are checked, and every
//! Struct is turned into the JSON text the `_bulk` request carries, so applying a batch only
//! concatenates bytes.

use std::fmt;

use bytes::Bytes;
use prost::Message;
use prost_types::{Any, Struct};

use super::{index_name_problem, json::to_json};
use crate::{
    proto::{self, names},
    sinks::DecodeError,
};

/// Full names of the Elasticsearch operation messages.
pub mod elastic_names {
    pub const INDEX: &str = "projection.Index";
    pub const UPDATE: &str = "projection.Update";
    pub const UPDATE_SCRIPT: &str = "projection.UpdateScript";
    pub const DELETE: &str = "projection.Delete";
}

const EXPECTED: &str = "`projection.Index`, `Update`, `UpdateScript`, `Delete` and `projection.Ignore`";

/// One document operation, validated, its JSON ready.
#[derive(Debug, Clone, PartialEq)]
pub struct ElasticOp {
    /// The index named by the operation; `None`: the connector's default index.
    pub index: Option<String>,
    pub id: String,
    pub action: Action,
}

/// What the operation does to the document `id`.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Creates or replaces the document; with `external_version`, only when the event's
    /// position is at least the stored document's version.
    Index { source: Bytes, external_version: bool },
    /// Creates the document; one that exists already was written by an earlier delivery of the
    /// same event (producer mode: the id is the event id).
    Create { source: Bytes },
    /// The body of a `_bulk` update: `{"doc": ...}` or `{"script": ...}`, with its upsert.
    Update { body: Bytes, scripted: bool },
    /// Deletes the document (a missing one is fine); with `external_version`, versioned by the
    /// event's position.
    Delete { external_version: bool },
}

impl ElasticOp {
    /// The operation's name in the contract.
    pub fn name(&self) -> &'static str {
        match &self.action {
            Action::Index { .. } => "Index",
            Action::Create { .. } => "Create",
            Action::Update { scripted: false, .. } => "Update",
            Action::Update { scripted: true, .. } => "UpdateScript",
            Action::Delete { .. } => "Delete",
        }
    }

    /// Whether the engine's version conflict on this operation means "a newer or the same
    /// write is there already" (a replay), rather than a concurrent change.
    pub fn conflict_means_applied(&self) -> bool {
        matches!(
            self.action,
            Action::Create { .. } | Action::Index { external_version: true, .. } | Action::Delete { external_version: true }
        )
    }
}

impl fmt::Display for ElasticOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of `{}`", self.name(), self.id)?;
        if let Some(index) = &self.index {
            write!(f, " in `{index}`")?;
        }
        match &self.action {
            Action::Index { source, external_version } => {
                write!(f, "{} {}", if *external_version { " (external version)" } else { "" }, preview(source))
            }
            Action::Create { source } => write!(f, " {}", preview(source)),
            Action::Update { body, .. } => write!(f, " {}", preview(body)),
            Action::Delete { external_version: true } => write!(f, " (external version)"),
            Action::Delete { external_version: false } => Ok(()),
        }
    }
}

fn preview(json: &[u8]) -> String {
    let text = String::from_utf8_lossy(json);
    if text.chars().count() <= 200 { text.into_owned() } else { format!("{}...", text.chars().take(200).collect::<String>()) }
}

/// Decodes one operation; `Ok(None)` for Ignore.
pub fn decode_elastic_op(any: &Any) -> Result<Option<ElasticOp>, DecodeError> {
    let name = proto::message_name(any);
    let malformed = |reason: String| DecodeError::Malformed { name: name.to_string(), reason };
    let bytes = any.value.as_slice();
    let (id, index, action) = match name {
        names::IGNORE => return Ok(None),
        elastic_names::INDEX => {
            let op = proto::Index::decode(bytes).map_err(|e| malformed(e.to_string()))?;
            let source = document(op.document.as_ref(), "document").map_err(malformed)?;
            (op.id, op.index, Action::Index { source, external_version: op.external_version })
        }
        elastic_names::UPDATE => {
            let op = proto::Update::decode(bytes).map_err(|e| malformed(e.to_string()))?;
            let doc = document(op.document.as_ref(), "document").map_err(malformed)?;
            let mut body = Vec::with_capacity(doc.len() + 32);
            body.extend_from_slice(b"{\"doc\":");
            body.extend_from_slice(&doc);
            match op.upsert.as_ref() {
                Some(upsert) => {
                    body.extend_from_slice(b",\"upsert\":");
                    body.extend_from_slice(&document(Some(upsert), "upsert").map_err(malformed)?);
                }
                None if op.doc_as_upsert => body.extend_from_slice(b",\"doc_as_upsert\":true"),
                None => {}
            }
            body.push(b'}');
            (op.id, op.index, Action::Update { body: body.into(), scripted: false })
        }
        elastic_names::UPDATE_SCRIPT => {
            let op = proto::UpdateScript::decode(bytes).map_err(|e| malformed(e.to_string()))?;
            let script = op.script.ok_or_else(|| malformed("`script` is missing".into()))?;
            if script.source.trim().is_empty() {
                return Err(malformed("`script.source` is empty".into()));
            }
            let mut body = b"{\"script\":{\"source\":".to_vec();
            body.extend_from_slice(&serde_json::to_vec(&script.source).map_err(|e| malformed(e.to_string()))?);
            if !script.lang.is_empty() {
                body.extend_from_slice(b",\"lang\":");
                body.extend_from_slice(&serde_json::to_vec(&script.lang).map_err(|e| malformed(e.to_string()))?);
            }
            if let Some(params) = script.params.as_ref() {
                body.extend_from_slice(b",\"params\":");
                body.extend_from_slice(&document(Some(params), "script.params").map_err(malformed)?);
            }
            body.push(b'}');
            if let Some(upsert) = op.upsert.as_ref() {
                body.extend_from_slice(b",\"upsert\":");
                body.extend_from_slice(&document(Some(upsert), "upsert").map_err(malformed)?);
            }
            body.push(b'}');
            (op.id, op.index, Action::Update { body: body.into(), scripted: true })
        }
        elastic_names::DELETE => {
            let op = proto::Delete::decode(bytes).map_err(|e| malformed(e.to_string()))?;
            (op.id, op.index, Action::Delete { external_version: op.external_version })
        }
        other => return Err(DecodeError::Unsupported { name: other.to_string(), sink: "elastic", expected: EXPECTED }),
    };
    if id.is_empty() {
        return Err(malformed("`id` is empty; every operation names its document (a stable id keeps replays idempotent)".into()));
    }
    if id.len() > 512 {
        return Err(malformed(format!("`id` is {} bytes long; the engine takes at most 512", id.len())));
    }
    let index = if index.is_empty() {
        None
    } else if let Some(problem) = index_name_problem(&index) {
        return Err(malformed(format!("`index` {index:?} {problem}")));
    } else {
        Some(index)
    };
    Ok(Some(ElasticOp { index, id, action }))
}

/// A Struct the operation cannot do without, as JSON.
fn document(s: Option<&Struct>, field: &str) -> Result<Bytes, String> {
    let s = s.ok_or_else(|| format!("`{field}` is missing"))?;
    to_json(s).map(Bytes::from).map_err(|e| format!("`{field}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{payload::json_to_struct, proto::pack};

    fn st(json: &str) -> Struct {
        json_to_struct(json.as_bytes()).unwrap()
    }

    fn text(b: &Bytes) -> &str {
        std::str::from_utf8(b).unwrap()
    }

    #[test]
    fn decodes_every_operation() {
        let index = pack(elastic_names::INDEX, &proto::Index { id: "a".into(), document: Some(st(r#"{"n": 1}"#)), index: "other".into(), external_version: true });
        let op = decode_elastic_op(&index).unwrap().unwrap();
        assert_eq!((op.index.as_deref(), op.id.as_str()), (Some("other"), "a"));
        assert!(matches!(&op.action, Action::Index { source, external_version: true } if text(source) == r#"{"n":1}"#));
        assert!(op.conflict_means_applied());

        let update = pack(elastic_names::UPDATE, &proto::Update { id: "a".into(), document: Some(st(r#"{"s": "x"}"#)), doc_as_upsert: true, ..Default::default() });
        let op = decode_elastic_op(&update).unwrap().unwrap();
        assert!(matches!(&op.action, Action::Update { body, scripted: false } if text(body) == r#"{"doc":{"s":"x"},"doc_as_upsert":true}"#));
        assert!(!op.conflict_means_applied());
        let upsert = pack(elastic_names::UPDATE, &proto::Update { id: "a".into(), document: Some(st(r#"{"s": "x"}"#)), upsert: Some(st(r#"{"s": "new"}"#)), doc_as_upsert: true, ..Default::default() });
        assert!(matches!(&decode_elastic_op(&upsert).unwrap().unwrap().action, Action::Update { body, .. } if text(body) == r#"{"doc":{"s":"x"},"upsert":{"s":"new"}}"#));

        let script = pack(
            elastic_names::UPDATE_SCRIPT,
            &proto::UpdateScript {
                id: "c".into(),
                script: Some(proto::Script { lang: "painless".into(), source: "ctx._source.n += params.k".into(), params: Some(st(r#"{"k": 2}"#)) }),
                upsert: Some(st(r#"{"n": 0}"#)),
                ..Default::default()
            },
        );
        assert!(matches!(&decode_elastic_op(&script).unwrap().unwrap().action, Action::Update { body, scripted: true }
            if text(body) == r#"{"script":{"source":"ctx._source.n += params.k","lang":"painless","params":{"k":2}},"upsert":{"n":0}}"#));

        let delete = pack(elastic_names::DELETE, &proto::Delete { id: "d".into(), ..Default::default() });
        assert_eq!(decode_elastic_op(&delete).unwrap().unwrap(), ElasticOp { index: None, id: "d".into(), action: Action::Delete { external_version: false } });
        assert_eq!(decode_elastic_op(&pack(names::IGNORE, &proto::Ignore {})).unwrap(), None);
    }

    #[test]
    fn rejects_what_the_engine_would_refuse_with_the_reason() {
        let reason = |any: Any| decode_elastic_op(&any).unwrap_err().to_string();
        assert!(reason(pack(elastic_names::DELETE, &proto::Delete::default())).contains("`id` is empty"));
        let no_doc = pack(elastic_names::INDEX, &proto::Index { id: "a".into(), ..Default::default() });
        assert!(reason(no_doc).contains("`document` is missing"));
        let bad_index = pack(elastic_names::DELETE, &proto::Delete { id: "a".into(), index: "Bookings".into(), ..Default::default() });
        assert!(reason(bad_index).contains("`index` \"Bookings\" must be lowercase"), "{}", reason(pack(elastic_names::DELETE, &proto::Delete { id: "a".into(), index: "Bookings".into(), ..Default::default() })));
        let sql = pack(names::STATEMENT, &proto::Statement { sql: "x".into(), params: vec![] });
        assert!(reason(sql).starts_with("unknown operation `projection.Statement` for the elastic sink"));
    }
}

//! Producer mode: the events themselves become documents, an archive of the log in the engine.
//! Each event is one `create` of the document whose id is the event id, so an event delivered
//! twice is refused as a version conflict and counted as already there; the target is one
//! index (or data stream), or one per stream category when the name holds `{category}`. At
//! start the index template for those names is created or replaced, with mappings for the
//! envelope (type, stream, position, times) and the payload as an object or flattened.

use base64::Engine as _;
use bytes::Bytes;
use elasticsearch::{
    Elasticsearch,
    http::{Method, headers::HeaderMap},
};
use serde::Serialize;
use serde::de::IgnoredAny;
use serde_json::json;

use super::{
    Names,
    client::{self, Engine, RequestError, encode_segment},
    index_name_problem,
    ops::{Action, ElasticOp},
};
use crate::{
    config::{ElasticLifecyclePolicy, ElasticPayloadMapping, ElasticProducerConfig},
    event::ContentType,
    sinks::{DecodeError, EventRef, SinkError},
};

const CATEGORY: &str = "{category}";

/// Where and how events are written.
#[derive(Debug)]
pub struct Producer {
    /// The index name, `{category}` standing for the stream's category.
    index: String,
    data_stream: bool,
}

/// The envelope of an archived event; the payload and metadata are spliced in after it as
/// they are stored.
#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: &'a str,
    event_id: &'a str,
    event_type: &'a str,
    stream: &'a str,
    category: &'a str,
    stream_revision: u64,
    position: u64,
    created: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_raw: Option<String>,
}

/// The bytes when they are one valid JSON object.
fn json_object(bytes: &[u8]) -> Option<&[u8]> {
    let starts_as_object = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    (starts_as_object && serde_json::from_slice::<IgnoredAny>(bytes).is_ok()).then_some(bytes)
}

impl Producer {
    /// Creates (or replaces) the index template, then returns the producer.
    pub async fn start(client: &Elasticsearch, names: &Names, config: &ElasticProducerConfig, engine: Engine) -> Result<Self, SinkError> {
        let pattern = config.index.replace(CATEGORY, "*");
        let template = template_name(config);
        let payload = match config.payload {
            ElasticPayloadMapping::Object => json!({"type": "object"}),
            ElasticPayloadMapping::Flattened => json!({"type": engine.flattened_type()}),
        };
        let mut settings = config.settings.clone();
        if let Some(lifecycle) = &config.lifecycle_policy {
            ensure_lifecycle_policy(client, names, lifecycle).await?;
            settings.entry("index.lifecycle.name".into()).or_insert_with(|| lifecycle.name.clone().into());
        }
        let mut body = json!({
            "index_patterns": [pattern],
            "priority": config.template_priority,
            "_meta": {"managed_by": "projector-gateway"},
            "template": {
                "settings": settings,
                "mappings": {"properties": {
                    "@timestamp": {"type": "date"},
                    "event_id": {"type": "keyword"},
                    "event_type": {"type": "keyword"},
                    "stream": {"type": "keyword"},
                    "category": {"type": "keyword"},
                    "stream_revision": {"type": "long"},
                    "position": {"type": "long"},
                    "created": {"type": "date"},
                    "payload": payload,
                    "payload_raw": {"type": "binary"},
                    "metadata": {"type": "object", "enabled": false},
                }},
            },
        });
        if config.data_stream {
            body["data_stream"] = json!({});
        }
        let path = format!("/_index_template/{}", encode_segment(&template));
        client::send(client, Method::Put, &path, Some(body.to_string().into_bytes())).await.map_err(|e| {
            SinkError::schema(format!(
                "Elasticsearch target `{}`: cannot create the index template `{template}` for `{pattern}`: {}",
                names.display, e.message
            ))
            .unreachable_if(e.transient)
        })?;
        Ok(Self { index: config.index.clone(), data_stream: config.data_stream })
    }

    /// What the log says where events go, e.g. `data streams events-{category}`.
    pub fn describe(&self) -> String {
        format!("{} {}", if self.data_stream { "data stream(s)" } else { "index(es)" }, self.index)
    }

    /// The `create` of the event's document.
    pub fn produce(&self, event: &EventRef) -> Result<ElasticOp, DecodeError> {
        let e = &event.event;
        let malformed = |reason: String| DecodeError::Malformed { name: "event".into(), reason };
        let category = category_of(&e.stream);
        let index = self.index.replace(CATEGORY, &category);
        if let Some(problem) = index_name_problem(&index) {
            return Err(malformed(format!("the index name `{index}` made from stream `{}` {problem}", e.stream)));
        }
        let created = e.created.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        // The payload as stored when it is a JSON object (no re-encoding); anything else as
        // base64 in `payload_raw`, so one odd event does not fail on the `payload` mapping.
        let object = match e.content_type {
            ContentType::Json => json_object(&e.data),
            ContentType::Binary => None,
        };
        let raw = object.is_none().then(|| base64::engine::general_purpose::STANDARD.encode(&e.data));
        let metadata = e.metadata.as_deref().and_then(json_object);
        let envelope = Envelope {
            timestamp: &created,
            event_id: &e.event_id,
            event_type: &e.event_type,
            stream: &e.stream,
            category: &category,
            stream_revision: e.revision,
            position: e.position,
            created: &created,
            payload_raw: raw,
        };
        let mut source = serde_json::to_vec(&envelope).map_err(|err| malformed(err.to_string()))?;
        source.pop(); // the closing brace: the stored JSON objects go in as they are
        for (key, value) in [("payload", object), ("metadata", metadata)] {
            if let Some(value) = value {
                source.extend_from_slice(format!(",\"{key}\":").as_bytes());
                source.extend_from_slice(value);
            }
        }
        source.push(b'}');
        Ok(ElasticOp { index: Some(index), id: e.event_id.clone(), action: Action::Create { source: Bytes::from(source) } })
    }
}

/// Creates the lifecycle policy unless one of that name exists (an operator may have tuned
/// it since). Engines without Elasticsearch's index lifecycle management (OpenSearch, which
/// has ISM instead; distributions without the ILM module) stop the start with a message.
async fn ensure_lifecycle_policy(client: &Elasticsearch, names: &Names, lifecycle: &ElasticLifecyclePolicy) -> Result<(), SinkError> {
    let path = format!("/_ilm/policy/{}", encode_segment(&lifecycle.name));
    let failed = |what: &str, e: RequestError| {
        SinkError::schema(format!(
            "Elasticsearch target `{}`: cannot {what} the lifecycle policy `{}`: {}; the engine needs index lifecycle management (Elasticsearch's ILM), or leave `lifecycle_policy` out and manage retention another way",
            names.display, lifecycle.name, e.message
        ))
        .unreachable_if(e.transient)
    };
    let response = client
        .send(Method::Get, &path, HeaderMap::new(), Option::<&()>::None, Option::<Vec<u8>>::None, None)
        .await
        .map_err(|e| failed("look up", client::transport_error(&e)))?;
    match response.status_code().as_u16() {
        200 => return Ok(()),
        // ILM's own "no such policy"; an engine without ILM answers "no handler" instead.
        404 => {
            let body = response.text().await.unwrap_or_default();
            if !body.contains("resource_not_found_exception") {
                let message = format!("HTTP 404: {}", body.chars().take(300).collect::<String>());
                return Err(failed("look up", RequestError { message, transient: false }));
            }
        }
        _ => return Err(failed("look up", client::response_error(response).await)),
    }
    let body = json!({ "policy": lifecycle.policy }).to_string().into_bytes();
    client::send(client, Method::Put, &path, Some(body)).await.map_err(|e| failed("create", e))?;
    Ok(())
}

/// The template's name: configured, or `projector-gateway-<index>` with `{category}` written
/// as `category`.
pub fn template_name(config: &ElasticProducerConfig) -> String {
    config.template.clone().unwrap_or_else(|| format!("projector-gateway-{}", config.index.replace(CATEGORY, "category")))
}

/// The stream's category as an index-name part: the part before the first `-`, lowercased,
/// characters index names cannot hold replaced by `_`.
pub fn category_of(stream: &str) -> String {
    let category = stream.split('-').next().unwrap_or_default();
    let cleaned: String = category
        .chars()
        .map(|c| if c.is_alphanumeric() || "._".contains(c) { c.to_lowercase().next().unwrap_or('_') } else { '_' })
        .collect();
    if cleaned.is_empty() { "_".into() } else { cleaned }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_make_valid_index_names() {
        assert_eq!(category_of("booking-42"), "booking");
        assert_eq!(category_of("Guest"), "guest");
        assert_eq!(category_of("a b*c-1"), "a_b_c");
        assert_eq!(category_of("-x"), "_");
        assert!(index_name_problem(&format!("events-{}", category_of("Ünïcode/Stream-1"))).is_none());
    }
}

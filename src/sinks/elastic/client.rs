//! Talking to the engine: building the official client from the configured URL (credentials
//! taken out of the URL and sent as Basic authentication, or an API key), telling
//! Elasticsearch from OpenSearch, and turning the client's and the engine's failures into one
//! line that says what kind of failure it is and whether trying again may help.
//!
//! The official client has no product check: it talks to any engine that speaks the REST API,
//! so Elasticsearch's integ-test distribution and OpenSearch work as they are. What differs
//! between them is detected here (`Engine`) from the `X-Elastic-Product` response header.

use std::time::Duration;

use elasticsearch::{
    Elasticsearch,
    auth::Credentials,
    http::{
        Method, StatusCode, Url,
        headers::HeaderMap,
        response::Response,
        transport::{SingleNodeConnectionPool, TransportBuilder},
    },
};
use serde_json::Value;

use crate::config::ElasticSinkConfig;

/// Which engine answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Elasticsearch,
    /// OpenSearch, or another engine without Elastic's product header.
    OpenSearch,
}

impl Engine {
    /// The field type that indexes a whole object as keywords.
    pub fn flattened_type(self) -> &'static str {
        match self {
            Engine::Elasticsearch => "flattened",
            Engine::OpenSearch => "flat_object",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Engine::Elasticsearch => "Elasticsearch",
            Engine::OpenSearch => "OpenSearch",
        }
    }
}

/// A failed request: one line, and whether it is worth trying again.
#[derive(Debug, Clone)]
pub struct RequestError {
    pub message: String,
    pub transient: bool,
}

/// Why the configured URL cannot be used (each message ends with what it should look like).
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("not a URL ({0}); expected e.g. `http://127.0.0.1:9200`")]
    NotAUrl(String),
    #[error("`{0}` is not an http(s) URL; expected e.g. `http://127.0.0.1:9200`")]
    NotHttp(String),
    #[error("has no host; expected e.g. `http://127.0.0.1:9200`")]
    NoHost,
    /// The URL is fine, but the HTTP client cannot be built from it (TLS setup).
    #[error("cannot build the HTTP client: {0}")]
    Client(elasticsearch::http::transport::BuildError),
}

/// Checks a URL without connecting (for the config loader).
pub fn parse_url(url: &str) -> Result<(), UrlError> {
    split_url(url).map(drop)
}

/// The URL without its credentials, and the credentials.
fn split_url(url: &str) -> Result<(Url, Option<(String, String)>), UrlError> {
    let mut parsed = Url::parse(url).map_err(|e| UrlError::NotAUrl(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(UrlError::NotHttp(parsed.scheme().to_owned()));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(UrlError::NoHost);
    }
    let credentials = if parsed.username().is_empty() {
        None
    } else {
        Some((percent_decode(parsed.username()), percent_decode(parsed.password().unwrap_or_default())))
    };
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    Ok((parsed, credentials))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The client for the configured URL, and the URL to show in messages (no credentials).
pub fn connect(config: &ElasticSinkConfig) -> Result<(Elasticsearch, String), UrlError> {
    let (url, credentials) = split_url(&config.url)?;
    let display = url.as_str().trim_end_matches('/').to_string();
    let mut builder = TransportBuilder::new(SingleNodeConnectionPool::new(url))
        .timeout(Duration::from_millis(config.request_timeout_ms.max(1)))
        .enable_meta_header(false);
    if let Some(key) = &config.api_key {
        builder = builder.auth(Credentials::EncodedApiKey(key.clone()));
    } else if let Some((user, password)) = credentials {
        builder = builder.auth(Credentials::Basic(user, password));
    }
    let transport = builder.build().map_err(UrlError::Client)?;
    Ok((Elasticsearch::new(transport), display))
}

/// Sends a request with a JSON body (or none) and returns the response when its status is a
/// success, else the engine's error.
pub async fn send(
    client: &Elasticsearch,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<Response, RequestError> {
    let response = client
        .send(method, path, HeaderMap::new(), Option::<&()>::None, body, None)
        .await
        .map_err(|e| transport_error(&e))?;
    if response.status_code().is_success() {
        Ok(response)
    } else {
        Err(response_error(response).await)
    }
}

/// Sends a request and reads its JSON answer.
pub async fn send_json(client: &Elasticsearch, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<(Value, Engine), RequestError> {
    let response = send(client, method, path, body).await?;
    let engine = engine_of(&response);
    let json = response.json::<Value>().await.map_err(|e| transport_error(&e))?;
    Ok((json, engine))
}

/// The engine that sent a response.
pub fn engine_of(response: &Response) -> Engine {
    match response.headers().get("x-elastic-product") {
        Some(v) if v.as_bytes().eq_ignore_ascii_case(b"Elasticsearch") => Engine::Elasticsearch,
        _ => Engine::OpenSearch,
    }
}

/// A request that got no HTTP answer: the engine is unreachable, the connection broke, or it
/// took too long. Always worth trying again.
pub fn transport_error(e: &elasticsearch::Error) -> RequestError {
    let kind = if e.is_timeout() {
        "timed out"
    } else if is_connect(e) {
        "server unreachable"
    } else {
        "connection lost"
    };
    RequestError { message: format!("{kind}: {}", chain(e)), transient: true }
}

fn is_connect(e: &elasticsearch::Error) -> bool {
    let text = chain(e).to_ascii_lowercase();
    text.contains("connect") || text.contains("refused") || text.contains("dns")
}

/// An error and its sources, joined.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// An HTTP answer that is not a success: its status and the engine's error.
pub async fn response_error(response: Response) -> RequestError {
    let status = response.status_code();
    let body = response.text().await.unwrap_or_default();
    let detail = match serde_json::from_str::<Value>(&body) {
        Ok(json) if json.get("error").is_some() => describe_error(&json["error"]),
        _ => body.chars().take(300).collect(),
    };
    RequestError { message: format!("HTTP {status}: {detail}"), transient: transient_status(status.as_u16()) }
}

/// Statuses worth retrying: too many requests, and the engine (or a proxy) not ready.
pub fn transient_status(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

/// One line for an engine's error object: `type: reason (caused by type: reason)`.
pub fn describe_error(error: &Value) -> String {
    match error {
        Value::Object(_) => {
            let part = |e: &Value| {
                let kind = e.get("type").and_then(Value::as_str).unwrap_or("error");
                let reason = e.get("reason").and_then(Value::as_str).unwrap_or("no reason given");
                format!("{kind}: {reason}")
            };
            let mut text = part(error);
            let mut cause = error.get("caused_by");
            while let Some(c) = cause {
                text.push_str(&format!(" (caused by {})", part(c)));
                cause = c.get("caused_by");
            }
            text
        }
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Percent-encodes a document id for a URL path.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether a status is a `404 Not Found`.
pub fn is_not_found(status: StatusCode) -> bool {
    status == StatusCode::NOT_FOUND
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_credentials_out_of_the_url() {
        let (url, credentials) = split_url("https://elastic:p%40ss@es.example:9243/prefix").unwrap();
        assert_eq!(url.as_str(), "https://es.example:9243/prefix");
        assert_eq!(credentials, Some(("elastic".into(), "p@ss".into())));
        assert!(split_url("mongodb://x").unwrap_err().to_string().contains("not an http(s) URL"));
        assert!(split_url("127.0.0.1:9200").is_err());
    }

    #[test]
    fn describes_nested_causes() {
        let error = serde_json::json!({"type": "document_parsing_exception", "reason": "failed to parse field [n]",
            "caused_by": {"type": "illegal_argument_exception", "reason": "For input string: \"x\""}});
        assert_eq!(
            describe_error(&error),
            "document_parsing_exception: failed to parse field [n] (caused by illegal_argument_exception: For input string: \"x\")"
        );
    }
}

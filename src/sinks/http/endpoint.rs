//! The endpoint as configured: the URL (credentials taken out and sent as Basic
//! authentication, never shown), the operator's headers, and one HTTP client with the timeout.
//! The configuration validator uses the same checks, so `validate` and `run` agree on what is a
//! usable URL or header.

use std::time::Duration;

use base64::Engine;
use reqwest::{
    Client, Url,
    header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue},
};

use crate::{config::HttpSinkConfig, sinks::SinkError};

/// Headers the sink sets itself; the operator's `headers` may not name them.
const RESERVED: [&str; 4] = ["content-type", "content-length", "host", "transfer-encoding"];

pub struct Endpoint {
    pub client: Client,
    /// The URL requests go to, without credentials.
    pub url: Url,
    /// The URL for messages: no credentials, no query values (they often hold keys).
    pub display: String,
    pub timeout: Duration,
}

impl Endpoint {
    pub fn new(config: &HttpSinkConfig) -> Result<Self, SinkError> {
        let problem = |key: &str, message: String| SinkError::config(format!("sink.http.{key}: {message}"));
        let (url, credentials) = parse_url(&config.url).map_err(|m| problem("url", m))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            if let Some(reason) = header_problem(name, value) {
                return Err(problem(&format!("headers.{name}"), reason));
            }
            let mut value = HeaderValue::from_str(value).expect("checked above");
            value.set_sensitive(true);
            headers.insert(HeaderName::from_bytes(name.as_bytes()).expect("checked above"), value);
        }
        if let Some(credentials) = credentials
            && !headers.contains_key(AUTHORIZATION)
        {
            let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
            let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).expect("base64 is a valid header value");
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let timeout = Duration::from_millis(config.timeout_ms);
        let client = Client::builder()
            .default_headers(headers)
            .timeout(timeout)
            .connect_timeout(timeout)
            // A redirected POST may turn into a GET; the operator should configure the final URL.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("projector-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SinkError::config(format!("sink.http: cannot build the HTTP client: {e}")))?;
        let display = display(&url);
        Ok(Self { client, url, display, timeout })
    }
}

/// Parses an endpoint URL; returns it without credentials, and the `user:password` it held
/// (percent-decoded).
fn parse_url(text: &str) -> Result<(Url, Option<String>), String> {
    let mut url = Url::parse(text.trim()).map_err(|e| format!("`{text}` is not a URL ({e}); expected e.g. `https://events.example.com/ingest`"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("`{}` is not an http(s) URL; expected e.g. `https://events.example.com/ingest`", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{text}` names no host; expected e.g. `https://events.example.com/ingest`"));
    }
    let decode = |s: &str| percent_decode(s);
    let credentials = (!url.username().is_empty() || url.password().is_some())
        .then(|| format!("{}:{}", decode(url.username()), decode(url.password().unwrap_or_default())));
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Ok((url, credentials))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn display(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_fragment(None);
    shown.set_query(None);
    if url.query().is_some() { format!("{shown}?…") } else { shown.to_string() }
}

/// Why `url` cannot be the endpoint, if it cannot.
pub fn url_problem(url: &str) -> Option<String> {
    parse_url(url).err()
}

/// Why `name: value` cannot be sent as a configured header, if it cannot.
pub fn header_problem(name: &str, value: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    if HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Some(format!("`{name}` is not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~ only)"));
    }
    if RESERVED.contains(&lower.as_str()) || lower.starts_with("ce-") {
        return Some(format!("`{name}` is set by the sink itself (from `mode` and the event); remove it"));
    }
    if HeaderValue::from_str(value).is_err() {
        return Some("not a valid HTTP header value (printable ASCII, no line breaks)".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_credentials_out_of_the_url() {
        let (url, credentials) = parse_url("https://user:p%40ss@events.example.com:8443/in?code=secret").unwrap();
        assert_eq!(url.as_str(), "https://events.example.com:8443/in?code=secret");
        assert_eq!(credentials.as_deref(), Some("user:p@ss"));
        assert_eq!(display(&url), "https://events.example.com:8443/in?…");
        assert_eq!(parse_url("http://127.0.0.1:9/").unwrap().1, None);
    }

    #[test]
    fn names_what_is_wrong_with_a_url_or_a_header() {
        assert!(url_problem("ftp://x/").unwrap().starts_with("`ftp` is not an http(s) URL"));
        assert!(url_problem("events.example.com").unwrap().contains("is not a URL"));
        assert_eq!(url_problem("https://events.example.com/in"), None);
        assert!(header_problem("bad header", "x").unwrap().contains("not a valid HTTP header name"));
        assert!(header_problem("Content-Type", "x").unwrap().contains("set by the sink itself"));
        assert!(header_problem("ce-source", "x").unwrap().contains("set by the sink itself"));
        assert!(header_problem("x-token", "a\nb").unwrap().contains("not a valid HTTP header value"));
        assert_eq!(header_problem("authorization", "Bearer abc"), None);
    }
}

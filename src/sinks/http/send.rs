//! One POST and what the endpoint's answer means for the events in it:
//!
//! - 2xx: accepted;
//! - 408, 429, 5xx, a timeout, a connection error: transient, retried with backoff (a
//!   `Retry-After` of a 429 or 503 is honoured, up to [`MAX_RETRY_AFTER`]);
//! - 3xx, 401, 403, 404, 405, 407, 410: the endpoint refuses the *request*, whatever event it
//!   holds (wrong URL, missing credentials, a redirect): a configuration problem, which stops
//!   the connector whatever the poison policy, rather than skipping or parking every event;
//! - any other 4xx: the endpoint rejects *these events*: the poison policy decides.
//!
//! Messages carry the URL (without credentials), the status and the start of the response
//! body; the caller adds which events the request held.

use std::time::Duration;

use bytes::Bytes;
use reqwest::{
    Response, StatusCode,
    header::{HeaderMap, RETRY_AFTER},
};

use super::endpoint::Endpoint;

/// The longest wait a `Retry-After` can impose before the next attempt.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// How much of a response body error messages quote.
const BODY_EXCERPT: usize = 500;

/// Why the endpoint did not accept a request.
#[derive(Debug)]
pub enum Failure {
    /// Worth retrying later; `after` is the endpoint's `Retry-After` (capped).
    Transient { message: String, after: Option<Duration> },
    /// The endpoint rejects the events of this request: the poison policy decides.
    Rejected { message: String },
    /// The endpoint refuses any request (URL, credentials, redirect): stop and fix the config.
    Refused { message: String },
}

impl Failure {
    pub fn message(&self) -> &str {
        match self {
            Failure::Transient { message, .. } | Failure::Rejected { message } | Failure::Refused { message } => message,
        }
    }

    /// The same failure, its message wrapped by `f` (to name the events).
    pub fn map_message(self, f: impl FnOnce(String) -> String) -> Self {
        match self {
            Failure::Transient { message, after } => Failure::Transient { message: f(message), after },
            Failure::Rejected { message } => Failure::Rejected { message: f(message) },
            Failure::Refused { message } => Failure::Refused { message: f(message) },
        }
    }
}

/// POSTs `body` with `headers` (on top of the configured ones) and judges the answer.
pub async fn post(endpoint: &Endpoint, headers: HeaderMap, body: Bytes) -> Result<(), Failure> {
    let url = &endpoint.display;
    let response = endpoint.client.post(endpoint.url.clone()).headers(headers).body(body).send().await;
    let response = match response {
        Ok(response) => response,
        Err(e) if e.is_timeout() => {
            let message = format!("POST {url} timed out after {} ms (`sink.http.timeout_ms`)", endpoint.timeout.as_millis());
            return Err(Failure::Transient { message, after: None });
        }
        Err(e) if e.is_builder() => return Err(Failure::Rejected { message: format!("POST {url}: cannot build the request: {}", chain(&e)) }),
        Err(e) => {
            let what = if e.is_connect() { "cannot connect" } else { "the request failed" };
            return Err(Failure::Transient { message: format!("POST {url}: {what}: {}", chain(&e)), after: None });
        }
    };
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let after = retry_after(response.headers());
    let location = response.headers().get(reqwest::header::LOCATION).and_then(|l| l.to_str().ok()).map(str::to_owned);
    let body = excerpt(response).await;
    let answered = format!("POST {url} answered {status}{body}");
    Err(match status.as_u16() {
        408 | 429 | 500..=599 => {
            let waited = match after {
                Some(after) if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE => {
                    format!(" (it asks to retry after {} s)", after.as_secs_f64())
                }
                _ => String::new(),
            };
            Failure::Transient { message: format!("{answered}{waited}"), after }
        }
        300..=399 => Failure::Refused {
            message: format!(
                "{answered}: a redirect{}; set `sink.http.url` to the final URL (the sink does not follow redirects, which would turn the POST into a GET)",
                location.map(|l| format!(" to {l}")).unwrap_or_default()
            ),
        },
        401 | 403 | 407 => Failure::Refused {
            message: format!("{answered}: the endpoint refuses the gateway's credentials; check `sink.http.url` and `sink.http.headers`"),
        },
        404 | 405 | 410 => Failure::Refused {
            message: format!("{answered}: nothing takes POST requests at this URL; check `sink.http.url`"),
        },
        _ => Failure::Rejected { message: format!("{answered}: the endpoint rejected the event(s)") },
    })
}

/// The `Retry-After` header, in seconds or as an HTTP date, capped at [`MAX_RETRY_AFTER`].
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match text.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(text).ok()?;
            (at.with_timezone(&chrono::Utc) - chrono::Utc::now()).to_std().unwrap_or_default()
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// `: <the first 500 bytes of the body>`, or nothing for an empty body.
async fn excerpt(mut response: Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < BODY_EXCERPT {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    let cut = bytes.len() > BODY_EXCERPT;
    bytes.truncate(BODY_EXCERPT);
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim_end_matches('\u{fffd}').trim();
    match (text.is_empty(), cut) {
        (true, _) => String::new(),
        (false, false) => format!(": {text}"),
        (false, true) => format!(": {text}…"),
    }
}

/// An error and its causes on one line (reqwest's own message alone says little).
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    #[test]
    fn reads_retry_after_in_seconds_or_as_a_date_and_caps_it() {
        let headers = |value: &str| HeaderMap::from_iter([(RETRY_AFTER, HeaderValue::from_str(value).unwrap())]);
        assert_eq!(retry_after(&headers("3")), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(&headers("86400")), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after(&headers("Wed, 21 Oct 2015 07:28:00 GMT")), Some(Duration::ZERO), "a date in the past");
        let soon = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        let wait = retry_after(&headers(&soon)).unwrap();
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30), "{wait:?}");
        assert_eq!(retry_after(&headers("soon")), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }
}

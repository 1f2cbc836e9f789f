//! The HTTP routes of the management API. Answers are JSON; errors are `{"error": "..."}`
//! (plus `problems`, each with its key path, for an invalid definition) with the status that
//! says what to do: 400 fix the request, 401 send the token, 404 no such connector, 409 the
//! connector's state or the gateway's setup refuses it, 503 the gateway is stopping.
//!
//! Changes need a management token when one is set (`--management-token`, or
//! `--management-token-file` with one token or several named ones), and so does a
//! connector's history (it holds the definitions as created; their secrets are redacted, but
//! hosts, users and names remain). Reading a status needs none, like `/metrics`, unless
//! `--require-token-for-reads`. Every change is recorded in the definition log with who made
//! it: the name of the token, `token` for an unnamed one, `anonymous` without any.

use std::{fmt, sync::Arc};

use axum::{
    Router,
    extract::{Path, Query, Request, State},
    http::{HeaderMap, StatusCode, Uri, header},
    middleware::Next,
    response::Response,
    routing::{get, post},
};
use serde_json::{Value, json};

use super::{ManagementError, ResetTarget, Supervisor, definition::CHANGED_BY};
use crate::sinks::parked::ParkedQuery;
use crate::status::endpoint::json_response;

/// One bearer token an operator may send, with the name changes made with it are recorded
/// under. Its `Debug` never shows the secret.
#[derive(Clone)]
pub struct Token {
    name: Option<String>,
    secret: String,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token").field("name", &self.name).field("secret", &"***").finish()
    }
}

impl Token {
    /// An unnamed token (`--management-token`; changes are recorded as made `by` `token`).
    pub fn unnamed(secret: impl Into<String>) -> Self {
        Self { name: None, secret: secret.into() }
    }

    /// The tokens of a `--management-token-file`: either the token alone (the whole file,
    /// its trailing newline dropped), or one `name:token` per line, each change then recorded
    /// with the name of the token that made it. Blank lines and lines starting with `#` are
    /// skipped; a lone token that contains `:` is written `name:token` too. Errors name the
    /// line, never its text.
    pub fn parse_file(text: &str) -> Result<Vec<Token>, String> {
        let lines: Vec<(usize, &str)> =
            text.lines().map(str::trim).enumerate().filter(|(_, line)| !line.is_empty() && !line.starts_with('#')).collect();
        match lines.as_slice() {
            [] => return Err("holds no token: put the token in it (or one `name:token` per line)".into()),
            [(_, token)] if !token.contains(':') => return Ok(vec![Token::unnamed(*token)]),
            _ => {}
        }
        let mut tokens: Vec<Token> = Vec::new();
        for (index, line) in lines {
            let at = format!("line {}", index + 1);
            let Some((name, secret)) = line.split_once(':') else {
                return Err(format!("{at}: expected `name:token` (a file of several tokens names each one)"));
            };
            let (name, secret) = (name.trim(), secret.trim());
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c)) {
                return Err(format!("{at}: the name before `:` must be letters, digits, `-`, `_`, `.` or `@`"));
            }
            if secret.is_empty() {
                return Err(format!("{at}: no token after `{name}:`"));
            }
            if secret.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!("{at}: the token of `{name}` has a space or control character; HTTP headers cannot carry it"));
            }
            if tokens.iter().any(|t| t.name.as_deref() == Some(name)) {
                return Err(format!("{at}: the name `{name}` is given twice"));
            }
            if tokens.iter().any(|t| t.secret == secret) {
                return Err(format!("{at}: `{name}` has the same token as another name; give each its own"));
            }
            tokens.push(Token { name: Some(name.to_owned()), secret: secret.to_owned() });
        }
        Ok(tokens)
    }
}

/// Who may use the management API: the tokens a change needs (none: anyone), and whether the
/// status reads need one too.
#[derive(Clone, Debug, Default)]
pub struct Access {
    tokens: Arc<[Token]>,
    reads: bool,
}

impl Access {
    /// `tokens` guard changes and the history (none: nothing is guarded); with
    /// `reads_need_token` and a token, the status reads too.
    pub fn new(tokens: Vec<Token>, reads_need_token: bool) -> Self {
        Self { tokens: tokens.into(), reads: reads_need_token }
    }

    /// Whether reading `/connectors` needs a token.
    pub fn guards_reads(&self) -> bool {
        self.reads && !self.tokens.is_empty()
    }

    /// Who sent the request (the name its changes are recorded under), when it may go on;
    /// `None` when it lacks a token. Every token is compared, each in a time that does not
    /// depend on where the first difference is.
    fn check(&self, headers: &HeaderMap) -> Option<String> {
        if self.tokens.is_empty() {
            return Some("anonymous".into());
        }
        let sent = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "))?;
        let matched = self.tokens.iter().fold(None, |found, t| if same_secret(sent, &t.secret) { Some(t) } else { found });
        matched.map(|token| token.name.clone().unwrap_or_else(|| "token".into()))
    }

    /// `routes` (routes that only read connectors) behind the token when reads need it.
    pub fn guard_reads(&self, routes: Router) -> Router {
        if !self.guards_reads() {
            return routes;
        }
        let access = self.clone();
        routes.route_layer(axum::middleware::from_fn(move |request: Request, next: Next| {
            let allowed = access.check(request.headers()).is_some();
            async move { if allowed { next.run(request).await } else { refusal() } }
        }))
    }
}

/// The answer to a request without a valid token.
fn refusal() -> Response {
    let body = json!({
        "error": "this needs the management token: send `Authorization: Bearer <token>` (--management-token or --management-token-file)"
    });
    json_response(StatusCode::UNAUTHORIZED, &body)
}

#[derive(Clone)]
struct Api {
    supervisor: Supervisor,
    access: Access,
}

/// The management routes over `supervisor`; `access` says which requests need a token.
pub fn routes(supervisor: Supervisor, access: Access) -> Router {
    let api = Api { supervisor, access: access.clone() };
    let reads = Router::new()
        .route("/connectors/{id}", get(status))
        .route("/connectors/{id}/parked", get(parked))
        .route("/connectors/{id}/parked/{record}", get(parked_event))
        .route("/validate", post(validate))
        .with_state(api.clone());
    Router::new()
        .route("/connectors", post(create))
        .route("/connectors/{id}", axum::routing::delete(delete).put(update))
        .route("/connectors/{id}/history", get(history))
        .route("/connectors/{id}/enable", post(enable))
        .route("/connectors/{id}/disable", post(disable))
        .route("/connectors/{id}/reset", post(reset))
        .route("/connectors/{id}/parked/{record}", axum::routing::delete(discard_parked_event))
        .route("/connectors/{id}/parked/discard", post(discard_parked))
        .route("/connectors/{id}/parked/replay", post(replay_parked))
        .route("/connectors/{id}/rebuild", post(rebuild))
        .with_state(api)
        .merge(access.guard_reads(reads))
}

fn answer(status: StatusCode, outcome: Result<Value, ManagementError>) -> Response {
    match outcome {
        Ok(body) => json_response(status, &body),
        Err(e) => {
            let status = match &e {
                ManagementError::NotFound(_) | ManagementError::NoParkedEvent { .. } => StatusCode::NOT_FOUND,
                ManagementError::Conflict(_) | ManagementError::ReadOnly => StatusCode::CONFLICT,
                ManagementError::BadRequest(_) | ManagementError::Invalid(_) => StatusCode::BAD_REQUEST,
                ManagementError::Stopping => StatusCode::SERVICE_UNAVAILABLE,
                ManagementError::Store(_) | ManagementError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let mut body = json!({ "error": e.to_string() });
            if let ManagementError::Invalid(problems) = &e {
                body["problems"] = problems.iter().map(|p| json!({ "path": p.path, "message": p.message })).collect();
            }
            json_response(status, &body)
        }
    }
}

async fn status(State(api): State<Api>, Path(id): Path<String>) -> Response {
    answer(StatusCode::OK, api.supervisor.get(&id))
}

/// Runs `change` (lazy until awaited) if the request carries a token, answering `status`; the
/// definition log records the change as made by the token's name.
async fn guarded(api: &Api, headers: &HeaderMap, status: StatusCode, change: impl Future<Output = Result<Value, ManagementError>>) -> Response {
    match api.access.check(headers) {
        None => refusal(),
        Some(by) => answer(status, CHANGED_BY.scope(by, change).await),
    }
}

async fn history(State(api): State<Api>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    guarded(&api, &headers, StatusCode::OK, api.supervisor.history(&id)).await
}

async fn create(State(api): State<Api>, headers: HeaderMap, body: String) -> Response {
    guarded(&api, &headers, StatusCode::CREATED, api.supervisor.create(&body)).await
}

async fn delete(State(api): State<Api>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    guarded(&api, &headers, StatusCode::OK, api.supervisor.delete(&id)).await
}

async fn enable(State(api): State<Api>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    guarded(&api, &headers, StatusCode::OK, api.supervisor.enable(&id)).await
}

/// Answers 202 at once with the connector `stopping` (it shows `disabled` once it has
/// finished what it read), or 200 once it has stopped with `?wait=true` or when it was not
/// running.
async fn disable(State(api): State<Api>, headers: HeaderMap, Path(id): Path<String>, uri: Uri) -> Response {
    let Some(by) = api.access.check(&headers) else { return refusal() };
    let wait = uri.query().is_some_and(|q| q.split('&').any(|pair| pair == "wait=true"));
    match CHANGED_BY.scope(by, api.supervisor.disable(&id, wait)).await {
        Ok((body, true)) => json_response(StatusCode::OK, &body),
        Ok((mut body, false)) => {
            body["note"] = json!(format!(
                "stopping: it finishes what it read, then GET /connectors/{id} shows `disabled` (POST .../disable?wait=true answers only then)"
            ));
            json_response(StatusCode::ACCEPTED, &body)
        }
        Err(e) => answer(StatusCode::OK, Err(e)),
    }
}

async fn update(State(api): State<Api>, headers: HeaderMap, Path(id): Path<String>, body: String) -> Response {
    guarded(&api, &headers, StatusCode::OK, api.supervisor.update(&id, &body)).await
}

async fn validate(State(api): State<Api>, body: String) -> Response {
    answer(StatusCode::OK, api.supervisor.validate(&body))
}

async fn reset(State(api): State<Api>, headers: HeaderMap, Path(id): Path<String>, body: String) -> Response {
    let change = async {
        let to = reset_target(&body)?;
        api.supervisor.reset(&id, to).await
    };
    guarded(&api, &headers, StatusCode::OK, change).await
}

/// The filter of a parked-event listing, from the query string.
#[derive(serde::Deserialize)]
struct ParkedFilter {
    #[serde(rename = "type")]
    event_type: Option<String>,
    error_contains: Option<String>,
    /// RFC 3339.
    since: Option<String>,
    limit: Option<usize>,
}

impl ParkedFilter {
    fn query(self) -> Result<ParkedQuery, ManagementError> {
        let since = match self.since {
            None => None,
            Some(text) => Some(chrono::DateTime::parse_from_rfc3339(&text).map(|at| at.to_utc()).map_err(|e| {
                ManagementError::BadRequest(format!("since={text:?}: {e}; expected RFC 3339, e.g. 2026-12-07T10:00:00Z"))
            })?),
        };
        let limit = self.limit.unwrap_or(ParkedQuery::DEFAULT_LIMIT);
        Ok(ParkedQuery { event_type: self.event_type, error_contains: self.error_contains, since, ids: vec![], limit })
    }
}

async fn parked(State(api): State<Api>, Path(id): Path<String>, Query(filter): Query<ParkedFilter>) -> Response {
    let listing = async { api.supervisor.parked(&id, filter.query()?).await };
    answer(StatusCode::OK, listing.await)
}

async fn parked_event(State(api): State<Api>, Path((id, record)): Path<(String, String)>) -> Response {
    answer(StatusCode::OK, api.supervisor.parked_event(&id, &record).await)
}

async fn discard_parked_event(State(api): State<Api>, headers: HeaderMap, Path((id, record)): Path<(String, String)>) -> Response {
    guarded(&api, &headers, StatusCode::OK, api.supervisor.discard_parked(&id, vec![record])).await
}

/// `{"ids": ["12", "13"]}`: discards those parked events.
async fn discard_parked(State(api): State<Api>, headers: HeaderMap, Path(id): Path<String>, body: String) -> Response {
    let change = async { api.supervisor.discard_parked(&id, record_ids("discard", &body)?).await };
    guarded(&api, &headers, StatusCode::OK, change).await
}

/// `{"ids": ["12", "13"]}`: replays those parked events through the sidecar.
async fn replay_parked(State(api): State<Api>, headers: HeaderMap, Path(id): Path<String>, body: String) -> Response {
    let change = async { api.supervisor.replay_parked(&id, record_ids("replay", &body)?).await };
    guarded(&api, &headers, StatusCode::OK, change).await
}

/// `{}` or `{"sidecar": "http://..."}`: starts a blue/green rebuild (202: it runs on).
async fn rebuild(State(api): State<Api>, headers: HeaderMap, Path(id): Path<String>, body: String) -> Response {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Rebuild {
        #[serde(default)]
        sidecar: Option<String>,
    }
    let change = async {
        let asked: Rebuild = if body.trim().is_empty() {
            Rebuild { sidecar: None }
        } else {
            serde_json::from_str(&body).map_err(|e| {
                ManagementError::BadRequest(format!("rebuild body {body:?}: {e}; expected {{}} or {{\"sidecar\": \"http://host:port\"}}"))
            })?
        };
        api.supervisor.rebuild(&id, asked.sidecar).await
    };
    guarded(&api, &headers, StatusCode::ACCEPTED, change).await
}

/// The record ids of a `{"ids": [...]}` body.
fn record_ids(verb: &str, body: &str) -> Result<Vec<String>, ManagementError> {
    #[derive(serde::Deserialize)]
    struct Ids {
        ids: Vec<String>,
    }
    serde_json::from_str::<Ids>(body)
        .map(|ids| ids.ids)
        .map_err(|e| ManagementError::BadRequest(format!("{verb} body {body:?}: {e}; expected {{\"ids\": [\"<record id>\", ...]}}")))
}

/// Compares in a time that does not depend on where the first difference is, so the token
/// cannot be guessed byte by byte from response times.
fn same_secret(sent: &str, expected: &str) -> bool {
    let (sent, expected) = (sent.as_bytes(), expected.as_bytes());
    sent.len() == expected.len() && sent.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// `{"to": "start"}`, `{"to": "end"}` or `{"to": <position>}`. No default: a reset to the start
/// replays the whole log, so it is said, never assumed.
fn reset_target(body: &str) -> Result<ResetTarget, ManagementError> {
    let wrong = || ManagementError::BadRequest(format!(
        "reset body {body:?}: expected {{\"to\": \"start\"}}, {{\"to\": \"end\"}} or {{\"to\": <position>}}"
    ));
    if body.trim().is_empty() {
        return Err(ManagementError::BadRequest(
            "a reset says where to: {\"to\": \"start\"} (replay the whole log), {\"to\": \"end\"} (skip what is in it) or {\"to\": <position>}".into(),
        ));
    }
    let value: Value = serde_json::from_str(body).map_err(|_| wrong())?;
    match value.get("to") {
        Some(Value::String(s)) if s == "start" => Ok(ResetTarget::Start),
        Some(Value::String(s)) if s == "end" => Ok(ResetTarget::End),
        Some(Value::Number(n)) => n.as_u64().map(ResetTarget::Position).ok_or_else(wrong),
        _ => Err(wrong()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files_hold_one_token_or_named_ones() {
        let one = Token::parse_file("s3cret-token\n").unwrap();
        assert_eq!((one.len(), one[0].name.as_deref(), one[0].secret.as_str()), (1, None, "s3cret-token"));
        let named = Token::parse_file("# operators\nalice:tok-a\n\nci-bot : tok-b\r\n").unwrap();
        let pairs: Vec<(Option<&str>, &str)> = named.iter().map(|t| (t.name.as_deref(), t.secret.as_str())).collect();
        assert_eq!(pairs, [(Some("alice"), "tok-a"), (Some("ci-bot"), "tok-b")]);
        assert!(!format!("{named:?}").contains("tok-a"), "Debug shows no secret");
        for (text, error) in [
            ("", "holds no token"),
            ("\n# only a comment\n", "holds no token"),
            ("alice:tok-a\nbare-token\n", "line 2: expected `name:token`"),
            ("alice:tok-a\nalice:tok-b\n", "line 2: the name `alice` is given twice"),
            ("alice:tok-a\nbob:tok-a\n", "line 2: `bob` has the same token as another name"),
            ("alice:\n", "line 1: no token after `alice:`"),
            ("a b:tok\n", "line 1: the name before `:`"),
            ("alice:tok en\n", "line 1: the token of `alice` has a space"),
        ] {
            let e = Token::parse_file(text).unwrap_err();
            assert!(e.starts_with(error), "{text:?}: {e}");
            assert!(!e.contains("tok-"), "the error shows no token: {e}");
        }
    }

    #[test]
    fn the_sender_is_named_by_the_token_it_sent() {
        let with = |token: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
            headers
        };
        let named = Access::new(Token::parse_file("alice:tok-a\nbob:tok-b\n").unwrap(), false);
        assert_eq!(named.check(&with("tok-b")).as_deref(), Some("bob"));
        assert_eq!(named.check(&with("tok-a")).as_deref(), Some("alice"));
        assert_eq!(named.check(&with("tok-c")), None);
        assert_eq!(named.check(&HeaderMap::new()), None);
        assert!(!named.guards_reads());
        assert_eq!(Access::new(vec![Token::unnamed("t")], true).check(&with("t")).as_deref(), Some("token"));
        assert!(Access::new(vec![Token::unnamed("t")], true).guards_reads());
        assert_eq!(Access::default().check(&HeaderMap::new()).as_deref(), Some("anonymous"));
        assert!(!Access::new(Vec::new(), true).guards_reads(), "no token, nothing to guard reads with");
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same_secret("s3cret", "s3cret"));
        for wrong in ["s3creT", "s3cre", "s3crets", ""] {
            assert!(!same_secret(wrong, "s3cret"), "{wrong}");
        }
    }

    #[test]
    fn reset_bodies() {
        assert!(reset_target("").unwrap_err().to_string().starts_with("a reset says where to"), "no destructive default");
        assert_eq!(reset_target(r#"{"to":"start"}"#).unwrap(), ResetTarget::Start);
        assert_eq!(reset_target(r#"{"to":"end"}"#).unwrap(), ResetTarget::End);
        assert_eq!(reset_target(r#"{"to": 42}"#).unwrap(), ResetTarget::Position(42));
        for wrong in [r#"{"to":-1}"#, r#"{"to":"middle"}"#, "to: 3", r#"{"position": 3}"#] {
            let e = reset_target(wrong).unwrap_err().to_string();
            assert!(e.contains("expected {\"to\": \"start\"}"), "{wrong}: {e}");
        }
    }
}

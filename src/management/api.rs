//! The HTTP routes of the management API. Answers are JSON; errors are `{"error": "..."}`
//! (plus `problems`, each with its key path, for an invalid definition) with the status that
//! says what to do: 400 fix the request, 401 send the token, 404 no such connector, 409 the
//! connector's state or the gateway's setup refuses it, 503 the gateway is stopping.
//!
//! Changes need the bearer token of `--management-token` when one is set, and so does a
//! connector's history (it holds the definitions as created, which may name credentials);
//! reading a status needs none, like `/metrics`.

use axum::{
    Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::Response,
    routing::{get, post},
};
use serde_json::{Value, json};

use super::{ManagementError, ResetTarget, Supervisor};
use crate::status::endpoint::json_response;

#[derive(Clone)]
struct Api {
    supervisor: Supervisor,
    token: Option<String>,
}

/// The management routes over `supervisor`; changes need `token` when it is set.
pub fn routes(supervisor: Supervisor, token: Option<String>) -> Router {
    Router::new()
        .route("/connectors", post(create))
        .route("/connectors/{id}", get(status).delete(delete))
        .route("/connectors/{id}/history", get(history))
        .route("/connectors/{id}/enable", post(enable))
        .route("/connectors/{id}/disable", post(disable))
        .route("/connectors/{id}/reset", post(reset))
        .with_state(Api { supervisor, token })
}

fn answer(status: StatusCode, outcome: Result<Value, ManagementError>) -> Response {
    match outcome {
        Ok(body) => json_response(status, &body),
        Err(e) => {
            let status = match &e {
                ManagementError::NotFound(_) => StatusCode::NOT_FOUND,
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

/// `None` when the request may change connectors; the 401 answer otherwise.
fn refused(api: &Api, headers: &HeaderMap) -> Option<Response> {
    let expected = api.token.as_deref()?;
    let sent = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if sent.is_some_and(|sent| same_secret(sent, expected)) {
        return None;
    }
    let body = json!({ "error": "this needs the management token: send `Authorization: Bearer <token>` (--management-token)" });
    Some(json_response(StatusCode::UNAUTHORIZED, &body))
}

async fn status(State(api): State<Api>, Path(id): Path<String>) -> Response {
    answer(StatusCode::OK, api.supervisor.get(&id))
}

/// Runs `change` (lazy until awaited) if the request carries the token, answering `status`.
async fn guarded(api: &Api, headers: &HeaderMap, status: StatusCode, change: impl Future<Output = Result<Value, ManagementError>>) -> Response {
    match refused(api, headers) {
        Some(refusal) => refusal,
        None => answer(status, change.await),
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

async fn disable(State(api): State<Api>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    guarded(&api, &headers, StatusCode::OK, api.supervisor.disable(&id)).await
}

async fn reset(State(api): State<Api>, headers: HeaderMap, Path(id): Path<String>, body: String) -> Response {
    let change = async {
        let to = reset_target(&body)?;
        api.supervisor.reset(&id, to).await
    };
    guarded(&api, &headers, StatusCode::OK, change).await
}

/// Compares in a time that does not depend on where the first difference is, so the token
/// cannot be guessed byte by byte from response times.
fn same_secret(sent: &str, expected: &str) -> bool {
    let (sent, expected) = (sent.as_bytes(), expected.as_bytes());
    sent.len() == expected.len() && sent.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// `{"to": "start"}` (or an empty body), `{"to": "end"}` or `{"to": <position>}`.
fn reset_target(body: &str) -> Result<ResetTarget, ManagementError> {
    let wrong = || ManagementError::BadRequest(format!(
        "reset body {body:?}: expected {{\"to\": \"start\"}}, {{\"to\": \"end\"}} or {{\"to\": <position>}}"
    ));
    if body.trim().is_empty() {
        return Ok(ResetTarget::Start);
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
    fn tokens_compare_whole() {
        assert!(same_secret("s3cret", "s3cret"));
        for wrong in ["s3creT", "s3cre", "s3crets", ""] {
            assert!(!same_secret(wrong, "s3cret"), "{wrong}");
        }
    }

    #[test]
    fn reset_bodies() {
        assert_eq!(reset_target("").unwrap(), ResetTarget::Start);
        assert_eq!(reset_target(r#"{"to":"start"}"#).unwrap(), ResetTarget::Start);
        assert_eq!(reset_target(r#"{"to":"end"}"#).unwrap(), ResetTarget::End);
        assert_eq!(reset_target(r#"{"to": 42}"#).unwrap(), ResetTarget::Position(42));
        for wrong in [r#"{"to":-1}"#, r#"{"to":"middle"}"#, "to: 3", r#"{"position": 3}"#] {
            let e = reset_target(wrong).unwrap_err().to_string();
            assert!(e.contains("expected {\"to\": \"start\"}"), "{wrong}: {e}");
        }
    }
}

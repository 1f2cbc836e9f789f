//! The library-loans reducer: one handler per event type, each turning an event into typed SQL
//! statements for the read model of schema.sql, and what `Describe` answers.
//!
//! To add an event type: write a handler and add it to [`HANDLERS`]. Handlers must be
//! deterministic: after a reconnect the gateway sends an event again.

use prost::Message;
use prost_types::{value::Kind, Any, Timestamp};

use crate::pb::{
    sql_value::Kind as Param, DescribeResponse, Ignore, ProjectionRequest, ProjectionResponse,
    ReducerError, SqlValue, Statement,
};

pub const PROJECTION: &str = "library-loans";
/// The version of the handlers' logic: change it when what they write changes (with
/// `sidecar.rebuild_on_new_version: true` the gateway then rebuilds the read model).
pub const VERSION: &str = "1";

pub const LEND: &str = "INSERT INTO loans (loan_id, book_id, member_id, lent_at, last_position) \
                        VALUES ($1, $2, $3, $4, $5) ON CONFLICT (loan_id) DO NOTHING";
pub const RETURN: &str = "UPDATE loans SET returned_at = $2, last_position = $3 WHERE loan_id = $1";

/// A handler: the event to statements, or why the event cannot be reduced.
type Handler = fn(&ProjectionRequest) -> Result<Vec<Statement>, String>;

/// Event type -> handler, in the order Describe lists them.
pub const HANDLERS: &[(&str, Handler)] =
    &[("BookLent", book_lent), ("BookReturned", book_returned)];

fn book_lent(event: &ProjectionRequest) -> Result<Vec<Statement>, String> {
    Ok(vec![statement(
        LEND,
        vec![
            text(event, "loanId")?,
            text(event, "bookId")?,
            text(event, "memberId")?,
            time(event, "lentAt")?,
            int(event.global_position as i64),
        ],
    )])
}

fn book_returned(event: &ProjectionRequest) -> Result<Vec<Statement>, String> {
    Ok(vec![statement(
        RETURN,
        vec![
            text(event, "loanId")?,
            time(event, "returnedAt")?,
            int(event.global_position as i64),
        ],
    )])
}

// --- Reading the payload (a google.protobuf.Struct) and typed SQL parameters ----------------

fn field<'a>(event: &'a ProjectionRequest, name: &str) -> Result<&'a str, String> {
    match event
        .event_payload
        .as_ref()
        .and_then(|p| p.fields.get(name))
        .and_then(|v| v.kind.as_ref())
    {
        Some(Kind::StringValue(value)) => Ok(value),
        _ => Err(format!("payload field '{name}' is missing or not a string")),
    }
}

fn text(event: &ProjectionRequest, name: &str) -> Result<SqlValue, String> {
    Ok(SqlValue {
        kind: Some(Param::StringValue(field(event, name)?.to_string())),
    })
}

fn time(event: &ProjectionRequest, name: &str) -> Result<SqlValue, String> {
    let at: Timestamp = field(event, name)?
        .parse()
        .map_err(|_| format!("payload field '{name}' is not an RFC 3339 time"))?;
    Ok(SqlValue {
        kind: Some(Param::TimestampValue(at)),
    })
}

fn int(value: i64) -> SqlValue {
    SqlValue {
        kind: Some(Param::Int64Value(value)),
    }
}

/// A statement with placeholders $1, $2, ... bound by the gateway's database driver.
fn statement(sql: &str, params: Vec<SqlValue>) -> Statement {
    Statement {
        sql: sql.to_string(),
        params,
    }
}

fn pack(name: &str, message: &impl Message) -> Any {
    Any {
        type_url: format!("type.googleapis.com/projection.{name}"),
        value: message.encode_to_vec(),
    }
}

// --- Answers --------------------------------------------------------------------------------

/// The projection, its version, and the event types to send (the gateway sends only those).
pub fn describe() -> DescribeResponse {
    DescribeResponse {
        projection: PROJECTION.into(),
        version: VERSION.into(),
        event_types: HANDLERS
            .iter()
            .map(|(event_type, _)| event_type.to_string())
            .collect(),
        // What clears the read model when the gateway rebuilds it.
        reset_operations: vec![pack("Statement", &statement("DELETE FROM loans", vec![]))],
    }
}

/// The answer to one event: a failure becomes the answer's `error`.
pub fn respond(event: &ProjectionRequest) -> ProjectionResponse {
    let mut answer = ProjectionResponse {
        event_id: event.event_id.clone(),
        ..Default::default()
    };
    let Some((_, handler)) = HANDLERS
        .iter()
        .find(|(event_type, _)| *event_type == event.event_type)
    else {
        answer.operation = Some(pack("Ignore", &Ignore {}));
        return answer;
    };
    match handler(event) {
        Ok(statements) => {
            let mut packed = statements.iter().map(|s| pack("Statement", s));
            answer.operation = packed.next();
            answer.operations = packed.collect();
        }
        Err(reason) => {
            let message = format!(
                "{} {} (stream {}): {reason}",
                event.event_type, event.event_id, event.stream
            );
            eprintln!("{message}");
            answer.error = Some(ReducerError {
                message,
                retryable: false,
            });
        }
    }
    answer
}

/// The handlers' answers, checked without the gateway: `./run.sh test` (or `cargo test`).
#[cfg(test)]
mod tests {
    use prost_types::{Struct, Value};

    use super::*;

    fn event(event_type: &str, payload: &[(&str, &str)], position: u64) -> ProjectionRequest {
        let fields = payload
            .iter()
            .map(|(name, value)| {
                (
                    name.to_string(),
                    Value {
                        kind: Some(Kind::StringValue(value.to_string())),
                    },
                )
            })
            .collect();
        ProjectionRequest {
            event_type: event_type.into(),
            event_id: "e-1".into(),
            stream: "loan-1".into(),
            event_payload: Some(Struct { fields }),
            global_position: position,
            ..Default::default()
        }
    }

    fn statements(answer: &ProjectionResponse) -> Vec<Statement> {
        answer
            .operation
            .iter()
            .chain(&answer.operations)
            .map(|any| {
                assert_eq!(any.type_url, "type.googleapis.com/projection.Statement");
                Statement::decode(any.value.as_slice()).expect("a Statement")
            })
            .collect()
    }

    fn s(value: &str) -> SqlValue {
        SqlValue {
            kind: Some(Param::StringValue(value.into())),
        }
    }

    fn at(value: &str) -> SqlValue {
        SqlValue {
            kind: Some(Param::TimestampValue(value.parse().unwrap())),
        }
    }

    #[test]
    fn book_lent_inserts_the_loan_with_typed_parameters() {
        let answer = respond(&event(
            "BookLent",
            &[
                ("loanId", "loan-1"),
                ("bookId", "moby-dick"),
                ("memberId", "m-2"),
                ("lentAt", "2026-09-02T14:30:00Z"),
            ],
            7,
        ));
        assert_eq!(answer.event_id, "e-1");
        let lent_at = at("2026-09-02T14:30:00Z");
        assert_eq!(
            lent_at,
            SqlValue {
                kind: Some(Param::TimestampValue(Timestamp {
                    seconds: 1_788_359_400,
                    nanos: 0
                }))
            }
        );
        assert_eq!(
            statements(&answer),
            vec![statement(
                LEND,
                vec![s("loan-1"), s("moby-dick"), s("m-2"), lent_at, int(7)]
            )]
        );
    }

    #[test]
    fn book_returned_sets_the_return_time() {
        let answer = respond(&event(
            "BookReturned",
            &[("loanId", "loan-1"), ("returnedAt", "2026-09-10T09:15:00Z")],
            9,
        ));
        assert_eq!(
            statements(&answer),
            vec![statement(
                RETURN,
                vec![s("loan-1"), at("2026-09-10T09:15:00Z"), int(9)]
            )]
        );
    }

    #[test]
    fn a_missing_field_is_reported_as_an_error() {
        let answer = respond(&event("BookReturned", &[("loanId", "loan-1")], 9));
        assert_eq!(answer.operation, None);
        let error = answer.error.expect("an error");
        assert!(
            !error.retryable && error.message.contains("returnedAt"),
            "{error:?}"
        );
    }

    #[test]
    fn an_unhandled_event_is_ignored() {
        let answer = respond(&event("MemberJoined", &[("memberId", "m-1")], 1));
        assert_eq!(
            answer.operation.map(|any| any.type_url).as_deref(),
            Some("type.googleapis.com/projection.Ignore")
        );
    }

    #[test]
    fn describe_names_the_projection_and_the_handled_types() {
        let described = describe();
        assert_eq!(
            (described.projection.as_str(), described.version.as_str()),
            ("library-loans", "1")
        );
        assert_eq!(described.event_types, ["BookLent", "BookReturned"]);
    }
}

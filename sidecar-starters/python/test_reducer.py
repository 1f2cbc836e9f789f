"""The handlers' answers, checked without the gateway: `./run.sh test`
(or `.venv/bin/python -m unittest -v`; pytest runs these too)."""

import unittest

from google.protobuf import json_format

import reducer
from reducer import pb


def event(event_type: str, payload: dict, position: int = 7) -> pb.ProjectionRequest:
    req = pb.ProjectionRequest(eventType=event_type, eventId="e-1", stream="loan-1", globalPosition=position)
    json_format.ParseDict(payload, req.eventPayload)
    return req


def statements(answer: pb.ProjectionResponse) -> list:
    """The answer's statements as (sql, [(kind, value), ...])."""
    found = []
    for any_op in [answer.operation, *answer.operations]:
        op = pb.Statement()
        assert any_op.Unpack(op), f"not a Statement: {any_op.type_url}"
        params = [(p.WhichOneof("kind"), getattr(p, p.WhichOneof("kind"))) for p in op.params]
        found.append((op.sql, params))
    return found


class HandlerTest(unittest.TestCase):
    def test_book_lent_inserts_the_loan_with_typed_parameters(self):
        answer = reducer.respond(
            event("BookLent", {"loanId": "loan-1", "bookId": "moby-dick", "memberId": "m-2", "lentAt": "2026-09-02T14:30:00Z"})
        )
        self.assertEqual(answer.eventId, "e-1")
        [(sql, params)] = statements(answer)
        self.assertEqual(sql, reducer.LEND)
        lent_at = params[3][1]
        self.assertEqual(lent_at.ToJsonString(), "2026-09-02T14:30:00Z")
        self.assertEqual(
            params,
            [
                ("stringValue", "loan-1"),
                ("stringValue", "moby-dick"),
                ("stringValue", "m-2"),
                ("timestampValue", lent_at),
                ("int64Value", 7),
            ],
        )

    def test_book_returned_sets_the_return_time(self):
        answer = reducer.respond(event("BookReturned", {"loanId": "loan-1", "returnedAt": "2026-09-10T09:15:00Z"}, 9))
        [(sql, params)] = statements(answer)
        self.assertEqual(sql, reducer.RETURN)
        self.assertEqual([kind for kind, _ in params], ["stringValue", "timestampValue", "int64Value"])
        self.assertEqual(params[0][1], "loan-1")
        self.assertEqual(params[1][1].ToJsonString(), "2026-09-10T09:15:00Z")
        self.assertEqual(params[2][1], 9)

    def test_a_missing_field_is_reported_as_an_error_not_raised(self):
        answer = reducer.respond(event("BookReturned", {"loanId": "loan-1"}))
        self.assertFalse(answer.HasField("operation"))
        self.assertFalse(answer.error.retryable)
        self.assertIn("returnedAt", answer.error.message)

    def test_an_unhandled_event_is_ignored(self):
        answer = reducer.respond(event("MemberJoined", {"memberId": "m-1"}))
        self.assertTrue(answer.operation.Is(pb.Ignore.DESCRIPTOR))

    def test_describe_names_the_projection_and_the_handled_types(self):
        described = reducer.describe()
        self.assertEqual((described.projection, described.version), ("library-loans", "1"))
        self.assertEqual(list(described.eventTypes), ["BookLent", "BookReturned"])


if __name__ == "__main__":
    unittest.main()

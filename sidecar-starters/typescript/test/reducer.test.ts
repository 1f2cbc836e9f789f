/**
 * The handlers' answers, checked without the gateway: `./run.sh test` (or `npm test`).
 */

import assert from "node:assert/strict";
import { describe as suite, it } from "node:test";

import type { Any } from "../src/gen/google/protobuf/any.js";
import { ProjectionRequest, Statement, type ProjectionResponse } from "../src/gen/projection.js";
import { describe, LEND, respond, RETURN } from "../src/reducer.js";

function event(eventType: string, payload: Record<string, unknown>, position = 7n): ProjectionRequest {
  return ProjectionRequest.fromPartial({ eventType, eventId: "e-1", stream: "loan-1", eventPayload: payload, globalPosition: position });
}

/** The answer's statements as [sql, [[kind, value], ...]]. */
function statements(answer: ProjectionResponse): [string, [string, unknown][]][] {
  return [answer.operation, ...answer.operations].map((any: Any | undefined) => {
    assert.equal(any?.typeUrl, "type.googleapis.com/projection.Statement");
    const s = Statement.decode(any!.value);
    return [s.sql, s.params.map((p) => [p.kind!.$case, p.kind!.value] as [string, unknown])];
  });
}

suite("handlers", () => {
  it("BookLent inserts the loan with typed parameters", () => {
    const answer = respond(
      event("BookLent", { loanId: "loan-1", bookId: "moby-dick", memberId: "m-2", lentAt: "2026-09-02T14:30:00Z" }),
    );
    assert.equal(answer.eventId, "e-1");
    assert.deepEqual(statements(answer), [
      [
        LEND,
        [
          ["stringValue", "loan-1"],
          ["stringValue", "moby-dick"],
          ["stringValue", "m-2"],
          ["timestampValue", new Date("2026-09-02T14:30:00Z")],
          ["int64Value", 7n],
        ],
      ],
    ]);
  });

  it("BookReturned sets the return time", () => {
    const answer = respond(event("BookReturned", { loanId: "loan-1", returnedAt: "2026-09-10T09:15:00Z" }, 9n));
    assert.deepEqual(statements(answer), [
      [
        RETURN,
        [
          ["stringValue", "loan-1"],
          ["timestampValue", new Date("2026-09-10T09:15:00Z")],
          ["int64Value", 9n],
        ],
      ],
    ]);
  });

  it("a missing field is reported as an error, not thrown", () => {
    const answer = respond(event("BookReturned", { loanId: "loan-1" }));
    assert.equal(answer.operation, undefined);
    assert.equal(answer.error?.retryable, false);
    assert.match(answer.error?.message ?? "", /returnedAt/);
  });

  it("an unhandled event is ignored", () => {
    assert.equal(respond(event("MemberJoined", { memberId: "m-1" })).operation?.typeUrl, "type.googleapis.com/projection.Ignore");
  });

  it("Describe names the projection and the handled types", () => {
    const described = describe();
    assert.deepEqual([described.projection, described.version], ["library-loans", "1"]);
    assert.deepEqual(described.eventTypes, ["BookLent", "BookReturned"]);
  });
});

/**
 * The library-loans reducer: one handler per event type, each turning an event into typed SQL
 * statements for the read model of schema.sql, and what `Describe` answers.
 *
 * To add an event type: write a handler and add it to HANDLERS. Handlers must be
 * deterministic: after a reconnect the gateway sends an event again.
 */

import type { Any } from "./gen/google/protobuf/any.js";
import {
  DescribeResponse,
  Ignore,
  ProjectionResponse,
  Statement,
  type ProjectionRequest,
  type SqlValue,
} from "./gen/projection.js";

export const PROJECTION = "library-loans";
/**
 * The version of the handlers' logic: change it when what they write changes (with
 * `sidecar.rebuild_on_new_version: true` the gateway then rebuilds the read model).
 */
export const VERSION = "1";

/** The event lacks a field a handler needs: reported to the gateway as the event's error. */
class BadEvent extends Error {}

// --- Reading the payload (a google.protobuf.Struct, here a plain object) ---------------------

function text(req: ProjectionRequest, name: string): string {
  const value: unknown = req.eventPayload?.[name];
  if (typeof value !== "string") {
    throw new BadEvent(`payload field '${name}' is missing or not a string`);
  }
  return value;
}

const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/;

function time(req: ProjectionRequest, name: string): Date {
  const value = text(req, name);
  const date = new Date(value);
  if (!RFC3339.test(value) || Number.isNaN(date.getTime())) {
    throw new BadEvent(`payload field '${name}' is not an RFC 3339 time`);
  }
  return date;
}

// --- Typed SQL parameters and statements ------------------------------------------------------

const stringParam = (value: string): SqlValue => ({ kind: { $case: "stringValue", value } });
const intParam = (value: bigint): SqlValue => ({ kind: { $case: "int64Value", value } });
const timeParam = (value: Date): SqlValue => ({ kind: { $case: "timestampValue", value } });

/** A statement with placeholders $1, $2, ... bound by the gateway's database driver. */
const statement = (sql: string, ...params: SqlValue[]): Statement => ({ sql, params });

// --- The handlers: one per event type ---------------------------------------------------------

export const LEND =
  "INSERT INTO loans (loan_id, book_id, member_id, lent_at, last_position) " +
  "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (loan_id) DO NOTHING";
export const RETURN = "UPDATE loans SET returned_at = $2, last_position = $3 WHERE loan_id = $1";

type Handler = (req: ProjectionRequest) => Statement[];

export const HANDLERS: Record<string, Handler> = {
  BookLent: (req) => [
    statement(
      LEND,
      stringParam(text(req, "loanId")),
      stringParam(text(req, "bookId")),
      stringParam(text(req, "memberId")),
      timeParam(time(req, "lentAt")),
      intParam(req.globalPosition),
    ),
  ],
  BookReturned: (req) => [
    statement(RETURN, stringParam(text(req, "loanId")), timeParam(time(req, "returnedAt")), intParam(req.globalPosition)),
  ],
};

// --- Answers --------------------------------------------------------------------------------

function pack(type: "Statement" | "Ignore", bytes: Uint8Array): Any {
  return { typeUrl: `type.googleapis.com/projection.${type}`, value: Buffer.from(bytes) };
}

const packStatement = (s: Statement): Any => pack("Statement", Statement.encode(s).finish());

/** The projection, its version, and the event types to send (the gateway sends only those). */
export function describe(): DescribeResponse {
  return DescribeResponse.fromPartial({
    projection: PROJECTION,
    version: VERSION,
    eventTypes: Object.keys(HANDLERS),
    // What clears the read model when the gateway rebuilds it.
    resetOperations: [packStatement(statement("DELETE FROM loans"))],
  });
}

/** The answer to one event; never throws: a failure becomes the answer's `error`. */
export function respond(req: ProjectionRequest): ProjectionResponse {
  const handler = HANDLERS[req.eventType];
  let statements: Statement[];
  try {
    statements = handler ? handler(req) : [];
  } catch (error) {
    const message = `${req.eventType} ${req.eventId} (stream ${req.stream}): ${(error as Error).message}`;
    console.error(message);
    return ProjectionResponse.fromPartial({ eventId: req.eventId, error: { message, retryable: false } });
  }
  const [first, ...rest] = statements.map(packStatement);
  return ProjectionResponse.fromPartial({
    eventId: req.eventId,
    operation: first ?? pack("Ignore", Ignore.encode({}).finish()),
    operations: rest,
  });
}

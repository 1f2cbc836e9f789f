/**
 * What the unit tests share: requests built the way the gateway sends them, and the decoding
 * of a response's operations from the wire form (`Any`), so every test also proves that what
 * the reducer emits is well-formed protobuf of the type its URL names.
 */

import assert from "node:assert/strict";

import type { Any } from "../src/gen/google/protobuf/any.js";
import {
  Delete,
  DeleteMany,
  Ignore,
  Index,
  ProjectionRequest,
  ProjectionResponse,
  Statement,
  Update,
  UpdateOne,
  type MessageFns,
} from "../src/gen/projection.js";
import { reduce } from "../src/reduce.js";
import type { Target } from "../src/targets/index.js";

export const EVENT_ID = "6f1c2a9e-0000-4000-8000-000000000001";
export const POSITION = 42n;

export const BOOKING = {
  bookingId: "booking-7",
  guestId: "guest-3",
  roomId: "room-101",
  checkIn: "2026-12-01",
  checkOut: "2026-12-04",
  priceCents: 36000,
};

/**
 * A request as the gateway sends it, round-tripped through the wire encoding: the payload as
 * a Struct (numbers become doubles), or only as raw JSON bytes (`payload: json`).
 */
export function request(
  eventType: string,
  payload: Record<string, unknown>,
  options: { position?: bigint; asJson?: boolean; eventId?: string } = {},
): ProjectionRequest {
  const asJson = options.asJson ?? false;
  const built = ProjectionRequest.fromPartial({
    eventType,
    eventId: options.eventId ?? EVENT_ID,
    stream: "booking-7",
    globalPosition: options.position ?? POSITION,
    eventPayload: asJson ? undefined : payload,
    payloadJson: asJson ? Buffer.from(JSON.stringify(payload)) : Buffer.alloc(0),
    contentType: asJson ? "application/json" : "",
  });
  return ProjectionRequest.decode(ProjectionRequest.encode(built).finish());
}

/** Reduces `req` for `target` and returns the response as the gateway decodes it. */
export function respond(req: ProjectionRequest, target: Target): ProjectionResponse {
  return ProjectionResponse.decode(ProjectionResponse.encode(reduce(req, target)).finish());
}

const CODECS: Record<string, MessageFns<unknown>> = {
  "projection.Statement": Statement,
  "projection.UpdateOne": UpdateOne,
  "projection.DeleteMany": DeleteMany,
  "projection.Index": Index,
  "projection.Update": Update,
  "projection.Delete": Delete,
  "projection.Ignore": Ignore,
};

/** The message type name of an Any, checking the URL has the usual prefix. */
export function typeName(any: Any): string {
  assert.match(any.typeUrl, /^type\.googleapis\.com\/projection\.\w+$/);
  return any.typeUrl.slice(any.typeUrl.lastIndexOf("/") + 1);
}

/** Decodes an Any as `type` (e.g. "projection.Statement"), failing if it is another type. */
export function unpack<T>(any: Any, type: string, codec: MessageFns<T>): T {
  assert.equal(typeName(any), type);
  assert.equal(CODECS[type], codec);
  return codec.decode(any.value);
}

/** Every operation of a response, in application order (`operation`, then `operations`). */
export function operations(response: ProjectionResponse): Any[] {
  assert.equal(response.error, undefined, "unexpected error in the response");
  assert.ok(response.operation, "the response has no operation");
  return [response.operation, ...response.operations];
}

/** Asserts the response answers `Ignore` and nothing else. */
export function assertIgnored(response: ProjectionResponse): void {
  const ops = operations(response);
  assert.equal(ops.length, 1);
  assert.equal(typeName(ops[0]!), "projection.Ignore");
  assert.equal(ops[0]!.value.length, 0);
}

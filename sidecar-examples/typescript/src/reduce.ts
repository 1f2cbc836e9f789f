/**
 * The reducer: one ProjectionRequest in, its ProjectionResponse out.
 *
 * A pure, synchronous function with no I/O and no state, kept apart from the gRPC plumbing
 * (server.ts) so it can be unit-tested and reused: the gateway may send the same event again
 * after a reconnect, and the answer must depend on the request alone. It never throws; a
 * payload it cannot reduce becomes the response's non-retryable `error`, which the gateway
 * hands to the connector's poison policy.
 */

import { decodeBookingEvent } from "./bookings.js";
import type { ProjectionRequest, ProjectionResponse } from "./gen/projection.js";
import { IGNORE, pack, type Operation } from "./operations.js";
import { MAPPINGS, type Target } from "./targets/index.js";

/** The operations for one request, in the order they must be applied ([] means Ignore). */
export function operationsFor(request: ProjectionRequest, target: Target): Operation[] {
  const event = decodeBookingEvent(request);
  return event === undefined ? [] : MAPPINGS[target].operations(event, request);
}

/**
 * The response to one request: the first operation in `operation`, the rest in `operations`,
 * `Ignore` when there is nothing to do, or `error` when the payload cannot be reduced.
 */
export function reduce(request: ProjectionRequest, target: Target): ProjectionResponse {
  const response: ProjectionResponse = {
    eventId: request.eventId,
    operation: undefined,
    operations: [],
    metadata: {},
    error: undefined,
  };
  try {
    const [first = IGNORE, ...rest] = operationsFor(request, target);
    response.operation = pack(first);
    response.operations = rest.map(pack);
  } catch (error) {
    // A PayloadError, or a value the proto cannot carry (e.g. an integer beyond int64).
    const cause = error instanceof Error ? error.message : String(error);
    response.operation = undefined;
    response.operations = [];
    response.error = {
      message: `event ${request.eventId} (${request.eventType}, stream ${request.stream}): ${cause}`,
      retryable: false,
    };
  }
  return response;
}

/**
 * REDUCER_TARGET=elastic: the bookings read model as Elasticsearch document operations
 * (`projection.Index` / `Update`), for the gateway's Elasticsearch/OpenSearch target. The same
 * operations as every other example (the `elastic` target of ../go/README.md):
 * tests/typescript_sidecar.rs compares them with the Rust reference's, field for field.
 *
 * The operations act on the connector's one index, so every document id starts with its kind,
 * and an Update only merges fields (it cannot add to a counter), so documents hold facts and
 * the SQL model's counters are aggregations at query time:
 *
 * - `booking:<bookingId>`: `{ kind: "booking", booking_id, guest_id, room_id, check_in,
 *   check_out, price_cents, status, last_position }`, indexed on RoomBooked, its `status` and
 *   `last_position` merged on the later events.
 * - `event:<eventId>`: one fact per counted event, `{ kind, booking_id, guest_id, position }`
 *   with `kind` `booked`, `payment` (plus `amount_cents`) or `cancellation`.
 *
 * A booking's `paid_cents` is the sum of its payments' `amount_cents`; a guest's `bookings`,
 * `cancellations` and `payments` are the counts of its facts of each kind, and its `paid_cents`
 * the sum of its payments. Every id comes from the log, so an event delivered twice writes the
 * same documents again. No bookings event removes a document, so this mapping emits no Delete
 * (see `remove` in operations.ts).
 */

import type { BookingEvent } from "../bookings.js";
import { index, update, type Document, type Operation } from "../operations.js";

export function bookingId(id: string): string {
  return `booking:${id}`;
}

export function factId(eventId: string): string {
  return `event:${eventId}`;
}

/** The document operations for one event of id `eventId` at `position`. */
export function toElastic(event: BookingEvent, position: bigint, eventId: string): Operation[] {
  const pos = Number(position);
  const id = bookingId(event.bookingId);
  // The fact that this event counted, keyed by its id.
  const fact = (kind: string, guestId: string, extra: Document = {}): Operation =>
    index(factId(eventId), { kind, booking_id: event.bookingId, guest_id: guestId, position: pos, ...extra });
  switch (event.type) {
    case "RoomBooked":
      return [
        index(id, {
          kind: "booking",
          booking_id: event.bookingId,
          guest_id: event.guestId,
          room_id: event.roomId,
          check_in: event.checkIn,
          check_out: event.checkOut,
          price_cents: event.priceCents,
          status: "booked",
          last_position: pos,
        }),
        fact("booked", event.guestId),
      ];
    case "PaymentRecorded":
      return [update(id, { last_position: pos }), fact("payment", event.guestId, { amount_cents: event.amountCents })];
    case "GuestCheckedIn":
      return [update(id, { status: "checked_in", last_position: pos })];
    case "GuestCheckedOut":
      return [update(id, { status: "checked_out", last_position: pos })];
    case "BookingCancelled":
      return [update(id, { status: "cancelled", last_position: pos }), fact("cancellation", event.guestId)];
  }
}

/**
 * What clears the read model before a rebuild (Describe's resetOperations): nothing. The proto
 * has no delete-by-query, and none is needed: every document id is derived from the log
 * (booking id, event id), so projecting the log again rewrites the same documents.
 */
export function elasticReset(): Operation[] {
  return [];
}

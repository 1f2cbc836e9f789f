/**
 * REDUCER_TARGET=elastic: the bookings read model as Elasticsearch document operations
 * (`projection.Index` / `Update` / `Delete`), for the gateway's future Elasticsearch target.
 * Not applied by the gateway yet, but well-formed.
 *
 * The operations act on the connector's one index, and an Update only merges fields (it
 * cannot add to a counter), so the model is shaped the way Elasticsearch is used: documents
 * hold facts, and sums and counts are aggregations at query time.
 *
 * - `booking:<bookingId>`: `{ kind: "booking", bookingId, guestId, roomId, checkIn, checkOut,
 *   priceCents, status, lastPosition }`, indexed on RoomBooked, its `status` and
 *   `lastPosition` merged on the later events.
 * - `payment:<eventId>`: `{ kind: "payment", bookingId, guestId, amountCents, position }`,
 *   one per PaymentRecorded. Keyed by the event id, so an event delivered twice writes the
 *   same document twice, not two documents.
 *
 * A booking's paid cents are the sum of its payments' `amountCents`; a guest's stats (the SQL
 * model's `guest_stats`) are a terms aggregation on `guestId`. No bookings event removes a
 * document, so this mapping emits no Delete (see `remove` in operations.ts).
 */

import type { BookingEvent } from "../bookings.js";
import { index, update, type Operation } from "../operations.js";

export function bookingId(id: string): string {
  return `booking:${id}`;
}

export function paymentId(eventId: string): string {
  return `payment:${eventId}`;
}

/** The document operations for one event of id `eventId` at `position`. */
export function toElastic(event: BookingEvent, position: bigint, eventId: string): Operation[] {
  const lastPosition = Number(position);
  const id = bookingId(event.bookingId);
  switch (event.type) {
    case "RoomBooked":
      return [
        index(id, {
          kind: "booking",
          bookingId: event.bookingId,
          guestId: event.guestId,
          roomId: event.roomId,
          checkIn: event.checkIn,
          checkOut: event.checkOut,
          priceCents: event.priceCents,
          status: "booked",
          lastPosition,
        }),
      ];
    case "PaymentRecorded":
      return [
        index(paymentId(eventId), {
          kind: "payment",
          bookingId: event.bookingId,
          guestId: event.guestId,
          amountCents: event.amountCents,
          position: lastPosition,
        }),
        update(id, { lastPosition }),
      ];
    case "GuestCheckedIn":
      return [update(id, { status: "checked_in", lastPosition })];
    case "GuestCheckedOut":
      return [update(id, { status: "checked_out", lastPosition })];
    case "BookingCancelled":
      return [update(id, { status: "cancelled", lastPosition })];
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

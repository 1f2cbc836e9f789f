/**
 * REDUCER_TARGET=mongo: the bookings read model as MongoDB upserts (`projection.UpdateOne`),
 * for the gateway's future MongoDB target. Not applied by the gateway yet, but well-formed.
 *
 * The proto's MongoDB operations act on the connector's one collection and carry no
 * collection name, so the two tables of the SQL model become two kinds of document in that
 * collection, told apart by an `_id` prefix and a `kind` field:
 *
 * - `{ _id: "booking:<bookingId>", kind: "booking", bookingId, guestId, roomId, checkIn,
 *   checkOut, priceCents, paidCents, status, lastPosition }` (the `bookings` table),
 * - `{ _id: "guest_stats:<guestId>", kind: "guest_stats", guestId, bookings, cancellations,
 *   payments, paidCents }` (the `guest_stats` table).
 *
 * Every operation is an UpdateOne on `_id` with `$set` for the values and `$inc` for the
 * counters, which the gateway runs as an upsert. `$inc` by 0 creates a counter at 0 without
 * touching an existing one, like the SQL columns' `DEFAULT 0`. Struct numbers are doubles, so
 * counters, cents and positions are exact up to 2^53.
 */

import type { BookingEvent } from "../bookings.js";
import { deleteMany, updateOne, type Document, type Operation } from "../operations.js";

export const BOOKING = "booking";
export const GUEST_STATS = "guest_stats";

export function bookingId(id: string): string {
  return `${BOOKING}:${id}`;
}

export function guestStatsId(id: string): string {
  return `${GUEST_STATS}:${id}`;
}

/** The upserts for one event; `position` is the request's globalPosition. */
export function toMongo(event: BookingEvent, position: bigint): Operation[] {
  const lastPosition = Number(position);
  const booking = (update: Document) => updateOne({ _id: bookingId(event.bookingId) }, update);
  switch (event.type) {
    case "RoomBooked":
      return [
        booking({
          $set: {
            kind: BOOKING,
            bookingId: event.bookingId,
            guestId: event.guestId,
            roomId: event.roomId,
            checkIn: event.checkIn,
            checkOut: event.checkOut,
            priceCents: event.priceCents,
            status: "booked",
            lastPosition,
          },
          $inc: { paidCents: 0 },
        }),
        guestStats(event.guestId, { bookings: 1 }),
      ];
    case "PaymentRecorded":
      return [
        booking({ $set: { lastPosition }, $inc: { paidCents: event.amountCents } }),
        guestStats(event.guestId, { payments: 1, paidCents: event.amountCents }),
      ];
    case "GuestCheckedIn":
      return [booking({ $set: { status: "checked_in", lastPosition } })];
    case "GuestCheckedOut":
      return [booking({ $set: { status: "checked_out", lastPosition } })];
    case "BookingCancelled":
      return [booking({ $set: { status: "cancelled", lastPosition } }), guestStats(event.guestId, { cancellations: 1 })];
  }
}

type Counters = { bookings?: number; cancellations?: number; payments?: number; paidCents?: number };

/** Upserts a guest's counters, adding `by` and creating missing counters at 0. */
function guestStats(guestId: string, by: Counters): Operation {
  return updateOne(
    { _id: guestStatsId(guestId) },
    {
      $set: { kind: GUEST_STATS, guestId },
      $inc: { bookings: 0, cancellations: 0, payments: 0, paidCents: 0, ...by },
    },
  );
}

/**
 * What clears the read model before a rebuild (Describe's resetOperations): every document
 * of both kinds, by `_id` prefix, so other documents in the collection stay.
 */
export function mongoReset(): Operation[] {
  return [deleteMany({ _id: { $regex: `^(${BOOKING}|${GUEST_STATS}):` } })];
}

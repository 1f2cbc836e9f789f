/**
 * REDUCER_TARGET=mongo: the bookings read model as MongoDB upserts (`projection.UpdateOne`) for
 * the gateway's MongoDB sink, exactly the "MongoDB read model" of sidecar-examples/BOOKINGS.md
 * (and of the Rust example).
 *
 * The SQL tables become two collections, each row a document with the primary key as `_id` and
 * the other columns under their SQL names:
 *
 * - `bookings`: `{ _id: bookingId, guest_id, room_id, check_in, check_out, price_cents,
 *   paid_cents, status, last_position }`,
 * - `guest_stats`: `{ _id: guestId, bookings, cancellations, payments, paid_cents }`.
 *
 * Every operation is an UpdateOne on `_id` in its `collection`, which the gateway runs as an
 * upsert, with `$set` for the values and `$inc` for the counters. `$inc` by 0 creates a counter
 * at 0 without touching an existing one, like the SQL columns' `DEFAULT 0`. Struct numbers are
 * doubles; `integerFields` names the fields the sink stores as Int64, like the SQL BIGINTs.
 */

import type { BookingEvent } from "../bookings.js";
import { deleteMany, updateOne, type Document, type Operation } from "../operations.js";

export const BOOKINGS = "bookings";
export const GUEST_STATS = "guest_stats";

/** On every operation (BOOKINGS.md lists the same seven names, in this order). */
export const INTEGER_FIELDS = [
  "price_cents",
  "paid_cents",
  "last_position",
  "bookings",
  "cancellations",
  "payments",
  "amount_cents",
] as const;

/** The upserts for one event; `position` is the request's globalPosition. */
export function toMongo(event: BookingEvent, position: bigint): Operation[] {
  const last_position = Number(position);
  const booking = (set: Document, inc: Document = {}) => upsert(BOOKINGS, event.bookingId, set, inc);
  switch (event.type) {
    case "RoomBooked":
      return [
        // $inc by 0: a booking booked again keeps what was paid, as the SQL upsert does.
        booking(
          {
            guest_id: event.guestId,
            room_id: event.roomId,
            check_in: event.checkIn,
            check_out: event.checkOut,
            price_cents: event.priceCents,
            status: "booked",
            last_position,
          },
          { paid_cents: 0 },
        ),
        guestStats(event.guestId, { bookings: 1 }),
      ];
    case "PaymentRecorded":
      return [
        booking({ last_position }, { paid_cents: event.amountCents }),
        guestStats(event.guestId, { payments: 1, paid_cents: event.amountCents }),
      ];
    case "GuestCheckedIn":
      return [booking({ status: "checked_in", last_position })];
    case "GuestCheckedOut":
      return [booking({ status: "checked_out", last_position })];
    case "BookingCancelled":
      return [booking({ status: "cancelled", last_position }), guestStats(event.guestId, { cancellations: 1 })];
  }
}

type Counters = { bookings?: number; cancellations?: number; payments?: number; paid_cents?: number };

/** Upserts a guest's counters, adding `by` and creating missing counters at 0. */
function guestStats(guestId: string, by: Counters): Operation {
  return upsert(GUEST_STATS, guestId, {}, { bookings: 0, cancellations: 0, payments: 0, paid_cents: 0, ...by });
}

/** The UpdateOne of document `_id: id`; an operator with no fields is left out. */
function upsert(collection: string, id: string, set: Document, inc: Document): Operation {
  const update: Document = {};
  if (Object.keys(set).length > 0) {
    update.$set = set;
  }
  if (Object.keys(inc).length > 0) {
    update.$inc = inc;
  }
  return updateOne(collection, { _id: id }, update, [...INTEGER_FIELDS]);
}

/** What clears the read model before a rebuild (Describe's resetOperations): both collections. */
export function mongoReset(): Operation[] {
  return [deleteMany(BOOKINGS, {}), deleteMany(GUEST_STATS, {})];
}

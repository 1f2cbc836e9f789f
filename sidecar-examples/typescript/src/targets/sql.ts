/**
 * REDUCER_TARGET=sql (the default): the bookings read model as typed SQL statements, exactly
 * the statements and parameters of sidecar-examples/BOOKINGS.md, so the gateway builds the
 * same `bookings` and `guest_stats` tables (bookings-schema.sql) as with the Rust reducer.
 * The statements run on SQLite and PostgreSQL alike.
 */

import type { BookingEvent } from "../bookings.js";
import { int64, statement, text, type Operation } from "../operations.js";

export const UPSERT_BOOKING =
  "INSERT INTO bookings (booking_id, guest_id, room_id, check_in, check_out, price_cents, paid_cents, status, last_position) " +
  "VALUES ($1, $2, $3, $4, $5, $6, 0, 'booked', $7) " +
  "ON CONFLICT (booking_id) DO UPDATE SET guest_id = excluded.guest_id, room_id = excluded.room_id, " +
  "check_in = excluded.check_in, check_out = excluded.check_out, price_cents = excluded.price_cents, " +
  "status = 'booked', last_position = excluded.last_position";
export const COUNT_BOOKING =
  "INSERT INTO guest_stats (guest_id, bookings) VALUES ($1, 1) " +
  "ON CONFLICT (guest_id) DO UPDATE SET bookings = guest_stats.bookings + 1";
export const ADD_PAYMENT =
  "UPDATE bookings SET paid_cents = paid_cents + $2, last_position = $3 WHERE booking_id = $1";
export const COUNT_PAYMENT =
  "INSERT INTO guest_stats (guest_id, payments, paid_cents) VALUES ($1, 1, $2) " +
  "ON CONFLICT (guest_id) DO UPDATE SET payments = guest_stats.payments + 1, " +
  "paid_cents = guest_stats.paid_cents + excluded.paid_cents";
export const CHECK_IN = "UPDATE bookings SET status = 'checked_in', last_position = $2 WHERE booking_id = $1";
export const CHECK_OUT = "UPDATE bookings SET status = 'checked_out', last_position = $2 WHERE booking_id = $1";
export const CANCEL = "UPDATE bookings SET status = 'cancelled', last_position = $2 WHERE booking_id = $1";
export const COUNT_CANCELLATION =
  "INSERT INTO guest_stats (guest_id, cancellations) VALUES ($1, 1) " +
  "ON CONFLICT (guest_id) DO UPDATE SET cancellations = guest_stats.cancellations + 1";

/** The statements for one event; `position` is the request's globalPosition. */
export function toSql(event: BookingEvent, position: bigint): Operation[] {
  const pos = int64(position);
  switch (event.type) {
    case "RoomBooked":
      return [
        statement(
          UPSERT_BOOKING,
          text(event.bookingId),
          text(event.guestId),
          text(event.roomId),
          text(event.checkIn),
          text(event.checkOut),
          int64(event.priceCents),
          pos,
        ),
        statement(COUNT_BOOKING, text(event.guestId)),
      ];
    case "PaymentRecorded":
      return [
        statement(ADD_PAYMENT, text(event.bookingId), int64(event.amountCents), pos),
        statement(COUNT_PAYMENT, text(event.guestId), int64(event.amountCents)),
      ];
    case "GuestCheckedIn":
      return [statement(CHECK_IN, text(event.bookingId), pos)];
    case "GuestCheckedOut":
      return [statement(CHECK_OUT, text(event.bookingId), pos)];
    case "BookingCancelled":
      return [statement(CANCEL, text(event.bookingId), pos), statement(COUNT_CANCELLATION, text(event.guestId))];
  }
}

/** What clears the read model before a rebuild (Describe's resetOperations). */
export function sqlReset(): Operation[] {
  return [statement("DELETE FROM bookings"), statement("DELETE FROM guest_stats")];
}

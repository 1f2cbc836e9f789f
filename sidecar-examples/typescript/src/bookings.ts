/**
 * The bookings domain of sidecar-examples/BOOKINGS.md: which event types the reducer handles
 * and what each one carries.
 *
 * Every target (SQL, MongoDB, Elasticsearch) maps the same domain events, so the payload is
 * read and validated once, here, into a discriminated union; the target mappings then switch
 * on `type` and the compiler checks that each one handles every event. Each event requires
 * exactly the payload fields the read model uses (as the Rust reducer does), so an event that
 * the Rust reducer accepts is accepted here too.
 */

import type { ProjectionRequest } from "./gen/projection.js";
import { Payload } from "./payload.js";

export type BookingEvent =
  | {
      type: "RoomBooked";
      bookingId: string;
      guestId: string;
      roomId: string;
      checkIn: string;
      checkOut: string;
      priceCents: number;
    }
  | { type: "PaymentRecorded"; bookingId: string; guestId: string; amountCents: number }
  | { type: "GuestCheckedIn"; bookingId: string }
  | { type: "GuestCheckedOut"; bookingId: string }
  | { type: "BookingCancelled"; bookingId: string; guestId: string };

/** The event types the read model uses, declared to the gateway by Describe. */
export const HANDLED_EVENT_TYPES: readonly BookingEvent["type"][] = [
  "RoomBooked",
  "PaymentRecorded",
  "GuestCheckedIn",
  "GuestCheckedOut",
  "BookingCancelled",
];

/**
 * The domain event a request carries, or `undefined` for a type the read model does not use
 * (GuestRegistered and anything unknown), which the reducer answers with Ignore.
 * Throws a PayloadError when a handled type lacks a field or has one of the wrong type.
 */
export function decodeBookingEvent(request: ProjectionRequest): BookingEvent | undefined {
  const type = request.eventType;
  switch (type) {
    case "RoomBooked": {
      const p = Payload.of(request);
      return {
        type,
        bookingId: p.text("bookingId"),
        guestId: p.text("guestId"),
        roomId: p.text("roomId"),
        checkIn: p.text("checkIn"),
        checkOut: p.text("checkOut"),
        priceCents: p.integer("priceCents"),
      };
    }
    case "PaymentRecorded": {
      const p = Payload.of(request);
      return {
        type,
        bookingId: p.text("bookingId"),
        guestId: p.text("guestId"),
        amountCents: p.integer("amountCents"),
      };
    }
    case "GuestCheckedIn":
    case "GuestCheckedOut":
      return { type, bookingId: Payload.of(request).text("bookingId") };
    case "BookingCancelled": {
      const p = Payload.of(request);
      return { type, bookingId: p.text("bookingId"), guestId: p.text("guestId") };
    }
    default:
      return undefined;
  }
}

/**
 * REDUCER_TARGET=mongo: each event's UpdateOne upserts, decoded from the wire and compared field
 * for field with the "MongoDB read model" of BOOKINGS.md, and a small in-memory upsert engine
 * ($set, $inc) that applies them to show they build the same numbers as the SQL read model.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { UpdateOne } from "../src/gen/projection.js";
import { assertIgnored, BOOKING, operations, request, respond, unpack } from "./helpers.js";

/** The seven names every operation lists (BOOKINGS.md), in their order. */
const INTEGER_FIELDS = ["price_cents", "paid_cents", "last_position", "bookings", "cancellations", "payments", "amount_cents"];

function updates(eventType: string, payload: Record<string, unknown>, position = 42n): UpdateOne[] {
  return operations(respond(request(eventType, payload, { position }), "mongo")).map((any) =>
    unpack(any, "projection.UpdateOne", UpdateOne),
  );
}

function upsert(collection: string, id: string, update: Record<string, unknown>): UpdateOne {
  return { collection, filter: { _id: id }, update, pipeline: [], integerFields: INTEGER_FIELDS };
}

function guest(id: string, by: Record<string, number>): UpdateOne {
  return upsert("guest_stats", id, { $inc: { bookings: 0, cancellations: 0, payments: 0, paid_cents: 0, ...by } });
}

type Doc = Record<string, unknown>;

/** Applies an UpdateOne as MongoDB does with upsert: filter on `_id`, then $set and $inc. */
function apply(db: Map<string, Map<string, Doc>>, op: UpdateOne): void {
  const id = op.filter?._id;
  assert.equal(typeof id, "string");
  assert.deepEqual(Object.keys(op.filter ?? {}), ["_id"]);
  const collection = db.get(op.collection) ?? new Map<string, Doc>();
  db.set(op.collection, collection);
  const doc: Doc = collection.get(id as string) ?? { _id: id };
  for (const [operator, fields] of Object.entries(op.update ?? {})) {
    for (const [field, value] of Object.entries(fields as Doc)) {
      if (operator === "$set") {
        doc[field] = value;
      } else if (operator === "$inc") {
        assert.equal(typeof value, "number");
        doc[field] = ((doc[field] as number | undefined) ?? 0) + (value as number);
      } else {
        assert.fail(`unexpected update operator ${operator}`);
      }
    }
  }
  collection.set(id as string, doc);
}

describe("mongo target", () => {
  it("RoomBooked upserts the booking and counts it for the guest, in two collections", () => {
    assert.deepEqual(updates("RoomBooked", BOOKING), [
      upsert("bookings", "booking-7", {
        $set: {
          guest_id: "guest-3",
          room_id: "room-101",
          check_in: "2026-12-01",
          check_out: "2026-12-04",
          price_cents: 36000,
          status: "booked",
          last_position: 42,
        },
        $inc: { paid_cents: 0 },
      }),
      guest("guest-3", { bookings: 1 }),
    ]);
  });

  it("PaymentRecorded increments the booking's and the guest's paid cents", () => {
    assert.deepEqual(updates("PaymentRecorded", { bookingId: "booking-7", guestId: "guest-3", amountCents: 500 }), [
      upsert("bookings", "booking-7", { $set: { last_position: 42 }, $inc: { paid_cents: 500 } }),
      guest("guest-3", { payments: 1, paid_cents: 500 }),
    ]);
  });

  it("status events set the status; a cancellation is counted", () => {
    const status = (s: string) => upsert("bookings", "booking-7", { $set: { status: s, last_position: 42 } });
    const payload = { bookingId: "booking-7", guestId: "guest-3" };
    assert.deepEqual(updates("GuestCheckedIn", payload), [status("checked_in")]);
    assert.deepEqual(updates("GuestCheckedOut", payload), [status("checked_out")]);
    assert.deepEqual(updates("BookingCancelled", payload), [status("cancelled"), guest("guest-3", { cancellations: 1 })]);
  });

  it("applied in order, the upserts build the SQL model's rows", () => {
    const db = new Map<string, Map<string, Doc>>();
    const guest = { guestId: "guest-3" };
    const events: [string, Record<string, unknown>][] = [
      ["RoomBooked", BOOKING],
      ["PaymentRecorded", { bookingId: "booking-7", ...guest, amountCents: 20000 }],
      ["PaymentRecorded", { bookingId: "booking-7", ...guest, amountCents: 16000 }],
      ["GuestCheckedIn", { bookingId: "booking-7" }],
      ["RoomBooked", { ...BOOKING, bookingId: "booking-8", priceCents: 9000 }],
      ["BookingCancelled", { bookingId: "booking-8", ...guest }],
    ];
    events.forEach(([type, payload], n) => updates(type, payload, BigInt(n + 1)).forEach((op) => apply(db, op)));
    assert.deepEqual([...db.keys()].sort(), ["bookings", "guest_stats"]);
    const bookings = db.get("bookings")!;
    assert.deepEqual(bookings.get("booking-7"), {
      _id: "booking-7",
      guest_id: "guest-3",
      room_id: "room-101",
      check_in: "2026-12-01",
      check_out: "2026-12-04",
      price_cents: 36000,
      paid_cents: 36000,
      status: "checked_in",
      last_position: 4,
    });
    assert.equal(bookings.get("booking-8")?.status, "cancelled");
    assert.equal(bookings.get("booking-8")?.paid_cents, 0);
    assert.deepEqual(db.get("guest_stats")!.get("guest-3"), {
      _id: "guest-3",
      bookings: 2,
      cancellations: 1,
      payments: 2,
      paid_cents: 36000,
    });
  });

  it("answers unhandled types with Ignore and reports bad payloads", () => {
    assertIgnored(respond(request("GuestRegistered", { guestId: "guest-3" }), "mongo"));
    const response = respond(request("PaymentRecorded", { bookingId: "b" }), "mongo");
    assert.equal(response.operation, undefined);
    assert.equal(response.error?.retryable, false);
  });
});

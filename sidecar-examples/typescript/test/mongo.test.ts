/**
 * REDUCER_TARGET=mongo: each event's UpdateOne upserts, decoded from the wire, and a small
 * in-memory upsert engine ($set, $inc) that applies them to show they build the same numbers
 * as the SQL read model.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { UpdateOne } from "../src/gen/projection.js";
import { assertIgnored, BOOKING, operations, request, respond, unpack } from "./helpers.js";

function updates(eventType: string, payload: Record<string, unknown>, position = 42n): UpdateOne[] {
  const response = respond(request(eventType, payload, { position }), "mongo");
  // Compared by the Eventuous fields; this reducer leaves the additive ones at their defaults.
  return operations(response).map((any) => {
    const { filter, update, collection, pipeline, integerFields } = unpack(any, "projection.UpdateOne", UpdateOne);
    assert.deepEqual([collection, pipeline, integerFields], ["", [], []]);
    return { filter, update } as UpdateOne;
  });
}

type Doc = Record<string, unknown>;

/** Applies an UpdateOne as MongoDB does with upsert: filter on `_id`, then $set and $inc. */
function apply(collection: Map<string, Doc>, op: UpdateOne): void {
  const id = op.filter?._id;
  assert.equal(typeof id, "string");
  assert.deepEqual(Object.keys(op.filter ?? {}), ["_id"]);
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
  it("RoomBooked upserts the booking document and counts it for the guest", () => {
    assert.deepEqual(updates("RoomBooked", BOOKING), [
      {
        filter: { _id: "booking:booking-7" },
        update: {
          $set: {
            kind: "booking",
            bookingId: "booking-7",
            guestId: "guest-3",
            roomId: "room-101",
            checkIn: "2026-12-01",
            checkOut: "2026-12-04",
            priceCents: 36000,
            status: "booked",
            lastPosition: 42,
          },
          $inc: { paidCents: 0 },
        },
      },
      {
        filter: { _id: "guest_stats:guest-3" },
        update: {
          $set: { kind: "guest_stats", guestId: "guest-3" },
          $inc: { bookings: 1, cancellations: 0, payments: 0, paidCents: 0 },
        },
      },
    ]);
  });

  it("PaymentRecorded increments the booking's and the guest's paid cents", () => {
    assert.deepEqual(updates("PaymentRecorded", { bookingId: "booking-7", guestId: "guest-3", amountCents: 500 }), [
      { filter: { _id: "booking:booking-7" }, update: { $set: { lastPosition: 42 }, $inc: { paidCents: 500 } } },
      {
        filter: { _id: "guest_stats:guest-3" },
        update: {
          $set: { kind: "guest_stats", guestId: "guest-3" },
          $inc: { bookings: 0, cancellations: 0, payments: 1, paidCents: 500 },
        },
      },
    ]);
  });

  it("status events set the status; a cancellation is counted", () => {
    const status = (s: string) => ({ filter: { _id: "booking:booking-7" }, update: { $set: { status: s, lastPosition: 42 } } });
    const payload = { bookingId: "booking-7", guestId: "guest-3" };
    assert.deepEqual(updates("GuestCheckedIn", payload), [status("checked_in")]);
    assert.deepEqual(updates("GuestCheckedOut", payload), [status("checked_out")]);
    const cancelled = updates("BookingCancelled", payload);
    assert.deepEqual(cancelled[0], status("cancelled"));
    assert.deepEqual(cancelled[1]?.update?.$inc, { bookings: 0, cancellations: 1, payments: 0, paidCents: 0 });
  });

  it("applied in order, the upserts build the SQL model's rows", () => {
    const collection = new Map<string, Doc>();
    const guest = { guestId: "guest-3" };
    const events: [string, Record<string, unknown>][] = [
      ["RoomBooked", BOOKING],
      ["PaymentRecorded", { bookingId: "booking-7", ...guest, amountCents: 20000 }],
      ["PaymentRecorded", { bookingId: "booking-7", ...guest, amountCents: 16000 }],
      ["GuestCheckedIn", { bookingId: "booking-7" }],
      ["RoomBooked", { ...BOOKING, bookingId: "booking-8", priceCents: 9000 }],
      ["BookingCancelled", { bookingId: "booking-8", ...guest }],
    ];
    events.forEach(([type, payload], n) => updates(type, payload, BigInt(n + 1)).forEach((op) => apply(collection, op)));
    assert.deepEqual(collection.get("booking:booking-7"), {
      _id: "booking:booking-7",
      kind: "booking",
      ...BOOKING,
      paidCents: 36000,
      status: "checked_in",
      lastPosition: 4,
    });
    assert.equal(collection.get("booking:booking-8")?.status, "cancelled");
    assert.equal(collection.get("booking:booking-8")?.paidCents, 0);
    assert.deepEqual(collection.get("guest_stats:guest-3"), {
      _id: "guest_stats:guest-3",
      kind: "guest_stats",
      guestId: "guest-3",
      bookings: 2,
      cancellations: 1,
      payments: 2,
      paidCents: 36000,
    });
  });

  it("answers unhandled types with Ignore and reports bad payloads", () => {
    assertIgnored(respond(request("GuestRegistered", { guestId: "guest-3" }), "mongo"));
    const response = respond(request("PaymentRecorded", { bookingId: "b" }), "mongo");
    assert.equal(response.operation, undefined);
    assert.equal(response.error?.retryable, false);
  });
});

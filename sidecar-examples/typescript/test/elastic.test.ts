/**
 * REDUCER_TARGET=elastic: each event's Index / Update operations, decoded from the wire, and
 * the Delete helper's encoding.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { Delete, Index, Update } from "../src/gen/projection.js";
import { pack, remove } from "../src/operations.js";
import { assertIgnored, BOOKING, EVENT_ID, operations, request, respond, typeName, unpack } from "./helpers.js";

/**
 * The message without the additive fields this reducer leaves at their defaults (`index`,
 * `externalVersion`, `docAsUpsert`, `upsert`), so each expectation names what it sets.
 */
function setFields<T extends object>(message: T): T {
  return Object.fromEntries(Object.entries(message).filter(([, v]) => v !== "" && v !== false && v !== undefined)) as T;
}

/** The response's operations as ["Index" | "Update", message]. */
function documents(eventType: string, payload: Record<string, unknown>): [string, Index | Update][] {
  const response = respond(request(eventType, payload), "elastic");
  return operations(response).map((any) => {
    const type = typeName(any);
    if (type === "projection.Index") {
      return ["Index", setFields(unpack(any, type, Index))];
    }
    return ["Update", setFields(unpack(any, "projection.Update", Update))];
  });
}

describe("elastic target", () => {
  it("RoomBooked indexes the booking document", () => {
    assert.deepEqual(documents("RoomBooked", BOOKING), [
      [
        "Index",
        {
          id: "booking:booking-7",
          document: { kind: "booking", ...BOOKING, status: "booked", lastPosition: 42 },
        },
      ],
    ]);
  });

  it("PaymentRecorded indexes a payment document keyed by the event id", () => {
    assert.deepEqual(documents("PaymentRecorded", { bookingId: "booking-7", guestId: "guest-3", amountCents: 700 }), [
      [
        "Index",
        {
          id: `payment:${EVENT_ID}`,
          document: { kind: "payment", bookingId: "booking-7", guestId: "guest-3", amountCents: 700, position: 42 },
        },
      ],
      ["Update", { id: "booking:booking-7", document: { lastPosition: 42 } }],
    ]);
  });

  it("status events merge the status into the booking", () => {
    const payload = { bookingId: "booking-7", guestId: "guest-3" };
    for (const [type, status] of [
      ["GuestCheckedIn", "checked_in"],
      ["GuestCheckedOut", "checked_out"],
      ["BookingCancelled", "cancelled"],
    ] as const) {
      assert.deepEqual(documents(type, payload), [
        ["Update", { id: "booking:booking-7", document: { status, lastPosition: 42 } }],
      ]);
    }
  });

  it("encodes a Delete", () => {
    const any = pack(remove("booking:booking-7"));
    assert.deepEqual(setFields(unpack(any, "projection.Delete", Delete)), { id: "booking:booking-7" });
  });

  it("answers unhandled types with Ignore and reports bad payloads", () => {
    assertIgnored(respond(request("GuestRegistered", { guestId: "guest-3" }), "elastic"));
    const response = respond(request("RoomBooked", { bookingId: "b" }), "elastic");
    assert.equal(response.operation, undefined);
    assert.match(response.error?.message ?? "", /'guestId' is missing/);
  });
});

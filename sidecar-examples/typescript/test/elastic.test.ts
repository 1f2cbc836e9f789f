/**
 * REDUCER_TARGET=elastic: each event's Index / Update operations, decoded from the wire, the
 * documents they build applied in order (and again, as a replay), and the Delete helper's
 * encoding.
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

/** The operations of a response as ["Index" | "Update", message]. */
function decoded(response: ReturnType<typeof respond>): [string, Index | Update][] {
  return operations(response).map((any) => {
    const type = typeName(any);
    if (type === "projection.Index") {
      return ["Index", setFields(unpack(any, type, Index))];
    }
    return ["Update", setFields(unpack(any, "projection.Update", Update))];
  });
}

function documents(eventType: string, payload: Record<string, unknown>): [string, Index | Update][] {
  return decoded(respond(request(eventType, payload), "elastic"));
}

const FACT_ID = `event:${EVENT_ID}`;

describe("elastic target", () => {
  it("RoomBooked indexes the booking document and a booked fact", () => {
    assert.deepEqual(documents("RoomBooked", BOOKING), [
      [
        "Index",
        {
          id: "booking:booking-7",
          document: {
            kind: "booking",
            booking_id: "booking-7",
            guest_id: "guest-3",
            room_id: "room-101",
            check_in: "2026-12-01",
            check_out: "2026-12-04",
            price_cents: 36000,
            status: "booked",
            last_position: 42,
          },
        },
      ],
      ["Index", { id: FACT_ID, document: { kind: "booked", booking_id: "booking-7", guest_id: "guest-3", position: 42 } }],
    ]);
  });

  it("PaymentRecorded moves the booking and indexes a payment fact keyed by the event id", () => {
    assert.deepEqual(documents("PaymentRecorded", { bookingId: "booking-7", guestId: "guest-3", amountCents: 700 }), [
      ["Update", { id: "booking:booking-7", document: { last_position: 42 } }],
      [
        "Index",
        {
          id: FACT_ID,
          document: { kind: "payment", booking_id: "booking-7", guest_id: "guest-3", position: 42, amount_cents: 700 },
        },
      ],
    ]);
  });

  it("status events merge the status into the booking; a cancellation is also a fact", () => {
    const payload = { bookingId: "booking-7", guestId: "guest-3" };
    for (const [type, status] of [
      ["GuestCheckedIn", "checked_in"],
      ["GuestCheckedOut", "checked_out"],
    ] as const) {
      assert.deepEqual(documents(type, payload), [
        ["Update", { id: "booking:booking-7", document: { status, last_position: 42 } }],
      ]);
    }
    assert.deepEqual(documents("BookingCancelled", payload), [
      ["Update", { id: "booking:booking-7", document: { status: "cancelled", last_position: 42 } }],
      [
        "Index",
        { id: FACT_ID, document: { kind: "cancellation", booking_id: "booking-7", guest_id: "guest-3", position: 42 } },
      ],
    ]);
  });

  it("applied in order, the documents hold the SQL model, and a replay changes nothing", () => {
    const events: [string, Record<string, unknown>][] = [
      ["RoomBooked", BOOKING],
      ["GuestRegistered", { guestId: "guest-3", name: "G", email: "g@example.com" }],
      ["PaymentRecorded", { bookingId: "booking-7", guestId: "guest-3", amountCents: 20000 }],
      ["RoomBooked", { ...BOOKING, roomId: "room-102", priceCents: 40000 }],
      ["PaymentRecorded", { bookingId: "booking-7", guestId: "guest-3", amountCents: 16000 }],
      ["GuestCheckedIn", { bookingId: "booking-7" }],
      ["RoomBooked", { ...BOOKING, bookingId: "booking-8", priceCents: 9000 }],
      ["BookingCancelled", { bookingId: "booking-8", guestId: "guest-3" }],
    ];
    const project = (times: number): Map<string, Record<string, unknown>> => {
      const index = new Map<string, Record<string, unknown>>();
      events.forEach(([type, payload], n) => {
        const req = request(type, payload, { position: BigInt(n + 1), eventId: `event-${n + 1}` });
        for (let i = 0; i < times; i++) {
          const response = respond(req, "elastic");
          if (typeName(response.operation!) === "projection.Ignore") continue;
          for (const [op, message] of decoded(response)) {
            const document = message.document as Record<string, unknown>;
            if (op === "Index") {
              index.set(message.id, { ...document });
            } else {
              assert.ok(index.has(message.id), `an Update of ${message.id}, which does not exist, fails`);
              Object.assign(index.get(message.id)!, document);
            }
          }
        }
      });
      return index;
    };
    const index = project(1);
    assert.deepEqual(project(2), index);
    assert.deepEqual(index.get("booking:booking-7"), {
      kind: "booking",
      booking_id: "booking-7",
      guest_id: "guest-3",
      room_id: "room-102",
      check_in: "2026-12-01",
      check_out: "2026-12-04",
      price_cents: 40000,
      status: "checked_in",
      last_position: 6,
    });
    assert.equal(index.get("booking:booking-8")?.status, "cancelled");
    const facts = [...index.values()].filter((d) => d.kind !== "booking");
    const count = (kind: string) => facts.filter((d) => d.kind === kind).length;
    const paid = facts.filter((d) => d.kind === "payment").reduce((sum, d) => sum + (d.amount_cents as number), 0);
    // guest-3's bookings, cancellations, payments and paid cents (all of them booking-7's).
    assert.deepEqual([count("booked"), count("cancellation"), count("payment"), paid], [3, 1, 2, 36000]);
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

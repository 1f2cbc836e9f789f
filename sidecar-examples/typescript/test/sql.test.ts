/**
 * REDUCER_TARGET=sql: for every bookings event type, the exact statements and typed
 * parameters of sidecar-examples/BOOKINGS.md (the SQL text is compared with BOOKINGS.md
 * itself), Ignore for the rest, and bad payloads reported as non-retryable errors.
 */

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";

import { Statement, type SqlValue } from "../src/gen/projection.js";
import * as sql from "../src/targets/sql.js";
import { assertIgnored, BOOKING, EVENT_ID, operations, request, respond, unpack } from "./helpers.js";

type Param = [string, unknown];

/** The response's statements as [sql, params], params as [kind, value]. */
function statements(eventType: string, payload: Record<string, unknown>, asJson = false): [string, Param[]][] {
  const response = respond(request(eventType, payload, { asJson }), "sql");
  assert.equal(response.eventId, EVENT_ID);
  return operations(response).map((any) => {
    const s = unpack(any, "projection.Statement", Statement);
    return [s.sql, s.params.map(param)];
  });
}

function param(p: SqlValue): Param {
  assert.ok(p.kind, "a parameter without a value");
  return [p.kind.$case, p.kind.value];
}

const s = (value: string): Param => ["stringValue", value];
const i = (value: number | bigint): Param => ["int64Value", BigInt(value)];

/** BOOKINGS.md's statements per event type, from its numbered `1. \`SQL\`` lines. */
function bookingsMdStatements(): Map<string, string[]> {
  const path = new URL("../../../BOOKINGS.md", import.meta.url);
  const byType = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const line of readFileSync(path, "utf8").split("\n")) {
    const heading = /^\*\*(\w+)\*\*/.exec(line);
    if (heading) {
      current = [];
      byType.set(heading[1]!, current);
      continue;
    }
    const numbered = /^\d+\. `([^`]+)`/.exec(line);
    if (numbered && current) {
      current.push(numbered[1]!);
    }
  }
  return byType;
}

describe("sql target", () => {
  it("uses exactly the statements of BOOKINGS.md", () => {
    const md = bookingsMdStatements();
    assert.deepEqual(md.get("RoomBooked"), [sql.UPSERT_BOOKING, sql.COUNT_BOOKING]);
    assert.deepEqual(md.get("PaymentRecorded"), [sql.ADD_PAYMENT, sql.COUNT_PAYMENT]);
    assert.deepEqual(md.get("GuestCheckedIn"), [sql.CHECK_IN]);
    assert.deepEqual(md.get("GuestCheckedOut"), [sql.CHECK_OUT]);
    assert.deepEqual(md.get("BookingCancelled"), [sql.CANCEL, sql.COUNT_CANCELLATION]);
  });

  it("RoomBooked upserts the booking and counts it for the guest", () => {
    assert.deepEqual(statements("RoomBooked", BOOKING), [
      [
        sql.UPSERT_BOOKING,
        [s("booking-7"), s("guest-3"), s("room-101"), s("2026-12-01"), s("2026-12-04"), i(36000), i(42)],
      ],
      [sql.COUNT_BOOKING, [s("guest-3")]],
    ]);
  });

  it("PaymentRecorded adds to the booking and the guest's payments", () => {
    const payload = { bookingId: "booking-7", guestId: "guest-3", paymentId: "p-1", amountCents: 12000 };
    assert.deepEqual(statements("PaymentRecorded", payload), [
      [sql.ADD_PAYMENT, [s("booking-7"), i(12000), i(42)]],
      [sql.COUNT_PAYMENT, [s("guest-3"), i(12000)]],
    ]);
  });

  it("GuestCheckedIn and GuestCheckedOut set the status", () => {
    const payload = { bookingId: "booking-7", guestId: "guest-3", at: "2026-12-01T15:00:00Z" };
    assert.deepEqual(statements("GuestCheckedIn", payload), [[sql.CHECK_IN, [s("booking-7"), i(42)]]]);
    assert.deepEqual(statements("GuestCheckedOut", payload), [[sql.CHECK_OUT, [s("booking-7"), i(42)]]]);
  });

  it("BookingCancelled sets the status and counts the cancellation", () => {
    const payload = { bookingId: "booking-7", guestId: "guest-3", reason: "changed plans" };
    assert.deepEqual(statements("BookingCancelled", payload), [
      [sql.CANCEL, [s("booking-7"), i(42)]],
      [sql.COUNT_CANCELLATION, [s("guest-3")]],
    ]);
  });

  it("reads the raw JSON payload the same way", () => {
    assert.deepEqual(statements("RoomBooked", BOOKING, true), statements("RoomBooked", BOOKING));
  });

  it("keeps positions beyond 2^53 exact", () => {
    const position = 2n ** 60n + 7n;
    const response = respond(request("GuestCheckedIn", { bookingId: "b" }, { position }), "sql");
    const statement = unpack(operations(response)[0]!, "projection.Statement", Statement);
    assert.deepEqual(statement.params.map(param), [s("b"), i(position)]);
  });

  it("answers GuestRegistered and unknown types with Ignore", () => {
    const registered = { guestId: "guest-3", name: "Guest 3", email: "guest3@example.com" };
    assertIgnored(respond(request("GuestRegistered", registered), "sql"));
    assertIgnored(respond(request("RoomRenamed", { roomId: "room-1" }), "sql"));
    assertIgnored(respond(request("V1.RoomBooked", BOOKING), "sql"));
  });

  it("reports a missing or mistyped field as a non-retryable error", () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ ...BOOKING, guestId: undefined }, "'guestId' is missing"],
      [{ ...BOOKING, priceCents: "100" }, "'priceCents' is not a number"],
      [{ ...BOOKING, priceCents: 10.5 }, "'priceCents' is not a whole number"],
      [{ ...BOOKING, roomId: 101 }, "'roomId' is not a string"],
    ];
    for (const [payload, expected] of cases) {
      const response = respond(request("RoomBooked", JSON.parse(JSON.stringify(payload))), "sql");
      assert.equal(response.eventId, EVENT_ID);
      assert.equal(response.operation, undefined);
      assert.deepEqual(response.operations, []);
      assert.ok(response.error);
      assert.equal(response.error.retryable, false);
      assert.ok(response.error.message.includes(expected), response.error.message);
      assert.ok(response.error.message.includes(EVENT_ID), response.error.message);
    }
  });

  it("reports a payloadJson that is not a JSON object", () => {
    const req = request("GuestCheckedIn", {}, { asJson: true });
    for (const bytes of ["{not json", "[1, 2]"]) {
      req.payloadJson = Buffer.from(bytes);
      const response = respond(req, "sql");
      assert.ok(response.error, bytes);
      assert.match(response.error.message, /payloadJson is not (valid JSON|a JSON object)/);
    }
  });
});

/**
 * Describe: the handled event types (each one reduced to operations, GuestRegistered not
 * among them), the projection's name and version, and each target's reset operations.
 */

import assert from "node:assert/strict";
import { describe as suite, it } from "node:test";

import { HANDLED_EVENT_TYPES } from "../src/bookings.js";
import { describe, PROJECTION, PROJECTION_VERSION } from "../src/describe.js";
import { DeleteMany, Statement } from "../src/gen/projection.js";
import { operationsFor } from "../src/reduce.js";
import { BOOKING, request, unpack } from "./helpers.js";

suite("describe", () => {
  it("declares exactly the types the reducer turns into operations", () => {
    const payload = { ...BOOKING, amountCents: 100 };
    for (const type of HANDLED_EVENT_TYPES) {
      assert.ok(operationsFor(request(type, payload), "sql").length > 0, type);
    }
    assert.deepEqual(operationsFor(request("GuestRegistered", { guestId: "g" }), "sql"), []);
    assert.ok(!HANDLED_EVENT_TYPES.includes("GuestRegistered" as never));
  });

  it("names the projection and its version", () => {
    const answer = describe("sql");
    assert.equal(answer.projection, PROJECTION);
    assert.equal(answer.version, PROJECTION_VERSION);
    assert.deepEqual(answer.eventTypes, [...HANDLED_EVENT_TYPES]);
  });

  it("sql: clears both tables", () => {
    const statements = describe("sql").resetOperations.map((any) => unpack(any, "projection.Statement", Statement));
    assert.deepEqual(statements, [
      { sql: "DELETE FROM bookings", params: [] },
      { sql: "DELETE FROM guest_stats", params: [] },
    ]);
  });

  it("mongo: empties both collections", () => {
    const deletes = describe("mongo").resetOperations.map((any) => unpack(any, "projection.DeleteMany", DeleteMany));
    assert.deepEqual(deletes, [
      { collection: "bookings", filter: {}, integerFields: [] },
      { collection: "guest_stats", filter: {}, integerFields: [] },
    ]);
  });

  it("elastic: nothing to clear (document ids come from the log)", () => {
    assert.deepEqual(describe("elastic").resetOperations, []);
  });
});

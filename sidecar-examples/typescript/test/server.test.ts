/**
 * The gRPC services over a real loopback connection: a stream is answered in order with the
 * request's eventId, Describe answers, and stop() ends an open stream with status OK (what lets the process
 * exit promptly on SIGTERM while the gateway holds its streams open).
 */

import assert from "node:assert/strict";
import { once } from "node:events";
import { after, before, describe, it } from "node:test";

import * as grpc from "@grpc/grpc-js";

import { HANDLED_EVENT_TYPES } from "../src/bookings.js";
import {
  ProjectionClient,
  ProjectionInfoClient,
  type DescribeResponse,
  type ProjectionResponse,
} from "../src/gen/projection.js";
import { setLevel } from "../src/log.js";
import { startServer, type RunningServer } from "../src/server.js";
import { BOOKING, request, typeName } from "./helpers.js";

describe("gRPC service", () => {
  let server: RunningServer;
  let client: ProjectionClient;

  before(async () => {
    setLevel("warn"); // keep the test report free of stream open/close lines
    server = await startServer("127.0.0.1:0", "sql");
    assert.ok(server.port > 0);
    client = new ProjectionClient(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
  });

  after(async () => {
    client.close();
    await server.stop(1000);
  });

  it("answers every request of a stream in order, with its eventId", async () => {
    const call = client.project();
    const responses: ProjectionResponse[] = [];
    call.on("data", (response: ProjectionResponse) => responses.push(response));
    const status = once(call, "status");
    const types = ["RoomBooked", "GuestRegistered", "GuestCheckedIn", "NoSuchEvent"];
    const count = 1000;
    for (let n = 0; n < count; n++) {
      const req = request(types[n % types.length]!, BOOKING, { eventId: `event-${n}`, position: BigInt(n + 1) });
      if (!call.write(req)) {
        await once(call, "drain");
      }
    }
    call.end();
    const [{ code }] = (await status) as [grpc.StatusObject];
    assert.equal(code, grpc.status.OK);
    assert.equal(responses.length, count);
    responses.forEach((response, n) => {
      assert.equal(response.eventId, `event-${n}`);
      const expected = n % 4 === 0 || n % 4 === 2 ? "projection.Statement" : "projection.Ignore";
      assert.equal(typeName(response.operation!), expected);
    });
  });

  it("answers Describe", async () => {
    const info = new ProjectionInfoClient(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
    try {
      const answer = await new Promise<DescribeResponse>((resolve, reject) =>
        info.describe({ connector: "bookings" }, (error, response) => (error ? reject(error) : resolve(response))),
      );
      assert.equal(answer.projection, "bookings");
      assert.deepEqual(answer.eventTypes, [...HANDLED_EVENT_TYPES]);
      assert.equal(answer.resetOperations.length, 2);
    } finally {
      info.close();
    }
  });

  it("stop() ends an open stream cleanly while the client keeps it open", async () => {
    const call = client.project();
    call.write(request("GuestCheckedIn", { bookingId: "b" }, { eventId: "only" }));
    const [first] = (await once(call, "data")) as [ProjectionResponse];
    assert.equal(first.eventId, "only");
    const status = once(call, "status");
    const started = Date.now();
    await server.stop(5000);
    const [{ code }] = (await status) as [grpc.StatusObject];
    assert.equal(code, grpc.status.OK);
    assert.ok(Date.now() - started < 4000, "stop waited for the grace period instead of ending the stream");
  });
});

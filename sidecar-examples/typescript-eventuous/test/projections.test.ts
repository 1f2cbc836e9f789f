/**
 * The projections, decoded from the wire form, and the gRPC service over a real loopback
 * connection: handled events are answered in order with their eventId, unhandled ones get no
 * reply, and a payload a handler cannot project fails the stream.
 */

import assert from "node:assert/strict";
import { once } from "node:events";
import { after, before, describe, it } from "node:test";

import * as grpc from "@grpc/grpc-js";

import { project, runServer } from "../src/common.js";
import type { Any } from "../src/compiled/google/protobuf/any.js";
import {
    Execute,
    InsertOne,
    ProjectionClient,
    ProjectionRequest,
    ProjectionResponse,
    UpdateOne,
} from "../src/compiled/projection.js";
import { mongoProjections, sqlProjections, type Target, TARGETS } from "../src/projections.js";

const ROOM_BOOKED = {
    bookingId: "booking-1",
    roomId: "room-12",
    guestId: "guest-o'brien",
    checkIn: "2026-12-01",
    checkOut: "2026-12-03",
    bookingPrice: 240.5,
    prepaidAmount: 40,
};
const PAYMENT = { bookingId: "booking-1", paymentId: "payment-1", paidAmount: 100, outstanding: 100.5 };

/** A request as the gateway sends it, through the wire encoding (numbers become doubles). */
function request(eventType: string, payload: object, eventId = "event-1"): ProjectionRequest {
    const built = ProjectionRequest.fromPartial({ eventType, eventId, stream: "booking-1", eventPayload: payload });
    return ProjectionRequest.decode(ProjectionRequest.encode(built).finish());
}

/** The response's single operation, as the gateway decodes it: [type URL, message bytes]. */
function respond(target: Target, eventType: string, payload: object): Any | undefined {
    const projections = new Map(TARGETS[target].map((p) => [p.eventType, p.handler]));
    const response = project(projections, request(eventType, payload));
    if (response === undefined) {
        return undefined;
    }
    const decoded = ProjectionResponse.decode(ProjectionResponse.encode(response).finish());
    assert.equal(decoded.eventId, "event-1");
    // Only the Eventuous base fields are set.
    assert.deepEqual([decoded.operations, decoded.error, decoded.metadata], [[], undefined, {}]);
    assert.ok(decoded.operation);
    return decoded.operation;
}

function sql(eventType: string, payload: object): string {
    const any = respond("sql", eventType, payload);
    assert.ok(any);
    assert.equal(any.typeUrl, "/projection.Execute");
    return Execute.decode(any.value).sql;
}

describe("sql projections (projection.Execute)", () => {
    it("V1.RoomBooked inserts the booking, quoting text", () => {
        assert.equal(
            sql("V1.RoomBooked", ROOM_BOOKED),
            "INSERT INTO Bookings (BookingId, RoomId, GuestId, CheckInDate, CheckOutDate, BookingPrice, PaidAmount, Outstanding, Paid)\n" +
                "VALUES ('booking-1', 'room-12', 'guest-o''brien', '2026-12-01', '2026-12-03', 240.5, 40, 200.5, 0)",
        );
    });

    it("V1.PaymentRegistered adds the payment and sets the outstanding amount", () => {
        assert.equal(
            sql("V1.PaymentRegistered", PAYMENT),
            "UPDATE Bookings\nSET PaidAmount = PaidAmount + 100, Outstanding = 100.5\nWHERE BookingId = 'booking-1'",
        );
    });

    it("V1.FullyPaid marks the booking paid", () => {
        assert.equal(sql("V1.FullyPaid", { bookingId: "booking-1" }), "UPDATE Bookings SET Paid = 1 WHERE BookingId = 'booking-1'");
    });

    it("refuses a value of the wrong type instead of pasting it into SQL", () => {
        assert.throws(() => sql("V1.FullyPaid", { bookingId: 7 }), /expected a string, got 7/);
        assert.throws(() => sql("V1.PaymentRegistered", { ...PAYMENT, paidAmount: "1; DROP TABLE Bookings" }), /expected a number/);
    });
});

describe("mongo projections (projection.InsertOne / UpdateOne)", () => {
    it("V1.RoomBooked inserts the booking document", () => {
        const any = respond("mongo", "V1.RoomBooked", ROOM_BOOKED);
        assert.equal(any?.typeUrl, "/projection.InsertOne");
        const op = InsertOne.decode(any.value);
        assert.deepEqual(op.document, {
            _id: "booking-1",
            roomId: "room-12",
            guestId: "guest-o'brien",
            checkInDate: "2026-12-01",
            checkOutDate: "2026-12-03",
            bookingPrice: 240.5,
            paidAmount: 40,
            outstanding: 200.5,
            paid: false,
        });
        assert.deepEqual([op.collection, op.integerFields], ["", []]); // the connector's collection
    });

    it("V1.PaymentRegistered and V1.FullyPaid update it by _id", () => {
        const payment = respond("mongo", "V1.PaymentRegistered", PAYMENT);
        assert.equal(payment?.typeUrl, "/projection.UpdateOne");
        const op = UpdateOne.decode(payment.value);
        assert.deepEqual([op.filter, op.update], [
            { _id: "booking-1" },
            { $set: { outstanding: 100.5 }, $inc: { paidAmount: 100 } },
        ]);
        assert.deepEqual([op.collection, op.pipeline, op.integerFields], ["", [], []]);
        const paid = UpdateOne.decode(respond("mongo", "V1.FullyPaid", { bookingId: "booking-1" })!.value);
        assert.deepEqual([paid.filter, paid.update], [{ _id: "booking-1" }, { $set: { paid: true } }]);
    });
});

describe("event types without a handler", () => {
    it("get no response on either target", () => {
        for (const target of ["sql", "mongo"] as const) {
            for (const type of ["V1.BookingCancelled", "RoomBooked", "V2.RoomBooked", ""]) {
                assert.equal(respond(target, type, ROOM_BOOKED), undefined, `${target} ${type}`);
            }
        }
        assert.deepEqual(
            [sqlProjections, mongoProjections].map((p) => p.map((h) => h.eventType)),
            [
                ["V1.RoomBooked", "V1.PaymentRegistered", "V1.FullyPaid"],
                ["V1.RoomBooked", "V1.PaymentRegistered", "V1.FullyPaid"],
            ],
        );
    });
});

describe("gRPC service", () => {
    let server: grpc.Server;
    let client: ProjectionClient;
    const quiet = console.error;

    before(async () => {
        console.error = () => {}; // the "No handler found" lines
        const started = await runServer("127.0.0.1:0", sqlProjections);
        server = started.server;
        client = new ProjectionClient(`127.0.0.1:${started.port}`, grpc.credentials.createInsecure());
    });

    after(() => {
        console.error = quiet;
        client.close();
        server.forceShutdown();
    });

    it("answers the handled events of a stream in order and skips the others", async () => {
        const call = client.project();
        const answered: string[] = [];
        call.on("data", (response: ProjectionResponse) => answered.push(response.eventId));
        const status = once(call, "status");
        const types = ["V1.RoomBooked", "V1.BookingCancelled", "V1.PaymentRegistered", "Unknown", "V1.FullyPaid"];
        const expected: string[] = [];
        for (let n = 0; n < 500; n++) {
            const type = types[n % types.length]!;
            const payload = type === "V1.PaymentRegistered" ? PAYMENT : ROOM_BOOKED;
            if (!call.write(request(type, payload, `event-${n}`))) {
                await once(call, "drain");
            }
            if (type.startsWith("V1.") && type !== "V1.BookingCancelled") {
                expected.push(`event-${n}`);
            }
        }
        call.end();
        const [{ code }] = (await status) as [grpc.StatusObject];
        assert.equal(code, grpc.status.OK);
        assert.deepEqual(answered, expected);
    });

    it("fails the stream on a payload a handler cannot project", async () => {
        const call = client.project();
        call.on("data", () => assert.fail("no response expected"));
        call.on("error", () => {}); // reported through "status" too
        // Not events.once: it rejects on the "error" event that comes first.
        const status = new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
        call.write(request("V1.FullyPaid", { bookingId: 7 }, "bad"));
        // Requests already sent after it get no answer either.
        call.write(request("V1.FullyPaid", { bookingId: "booking-1" }, "after"));
        const { code, details } = await status;
        assert.equal(code, grpc.status.INTERNAL);
        assert.match(details, /event bad \(V1\.FullyPaid\): expected a string/);
    });
});

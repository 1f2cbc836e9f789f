/**
 * What each event becomes, per target. Event types without a handler here (`V1.BookingCancelled`,
 * anything else) get no reply at all, as in Eventuous's sidecars.
 */

import type { Projector } from "./common.js";
import type { BookingFullyPaid, PaymentRegistered, RoomBooked } from "./eventTypes.js";
import { insertOne, updateOne } from "./mongoProjectors.js";
import { execute, sqlNumber, sqlText } from "./sqlProjectors.js";

/** REDUCER_TARGET=sql: the `Bookings` table of `bookings.sql`. */
export const sqlProjections: Projector = [
    execute<RoomBooked>(
        "V1.RoomBooked",
        (event) => `INSERT INTO Bookings (BookingId, RoomId, GuestId, CheckInDate, CheckOutDate, BookingPrice, PaidAmount, Outstanding, Paid)
VALUES (${sqlText(event.bookingId)}, ${sqlText(event.roomId)}, ${sqlText(event.guestId)}, ${sqlText(event.checkIn)}, ${sqlText(event.checkOut)}, ${sqlNumber(event.bookingPrice)}, ${sqlNumber(event.prepaidAmount)}, ${sqlNumber(event.bookingPrice - event.prepaidAmount)}, 0)`,
    ),
    execute<PaymentRegistered>(
        "V1.PaymentRegistered",
        (event) => `UPDATE Bookings
SET PaidAmount = PaidAmount + ${sqlNumber(event.paidAmount)}, Outstanding = ${sqlNumber(event.outstanding)}
WHERE BookingId = ${sqlText(event.bookingId)}`,
    ),
    execute<BookingFullyPaid>(
        "V1.FullyPaid",
        (event) => `UPDATE Bookings SET Paid = 1 WHERE BookingId = ${sqlText(event.bookingId)}`,
    ),
];

/** REDUCER_TARGET=mongo: one document per booking in the connector's collection. */
export const mongoProjections: Projector = [
    insertOne<RoomBooked>("V1.RoomBooked", (event) => ({
        document: {
            _id: event.bookingId,
            roomId: event.roomId,
            guestId: event.guestId,
            checkInDate: event.checkIn,
            checkOutDate: event.checkOut,
            bookingPrice: event.bookingPrice,
            paidAmount: event.prepaidAmount,
            outstanding: event.bookingPrice - event.prepaidAmount,
            paid: false,
        },
    })),
    updateOne<PaymentRegistered>("V1.PaymentRegistered", (event) => ({
        filter: { _id: event.bookingId },
        update: { $set: { outstanding: event.outstanding }, $inc: { paidAmount: event.paidAmount } },
    })),
    updateOne<BookingFullyPaid>("V1.FullyPaid", (event) => ({
        filter: { _id: event.bookingId },
        update: { $set: { paid: true } },
    })),
];

export const TARGETS = { sql: sqlProjections, mongo: mongoProjections } as const;
export type Target = keyof typeof TARGETS;

export function isTarget(name: string): name is Target {
    return Object.hasOwn(TARGETS, name);
}

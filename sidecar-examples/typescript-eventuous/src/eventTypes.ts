/**
 * The hotel-booking events this sidecar projects, with the payload shapes of Eventuous's
 * samples (the `Bookings` domain of Eventuous and its connector sidecars). The gateway sends
 * the payload as a `google.protobuf.Struct`, so dates arrive as ISO strings and numbers as
 * doubles.
 */

/** `V1.RoomBooked` */
export interface RoomBooked {
    bookingId: string;
    roomId: string;
    guestId: string;
    checkIn: string;
    checkOut: string;
    bookingPrice: number;
    prepaidAmount: number;
}

/** `V1.PaymentRegistered` */
export interface PaymentRegistered {
    bookingId: string;
    paymentId: string;
    paidAmount: number;
    outstanding: number;
}

/** `V1.FullyPaid` */
export interface BookingFullyPaid {
    bookingId: string;
}

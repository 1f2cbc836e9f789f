package io.projectorgateway.examples.bookings;

import com.google.protobuf.Message;
import io.projectorgateway.examples.bookings.BookingEvent.BookingCancelled;
import io.projectorgateway.examples.bookings.BookingEvent.GuestCheckedIn;
import io.projectorgateway.examples.bookings.BookingEvent.GuestCheckedOut;
import io.projectorgateway.examples.bookings.BookingEvent.PaymentRecorded;
import io.projectorgateway.examples.bookings.BookingEvent.RoomBooked;
import java.util.List;

/**
 * Maps each bookings event to the operations of one kind of target database.
 *
 * <p>One implementation per {@link Target}, so the read model of each database is readable in
 * one file and adding a target touches no other. Each method returns the operation messages of
 * {@code proto/projection.proto} for the event, in the order they must be applied (the
 * {@link Reducer} puts the first in the response's {@code operation} and the rest in
 * {@code operations}); an empty list means Ignore. Implementations must be pure: the gateway
 * may send the same event twice after a reconnect and expects the same answer.
 */
public interface Projector {
  List<Message> roomBooked(RoomBooked event);

  List<Message> paymentRecorded(PaymentRecorded event);

  List<Message> guestCheckedIn(GuestCheckedIn event);

  List<Message> guestCheckedOut(GuestCheckedOut event);

  List<Message> bookingCancelled(BookingCancelled event);

  /**
   * The operations that clear this read model before the gateway projects the whole log again
   * (the {@code resetOperations} of {@code Describe}); empty when projecting again rewrites
   * everything anyway.
   */
  List<Message> resetOperations();
}

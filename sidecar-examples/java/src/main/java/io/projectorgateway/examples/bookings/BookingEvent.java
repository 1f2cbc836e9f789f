package io.projectorgateway.examples.bookings;

import com.google.protobuf.Message;
import io.projectorgateway.projection.ProjectionRequest;
import java.util.List;
import java.util.Optional;

/**
 * The events of the bookings domain (sidecar-examples/BOOKINGS.md), decoded once from a request.
 *
 * <p>Decoding is kept apart from mapping so that every target ({@link SqlProjector},
 * {@link MongoProjector}, {@link ElasticProjector}) works on the same validated records and none
 * of them touches a payload. Each record starts with its {@link Origin} in the log.
 */
public sealed interface BookingEvent {

  /** The event types decoded here, in the order of BOOKINGS.md; every other type is ignored. */
  List<String> TYPES = List.of(
      "RoomBooked", "PaymentRecorded", "GuestCheckedIn", "GuestCheckedOut", "BookingCancelled");

  /**
   * Where an event comes from: its id, and the request's {@code globalPosition}, strictly
   * increasing along the log, which the read model keeps as "last applied".
   */
  record Origin(String eventId, long position) {}

  Origin origin();

  /** Hands this event to the projector's method for its type (a visitor, as Java 17 has no
   *  pattern matching in switch). */
  List<Message> projectWith(Projector projector);

  /**
   * The event the request carries, or empty for a type the read model does not use
   * ({@code GuestRegistered} and anything unknown), which the reducer answers with Ignore.
   * Payloads are read only for the types below, so ignored events are never parsed.
   */
  static Optional<BookingEvent> decode(ProjectionRequest request) throws PayloadException {
    Origin origin = new Origin(request.getEventId(), request.getGlobalPosition());
    return switch (request.getEventType()) {
      case "RoomBooked" -> {
        Payload p = Payload.of(request);
        yield Optional.of(new RoomBooked(origin, p.text("bookingId"), p.text("guestId"),
            p.text("roomId"), p.text("checkIn"), p.text("checkOut"), p.integer("priceCents")));
      }
      case "PaymentRecorded" -> {
        Payload p = Payload.of(request);
        yield Optional.of(new PaymentRecorded(origin, p.text("bookingId"), p.text("guestId"),
            p.integer("amountCents")));
      }
      case "GuestCheckedIn" ->
          Optional.of(new GuestCheckedIn(origin, Payload.of(request).text("bookingId")));
      case "GuestCheckedOut" ->
          Optional.of(new GuestCheckedOut(origin, Payload.of(request).text("bookingId")));
      case "BookingCancelled" -> {
        Payload p = Payload.of(request);
        yield Optional.of(new BookingCancelled(origin, p.text("bookingId"), p.text("guestId")));
      }
      default -> Optional.empty();
    };
  }

  /** A room was booked; also the booking's first event. Money is in integer cents. */
  record RoomBooked(Origin origin, String bookingId, String guestId, String roomId,
      String checkIn, String checkOut, long priceCents) implements BookingEvent {
    @Override
    public List<Message> projectWith(Projector projector) {
      return projector.roomBooked(this);
    }
  }

  /** A payment towards a booking. */
  record PaymentRecorded(Origin origin, String bookingId, String guestId, long amountCents)
      implements BookingEvent {
    @Override
    public List<Message> projectWith(Projector projector) {
      return projector.paymentRecorded(this);
    }
  }

  /** The guest of a booking checked in. */
  record GuestCheckedIn(Origin origin, String bookingId) implements BookingEvent {
    @Override
    public List<Message> projectWith(Projector projector) {
      return projector.guestCheckedIn(this);
    }
  }

  /** The guest of a booking checked out. */
  record GuestCheckedOut(Origin origin, String bookingId) implements BookingEvent {
    @Override
    public List<Message> projectWith(Projector projector) {
      return projector.guestCheckedOut(this);
    }
  }

  /** A booking was cancelled (before check-in). */
  record BookingCancelled(Origin origin, String bookingId, String guestId)
      implements BookingEvent {
    @Override
    public List<Message> projectWith(Projector projector) {
      return projector.bookingCancelled(this);
    }
  }
}

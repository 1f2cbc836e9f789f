package io.projectorgateway.examples.bookings;

import com.google.protobuf.ByteString;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.Struct;
import com.google.protobuf.util.JsonFormat;
import io.projectorgateway.projection.ProjectionRequest;

/** Sample requests of the bookings domain, written as the JSON the gateway reads from its log. */
final class Events {
  static final long POSITION = 42;

  static final String ROOM_BOOKED = """
      {"bookingId": "booking-1", "guestId": "guest-7", "roomId": "room-101",
       "checkIn": "2026-12-01", "checkOut": "2026-12-03", "priceCents": 25000}""";
  static final String PAYMENT_RECORDED = """
      {"bookingId": "booking-1", "guestId": "guest-7", "paymentId": "pay-1-0",
       "amountCents": 12500}""";
  static final String GUEST_CHECKED_IN = """
      {"bookingId": "booking-1", "guestId": "guest-7", "at": "2026-12-01T15:00:00Z"}""";
  static final String GUEST_CHECKED_OUT = """
      {"bookingId": "booking-1", "guestId": "guest-7", "at": "2026-12-03T11:00:00Z"}""";
  static final String BOOKING_CANCELLED = """
      {"bookingId": "booking-1", "guestId": "guest-7", "reason": "plans changed"}""";
  static final String GUEST_REGISTERED = """
      {"guestId": "guest-7", "name": "Guest 7", "email": "guest7@example.com"}""";

  private Events() {}

  /** A request with the payload as a Struct ({@code eventPayload}), the gateway's default. */
  static ProjectionRequest request(String eventType, String json) {
    return base(eventType).setEventPayload(struct(json)).build();
  }

  /** The same request with the payload only as raw JSON bytes ({@code payload: json}). */
  static ProjectionRequest jsonRequest(String eventType, String json) {
    return base(eventType)
        .setPayloadJson(ByteString.copyFromUtf8(json))
        .setContentType("application/json")
        .build();
  }

  static Struct struct(String json) {
    Struct.Builder struct = Struct.newBuilder();
    try {
      JsonFormat.parser().merge(json, struct);
    } catch (InvalidProtocolBufferException e) {
      throw new IllegalArgumentException("bad test JSON: " + json, e);
    }
    return struct.build();
  }

  private static ProjectionRequest.Builder base(String eventType) {
    return ProjectionRequest.newBuilder()
        .setEventType(eventType)
        .setEventId("6f1c2a7e-0000-4000-8000-000000000001")
        .setStream("booking-1")
        .setGlobalPosition(POSITION)
        .setStreamRevision(0);
  }
}

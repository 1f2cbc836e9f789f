package io.projectorgateway.examples.bookings;

import static io.projectorgateway.examples.bookings.Events.request;
import static io.projectorgateway.examples.bookings.Events.struct;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.Message;
import io.projectorgateway.projection.Index;
import io.projectorgateway.projection.ProjectionResponse;
import io.projectorgateway.projection.Update;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** The elastic target: a document per booking, and a fact per counted event. */
class ElasticReducerTest {
  private static final String FACT_ID = "event:6f1c2a7e-0000-4000-8000-000000000001";

  private final Reducer reducer = new Reducer(Target.ELASTIC);

  @Test
  void roomBookedIndexesTheBookingAndTheFact() {
    assertEquals(List.of(
        index("booking:booking-1", """
            {"kind": "booking", "booking_id": "booking-1", "guest_id": "guest-7",
             "room_id": "room-101", "check_in": "2026-12-01", "check_out": "2026-12-03",
             "price_cents": 25000, "status": "booked", "last_position": 42}"""),
        index(FACT_ID, """
            {"kind": "booked", "booking_id": "booking-1", "guest_id": "guest-7",
             "position": 42}""")),
        operations(reducer.reduce(request("RoomBooked", Events.ROOM_BOOKED))));
  }

  @Test
  void paymentRecordedTouchesTheBookingAndIndexesThePayment() {
    assertEquals(List.of(
        update("booking:booking-1", """
            {"last_position": 42}"""),
        index(FACT_ID, """
            {"kind": "payment", "booking_id": "booking-1", "guest_id": "guest-7",
             "amount_cents": 12500, "position": 42}""")),
        operations(reducer.reduce(request("PaymentRecorded", Events.PAYMENT_RECORDED))));
  }

  @Test
  void checkInAndCheckOutMergeTheStatus() {
    assertEquals(List.of(update("booking:booking-1", """
            {"status": "checked_in", "last_position": 42}""")),
        operations(reducer.reduce(request("GuestCheckedIn", Events.GUEST_CHECKED_IN))));
    assertEquals(List.of(update("booking:booking-1", """
            {"status": "checked_out", "last_position": 42}""")),
        operations(reducer.reduce(request("GuestCheckedOut", Events.GUEST_CHECKED_OUT))));
  }

  @Test
  void bookingCancelledMergesTheStatusAndIndexesTheFact() {
    assertEquals(List.of(
        update("booking:booking-1", """
            {"status": "cancelled", "last_position": 42}"""),
        index(FACT_ID, """
            {"kind": "cancellation", "booking_id": "booking-1", "guest_id": "guest-7",
             "position": 42}""")),
        operations(reducer.reduce(request("BookingCancelled", Events.BOOKING_CANCELLED))));
  }

  @Test
  void aRebuildNeedsNoReset() {
    assertEquals(0, reducer.describe().getResetOperationsCount());
  }

  @ParameterizedTest
  @ValueSource(strings = {"GuestRegistered", "SomethingElse"})
  void otherEventTypesAreIgnored(String eventType) {
    assertEquals("type.googleapis.com/projection.Ignore",
        reducer.reduce(request(eventType, Events.GUEST_REGISTERED)).getOperation().getTypeUrl());
  }

  private static Index index(String id, String document) {
    return Index.newBuilder().setId(id).setDocument(struct(document)).build();
  }

  private static Update update(String id, String document) {
    return Update.newBuilder().setId(id).setDocument(struct(document)).build();
  }

  /** The response's operations, {@code operation} first, unpacked by their type URL. */
  private static List<Message> operations(ProjectionResponse response) {
    assertFalse(response.hasError(), () -> response.getError().getMessage());
    List<Any> packed = new ArrayList<>();
    packed.add(response.getOperation());
    packed.addAll(response.getOperationsList());
    List<Message> operations = new ArrayList<>();
    for (Any any : packed) {
      try {
        if (any.is(Index.class)) {
          operations.add(any.unpack(Index.class));
        } else if (any.is(Update.class)) {
          operations.add(any.unpack(Update.class));
        } else {
          throw new AssertionError("not an Elasticsearch operation: " + any.getTypeUrl());
        }
      } catch (InvalidProtocolBufferException e) {
        throw new AssertionError(e);
      }
    }
    return operations;
  }
}

package io.projectorgateway.examples.bookings;

import static io.projectorgateway.examples.bookings.Events.request;
import static io.projectorgateway.examples.bookings.Events.struct;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.Value;
import io.projectorgateway.projection.ProjectionResponse;
import io.projectorgateway.projection.UpdateOne;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The mongo target: one upsert per SQL statement, on the row's _id in its collection, field for
 * field the table of BOOKINGS.md's "MongoDB read model".
 */
class MongoReducerTest {
  /** The list every operation carries, as BOOKINGS.md writes it. */
  private static final List<String> INTEGER_FIELDS = List.of("price_cents", "paid_cents",
      "last_position", "bookings", "cancellations", "payments", "amount_cents");

  private final Reducer reducer = new Reducer(Target.MONGO);

  @Test
  void roomBookedSetsTheBookingAndCountsItForTheGuest() {
    assertEquals(List.of(
        upsert("bookings", "booking-1", """
            {"$set": {"guest_id": "guest-7", "room_id": "room-101", "check_in": "2026-12-01",
                      "check_out": "2026-12-03", "price_cents": 25000, "status": "booked",
                      "last_position": 42},
             "$inc": {"paid_cents": 0}}"""),
        upsert("guest_stats", "guest-7", """
            {"$inc": {"bookings": 1, "cancellations": 0, "payments": 0, "paid_cents": 0}}""")),
        updates(reducer.reduce(request("RoomBooked", Events.ROOM_BOOKED))));
  }

  @Test
  void paymentRecordedIncrementsTheBookingAndTheGuest() {
    assertEquals(List.of(
        upsert("bookings", "booking-1", """
            {"$set": {"last_position": 42}, "$inc": {"paid_cents": 12500}}"""),
        upsert("guest_stats", "guest-7", """
            {"$inc": {"bookings": 0, "cancellations": 0, "payments": 1, "paid_cents": 12500}}""")),
        updates(reducer.reduce(request("PaymentRecorded", Events.PAYMENT_RECORDED))));
  }

  @Test
  void checkInAndCheckOutSetTheStatus() {
    assertEquals(List.of(upsert("bookings", "booking-1", """
            {"$set": {"status": "checked_in", "last_position": 42}}""")),
        updates(reducer.reduce(request("GuestCheckedIn", Events.GUEST_CHECKED_IN))));
    assertEquals(List.of(upsert("bookings", "booking-1", """
            {"$set": {"status": "checked_out", "last_position": 42}}""")),
        updates(reducer.reduce(request("GuestCheckedOut", Events.GUEST_CHECKED_OUT))));
  }

  @Test
  void bookingCancelledSetsTheStatusAndCountsTheCancellation() {
    assertEquals(List.of(
        upsert("bookings", "booking-1", """
            {"$set": {"status": "cancelled", "last_position": 42}}"""),
        upsert("guest_stats", "guest-7", """
            {"$inc": {"bookings": 0, "cancellations": 1, "payments": 0, "paid_cents": 0}}""")),
        updates(reducer.reduce(request("BookingCancelled", Events.BOOKING_CANCELLED))));
  }

  @Test
  void noUpdateNamesAFieldUnderTwoOperators() {
    for (String[] event : new String[][] {
        {"RoomBooked", Events.ROOM_BOOKED}, {"PaymentRecorded", Events.PAYMENT_RECORDED},
        {"BookingCancelled", Events.BOOKING_CANCELLED}}) {
      for (UpdateOne update : updates(reducer.reduce(request(event[0], event[1])))) {
        Set<String> seen = new HashSet<>();
        for (Value operator : update.getUpdate().getFieldsMap().values()) {
          for (String field : operator.getStructValue().getFieldsMap().keySet()) {
            assertEquals(true, seen.add(field), () -> event[0] + " names " + field + " twice");
          }
        }
      }
    }
  }

  @Test
  void everyNumberIsNamedAnIntegerField() {
    for (String[] event : new String[][] {
        {"RoomBooked", Events.ROOM_BOOKED}, {"PaymentRecorded", Events.PAYMENT_RECORDED},
        {"GuestCheckedIn", Events.GUEST_CHECKED_IN}, {"BookingCancelled", Events.BOOKING_CANCELLED}}) {
      for (UpdateOne update : updates(reducer.reduce(request(event[0], event[1])))) {
        for (Map.Entry<String, Value> operator : update.getUpdate().getFieldsMap().entrySet()) {
          operator.getValue().getStructValue().getFieldsMap().forEach((field, value) -> {
            if (value.hasNumberValue()) {
              assertEquals(true, update.getIntegerFieldsList().contains(field),
                  () -> event[0] + ": " + field + " not in " + update.getIntegerFieldsList());
            }
          });
        }
      }
    }
  }

  @Test
  void aResetEmptiesBothCollections() {
    assertEquals(2, reducer.describe().getResetOperationsCount());
  }

  @ParameterizedTest
  @ValueSource(strings = {"GuestRegistered", "SomethingElse"})
  void otherEventTypesAreIgnored(String eventType) {
    assertEquals("type.googleapis.com/projection.Ignore",
        reducer.reduce(request(eventType, Events.GUEST_REGISTERED)).getOperation().getTypeUrl());
  }

  private static UpdateOne upsert(String collection, String id, String update) {
    return UpdateOne.newBuilder()
        .setCollection(collection)
        .setFilter(struct("{\"_id\": \"" + id + "\"}"))
        .setUpdate(struct(update))
        .addAllIntegerFields(INTEGER_FIELDS)
        .build();
  }

  private static List<UpdateOne> updates(ProjectionResponse response) {
    assertFalse(response.hasError(), () -> response.getError().getMessage());
    List<Any> packed = new ArrayList<>();
    packed.add(response.getOperation());
    packed.addAll(response.getOperationsList());
    List<UpdateOne> updates = new ArrayList<>();
    for (Any any : packed) {
      assertEquals("type.googleapis.com/projection.UpdateOne", any.getTypeUrl());
      try {
        updates.add(any.unpack(UpdateOne.class));
      } catch (InvalidProtocolBufferException e) {
        throw new AssertionError(e);
      }
    }
    return updates;
  }
}

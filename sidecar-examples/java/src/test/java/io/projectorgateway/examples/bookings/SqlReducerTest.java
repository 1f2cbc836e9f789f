package io.projectorgateway.examples.bookings;

import static io.projectorgateway.examples.bookings.Events.POSITION;
import static io.projectorgateway.examples.bookings.Events.request;
import static io.projectorgateway.examples.bookings.SqlProjector.int64;
import static io.projectorgateway.examples.bookings.SqlProjector.text;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import io.projectorgateway.projection.ProjectionResponse;
import io.projectorgateway.projection.SqlValue;
import io.projectorgateway.projection.Statement;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** The SQL target: the exact statements and typed parameters of BOOKINGS.md, per event type. */
class SqlReducerTest {
  private final Reducer reducer = new Reducer(Target.SQL);

  @Test
  void roomBookedUpsertsTheBookingAndCountsItForTheGuest() {
    ProjectionResponse response = reducer.reduce(request("RoomBooked", Events.ROOM_BOOKED));
    assertEquals("6f1c2a7e-0000-4000-8000-000000000001", response.getEventId());
    assertEquals(List.of(
        SqlProjector.statement(SqlProjector.UPSERT_BOOKING, text("booking-1"), text("guest-7"),
            text("room-101"), text("2026-12-01"), text("2026-12-03"), int64(25000),
            int64(POSITION)),
        SqlProjector.statement(SqlProjector.COUNT_BOOKING, text("guest-7"))),
        statements(response));
  }

  @Test
  void paymentRecordedAddsToTheBookingAndTheGuest() {
    ProjectionResponse response =
        reducer.reduce(request("PaymentRecorded", Events.PAYMENT_RECORDED));
    assertEquals(List.of(
        SqlProjector.statement(SqlProjector.ADD_PAYMENT, text("booking-1"), int64(12500),
            int64(POSITION)),
        SqlProjector.statement(SqlProjector.COUNT_PAYMENT, text("guest-7"), int64(12500))),
        statements(response));
  }

  @Test
  void checkInAndCheckOutSetTheStatus() {
    assertEquals(List.of(SqlProjector.statement(SqlProjector.CHECK_IN, text("booking-1"),
        int64(POSITION))),
        statements(reducer.reduce(request("GuestCheckedIn", Events.GUEST_CHECKED_IN))));
    assertEquals(List.of(SqlProjector.statement(SqlProjector.CHECK_OUT, text("booking-1"),
        int64(POSITION))),
        statements(reducer.reduce(request("GuestCheckedOut", Events.GUEST_CHECKED_OUT))));
  }

  @Test
  void bookingCancelledSetsTheStatusAndCountsTheCancellation() {
    ProjectionResponse response =
        reducer.reduce(request("BookingCancelled", Events.BOOKING_CANCELLED));
    assertEquals(List.of(
        SqlProjector.statement(SqlProjector.CANCEL, text("booking-1"), int64(POSITION)),
        SqlProjector.statement(SqlProjector.COUNT_CANCELLATION, text("guest-7"))),
        statements(response));
  }

  @Test
  void parametersAreTypedNotText() {
    Statement upsert = statements(reducer.reduce(request("RoomBooked", Events.ROOM_BOOKED)))
        .get(0);
    assertEquals(SqlValue.KindCase.STRINGVALUE, upsert.getParams(0).getKindCase());
    assertEquals(SqlValue.KindCase.INT64VALUE, upsert.getParams(5).getKindCase());
    assertEquals(25000, upsert.getParams(5).getInt64Value());
  }

  @Test
  void operationsArePackedWithTheStandardTypeUrl() {
    ProjectionResponse response = reducer.reduce(request("RoomBooked", Events.ROOM_BOOKED));
    assertEquals("type.googleapis.com/projection.Statement", response.getOperation().getTypeUrl());
    assertEquals(1, response.getOperationsCount());
    assertFalse(response.hasError());
  }

  @Test
  void theRawJsonPayloadGivesTheSameAnswerAsTheStruct() {
    for (String[] event : new String[][] {
        {"RoomBooked", Events.ROOM_BOOKED}, {"PaymentRecorded", Events.PAYMENT_RECORDED},
        {"GuestCheckedIn", Events.GUEST_CHECKED_IN}, {"GuestCheckedOut", Events.GUEST_CHECKED_OUT},
        {"BookingCancelled", Events.BOOKING_CANCELLED}}) {
      assertEquals(reducer.reduce(request(event[0], event[1])),
          reducer.reduce(Events.jsonRequest(event[0], event[1])), event[0]);
    }
  }

  @ParameterizedTest
  @ValueSource(strings = {"GuestRegistered", "RoomRenamed", "V1.RoomBooked", ""})
  void otherEventTypesAreIgnored(String eventType) {
    ProjectionResponse response = reducer.reduce(request(eventType, Events.GUEST_REGISTERED));
    assertEquals("type.googleapis.com/projection.Ignore", response.getOperation().getTypeUrl());
    assertEquals(0, response.getOperationsCount());
    assertFalse(response.hasError());
    assertEquals("6f1c2a7e-0000-4000-8000-000000000001", response.getEventId());
  }

  @Test
  void theSqlIsExactlyTheOneInBookingsMd() throws IOException {
    String spec = Files.readString(Path.of("..", "BOOKINGS.md"), StandardCharsets.UTF_8);
    for (String sql : List.of(SqlProjector.UPSERT_BOOKING, SqlProjector.COUNT_BOOKING,
        SqlProjector.ADD_PAYMENT, SqlProjector.COUNT_PAYMENT, SqlProjector.CHECK_IN,
        SqlProjector.CHECK_OUT, SqlProjector.CANCEL, SqlProjector.COUNT_CANCELLATION)) {
      assertTrue(spec.contains("`" + sql + "`"), () -> "not in BOOKINGS.md: " + sql);
    }
  }

  /** The response's statements, {@code operation} first. */
  static List<Statement> statements(ProjectionResponse response) {
    assertFalse(response.hasError(), () -> response.getError().getMessage());
    List<Statement> statements = new ArrayList<>();
    List<Any> packed = new ArrayList<>();
    packed.add(response.getOperation());
    packed.addAll(response.getOperationsList());
    for (Any any : packed) {
      try {
        statements.add(any.unpack(Statement.class));
      } catch (InvalidProtocolBufferException e) {
        throw new AssertionError("not a Statement: " + any.getTypeUrl(), e);
      }
    }
    return statements;
  }
}

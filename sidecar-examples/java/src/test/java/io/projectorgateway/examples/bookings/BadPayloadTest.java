package io.projectorgateway.examples.bookings;

import static io.projectorgateway.examples.bookings.Events.request;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.projectorgateway.projection.ProjectionRequest;
import io.projectorgateway.projection.ProjectionResponse;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** A payload the reducer cannot use becomes a non-retryable ReducerError, never an exception. */
class BadPayloadTest {
  private final Reducer reducer = new Reducer(Target.SQL);

  private ProjectionResponse failed(ProjectionRequest request, String expected) {
    ProjectionResponse response = reducer.reduce(request);
    assertTrue(response.hasError(), () -> "no error for " + request);
    assertFalse(response.getError().getRetryable());
    assertFalse(response.hasOperation());
    assertEquals(0, response.getOperationsCount());
    assertEquals(request.getEventId(), response.getEventId());
    String message = response.getError().getMessage();
    assertTrue(message.contains(expected), message);
    assertTrue(message.contains(request.getEventId()), message);
    return response;
  }

  @Test
  void aMissingFieldIsNamed() {
    failed(request("PaymentRecorded", "{\"bookingId\": \"booking-1\", \"amountCents\": 5}"),
        "payload field 'guestId' is missing");
    failed(request("RoomBooked", "{}"), "'bookingId' is missing");
  }

  @Test
  void aNullFieldCountsAsMissing() {
    failed(request("GuestCheckedIn", "{\"bookingId\": null}"), "'bookingId' is missing");
  }

  @Test
  void aFieldOfTheWrongTypeIsNamed() {
    failed(request("GuestCheckedOut", "{\"bookingId\": 17}"), "'bookingId' is not a string");
    failed(request("PaymentRecorded",
        "{\"bookingId\": \"b\", \"guestId\": \"g\", \"amountCents\": \"12\"}"),
        "'amountCents' is not a number");
  }

  @Test
  void moneyMustBeAWholeNumberOfCents() {
    failed(request("PaymentRecorded",
        "{\"bookingId\": \"b\", \"guestId\": \"g\", \"amountCents\": 12.5}"),
        "'amountCents' is not a whole number");
    failed(request("PaymentRecorded",
        "{\"bookingId\": \"b\", \"guestId\": \"g\", \"amountCents\": 1e300}"),
        "'amountCents' is not a whole number");
  }

  @Test
  void rawJsonThatIsNotAnObjectIsReported() {
    failed(Events.jsonRequest("GuestCheckedIn", "[1, 2]"), "payloadJson is not a JSON object");
    failed(Events.jsonRequest("GuestCheckedIn", "{\"bookingId\": "), "payloadJson is not");
  }

  @Test
  void anEmptyPayloadIsReportedAsMissingFields() {
    failed(ProjectionRequest.newBuilder().setEventType("GuestCheckedIn").setEventId("e-2").build(),
        "'bookingId' is missing");
  }

  @Test
  void ignoredEventsAreNotParsed() {
    ProjectionResponse response =
        reducer.reduce(Events.jsonRequest("GuestRegistered", "not json at all"));
    assertFalse(response.hasError());
    assertEquals("type.googleapis.com/projection.Ignore", response.getOperation().getTypeUrl());
  }

  @ParameterizedTest
  @EnumSource(Target.class)
  void everyTargetReportsBadPayloadsTheSameWay(Target target) {
    ProjectionResponse response = new Reducer(target).reduce(request("RoomBooked", "{}"));
    assertTrue(response.getError().getMessage().contains("'bookingId' is missing"));
    assertFalse(response.getError().getRetryable());
  }
}

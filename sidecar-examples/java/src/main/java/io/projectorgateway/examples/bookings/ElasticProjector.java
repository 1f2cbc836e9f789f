package io.projectorgateway.examples.bookings;

import static io.projectorgateway.examples.bookings.StructBuilder.struct;

import com.google.protobuf.Message;
import io.projectorgateway.examples.bookings.BookingEvent.BookingCancelled;
import io.projectorgateway.examples.bookings.BookingEvent.GuestCheckedIn;
import io.projectorgateway.examples.bookings.BookingEvent.GuestCheckedOut;
import io.projectorgateway.examples.bookings.BookingEvent.Origin;
import io.projectorgateway.examples.bookings.BookingEvent.PaymentRecorded;
import io.projectorgateway.examples.bookings.BookingEvent.RoomBooked;
import io.projectorgateway.projection.Index;
import io.projectorgateway.projection.Update;
import java.util.List;

/**
 * The Elasticsearch read model ({@code REDUCER_TARGET=elastic}): {@code projection.Index}
 * (create or replace) and {@code projection.Update} (merge fields) on the connector's one index,
 * so every document id starts with its kind.
 *
 * <p>An Update can only merge fields, not add to a counter, and a stateless reducer cannot know
 * the current total. So the index holds one {@code booking:<bookingId>} document per booking
 * (the SQL row without {@code paid_cents}) plus one fact per counted event, keyed by the event
 * id: {@code event:<eventId>} with {@code kind} {@code booked}, {@code payment} (with
 * {@code amount_cents}) or {@code cancellation}. The SQL model's sums are aggregations over the
 * facts at query time: a booking's {@code paid_cents} is the sum of its payments'
 * {@code amount_cents}; a guest's {@code bookings}, {@code cancellations} and {@code payments}
 * are the counts of its facts of each kind, and {@code paid_cents} the sum of its payments. This
 * is the same read model as the Go example's.
 *
 * <p>Every id derives from the log, so an event delivered twice rewrites the same documents.
 * No bookings event removes a document, so no {@code Delete} is emitted. One difference from
 * SQL: an Update of a booking that does not exist fails, where SQL's {@code UPDATE} changes
 * nothing; the bookings streams never cause it (RoomBooked comes first in a booking's stream).
 */
public final class ElasticProjector implements Projector {
  static final String BOOKING = "booking";

  @Override
  public List<Message> roomBooked(RoomBooked e) {
    return List.of(
        index(bookingId(e.bookingId()), struct()
            .put("kind", BOOKING)
            .put("booking_id", e.bookingId())
            .put("guest_id", e.guestId())
            .put("room_id", e.roomId())
            .put("check_in", e.checkIn())
            .put("check_out", e.checkOut())
            .put("price_cents", e.priceCents())
            .put("status", "booked")
            .put("last_position", e.origin().position())),
        fact(e.origin(), struct()
            .put("kind", "booked")
            .put("booking_id", e.bookingId())
            .put("guest_id", e.guestId())));
  }

  @Override
  public List<Message> paymentRecorded(PaymentRecorded e) {
    return List.of(
        update(bookingId(e.bookingId()), struct().put("last_position", e.origin().position())),
        fact(e.origin(), struct()
            .put("kind", "payment")
            .put("booking_id", e.bookingId())
            .put("guest_id", e.guestId())
            .put("amount_cents", e.amountCents())));
  }

  @Override
  public List<Message> guestCheckedIn(GuestCheckedIn e) {
    return List.of(status(e.bookingId(), "checked_in", e.origin().position()));
  }

  @Override
  public List<Message> guestCheckedOut(GuestCheckedOut e) {
    return List.of(status(e.bookingId(), "checked_out", e.origin().position()));
  }

  @Override
  public List<Message> bookingCancelled(BookingCancelled e) {
    return List.of(
        status(e.bookingId(), "cancelled", e.origin().position()),
        fact(e.origin(), struct()
            .put("kind", "cancellation")
            .put("booking_id", e.bookingId())
            .put("guest_id", e.guestId())));
  }

  /**
   * Nothing: every document id comes from the log, so projecting it again rewrites the same
   * documents (and the proto has no delete-by-query).
   */
  @Override
  public List<Message> resetOperations() {
    return List.of();
  }

  static String bookingId(String bookingId) {
    return BOOKING + ":" + bookingId;
  }

  private static Update status(String bookingId, String status, long position) {
    return update(bookingId(bookingId),
        struct().put("status", status).put("last_position", position));
  }

  /** The fact that an event counted, keyed by the event id, with the event's position. */
  private static Index fact(Origin origin, StructBuilder document) {
    return index("event:" + origin.eventId(), document.put("position", origin.position()));
  }

  private static Index index(String id, StructBuilder document) {
    return Index.newBuilder().setId(id).setDocument(document.build()).build();
  }

  private static Update update(String id, StructBuilder document) {
    return Update.newBuilder().setId(id).setDocument(document.build()).build();
  }
}

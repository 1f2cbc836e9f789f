package io.projectorgateway.examples.bookings;

import static io.projectorgateway.examples.bookings.StructBuilder.struct;

import com.google.protobuf.Message;
import com.google.protobuf.Struct;
import com.google.protobuf.Value;
import io.projectorgateway.examples.bookings.BookingEvent.BookingCancelled;
import io.projectorgateway.examples.bookings.BookingEvent.GuestCheckedIn;
import io.projectorgateway.examples.bookings.BookingEvent.GuestCheckedOut;
import io.projectorgateway.examples.bookings.BookingEvent.PaymentRecorded;
import io.projectorgateway.examples.bookings.BookingEvent.RoomBooked;
import io.projectorgateway.projection.DeleteMany;
import io.projectorgateway.projection.UpdateOne;
import java.util.List;

/**
 * The MongoDB read model ({@code REDUCER_TARGET=mongo}), exactly the "MongoDB read model" of
 * sidecar-examples/BOOKINGS.md (and of the Rust example): the rows of the SQL tables as
 * documents of two collections, keyed by the row's primary key as {@code _id}, with the SQL
 * column names as fields:
 *
 * <pre>
 *   bookings:    {_id: bookingId, guest_id, room_id, check_in, check_out, price_cents,
 *                 paid_cents, status, last_position}
 *   guest_stats: {_id: guestId, bookings, cancellations, payments, paid_cents}
 * </pre>
 *
 * <p>Each SQL statement becomes one {@code projection.UpdateOne} on the row's {@code _id} in its
 * {@code collection}, which the gateway runs as an upsert: {@code $set} for the values the
 * statement sets, {@code $inc} for what it adds to. {@code $inc} by 0 creates a missing counter
 * at 0 and leaves an existing one alone, like the columns' {@code DEFAULT 0} (a booking booked
 * again keeps what was paid). Struct numbers are doubles; every operation lists the same
 * {@code integerFields}, so the sink stores those fields as Int64, like the SQL {@code BIGINT}
 * columns.
 *
 * <p>{@code $inc} is not idempotent, exactly like the SQL counters: exactly-once effect comes
 * from the gateway applying each event's operations once, with its checkpoint. One difference
 * from SQL: an {@code UPDATE} of a booking that does not exist changes nothing, while the upsert
 * creates a partial document; the bookings streams never cause it (RoomBooked is the first event
 * of a booking's stream, and a stream's events arrive in order).
 */
public final class MongoProjector implements Projector {
  static final String BOOKINGS = "bookings";
  static final String GUEST_STATS = "guest_stats";
  /** On every operation, in this order (as BOOKINGS.md and the Rust example list them). */
  static final List<String> INTEGER_FIELDS = List.of("price_cents", "paid_cents", "last_position",
      "bookings", "cancellations", "payments", "amount_cents");
  private static final List<String> GUEST_COUNTERS =
      List.of("bookings", "cancellations", "payments", "paid_cents");
  private static final Value ZERO = Value.newBuilder().setNumberValue(0).build();

  @Override
  public List<Message> roomBooked(RoomBooked e) {
    return List.of(
        upsert(BOOKINGS, e.bookingId(), struct()
            .put("guest_id", e.guestId())
            .put("room_id", e.roomId())
            .put("check_in", e.checkIn())
            .put("check_out", e.checkOut())
            .put("price_cents", e.priceCents())
            .put("status", "booked")
            .put("last_position", e.origin().position()),
            // A booked-again booking keeps what was paid, as the SQL upsert does.
            struct().put("paid_cents", 0)),
        countForGuest(e.guestId(), struct().put("bookings", 1)));
  }

  @Override
  public List<Message> paymentRecorded(PaymentRecorded e) {
    return List.of(
        upsert(BOOKINGS, e.bookingId(),
            struct().put("last_position", e.origin().position()),
            struct().put("paid_cents", e.amountCents())),
        countForGuest(e.guestId(),
            struct().put("payments", 1).put("paid_cents", e.amountCents())));
  }

  @Override
  public List<Message> guestCheckedIn(GuestCheckedIn e) {
    return List.of(setStatus(e.bookingId(), "checked_in", e.origin().position()));
  }

  @Override
  public List<Message> guestCheckedOut(GuestCheckedOut e) {
    return List.of(setStatus(e.bookingId(), "checked_out", e.origin().position()));
  }

  @Override
  public List<Message> bookingCancelled(BookingCancelled e) {
    return List.of(
        setStatus(e.bookingId(), "cancelled", e.origin().position()),
        countForGuest(e.guestId(), struct().put("cancellations", 1)));
  }

  /** Empties both collections. */
  @Override
  public List<Message> resetOperations() {
    return List.of(deleteAll(BOOKINGS), deleteAll(GUEST_STATS));
  }

  private static UpdateOne setStatus(String bookingId, String status, long position) {
    return upsert(BOOKINGS, bookingId,
        struct().put("status", status).put("last_position", position), struct());
  }

  /**
   * Adds {@code inc} to a guest's counters and every other counter by 0, which creates the
   * document with all four counters on the guest's first event.
   */
  private static UpdateOne countForGuest(String guestId, StructBuilder inc) {
    Struct increments = inc.build();
    StructBuilder counters = struct();
    for (String counter : GUEST_COUNTERS) {
      counters.put(counter, increments.getFieldsOrDefault(counter, ZERO));
    }
    return upsert(GUEST_STATS, guestId, struct(), counters);
  }

  /**
   * An UpdateOne (an upsert in the gateway) of the document {@code _id: id} in collection:
   * {@code $set} the values of {@code set}, {@code $inc} by those of {@code inc}; an operator
   * with no fields is left out.
   */
  private static UpdateOne upsert(String collection, String id, StructBuilder set,
      StructBuilder inc) {
    StructBuilder update = struct();
    if (!set.isEmpty()) {
      update.put("$set", set);
    }
    if (!inc.isEmpty()) {
      update.put("$inc", inc);
    }
    return UpdateOne.newBuilder()
        .setCollection(collection)
        .setFilter(struct().put("_id", id).build())
        .setUpdate(update.build())
        .addAllIntegerFields(INTEGER_FIELDS)
        .build();
  }

  private static DeleteMany deleteAll(String collection) {
    return DeleteMany.newBuilder()
        .setCollection(collection)
        .setFilter(Struct.getDefaultInstance())
        .build();
  }
}

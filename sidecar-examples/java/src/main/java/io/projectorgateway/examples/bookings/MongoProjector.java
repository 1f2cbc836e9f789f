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
import java.util.Map;
import java.util.TreeSet;

/**
 * The MongoDB read model ({@code REDUCER_TARGET=mongo}): the rows of the SQL tables as
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
 * statement sets, {@code $inc} for what it adds to, and {@code $setOnInsert} for the columns'
 * {@code DEFAULT 0} that only a new document gets (MongoDB allows a field under one operator
 * only, so a counter being incremented is left out of {@code $setOnInsert}). Struct numbers are
 * doubles; {@code integerFields} names every number so the sink stores it as an Int64, like the
 * SQL {@code BIGINT} columns. This is the same read model as the Go example's.
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
  private static final List<String> GUEST_COUNTERS =
      List.of("bookings", "cancellations", "payments", "paid_cents");

  @Override
  public List<Message> roomBooked(RoomBooked e) {
    return List.of(
        upsert(BOOKINGS, e.bookingId(), struct()
            .put("$set", struct()
                .put("guest_id", e.guestId())
                .put("room_id", e.roomId())
                .put("check_in", e.checkIn())
                .put("check_out", e.checkOut())
                .put("price_cents", e.priceCents())
                .put("status", "booked")
                .put("last_position", e.origin().position()))
            // A booked-again booking keeps what was paid, as the SQL upsert does.
            .put("$setOnInsert", struct().put("paid_cents", 0))),
        countForGuest(e.guestId(), struct().put("bookings", 1)));
  }

  @Override
  public List<Message> paymentRecorded(PaymentRecorded e) {
    return List.of(
        upsert(BOOKINGS, e.bookingId(), struct()
            .put("$inc", struct().put("paid_cents", e.amountCents()))
            .put("$set", struct().put("last_position", e.origin().position()))),
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
    return upsert(BOOKINGS, bookingId, struct()
        .put("$set", struct().put("status", status).put("last_position", position)));
  }

  /**
   * Adds {@code inc} to a guest's counters, creating the document with every other counter at 0
   * when it is the guest's first.
   */
  private static UpdateOne countForGuest(String guestId, StructBuilder inc) {
    Struct increments = inc.build();
    StructBuilder onInsert = struct();
    for (String counter : GUEST_COUNTERS) {
      if (!increments.containsFields(counter)) {
        onInsert.put(counter, 0);
      }
    }
    StructBuilder update = struct().put("$inc", increments);
    if (!onInsert.isEmpty()) {
      update.put("$setOnInsert", onInsert);
    }
    return upsert(GUEST_STATS, guestId, update);
  }

  /** An UpdateOne (an upsert in the gateway) of the document {@code _id: id} in collection. */
  private static UpdateOne upsert(String collection, String id, StructBuilder update) {
    Struct document = update.build();
    return UpdateOne.newBuilder()
        .setCollection(collection)
        .setFilter(struct().put("_id", id).build())
        .setUpdate(document)
        .addAllIntegerFields(numberPaths(document))
        .build();
  }

  private static DeleteMany deleteAll(String collection) {
    return DeleteMany.newBuilder()
        .setCollection(collection)
        .setFilter(Struct.getDefaultInstance())
        .build();
  }

  /**
   * The paths of every number in {@code document}, sorted: each one is an integer here. A path
   * joins the keys from the root with {@code .}, leaving out update operators such as
   * {@code $inc}, so {@code {"$inc": {"bookings": 1}}} gives {@code bookings}.
   */
  static List<String> numberPaths(Struct document) {
    TreeSet<String> paths = new TreeSet<>();
    collectNumberPaths("", document, paths);
    return List.copyOf(paths);
  }

  private static void collectNumberPaths(String prefix, Struct struct, TreeSet<String> paths) {
    for (Map.Entry<String, Value> field : struct.getFieldsMap().entrySet()) {
      String key = field.getKey();
      String path = key.startsWith("$") ? prefix : prefix.isEmpty() ? key : prefix + "." + key;
      switch (field.getValue().getKindCase()) {
        case NUMBER_VALUE -> paths.add(path);
        case STRUCT_VALUE -> collectNumberPaths(path, field.getValue().getStructValue(), paths);
        default -> {
          // strings, booleans and nulls need no hint
        }
      }
    }
  }
}

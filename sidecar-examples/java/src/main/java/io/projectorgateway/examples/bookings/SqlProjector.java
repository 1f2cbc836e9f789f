package io.projectorgateway.examples.bookings;

import com.google.protobuf.Message;
import io.projectorgateway.examples.bookings.BookingEvent.BookingCancelled;
import io.projectorgateway.examples.bookings.BookingEvent.GuestCheckedIn;
import io.projectorgateway.examples.bookings.BookingEvent.GuestCheckedOut;
import io.projectorgateway.examples.bookings.BookingEvent.PaymentRecorded;
import io.projectorgateway.examples.bookings.BookingEvent.RoomBooked;
import io.projectorgateway.projection.SqlValue;
import io.projectorgateway.projection.Statement;
import java.util.List;

/**
 * The SQL read model ({@code REDUCER_TARGET=sql}, the default): tables {@code bookings} and
 * {@code guest_stats} of sidecar-examples/bookings-schema.sql, written with
 * {@code projection.Statement}s whose parameters are typed {@code SqlValue}s.
 *
 * <p>The statements are exactly those of sidecar-examples/BOOKINGS.md, character for character,
 * and so the same as the Rust and Python examples': the gateway's end-to-end tests compare each
 * example's read model with one computed from the log. Placeholders are {@code $1, $2, ...} in
 * every dialect (the gateway rewrites them for SQLite and SQL Server), and event data only ever
 * travels as parameters, never inside the SQL text.
 */
public final class SqlProjector implements Projector {
  static final String UPSERT_BOOKING = "INSERT INTO bookings (booking_id, guest_id, room_id,"
      + " check_in, check_out, price_cents, paid_cents, status, last_position)"
      + " VALUES ($1, $2, $3, $4, $5, $6, 0, 'booked', $7)"
      + " ON CONFLICT (booking_id) DO UPDATE SET guest_id = excluded.guest_id,"
      + " room_id = excluded.room_id, check_in = excluded.check_in,"
      + " check_out = excluded.check_out, price_cents = excluded.price_cents,"
      + " status = 'booked', last_position = excluded.last_position";
  static final String COUNT_BOOKING = "INSERT INTO guest_stats (guest_id, bookings) VALUES ($1, 1)"
      + " ON CONFLICT (guest_id) DO UPDATE SET bookings = guest_stats.bookings + 1";
  static final String ADD_PAYMENT = "UPDATE bookings SET paid_cents = paid_cents + $2,"
      + " last_position = $3 WHERE booking_id = $1";
  static final String COUNT_PAYMENT = "INSERT INTO guest_stats (guest_id, payments, paid_cents)"
      + " VALUES ($1, 1, $2) ON CONFLICT (guest_id) DO UPDATE SET"
      + " payments = guest_stats.payments + 1,"
      + " paid_cents = guest_stats.paid_cents + excluded.paid_cents";
  static final String CHECK_IN =
      "UPDATE bookings SET status = 'checked_in', last_position = $2 WHERE booking_id = $1";
  static final String CHECK_OUT =
      "UPDATE bookings SET status = 'checked_out', last_position = $2 WHERE booking_id = $1";
  static final String CANCEL =
      "UPDATE bookings SET status = 'cancelled', last_position = $2 WHERE booking_id = $1";
  static final String COUNT_CANCELLATION = "INSERT INTO guest_stats (guest_id, cancellations)"
      + " VALUES ($1, 1) ON CONFLICT (guest_id) DO UPDATE SET"
      + " cancellations = guest_stats.cancellations + 1";

  @Override
  public List<Message> roomBooked(RoomBooked e) {
    return List.of(
        statement(UPSERT_BOOKING, text(e.bookingId()), text(e.guestId()), text(e.roomId()),
            text(e.checkIn()), text(e.checkOut()), int64(e.priceCents()), position(e)),
        statement(COUNT_BOOKING, text(e.guestId())));
  }

  @Override
  public List<Message> paymentRecorded(PaymentRecorded e) {
    return List.of(
        statement(ADD_PAYMENT, text(e.bookingId()), int64(e.amountCents()), position(e)),
        statement(COUNT_PAYMENT, text(e.guestId()), int64(e.amountCents())));
  }

  @Override
  public List<Message> guestCheckedIn(GuestCheckedIn e) {
    return List.of(statement(CHECK_IN, text(e.bookingId()), position(e)));
  }

  @Override
  public List<Message> guestCheckedOut(GuestCheckedOut e) {
    return List.of(statement(CHECK_OUT, text(e.bookingId()), position(e)));
  }

  @Override
  public List<Message> bookingCancelled(BookingCancelled e) {
    return List.of(
        statement(CANCEL, text(e.bookingId()), position(e)),
        statement(COUNT_CANCELLATION, text(e.guestId())));
  }

  @Override
  public List<Message> resetOperations() {
    return List.of(statement("DELETE FROM bookings"), statement("DELETE FROM guest_stats"));
  }

  /** A statement with positional parameters: {@code params[0]} binds {@code $1}, and so on. */
  public static Statement statement(String sql, SqlValue... params) {
    return Statement.newBuilder().setSql(sql).addAllParams(List.of(params)).build();
  }

  /** The event's log position, for {@code last_position}. */
  private static SqlValue position(BookingEvent e) {
    return int64(e.origin().position());
  }

  /** A text parameter ({@code stringValue}). */
  public static SqlValue text(String value) {
    return SqlValue.newBuilder().setStringValue(value).build();
  }

  /** An integer parameter ({@code int64Value}). */
  public static SqlValue int64(long value) {
    return SqlValue.newBuilder().setInt64Value(value).build();
  }
}

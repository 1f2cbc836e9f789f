package bookings

import (
	"google.golang.org/protobuf/proto"

	pb "projector-gateway/sidecar/projectionpb"
)

// The statements of BOOKINGS.md, word for word. Placeholders are $1, $2, ... in every
// dialect; the gateway binds the typed parameters (never spliced into the text).
const (
	sqlUpsertBooking     = "INSERT INTO bookings (booking_id, guest_id, room_id, check_in, check_out, price_cents, paid_cents, status, last_position) VALUES ($1, $2, $3, $4, $5, $6, 0, 'booked', $7) ON CONFLICT (booking_id) DO UPDATE SET guest_id = excluded.guest_id, room_id = excluded.room_id, check_in = excluded.check_in, check_out = excluded.check_out, price_cents = excluded.price_cents, status = 'booked', last_position = excluded.last_position"
	sqlCountBooking      = "INSERT INTO guest_stats (guest_id, bookings) VALUES ($1, 1) ON CONFLICT (guest_id) DO UPDATE SET bookings = guest_stats.bookings + 1"
	sqlAddPayment        = "UPDATE bookings SET paid_cents = paid_cents + $2, last_position = $3 WHERE booking_id = $1"
	sqlCountPayment      = "INSERT INTO guest_stats (guest_id, payments, paid_cents) VALUES ($1, 1, $2) ON CONFLICT (guest_id) DO UPDATE SET payments = guest_stats.payments + 1, paid_cents = guest_stats.paid_cents + excluded.paid_cents"
	sqlCheckIn           = "UPDATE bookings SET status = 'checked_in', last_position = $2 WHERE booking_id = $1"
	sqlCheckOut          = "UPDATE bookings SET status = 'checked_out', last_position = $2 WHERE booking_id = $1"
	sqlCancel            = "UPDATE bookings SET status = 'cancelled', last_position = $2 WHERE booking_id = $1"
	sqlCountCancellation = "INSERT INTO guest_stats (guest_id, cancellations) VALUES ($1, 1) ON CONFLICT (guest_id) DO UPDATE SET cancellations = guest_stats.cancellations + 1"
)

// sqlOperations maps an event to the statements of BOOKINGS.md, for the tables of
// sidecar-examples/bookings-schema.sql.
func sqlOperations(d *Decoded) []proto.Message {
	pos := integer(d.Position)
	switch e := d.Event.(type) {
	case RoomBooked:
		return ops(
			statement(sqlUpsertBooking, text(e.BookingID), text(e.GuestID), text(e.RoomID),
				text(e.CheckIn), text(e.CheckOut), integer(e.PriceCents), pos),
			statement(sqlCountBooking, text(e.GuestID)),
		)
	case PaymentRecorded:
		return ops(
			statement(sqlAddPayment, text(e.BookingID), integer(e.AmountCents), pos),
			statement(sqlCountPayment, text(e.GuestID), integer(e.AmountCents)),
		)
	case GuestCheckedIn:
		return ops(statement(sqlCheckIn, text(e.BookingID), pos))
	case GuestCheckedOut:
		return ops(statement(sqlCheckOut, text(e.BookingID), pos))
	case BookingCancelled:
		return ops(
			statement(sqlCancel, text(e.BookingID), pos),
			statement(sqlCountCancellation, text(e.GuestID)),
		)
	}
	return nil
}

func statement(sql string, params ...*pb.SqlValue) *pb.Statement {
	return &pb.Statement{Sql: sql, Params: params}
}

// text is a stringValue parameter.
func text(s string) *pb.SqlValue {
	return &pb.SqlValue{Kind: &pb.SqlValue_StringValue{StringValue: s}}
}

// integer is an int64Value parameter.
func integer(i int64) *pb.SqlValue {
	return &pb.SqlValue{Kind: &pb.SqlValue_Int64Value{Int64Value: i}}
}

func ops(messages ...proto.Message) []proto.Message { return messages }

package bookings

import (
	"slices"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	pb "projector-gateway/sidecar/projectionpb"
)

// The MongoDB read model, exactly the "MongoDB read model" of sidecar-examples/BOOKINGS.md (and
// of the Rust example): the rows of the SQL tables as documents of two collections, each row's
// primary key as the document's _id:
//
//	bookings:    {_id: bookingId, guest_id, room_id, check_in, check_out, price_cents,
//	              paid_cents, status, last_position}
//	guest_stats: {_id: guestId, bookings, cancellations, payments, paid_cents}
//
// Each SQL statement becomes one UpdateOne on the row's _id, which the gateway runs as an
// upsert: `$set` for the values the statement sets, `$inc` for what it adds to. `$inc` by 0
// creates a missing counter at 0 and leaves an existing one alone, like the SQL columns'
// DEFAULT 0 (a booking booked again keeps what was paid). Every operation lists the same
// integerFields, so the sink stores those numbers as BSON Int64 like the SQL BIGINT columns.
// One difference: an SQL UPDATE of a booking that does not exist changes nothing, while the
// upsert creates a partial booking document. The bookings streams cannot cause it: RoomBooked is
// the first event of a booking's stream, and the gateway delivers a stream's events in order.
func mongoOperations(d *Decoded) []proto.Message {
	pos := num(d.Position)
	switch e := d.Event.(type) {
	case RoomBooked:
		return ops(
			upsert(bookingsCollection, e.BookingID, fields{
				"guest_id":      str(e.GuestID),
				"room_id":       str(e.RoomID),
				"check_in":      str(e.CheckIn),
				"check_out":     str(e.CheckOut),
				"price_cents":   num(e.PriceCents),
				"status":        str("booked"),
				"last_position": pos,
			}, fields{"paid_cents": num(0)}),
			countForGuest(e.GuestID, fields{"bookings": num(1)}),
		)
	case PaymentRecorded:
		return ops(
			upsert(bookingsCollection, e.BookingID, fields{"last_position": pos}, fields{"paid_cents": num(e.AmountCents)}),
			countForGuest(e.GuestID, fields{"payments": num(1), "paid_cents": num(e.AmountCents)}),
		)
	case GuestCheckedIn:
		return ops(setStatus(e.BookingID, "checked_in", pos))
	case GuestCheckedOut:
		return ops(setStatus(e.BookingID, "checked_out", pos))
	case BookingCancelled:
		return ops(
			setStatus(e.BookingID, "cancelled", pos),
			countForGuest(e.GuestID, fields{"cancellations": num(1)}),
		)
	}
	return nil
}

// The collections, named like the SQL tables.
const (
	bookingsCollection   = "bookings"
	guestStatsCollection = "guest_stats"
)

// mongoIntegerFields are listed on every operation, in this order (as BOOKINGS.md and the Rust
// example list them): the fields stored as Int64 rather than as the Struct's doubles.
var mongoIntegerFields = []string{"price_cents", "paid_cents", "last_position", "bookings", "cancellations", "payments", "amount_cents"}

// upsert updates the document with this _id in collection, creating it if missing: `$set` the
// values of set, `$inc` by those of inc. An operator with no fields is left out.
func upsert(collection, id string, set, inc fields) *pb.UpdateOne {
	update := fields{}
	if len(set) > 0 {
		update["$set"] = object(set)
	}
	if len(inc) > 0 {
		update["$inc"] = object(inc)
	}
	return &pb.UpdateOne{
		Collection:    collection,
		Filter:        document(fields{"_id": str(id)}),
		Update:        document(update),
		IntegerFields: slices.Clone(mongoIntegerFields),
	}
}

func setStatus(bookingID, status string, pos *structpb.Value) *pb.UpdateOne {
	return upsert(bookingsCollection, bookingID, fields{"status": str(status), "last_position": pos}, nil)
}

// guestCounters are the counters of a guest_stats document.
var guestCounters = [...]string{"bookings", "cancellations", "payments", "paid_cents"}

// countForGuest adds inc to a guest's counters and every other counter by 0, which creates the
// document with all four counters on the guest's first event.
func countForGuest(guestID string, inc fields) *pb.UpdateOne {
	counters := fields{}
	for _, counter := range guestCounters {
		counters[counter] = num(0)
	}
	for counter, by := range inc {
		counters[counter] = by
	}
	return upsert(guestStatsCollection, guestID, nil, counters)
}

package bookings

import (
	"slices"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	pb "projector-gateway/sidecar/projectionpb"
)

// The MongoDB read model: the rows of the SQL tables as documents of two collections, each
// row's primary key as the document's _id:
//
//	bookings:    {_id: bookingId, guest_id, room_id, check_in, check_out, price_cents,
//	              paid_cents, status, last_position}
//	guest_stats: {_id: guestId, bookings, cancellations, payments, paid_cents}
//
// Each SQL statement becomes one UpdateOne on the row's _id, which upserts: `$set` for the
// values the statement sets, `$inc` for what it adds to, and `$setOnInsert` for the column
// defaults (0) that only a new document gets. Every number is listed in integerFields, so it is
// stored as a BSON Int64 like the SQL BIGINT columns. One difference: an SQL UPDATE of a booking
// that does not exist changes nothing, while the upsert creates a partial booking document.
// The bookings streams cannot cause it: RoomBooked is the first event of a booking's stream,
// and the gateway delivers a stream's events in order.
func mongoOperations(d *Decoded) []proto.Message {
	pos := num(d.Position)
	switch e := d.Event.(type) {
	case RoomBooked:
		return ops(
			upsert("bookings", e.BookingID, fields{
				"$set": object(fields{
					"guest_id":      str(e.GuestID),
					"room_id":       str(e.RoomID),
					"check_in":      str(e.CheckIn),
					"check_out":     str(e.CheckOut),
					"price_cents":   num(e.PriceCents),
					"status":        str("booked"),
					"last_position": pos,
				}),
				"$setOnInsert": object(fields{"paid_cents": num(0)}),
			}),
			countForGuest(e.GuestID, fields{"bookings": num(1)}),
		)
	case PaymentRecorded:
		return ops(
			upsert("bookings", e.BookingID, fields{
				"$inc": object(fields{"paid_cents": num(e.AmountCents)}),
				"$set": object(fields{"last_position": pos}),
			}),
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

// upsert updates the document with this _id in collection, creating it if missing.
func upsert(collection, id string, update fields) *pb.UpdateOne {
	return &pb.UpdateOne{
		Collection:    collection,
		Filter:        document(fields{"_id": str(id)}),
		Update:        document(update),
		IntegerFields: numberPaths("", update),
	}
}

func setStatus(bookingID, status string, pos *structpb.Value) *pb.UpdateOne {
	return upsert("bookings", bookingID, fields{"$set": object(fields{"status": str(status), "last_position": pos})})
}

// guestCounters are the counters of a guest_stats document.
var guestCounters = [...]string{"bookings", "cancellations", "payments", "paid_cents"}

// countForGuest adds inc to a guest's counters, creating the document with every other
// counter at 0 when it is the guest's first. (A field may appear under one update operator
// only, so the counters being incremented are left out of $setOnInsert.)
func countForGuest(guestID string, inc fields) *pb.UpdateOne {
	onInsert := fields{}
	for _, counter := range guestCounters {
		if _, ok := inc[counter]; !ok {
			onInsert[counter] = num(0)
		}
	}
	update := fields{"$inc": object(inc)}
	if len(onInsert) > 0 {
		update["$setOnInsert"] = object(onInsert)
	}
	return upsert("guest_stats", guestID, update)
}

// numberPaths lists the dotted paths of every number in f (for integerFields: every number
// the reducer writes is an integer), sorted so the operation is deterministic.
func numberPaths(prefix string, f fields) []string {
	var paths []string
	for name, v := range f {
		switch v.GetKind().(type) {
		case *structpb.Value_NumberValue:
			paths = append(paths, prefix+name)
		case *structpb.Value_StructValue:
			paths = append(paths, numberPaths(prefix+name+".", v.GetStructValue().GetFields())...)
		}
	}
	slices.Sort(paths)
	return paths
}

package bookings

import (
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	pb "projector-gateway/sidecar/projectionpb"
)

// The Elasticsearch read model, in the connector's one index (the proto's Elasticsearch
// operations name no index, so each document's id starts with its kind). A partial Update can
// only merge fields, not add to them, so the counters of the SQL model are not stored but
// computed at query time (aggregations) from one fact document per counted event:
//
//	{_id: "booking:<bookingId>", kind: "booking", booking_id, guest_id, room_id, check_in,
//	 check_out, price_cents, status, last_position}
//	{_id: "event:<eventId>", kind: "booked" | "payment" | "cancellation", booking_id,
//	 guest_id, amount_cents (payments only), position}
//
// A booking's paid_cents is the sum of amount_cents of its payment facts; a guest's bookings,
// cancellations and payments are the counts of its facts of each kind, and its paid_cents the
// sum of its payments. Fact ids are event ids, so indexing the facts of an event that is sent
// twice changes nothing. Nothing in the bookings domain deletes a document, so Delete is unused.
func elasticOperations(d *Decoded) []proto.Message {
	pos := num(d.Position)
	fact := func(kind, bookingID, guestID string, extra fields) *pb.Index {
		f := fields{"kind": str(kind), "booking_id": str(bookingID), "guest_id": str(guestID), "position": pos}
		for k, v := range extra {
			f[k] = v
		}
		return &pb.Index{Id: "event:" + d.EventID, Document: document(f)}
	}
	switch e := d.Event.(type) {
	case RoomBooked:
		return ops(
			&pb.Index{Id: bookingDocID(e.BookingID), Document: document(fields{
				"kind":          str("booking"),
				"booking_id":    str(e.BookingID),
				"guest_id":      str(e.GuestID),
				"room_id":       str(e.RoomID),
				"check_in":      str(e.CheckIn),
				"check_out":     str(e.CheckOut),
				"price_cents":   num(e.PriceCents),
				"status":        str("booked"),
				"last_position": pos,
			})},
			fact("booked", e.BookingID, e.GuestID, nil),
		)
	case PaymentRecorded:
		return ops(
			&pb.Update{Id: bookingDocID(e.BookingID), Document: document(fields{"last_position": pos})},
			fact("payment", e.BookingID, e.GuestID, fields{"amount_cents": num(e.AmountCents)}),
		)
	case GuestCheckedIn:
		return ops(updateStatus(e.BookingID, "checked_in", pos))
	case GuestCheckedOut:
		return ops(updateStatus(e.BookingID, "checked_out", pos))
	case BookingCancelled:
		return ops(
			updateStatus(e.BookingID, "cancelled", pos),
			fact("cancellation", e.BookingID, e.GuestID, nil),
		)
	}
	return nil
}

func bookingDocID(bookingID string) string { return "booking:" + bookingID }

func updateStatus(bookingID, status string, pos *structpb.Value) *pb.Update {
	return &pb.Update{Id: bookingDocID(bookingID), Document: document(fields{"status": str(status), "last_position": pos})}
}

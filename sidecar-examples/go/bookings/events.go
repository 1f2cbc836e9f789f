package bookings

import (
	"fmt"
	"math"

	pb "projector-gateway/sidecar/projectionpb"
)

// Event is a bookings event decoded from a request: one of RoomBooked, PaymentRecorded,
// GuestCheckedIn, GuestCheckedOut and BookingCancelled.
type Event interface{ isEvent() }

// RoomBooked opens (or replaces the terms of) a booking.
type RoomBooked struct {
	BookingID, GuestID, RoomID string
	CheckIn, CheckOut          string // YYYY-MM-DD
	PriceCents                 int64
}

// PaymentRecorded adds a payment to a booking.
type PaymentRecorded struct {
	BookingID, GuestID string
	AmountCents        int64
}

// GuestCheckedIn marks a booking checked in.
type GuestCheckedIn struct{ BookingID string }

// GuestCheckedOut marks a booking checked out.
type GuestCheckedOut struct{ BookingID string }

// BookingCancelled marks a booking cancelled.
type BookingCancelled struct{ BookingID, GuestID string }

func (RoomBooked) isEvent()       {}
func (PaymentRecorded) isEvent()  {}
func (GuestCheckedIn) isEvent()   {}
func (GuestCheckedOut) isEvent()  {}
func (BookingCancelled) isEvent() {}

// Decoded is an event with what the targets need from its request.
type Decoded struct {
	EventID  string
	Position int64 // the request's globalPosition, for the last_position columns
	Event    Event
}

// decoders maps each event type the read model handles to the function that reads its
// payload. Every other type (GuestRegistered among them) is answered with Ignore.
var decoders = map[string]func(p *payload) Event{
	"RoomBooked": func(p *payload) Event {
		return RoomBooked{
			BookingID:  p.text("bookingId"),
			GuestID:    p.text("guestId"),
			RoomID:     p.text("roomId"),
			CheckIn:    p.text("checkIn"),
			CheckOut:   p.text("checkOut"),
			PriceCents: p.int64("priceCents"),
		}
	},
	"PaymentRecorded": func(p *payload) Event {
		return PaymentRecorded{BookingID: p.text("bookingId"), GuestID: p.text("guestId"), AmountCents: p.int64("amountCents")}
	},
	"GuestCheckedIn":  func(p *payload) Event { return GuestCheckedIn{BookingID: p.text("bookingId")} },
	"GuestCheckedOut": func(p *payload) Event { return GuestCheckedOut{BookingID: p.text("bookingId")} },
	"BookingCancelled": func(p *payload) Event {
		return BookingCancelled{BookingID: p.text("bookingId"), GuestID: p.text("guestId")}
	},
}

// Decode reads the event of a request. It returns (nil, nil) for an event type the read
// model ignores, and an error naming the event and the field when the payload lacks a field
// or holds one of the wrong type.
func Decode(req *pb.ProjectionRequest) (*Decoded, error) {
	decode, ok := decoders[req.GetEventType()]
	if !ok {
		return nil, nil
	}
	fail := func(err error) (*Decoded, error) {
		return nil, fmt.Errorf("event %s (%s, stream %s): %w", req.GetEventId(), req.GetEventType(), req.GetStream(), err)
	}
	position := req.GetGlobalPosition()
	if position > math.MaxInt64 {
		return fail(fmt.Errorf("globalPosition %d does not fit a signed 64-bit integer", position))
	}
	p, err := newPayload(req)
	if err != nil {
		return fail(err)
	}
	event := decode(p)
	if p.err != nil {
		return fail(p.err)
	}
	return &Decoded{EventID: req.GetEventId(), Position: int64(position), Event: event}, nil
}

package bookings

import (
	"encoding/json"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	pb "projector-gateway/sidecar/projectionpb"
)

// event is one event of a test scenario, as the gateway would send it.
type event struct {
	id       string
	typ      string
	position uint64
	payload  map[string]any
}

// request builds the request the gateway sends: the payload as a Struct (numbers become
// doubles), or, with asJSON, only as the raw JSON bytes of payloadJson (`payload: json`).
func (e event) request(t *testing.T, asJSON bool) *pb.ProjectionRequest {
	t.Helper()
	req := &pb.ProjectionRequest{
		EventType:      e.typ,
		EventId:        e.id,
		Stream:         "booking-1",
		GlobalPosition: e.position,
	}
	if asJSON {
		raw, err := json.Marshal(e.payload)
		if err != nil {
			t.Fatal(err)
		}
		req.PayloadJson, req.ContentType = raw, "application/json"
	} else {
		s, err := structpb.NewStruct(e.payload)
		if err != nil {
			t.Fatal(err)
		}
		req.EventPayload = s
	}
	return req
}

func roomBooked(id string, position uint64, booking, guest, room string, price int64) event {
	return event{id, "RoomBooked", position, map[string]any{
		"bookingId": booking, "guestId": guest, "roomId": room,
		"checkIn": "2026-12-01", "checkOut": "2026-12-04", "priceCents": price,
	}}
}

func paymentRecorded(id string, position uint64, booking, guest string, amount int64) event {
	return event{id, "PaymentRecorded", position, map[string]any{
		"bookingId": booking, "guestId": guest, "paymentId": "pay-" + id, "amountCents": amount,
	}}
}

func bookingEvent(id, typ string, position uint64, booking, guest string) event {
	return event{id, typ, position, map[string]any{
		"bookingId": booking, "guestId": guest, "at": "2026-12-01T15:00:00Z", "reason": "test",
	}}
}

// scenario covers every event type, a re-booking, several guests and ignored events.
var scenario = []event{
	roomBooked("e01", 1, "booking-1", "guest-1", "room-101", 20000),
	{"e02", "GuestRegistered", 2, map[string]any{"guestId": "guest-1", "name": "Ada", "email": "ada@example.com"}},
	paymentRecorded("e03", 3, "booking-1", "guest-1", 5000),
	roomBooked("e04", 4, "booking-2", "guest-1", "room-102", 30000),
	paymentRecorded("e05", 5, "booking-1", "guest-1", 15000),
	bookingEvent("e06", "GuestCheckedIn", 6, "booking-1", "guest-1"),
	bookingEvent("e07", "BookingCancelled", 7, "booking-2", "guest-1"),
	roomBooked("e08", 8, "booking-3", "guest-2", "room-103", 12000),
	bookingEvent("e09", "GuestCheckedOut", 9, "booking-1", "guest-1"),
	paymentRecorded("e10", 10, "booking-3", "guest-2", 100),
	roomBooked("e11", 11, "booking-3", "guest-2", "room-104", 13000), // re-booked: keeps its payments
	{"e12", "RoomRenamed", 12, map[string]any{"roomId": "room-101"}},
}

// booking and guestStats are the rows of the SQL read model.
type booking struct {
	GuestID, RoomID, CheckIn, CheckOut, Status string
	PriceCents, PaidCents, LastPosition        int64
}

type guestStats struct{ Bookings, Cancellations, Payments, PaidCents int64 }

type readModel struct {
	Bookings map[string]booking
	Guests   map[string]guestStats
}

func newReadModel() readModel {
	return readModel{Bookings: map[string]booking{}, Guests: map[string]guestStats{}}
}

// expectedModel is the read model of BOOKINGS.md computed straight from the events, the way
// the gateway's tests compute their reference (tests/support/bookings_model.rs).
func expectedModel(events []event) readModel {
	m := newReadModel()
	for _, e := range events {
		p := e.payload
		str := func(k string) string { return p[k].(string) }
		cents := func(k string) int64 { return p[k].(int64) }
		pos := int64(e.position)
		switch e.typ {
		case "RoomBooked":
			b := m.Bookings[str("bookingId")]
			m.Bookings[str("bookingId")] = booking{
				GuestID: str("guestId"), RoomID: str("roomId"), CheckIn: str("checkIn"), CheckOut: str("checkOut"),
				Status: "booked", PriceCents: cents("priceCents"), PaidCents: b.PaidCents, LastPosition: pos,
			}
			g := m.Guests[str("guestId")]
			g.Bookings++
			m.Guests[str("guestId")] = g
		case "PaymentRecorded":
			if b, ok := m.Bookings[str("bookingId")]; ok {
				b.PaidCents += cents("amountCents")
				b.LastPosition = pos
				m.Bookings[str("bookingId")] = b
			}
			g := m.Guests[str("guestId")]
			g.Payments++
			g.PaidCents += cents("amountCents")
			m.Guests[str("guestId")] = g
		case "GuestCheckedIn", "GuestCheckedOut", "BookingCancelled":
			status := map[string]string{"GuestCheckedIn": "checked_in", "GuestCheckedOut": "checked_out", "BookingCancelled": "cancelled"}[e.typ]
			if b, ok := m.Bookings[str("bookingId")]; ok {
				b.Status, b.LastPosition = status, pos
				m.Bookings[str("bookingId")] = b
			}
			if e.typ == "BookingCancelled" {
				g := m.Guests[str("guestId")]
				g.Cancellations++
				m.Guests[str("guestId")] = g
			}
		}
	}
	return m
}

// operations returns a response's operations in the order they apply (`operation`, then
// `operations`), unpacked, after checking that each Any names a projection message.
func operations(t *testing.T, resp *pb.ProjectionResponse) []proto.Message {
	t.Helper()
	if resp.GetError() != nil {
		t.Fatalf("unexpected error: %s", resp.GetError().GetMessage())
	}
	if resp.GetOperation() == nil {
		t.Fatal("no operation")
	}
	var out []proto.Message
	for _, a := range append([]*anypb.Any{resp.GetOperation()}, resp.GetOperations()...) {
		m, err := a.UnmarshalNew()
		if err != nil {
			t.Fatalf("cannot unpack %s: %v", a.GetTypeUrl(), err)
		}
		if want := "type.googleapis.com/" + string(m.ProtoReflect().Descriptor().FullName()); a.GetTypeUrl() != want {
			t.Fatalf("type URL %q, want %q", a.GetTypeUrl(), want)
		}
		out = append(out, m)
	}
	return out
}

// asInt64 reads a Struct number that must hold an integer.
func asInt64(t *testing.T, v any) int64 {
	t.Helper()
	f, ok := v.(float64)
	if !ok || f != float64(int64(f)) {
		t.Fatalf("%v (%T) is not a whole number", v, v)
	}
	return int64(f)
}

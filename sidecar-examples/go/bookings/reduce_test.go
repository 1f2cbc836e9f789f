package bookings

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	pb "projector-gateway/sidecar/projectionpb"
)

var targets = []Target{SQL, Mongo, Elastic}

func TestParseTarget(t *testing.T) {
	for name, want := range map[string]Target{"": SQL, "sql": SQL, "mongo": Mongo, "elastic": Elastic} {
		got, err := ParseTarget(name)
		if err != nil || got != want {
			t.Errorf("ParseTarget(%q) = %v, %v; want %v", name, got, err, want)
		}
		if name != "" && got.String() != name {
			t.Errorf("%v.String() = %q, want %q", got, got.String(), name)
		}
	}
	if _, err := ParseTarget("SQL"); err == nil || !strings.Contains(err.Error(), "sql, mongo, elastic") {
		t.Errorf("ParseTarget(SQL) must fail and name the targets, got %v", err)
	}
}

func TestIgnoredEventsAreAnsweredWithIgnore(t *testing.T) {
	for _, target := range targets {
		for _, typ := range []string{"GuestRegistered", "RoomRenamed", "V1.RoomBooked", ""} {
			// Even with a payload the reducer could not read: an ignored type is never decoded.
			req := &pb.ProjectionRequest{EventType: typ, EventId: "e-9", PayloadJson: []byte("not json")}
			resp := Reduce(target, req)
			if resp.GetEventId() != "e-9" || resp.GetError() != nil || len(resp.GetOperations()) != 0 {
				t.Fatalf("%v %q: %v", target, typ, resp)
			}
			if got := resp.GetOperation().GetTypeUrl(); got != "type.googleapis.com/projection.Ignore" {
				t.Errorf("%v %q: operation %q, want projection.Ignore", target, typ, got)
			}
		}
	}
}

func TestEveryTargetAnswersEveryEventWithItsOwnOperations(t *testing.T) {
	kinds := map[Target][]string{
		SQL:     {"projection.Statement"},
		Mongo:   {"projection.UpdateOne"},
		Elastic: {"projection.Index", "projection.Update"},
	}
	for _, target := range targets {
		for _, e := range scenario {
			resp := Reduce(target, e.request(t, false))
			if resp.GetEventId() != e.id {
				t.Errorf("%v %s: eventId %q, want %q", target, e.typ, resp.GetEventId(), e.id)
			}
			for _, op := range operations(t, resp) {
				name := string(op.ProtoReflect().Descriptor().FullName())
				if name != "projection.Ignore" && !slices.Contains(kinds[target], name) {
					t.Errorf("%v %s: operation %s", target, e.typ, name)
				}
			}
		}
	}
}

func TestTheRawJSONPayloadGivesTheSameOperations(t *testing.T) {
	for _, target := range targets {
		for _, e := range scenario {
			fromStruct := Reduce(target, e.request(t, false))
			fromJSON := Reduce(target, e.request(t, true))
			if diff := cmp.Diff(fromStruct, fromJSON, protocmp.Transform()); diff != "" {
				t.Errorf("%v %s: payloadJson differs from eventPayload (-struct +json):\n%s", target, e.typ, diff)
			}
		}
	}
}

func TestUnreadablePayloadsBecomeNonRetryableErrors(t *testing.T) {
	booked := roomBooked("e-5", 7, "booking-1", "guest-1", "room-1", 100)
	with := func(key string, value any) event {
		e := booked
		e.payload = map[string]any{}
		for k, v := range booked.payload {
			e.payload[k] = v
		}
		if value == nil {
			delete(e.payload, key)
		} else {
			e.payload[key] = value
		}
		return e
	}
	tests := []struct {
		name string
		req  *pb.ProjectionRequest
		want string
	}{
		{"missing field", with("guestId", nil).request(t, false), `payload field "guestId" is missing`},
		{"missing field (json)", with("guestId", nil).request(t, true), `payload field "guestId" is missing`},
		{"text as number", with("roomId", 12.0).request(t, false), `payload field "roomId" is not a string`},
		{"number as text", with("priceCents", "100").request(t, false), `payload field "priceCents" is not a number`},
		{"fraction", with("priceCents", 100.5).request(t, false), `payload field "priceCents" is not a whole number (100.5)`},
		{"fraction (json)", with("priceCents", 100.5).request(t, true), `payload field "priceCents" is not a whole number (100.5)`},
		{"too big", with("priceCents", 1e19).request(t, false), `payload field "priceCents" is not a whole number`},
		{"empty payload", &pb.ProjectionRequest{EventType: "GuestCheckedIn", EventId: "e-5"}, `payload field "bookingId" is missing`},
		{"bad json", &pb.ProjectionRequest{EventType: "GuestCheckedIn", EventId: "e-5", PayloadJson: []byte(`[1]`)}, "payloadJson is not a JSON object"},
		{"position", func() *pb.ProjectionRequest {
			r := booked.request(t, false)
			r.GlobalPosition = math.MaxInt64 + 1
			return r
		}(), "globalPosition 9223372036854775808 does not fit"},
	}
	for _, tt := range tests {
		for _, target := range targets {
			resp := Reduce(target, tt.req)
			if resp.GetEventId() != "e-5" || resp.GetOperation() != nil || len(resp.GetOperations()) != 0 {
				t.Errorf("%s (%v): want only an error, got %v", tt.name, target, resp)
			}
			if msg := resp.GetError().GetMessage(); !strings.Contains(msg, tt.want) || !strings.HasPrefix(msg, "event e-5 (") {
				t.Errorf("%s (%v): error %q, want it to name the event and contain %q", tt.name, target, msg, tt.want)
			}
			if resp.GetError().GetRetryable() {
				t.Errorf("%s (%v): a payload error cannot pass on a retry", tt.name, target)
			}
		}
	}
}

func TestIntegersFromJSONStayExact(t *testing.T) {
	// 2^53 + 1 has no double: the raw JSON path must read it exactly.
	req := &pb.ProjectionRequest{
		EventType: "PaymentRecorded", EventId: "e-1",
		PayloadJson: []byte(`{"bookingId":"b","guestId":"g","amountCents":9007199254740993}`),
	}
	stmt := operations(t, Reduce(SQL, req))[0].(*pb.Statement)
	if got := stmt.GetParams()[1].GetInt64Value(); got != 9007199254740993 {
		t.Errorf("amountCents = %d", got)
	}
}

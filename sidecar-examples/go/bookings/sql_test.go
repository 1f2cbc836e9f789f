package bookings

import (
	"os"
	"regexp"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/google/go-cmp/cmp"

	pb "projector-gateway/sidecar/projectionpb"
)

func TestSQLStatementsAreThoseOfBookingsMd(t *testing.T) {
	md, err := os.ReadFile("../../BOOKINGS.md")
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for _, m := range regexp.MustCompile("`((?:INSERT|UPDATE) [^`]+)`").FindAllStringSubmatch(string(md), -1) {
		documented = append(documented, m[1])
	}
	ours := []string{sqlUpsertBooking, sqlCountBooking, sqlAddPayment, sqlCountPayment, sqlCheckIn, sqlCheckOut, sqlCancel, sqlCountCancellation}
	if !slices.Equal(documented, ours) {
		t.Fatalf("the statements differ from BOOKINGS.md:\n%s", cmp.Diff(documented, ours))
	}
}

func TestSQLStatementsPerEventType(t *testing.T) {
	pos := integer(42)
	tests := []struct {
		event event
		want  []proto.Message
	}{
		{
			roomBooked("e1", 42, "booking-7", "guest-3", "room-101", 36000),
			ops(
				statement(sqlUpsertBooking, text("booking-7"), text("guest-3"), text("room-101"),
					text("2026-12-01"), text("2026-12-04"), integer(36000), pos),
				statement(sqlCountBooking, text("guest-3")),
			),
		},
		{
			paymentRecorded("e1", 42, "booking-7", "guest-3", 12000),
			ops(
				statement(sqlAddPayment, text("booking-7"), integer(12000), pos),
				statement(sqlCountPayment, text("guest-3"), integer(12000)),
			),
		},
		{bookingEvent("e1", "GuestCheckedIn", 42, "booking-7", "guest-3"), ops(statement(sqlCheckIn, text("booking-7"), pos))},
		{bookingEvent("e1", "GuestCheckedOut", 42, "booking-7", "guest-3"), ops(statement(sqlCheckOut, text("booking-7"), pos))},
		{
			bookingEvent("e1", "BookingCancelled", 42, "booking-7", "guest-3"),
			ops(statement(sqlCancel, text("booking-7"), pos), statement(sqlCountCancellation, text("guest-3"))),
		},
	}
	for _, tt := range tests {
		for _, asJSON := range []bool{false, true} {
			resp := Reduce(SQL, tt.event.request(t, asJSON))
			if resp.GetEventId() != "e1" {
				t.Errorf("%s: eventId %q, want e1", tt.event.typ, resp.GetEventId())
			}
			if diff := cmp.Diff(tt.want, operations(t, resp), protocmp.Transform()); diff != "" {
				t.Errorf("%s (payloadJson: %v): statements differ (-want +got):\n%s", tt.event.typ, asJSON, diff)
			}
		}
	}
}

func TestSQLParametersAreTyped(t *testing.T) {
	resp := Reduce(SQL, roomBooked("e1", 1<<40, "b", "g", "r", 1).request(t, false))
	params := operations(t, resp)[0].(*pb.Statement).GetParams()
	for i, p := range params[:5] {
		if _, ok := p.GetKind().(*pb.SqlValue_StringValue); !ok {
			t.Errorf("$%d is %T, want stringValue", i+1, p.GetKind())
		}
	}
	if got := params[6].GetInt64Value(); got != 1<<40 {
		t.Errorf("last_position is %d, want the globalPosition %d", got, int64(1<<40))
	}
}

package bookings

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	pb "projector-gateway/sidecar/projectionpb"
)

func TestDescribeDeclaresExactlyTheDecodedTypes(t *testing.T) {
	got := Describe(SQL).GetEventTypes()
	var decoded []string
	for typ := range decoders {
		decoded = append(decoded, typ)
	}
	if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(decoded))) {
		t.Errorf("Describe declares %v, Decode reads %v", got, decoded)
	}
	if d := Describe(Mongo); d.GetProjection() != "bookings" || d.GetVersion() != "1" {
		t.Errorf("projection %q version %q", d.GetProjection(), d.GetVersion())
	}
}

func TestDescribeResetOperationsClearEachTarget(t *testing.T) {
	want := map[Target][]proto.Message{
		SQL: ops(statement("DELETE FROM bookings"), statement("DELETE FROM guest_stats")),
		Mongo: ops(
			&pb.DeleteMany{Collection: "bookings", Filter: document(fields{})},
			&pb.DeleteMany{Collection: "guest_stats", Filter: document(fields{})},
		),
		Elastic: nil,
	}
	for _, target := range targets {
		var got []proto.Message
		for _, a := range Describe(target).GetResetOperations() {
			m, err := a.UnmarshalNew()
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, m)
		}
		if diff := cmp.Diff(want[target], got, protocmp.Transform()); diff != "" {
			t.Errorf("%v (-want +got):\n%s", target, diff)
		}
	}
}

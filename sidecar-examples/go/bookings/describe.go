package bookings

import (
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	pb "projector-gateway/sidecar/projectionpb"
)

// Projection is the name of the read model, and Version the version of the reducer's logic:
// change Version when what the reducer writes changes, and a gateway configured with
// `sidecar.rebuild_on_new_version: true` rebuilds the read model.
const (
	Projection = "bookings"
	Version    = "1"
)

// handledTypes are the event types Decode reads, in the order of BOOKINGS.md.
var handledTypes = []string{"RoomBooked", "PaymentRecorded", "GuestCheckedIn", "GuestCheckedOut", "BookingCancelled"}

// Describe is what the sidecar answers to projection.ProjectionInfo/Describe: the read model's
// name and version, the handled event types (the gateway then sends only those), and the
// operations that clear the read model of target t before a rebuild.
func Describe(t Target) *pb.DescribeResponse {
	resp := &pb.DescribeResponse{Projection: Projection, Version: Version, EventTypes: handledTypes}
	for _, op := range t.resetOperations() {
		packed, err := anypb.New(op)
		if err != nil {
			panic(err) // static messages: cannot fail
		}
		resp.ResetOperations = append(resp.ResetOperations, packed)
	}
	return resp
}

// resetOperations clear the read model: both tables, both collections, and nothing in
// Elasticsearch, where every document id comes from the log, so projecting the log again
// rewrites the same documents (and the proto has no delete-by-query).
func (t Target) resetOperations() []proto.Message {
	switch t {
	case SQL:
		return ops(statement("DELETE FROM bookings"), statement("DELETE FROM guest_stats"))
	case Mongo:
		return ops(
			&pb.DeleteMany{Collection: bookingsCollection, Filter: document(fields{})},
			&pb.DeleteMany{Collection: guestStatsCollection, Filter: document(fields{})},
		)
	}
	return nil
}

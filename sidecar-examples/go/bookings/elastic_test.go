package bookings

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	pb "projector-gateway/sidecar/projectionpb"
)

func TestElasticOperationsBuildTheSQLReadModel(t *testing.T) {
	index := elasticIndex{}
	for _, e := range scenario {
		for _, op := range operations(t, Reduce(Elastic, e.request(t, false))) {
			index.apply(t, op)
		}
	}
	if diff := cmp.Diff(expectedModel(scenario), index.readModel(t)); diff != "" {
		t.Errorf("the Elasticsearch documents differ from the read model (-want +got):\n%s", diff)
	}
}

func TestElasticOperationsOfAnEventSentTwiceChangeNothing(t *testing.T) {
	once, twice := elasticIndex{}, elasticIndex{}
	for _, e := range scenario {
		for _, op := range operations(t, Reduce(Elastic, e.request(t, false))) {
			once.apply(t, op)
		}
		for range 2 {
			for _, op := range operations(t, Reduce(Elastic, e.request(t, false))) {
				twice.apply(t, op)
			}
		}
	}
	if diff := cmp.Diff(once, twice); diff != "" {
		t.Errorf("(-once +twice):\n%s", diff)
	}
}

// elasticIndex applies Index (create or replace) and Update (merge into an existing
// document) as Elasticsearch does.
type elasticIndex map[string]map[string]any

func (x elasticIndex) apply(t *testing.T, op any) {
	t.Helper()
	switch op := op.(type) {
	case *pb.Index:
		if op.GetId() == "" {
			t.Fatal("Index without id")
		}
		x[op.GetId()] = op.GetDocument().AsMap()
	case *pb.Update:
		doc, ok := x[op.GetId()]
		if !ok {
			t.Fatalf("Update of %q, which does not exist", op.GetId())
		}
		for k, v := range op.GetDocument().AsMap() {
			doc[k] = v
		}
	case *pb.Ignore:
	default:
		t.Fatalf("unexpected operation %T", op)
	}
}

// readModel computes the SQL read model with what would be aggregations in Elasticsearch:
// sums and counts of the fact documents.
func (x elasticIndex) readModel(t *testing.T) readModel {
	m := newReadModel()
	paid := map[string]int64{}
	for id, d := range x {
		guest := func() guestStats { return m.Guests[d["guest_id"].(string)] }
		g := guest()
		switch d["kind"] {
		case "booking":
			m.Bookings[d["booking_id"].(string)] = booking{
				GuestID: d["guest_id"].(string), RoomID: d["room_id"].(string),
				CheckIn: d["check_in"].(string), CheckOut: d["check_out"].(string), Status: d["status"].(string),
				PriceCents: asInt64(t, d["price_cents"]), LastPosition: asInt64(t, d["last_position"]),
			}
			continue
		case "booked":
			g.Bookings++
		case "cancellation":
			g.Cancellations++
		case "payment":
			g.Payments++
			g.PaidCents += asInt64(t, d["amount_cents"])
			paid[d["booking_id"].(string)] += asInt64(t, d["amount_cents"])
		default:
			t.Fatalf("document %s has no known kind: %v", id, d)
		}
		m.Guests[d["guest_id"].(string)] = g
	}
	for id, amount := range paid {
		b := m.Bookings[id]
		b.PaidCents = amount
		m.Bookings[id] = b
	}
	return m
}

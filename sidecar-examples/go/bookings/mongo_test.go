package bookings

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	pb "projector-gateway/sidecar/projectionpb"
)

// wantIntegerFields is the list every operation carries, as BOOKINGS.md writes it.
var wantIntegerFields = []string{"price_cents", "paid_cents", "last_position", "bookings", "cancellations", "payments", "amount_cents"}

// wantUpsert is the UpdateOne BOOKINGS.md prescribes: `_id` filter, the update, the seven
// integerFields.
func wantUpsert(collection, id string, update fields) *pb.UpdateOne {
	return &pb.UpdateOne{
		Collection:    collection,
		Filter:        document(fields{"_id": str(id)}),
		Update:        document(update),
		IntegerFields: wantIntegerFields,
	}
}

func wantGuest(id string, bookings, cancellations, payments, paidCents int64) *pb.UpdateOne {
	return wantUpsert("guest_stats", id, fields{"$inc": object(fields{
		"bookings": num(bookings), "cancellations": num(cancellations), "payments": num(payments), "paid_cents": num(paidCents),
	})})
}

// TestMongoOperationsPerEventType compares each event's operations, field for field, with the
// table of BOOKINGS.md's "MongoDB read model".
func TestMongoOperationsPerEventType(t *testing.T) {
	status := func(s string) *pb.UpdateOne {
		return wantUpsert("bookings", "booking-7", fields{"$set": object(fields{"status": str(s), "last_position": num(42)})})
	}
	tests := []struct {
		event event
		want  []*pb.UpdateOne
	}{
		{
			roomBooked("e1", 42, "booking-7", "guest-3", "room-101", 36000),
			[]*pb.UpdateOne{
				wantUpsert("bookings", "booking-7", fields{
					"$set": object(fields{
						"guest_id": str("guest-3"), "room_id": str("room-101"),
						"check_in": str("2026-12-01"), "check_out": str("2026-12-04"),
						"price_cents": num(36000), "status": str("booked"), "last_position": num(42),
					}),
					"$inc": object(fields{"paid_cents": num(0)}),
				}),
				wantGuest("guest-3", 1, 0, 0, 0),
			},
		},
		{
			paymentRecorded("e1", 42, "booking-7", "guest-3", 12500),
			[]*pb.UpdateOne{
				wantUpsert("bookings", "booking-7", fields{
					"$set": object(fields{"last_position": num(42)}),
					"$inc": object(fields{"paid_cents": num(12500)}),
				}),
				wantGuest("guest-3", 0, 0, 1, 12500),
			},
		},
		{bookingEvent("e1", "GuestCheckedIn", 42, "booking-7", "guest-3"), []*pb.UpdateOne{status("checked_in")}},
		{bookingEvent("e1", "GuestCheckedOut", 42, "booking-7", "guest-3"), []*pb.UpdateOne{status("checked_out")}},
		{
			bookingEvent("e1", "BookingCancelled", 42, "booking-7", "guest-3"),
			[]*pb.UpdateOne{status("cancelled"), wantGuest("guest-3", 0, 1, 0, 0)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.event.typ, func(t *testing.T) {
			var want []proto.Message
			for _, u := range tt.want {
				want = append(want, u)
			}
			got := operations(t, Reduce(Mongo, tt.event.request(t, false)))
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestMongoOperationsBuildTheSQLReadModel(t *testing.T) {
	db := mongoDatabase{}
	for _, e := range scenario {
		for _, op := range operations(t, Reduce(Mongo, e.request(t, false))) {
			db.apply(t, op)
		}
	}
	if diff := cmp.Diff(expectedModel(scenario), db.readModel(t)); diff != "" {
		t.Errorf("the MongoDB documents differ from the read model (-want +got):\n%s", diff)
	}
}

// mongoDatabase applies the operations as MongoDB does, for the subset the reducer uses
// (UpdateOne with upsert on an _id filter; $set and $inc), and fails the test on anything
// MongoDB would reject or the gateway would store as a double.
type mongoDatabase map[string]map[string]map[string]any // collection -> _id -> document

func (db mongoDatabase) apply(t *testing.T, op any) {
	t.Helper()
	if _, ok := op.(*pb.Ignore); ok {
		return
	}
	u, ok := op.(*pb.UpdateOne)
	if !ok {
		t.Fatalf("unexpected operation %T", op)
	}
	filter, update := u.GetFilter().AsMap(), u.GetUpdate().AsMap()
	id, ok := filter["_id"].(string)
	if !ok || len(filter) != 1 || u.GetCollection() == "" {
		t.Fatalf("filter %v in collection %q: want {_id: string} in a named collection", filter, u.GetCollection())
	}
	seen := map[string]string{}
	for operator, v := range update {
		values, ok := v.(map[string]any)
		if !ok || len(values) == 0 {
			t.Fatalf("%s: %v is not a non-empty document", operator, v)
		}
		for field, value := range values {
			if other, dup := seen[field]; dup {
				t.Fatalf("%q is updated by both %s and %s: MongoDB rejects the update", field, other, operator)
			}
			seen[field] = operator
			// The sink leaves $-prefixed keys out of a path: `$inc.bookings` is `bookings`.
			if _, isNumber := value.(float64); isNumber && !slices.Contains(u.GetIntegerFields(), field) {
				t.Fatalf("%s.%s is a number not named in integerFields %v: it would be stored as a double", operator, field, u.GetIntegerFields())
			}
		}
	}
	if db[u.GetCollection()] == nil {
		db[u.GetCollection()] = map[string]map[string]any{}
	}
	doc, exists := db[u.GetCollection()][id]
	if !exists { // upsert
		doc = map[string]any{"_id": id}
		db[u.GetCollection()][id] = doc
	}
	for operator, v := range update {
		for k, value := range v.(map[string]any) {
			switch operator {
			case "$set":
				doc[k] = value
			case "$inc":
				old, _ := doc[k].(float64)
				doc[k] = old + float64(asInt64(t, value))
			default:
				t.Fatalf("unexpected update operator %s", operator)
			}
		}
	}
}

func (db mongoDatabase) readModel(t *testing.T) readModel {
	m := newReadModel()
	for collection, docs := range db {
		for id, d := range docs {
			switch collection {
			case "bookings":
				m.Bookings[id] = booking{
					GuestID: d["guest_id"].(string), RoomID: d["room_id"].(string),
					CheckIn: d["check_in"].(string), CheckOut: d["check_out"].(string), Status: d["status"].(string),
					PriceCents: asInt64(t, d["price_cents"]), PaidCents: asInt64(t, d["paid_cents"]),
					LastPosition: asInt64(t, d["last_position"]),
				}
			case "guest_stats":
				m.Guests[id] = guestStats{
					Bookings: asInt64(t, d["bookings"]), Cancellations: asInt64(t, d["cancellations"]),
					Payments: asInt64(t, d["payments"]), PaidCents: asInt64(t, d["paid_cents"]),
				}
			default:
				t.Errorf("unexpected collection %q", collection)
			}
			if want := map[string]int{"bookings": 9, "guest_stats": 5}[collection]; len(d) != want {
				t.Errorf("%s %s has fields %v, want %d", collection, id, strings.Join(keys(d), ", "), want)
			}
		}
	}
	return m
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// The handlers' answers, checked without the gateway: `./run.sh test` (or `go test ./...`).
package main

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "library-loans/projectionpb"
)

func event(t *testing.T, eventType string, fields map[string]any, position uint64) *pb.ProjectionRequest {
	t.Helper()
	payload, err := structpb.NewStruct(fields)
	if err != nil {
		t.Fatal(err)
	}
	return &pb.ProjectionRequest{EventType: eventType, EventId: "e-1", Stream: "loan-1", EventPayload: payload, GlobalPosition: position}
}

// statements unpacks the answer's statements.
func statements(t *testing.T, answer *pb.ProjectionResponse) []*pb.Statement {
	t.Helper()
	var found []*pb.Statement
	for _, a := range append([]*anypb.Any{answer.GetOperation()}, answer.GetOperations()...) {
		s := &pb.Statement{}
		if err := a.UnmarshalTo(s); err != nil {
			t.Fatalf("not a Statement: %v", err)
		}
		found = append(found, s)
	}
	return found
}

func at(value string) *pb.SqlValue {
	t, _ := time.Parse(time.RFC3339, value)
	return &pb.SqlValue{Kind: &pb.SqlValue_TimestampValue{TimestampValue: timestamppb.New(t)}}
}

func str(value string) *pb.SqlValue {
	return &pb.SqlValue{Kind: &pb.SqlValue_StringValue{StringValue: value}}
}

func TestBookLentInsertsTheLoanWithTypedParameters(t *testing.T) {
	answer := respond(event(t, "BookLent", map[string]any{
		"loanId": "loan-1", "bookId": "moby-dick", "memberId": "m-2", "lentAt": "2026-09-02T14:30:00Z",
	}, 7))
	want := statement(lend, str("loan-1"), str("moby-dick"), str("m-2"), at("2026-09-02T14:30:00Z"), intParam(7))
	if got := statements(t, answer); answer.GetEventId() != "e-1" || len(got) != 1 || !proto.Equal(got[0], want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestBookReturnedSetsTheReturnTime(t *testing.T) {
	answer := respond(event(t, "BookReturned", map[string]any{"loanId": "loan-1", "returnedAt": "2026-09-10T09:15:00Z"}, 9))
	want := statement(giveBack, str("loan-1"), at("2026-09-10T09:15:00Z"), intParam(9))
	if got := statements(t, answer); len(got) != 1 || !proto.Equal(got[0], want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestAMissingFieldIsReportedAsAnError(t *testing.T) {
	answer := respond(event(t, "BookReturned", map[string]any{"loanId": "loan-1"}, 9))
	if answer.GetOperation() != nil || answer.GetError().GetRetryable() || !strings.Contains(answer.GetError().GetMessage(), "returnedAt") {
		t.Fatalf("got %v", answer)
	}
}

func TestAnUnhandledEventIsIgnored(t *testing.T) {
	answer := respond(event(t, "MemberJoined", map[string]any{"memberId": "m-1"}, 1))
	if !answer.GetOperation().MessageIs(&pb.Ignore{}) {
		t.Fatalf("got %v", answer)
	}
}

func TestDescribeNamesTheProjectionAndTheHandledTypes(t *testing.T) {
	d := describe()
	if d.GetProjection() != "library-loans" || d.GetVersion() != "1" || strings.Join(d.GetEventTypes(), ",") != "BookLent,BookReturned" {
		t.Fatalf("got %v", d)
	}
}

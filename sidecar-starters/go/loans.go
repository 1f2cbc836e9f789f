// The library-loans reducer: one handler per event type, each turning an event into typed SQL
// statements for the read model of schema.sql, and what Describe answers.
//
// To add an event type: write a handler and add it to handlers. Handlers must be
// deterministic: after a reconnect the gateway sends an event again.
package main

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "library-loans/projectionpb"
)

const (
	projection = "library-loans"
	// The version of the handlers' logic: change it when what they write changes (with
	// `sidecar.rebuild_on_new_version: true` the gateway then rebuilds the read model).
	version = "1"

	lend = "INSERT INTO loans (loan_id, book_id, member_id, lent_at, last_position) " +
		"VALUES ($1, $2, $3, $4, $5) ON CONFLICT (loan_id) DO NOTHING"
	giveBack = "UPDATE loans SET returned_at = $2, last_position = $3 WHERE loan_id = $1"
)

// handler turns one event into statements; p reads its payload and keeps the first error.
type handler func(req *pb.ProjectionRequest, p *payload) []*pb.Statement

var handlers = map[string]handler{
	"BookLent": func(req *pb.ProjectionRequest, p *payload) []*pb.Statement {
		return []*pb.Statement{statement(lend,
			p.text("loanId"), p.text("bookId"), p.text("memberId"), p.time("lentAt"),
			intParam(int64(req.GetGlobalPosition())))}
	},
	"BookReturned": func(req *pb.ProjectionRequest, p *payload) []*pb.Statement {
		return []*pb.Statement{statement(giveBack,
			p.text("loanId"), p.time("returnedAt"), intParam(int64(req.GetGlobalPosition())))}
	},
}

// payload reads typed parameters from an event's payload (a google.protobuf.Struct); the
// first field that is missing or of the wrong kind is kept in err.
type payload struct {
	req *pb.ProjectionRequest
	err error
}

func (p *payload) str(name string) string {
	value, ok := p.req.GetEventPayload().GetFields()[name].GetKind().(*structpb.Value_StringValue)
	if !ok && p.err == nil {
		p.err = fmt.Errorf("payload field '%s' is missing or not a string", name)
	}
	if !ok {
		return ""
	}
	return value.StringValue
}

func (p *payload) text(name string) *pb.SqlValue {
	return &pb.SqlValue{Kind: &pb.SqlValue_StringValue{StringValue: p.str(name)}}
}

func (p *payload) time(name string) *pb.SqlValue {
	value := p.str(name)
	t, err := time.Parse(time.RFC3339Nano, value)
	if err != nil && p.err == nil {
		p.err = fmt.Errorf("payload field '%s' is not an RFC 3339 time", name)
	}
	return &pb.SqlValue{Kind: &pb.SqlValue_TimestampValue{TimestampValue: timestamppb.New(t)}}
}

func intParam(value int64) *pb.SqlValue {
	return &pb.SqlValue{Kind: &pb.SqlValue_Int64Value{Int64Value: value}}
}

// statement is a statement with placeholders $1, $2, ... bound by the gateway's driver.
func statement(sql string, params ...*pb.SqlValue) *pb.Statement {
	return &pb.Statement{Sql: sql, Params: params}
}

func pack(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err) // only for a message that cannot be encoded: a bug
	}
	return a
}

// describe is the projection, its version, and the event types to send (the gateway sends
// only those).
func describe() *pb.DescribeResponse {
	return &pb.DescribeResponse{
		Projection: projection,
		Version:    version,
		EventTypes: slices.Sorted(maps.Keys(handlers)),
		// What clears the read model when the gateway rebuilds it.
		ResetOperations: []*anypb.Any{pack(statement("DELETE FROM loans"))},
	}
}

// respond is the answer to one event: a failure becomes the answer's Error.
func respond(req *pb.ProjectionRequest) *pb.ProjectionResponse {
	answer := &pb.ProjectionResponse{EventId: req.GetEventId()}
	h, ok := handlers[req.GetEventType()]
	if !ok {
		answer.Operation = pack(&pb.Ignore{})
		return answer
	}
	p := &payload{req: req}
	statements := h(req, p)
	if p.err != nil {
		answer.Error = &pb.ReducerError{
			Message: fmt.Sprintf("%s %s (stream %s): %v", req.GetEventType(), req.GetEventId(), req.GetStream(), p.err),
		}
		return answer
	}
	for i, s := range statements {
		if i == 0 {
			answer.Operation = pack(s)
		} else {
			answer.Operations = append(answer.Operations, pack(s))
		}
	}
	return answer
}

package bookings

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	pb "projector-gateway/sidecar/projectionpb"
)

// Target is the kind of database the operations are for (environment REDUCER_TARGET).
type Target int

const (
	// SQL emits projection.Statement: the read model the gateway applies today.
	SQL Target = iota
	// Mongo emits projection.UpdateOne upserts in two MongoDB collections.
	Mongo
	// Elastic emits projection.Index / Update for one Elasticsearch index.
	Elastic
)

var targetNames = [...]string{SQL: "sql", Mongo: "mongo", Elastic: "elastic"}

func (t Target) String() string {
	if int(t) < len(targetNames) {
		return targetNames[t]
	}
	return fmt.Sprintf("Target(%d)", int(t))
}

// ParseTarget reads a REDUCER_TARGET value; empty means SQL.
func ParseTarget(name string) (Target, error) {
	if name == "" {
		return SQL, nil
	}
	for t, n := range targetNames {
		if n == name {
			return Target(t), nil
		}
	}
	return 0, fmt.Errorf("unknown target %q: use one of %s", name, strings.Join(targetNames[:], ", "))
}

// Operations returns the operations that apply d to the read model of t, in the order they
// must run. An empty result means the event changes nothing.
func (t Target) Operations(d *Decoded) []proto.Message {
	switch t {
	case SQL:
		return sqlOperations(d)
	case Mongo:
		return mongoOperations(d)
	case Elastic:
		return elasticOperations(d)
	}
	panic(fmt.Sprintf("bookings: no operations for %v", t))
}

// Reduce answers one request. It never fails: a payload the reducer cannot read becomes the
// response's non-retryable error, which the gateway hands to the connector's poison policy.
// The first operation goes to `operation` and the rest, in order, to `operations`; an event
// that changes nothing is answered with Ignore.
func Reduce(t Target, req *pb.ProjectionRequest) *pb.ProjectionResponse {
	resp := &pb.ProjectionResponse{EventId: req.GetEventId()}
	decoded, err := Decode(req)
	if err != nil {
		resp.Error = &pb.ReducerError{Message: err.Error(), Retryable: false}
		return resp
	}
	var ops []proto.Message
	if decoded != nil {
		ops = t.Operations(decoded)
	}
	if len(ops) == 0 {
		ops = []proto.Message{&pb.Ignore{}}
	}
	packed := make([]*anypb.Any, len(ops))
	for i, op := range ops {
		if packed[i], err = anypb.New(op); err != nil {
			resp.Error = &pb.ReducerError{
				Message: fmt.Sprintf("event %s (%s): cannot encode operation %d: %v", req.GetEventId(), req.GetEventType(), i+1, err),
			}
			return resp
		}
	}
	resp.Operation, resp.Operations = packed[0], packed[1:]
	return resp
}

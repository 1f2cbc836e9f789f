package bookings

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"google.golang.org/protobuf/types/known/structpb"

	pb "projector-gateway/sidecar/projectionpb"
)

// payload gives typed access to an event's payload, whichever way the gateway sent it: as
// the eventPayload Struct (connector option `payload: struct`, the default, or `both`) or only
// as the raw JSON bytes of payloadJson (`payload: json`).
//
// Reads are sticky on error, like bufio.Scanner: after the first missing or mistyped field
// every read returns a zero value, and err says what went wrong first.
type payload struct {
	fields map[string]*structpb.Value // from eventPayload, when it has fields
	json   map[string]any             // from payloadJson otherwise (numbers as json.Number)
	err    error
}

func newPayload(req *pb.ProjectionRequest) (*payload, error) {
	if fields := req.GetEventPayload().GetFields(); len(fields) > 0 {
		return &payload{fields: fields}, nil
	}
	p := &payload{json: map[string]any{}}
	if raw := req.GetPayloadJson(); len(raw) > 0 {
		decoder := json.NewDecoder(bytes.NewReader(raw))
		decoder.UseNumber() // integers stay exact instead of becoming float64
		if err := decoder.Decode(&p.json); err != nil {
			return nil, fmt.Errorf("payloadJson is not a JSON object: %w", err)
		}
	}
	return p, nil
}

var errMissing = errors.New("is missing")

// text reads a required string field.
func (p *payload) text(name string) string {
	if p.err != nil {
		return ""
	}
	var err error
	if p.fields != nil {
		switch v := p.fields[name].GetKind().(type) {
		case *structpb.Value_StringValue:
			return v.StringValue
		case nil, *structpb.Value_NullValue:
			err = errMissing
		default:
			err = errors.New("is not a string")
		}
	} else {
		switch v := p.json[name].(type) {
		case string:
			return v
		case nil:
			err = errMissing
		default:
			err = errors.New("is not a string")
		}
	}
	p.err = fmt.Errorf("payload field %q %w", name, err)
	return ""
}

// int64 reads a required integer field. JSON numbers arrive in a Struct as doubles: a whole
// double in range is converted, anything else is an error.
func (p *payload) int64(name string) int64 {
	if p.err != nil {
		return 0
	}
	var err error
	if p.fields != nil {
		switch v := p.fields[name].GetKind().(type) {
		case *structpb.Value_NumberValue:
			if i, ok := whole(v.NumberValue); ok {
				return i
			}
			err = fmt.Errorf("is not a whole number (%v)", v.NumberValue)
		case nil, *structpb.Value_NullValue:
			err = errMissing
		default:
			err = errors.New("is not a number")
		}
	} else {
		switch v := p.json[name].(type) {
		case json.Number:
			if i, e := v.Int64(); e == nil {
				return i
			}
			if f, e := v.Float64(); e == nil {
				if i, ok := whole(f); ok {
					return i
				}
			}
			err = fmt.Errorf("is not a whole number (%s)", v)
		case nil:
			err = errMissing
		default:
			err = errors.New("is not a number")
		}
	}
	p.err = fmt.Errorf("payload field %q %w", name, err)
	return 0
}

// whole converts f to an int64 when it is a whole number that an int64 holds exactly.
func whole(f float64) (int64, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) || f != math.Trunc(f) || f < math.MinInt64 || f >= math.MaxInt64 {
		return 0, false
	}
	return int64(f), true
}
